"""``zpressor-ns inspect``: the exact --json schema against the fixture's truth, table, exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from zpressor_ns.cli import main

# ../shared beside the checkout (as CI has it), or $ZPRESSOR_SHARED_DIR.
SHARED = Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
FIXTURE = SHARED / "fixtures" / "re10k_layout"
pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"shared fixture {FIXTURE} not present")


def inspect_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["inspect", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_json_output_has_the_exact_schema_and_matches_truth(capsys):
    truth = json.loads((FIXTURE / "truth.json").read_text())
    code, output = inspect_json(capsys, str(FIXTURE))
    assert code == 0
    assert set(output) == {"scenes"}
    assert sorted(scene["key"] for scene in output["scenes"]) == sorted(truth)
    for scene in output["scenes"]:
        assert set(scene) == {"key", "num_frames", "height", "width", "frames"}
        expected = truth[scene["key"]]
        assert (scene["num_frames"], scene["height"], scene["width"]) == (
            expected["num_frames"],
            expected["height"],
            expected["width"],
        )
        assert [frame["index"] for frame in scene["frames"]] == list(range(expected["num_frames"]))
        for frame, c2w in zip(scene["frames"], expected["c2w_opencv"], strict=True):
            assert set(frame) == {"index", "c2w", "K"}
            assert np.allclose(frame["c2w"], c2w, atol=1e-5)
            assert np.allclose(frame["K"], expected["K_normalised"], atol=1e-5)


def test_split_option_limits_the_scenes(capsys):
    truth = json.loads((FIXTURE / "truth.json").read_text())
    _, output = inspect_json(capsys, str(FIXTURE), "--split", "test", "--layout", "re10k")
    assert [s["key"] for s in output["scenes"]] == [k for k, v in truth.items() if v["split"] == "test"]


def test_table_lists_key_frames_size_centre_and_fov(capsys):
    assert main(["inspect", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "layout re10k, 2 scenes" in out
    truth = json.loads((FIXTURE / "truth.json").read_text())
    for key, scene in truth.items():
        row = next(line for line in out.splitlines() if line.startswith(key))
        assert f" {scene['num_frames']} " in row and f"{scene['height']}x{scene['width']}" in row
        # Horizontal field of view of a centred principal point: 2 atan(0.5 / fx).
        fov = np.degrees(2 * np.arctan(0.5 / scene["K_normalised"][0][0]))
        assert f"{fov:5.1f} x" in row


def test_unrecognised_path_exits_2_with_what_was_looked_for(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["inspect", str(tmp_path), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no dataset layout recognised" in captured.err and "transforms.json" in captured.err


def test_bad_scene_is_reported_and_the_rest_still_listed(tmp_path, capsys):
    split_dir = tmp_path / "test"
    split_dir.mkdir()
    rows = torch.zeros(2, 18)
    rows[:, :4] = torch.tensor([1.0, 1.0, 0.5, 0.5])
    rows[:, 6:] = torch.eye(4)[:3].reshape(-1)
    good = json.loads((FIXTURE / "test" / "index.json").read_text())
    chunk = torch.load(FIXTURE / "test" / next(iter(good.values())), weights_only=True)
    bad = {**chunk[0], "key": "broken", "cameras": rows.clone().fill_(float("nan"))}
    torch.save([chunk[0], bad], split_dir / "000000.torch")
    (split_dir / "index.json").write_text(
        json.dumps({chunk[0]["key"]: "000000.torch", "broken": "000000.torch"})
    )
    code = main(["inspect", str(tmp_path), "--json"])
    captured = capsys.readouterr()
    assert code == 1
    assert [s["key"] for s in json.loads(captured.out)["scenes"]] == [chunk[0]["key"]]
    assert "'broken'" in captured.err and "NaN" in captured.err


def test_command_line_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "zpressor_ns.cli", "inspect", str(FIXTURE / "train"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(result.stdout)["scenes"]) == 1
