"""``zpressor-ns inspect``: the exact --json schema against the fixture's truth, table, exit codes, --check."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zpressor_ns.cli import main
from zpressor_ns.data import writers

# ../shared beside the checkout (as CI has it), or $ZPRESSOR_SHARED_DIR.
SHARED = Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
FIXTURE = SHARED / "fixtures" / "re10k_layout"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"shared fixture {FIXTURE} not present")


def inspect_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["inspect", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


@needs_fixture
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


@needs_fixture
def test_split_option_limits_the_scenes(capsys):
    truth = json.loads((FIXTURE / "truth.json").read_text())
    _, output = inspect_json(capsys, str(FIXTURE), "--split", "test", "--layout", "re10k")
    assert [s["key"] for s in output["scenes"]] == [k for k, v in truth.items() if v["split"] == "test"]


@needs_fixture
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


@needs_fixture
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


@needs_fixture
def test_command_line_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "zpressor_ns.cli", "inspect", str(FIXTURE / "train"), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert len(json.loads(result.stdout)["scenes"]) == 1


def jpeg_bytes(height: int, width: int, value: int = 90) -> torch.Tensor:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (value, 2 * value % 256, 40)).save(buffer, format="JPEG")
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def test_check_reads_every_frame_and_reports_each_bad_one(tmp_path, capsys):
    c2w = torch.eye(4).repeat(5, 1, 1)
    c2w[:, 2, 3] = torch.arange(5) * 0.1
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 1.5, 0.5], [0.0, 0.0, 1.0]]).expand(5, 3, 3)
    writers.write_re10k_chunks(
        tmp_path,
        "test",
        [
            writers.ChunkScene(key, torch.zeros(5, 12, 20, 3, dtype=torch.uint8), c2w, K, torch.arange(5))
            for key in "ab"
        ],
    )
    chunk_path = tmp_path / "test" / "000000.torch"
    chunk = torch.load(chunk_path, weights_only=True)
    chunk[0]["images"][2] = jpeg_bytes(6, 10)  # a half-size frame
    chunk[0]["images"][4] = torch.frombuffer(bytearray(b"not an image at all"), dtype=torch.uint8)
    torch.save(chunk, chunk_path)

    assert main(["inspect", str(tmp_path)]) == 0  # only frame 0's header is read by default
    capsys.readouterr()
    assert main(["inspect", str(tmp_path), "--check"]) == 1
    captured = capsys.readouterr()
    problems = captured.err.strip().splitlines()
    assert len(problems) == 2
    assert "'a' frame 2" in problems[0] and "10x6" in problems[0] and "20x12" in problems[0]
    assert "'a' frame 4" in problems[1] and "not a readable" in problems[1]
    assert "a " in captured.out and "b " in captured.out  # both scenes still listed


def test_check_names_non_image_files_of_a_transforms_json_scene(tmp_path, capsys):
    c2w = torch.eye(4).repeat(3, 1, 1)
    c2w[:, 0, 3] = torch.arange(3) * 0.2
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 1.5, 0.5], [0.0, 0.0, 1.0]]).expand(3, 3, 3)
    scene_dir = writers.write_dl3dv_scene(
        tmp_path, "s1", torch.zeros(3, 12, 20, 3, dtype=torch.uint8), c2w, K
    )
    (scene_dir / "images_8" / "frame_00002.png").write_text("frame 2 was replaced by notes")
    assert main(["inspect", str(tmp_path), "--check", "--json"]) == 1
    captured = capsys.readouterr()
    assert [s["key"] for s in json.loads(captured.out)["scenes"]] == ["s1"]
    assert "'s1' frame 1" in captured.err and "frame_00002.png" in captured.err
