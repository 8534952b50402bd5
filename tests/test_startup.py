"""Start-up checks of ns-train/ns-eval: a user's mistake is one message before anything runs, never a
traceback steps later; a broken display scene is replaced by the next good one.

Each case corrupts a copy of the small synthetic dataset (or one option) the way a user did.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from zpressor_ns.data.synthetic import SYNTHETIC_FAR, SYNTHETIC_NEAR
from zpressor_ns.nerfstudio.datamanager import UserError

METHOD = "zpressor-depthsplat-small"  # 6 context views, 3 anchors, 4 targets
INDEX_NAME = "re10k_ctx_6v_tgt_8v_n40.json"


@pytest.fixture
def data(synthetic_root, tmp_path) -> Path:
    """A writable copy of the synthetic data: ROOT/re10k/{train,test,evaluation}."""
    shutil.copytree(synthetic_root / "re10k", tmp_path / "data" / "re10k")
    return tmp_path / "data"


def scene_keys(data: Path, split: str) -> list[str]:
    return list(json.loads((data / "re10k" / split / "index.json").read_text()))


def write_index(data: Path, entries: dict) -> None:
    (data / "re10k" / "evaluation" / INDEX_NAME).write_text(json.dumps(entries))


def frames_past_the_end(data: Path) -> None:
    write_index(
        data,
        {key: {"context": [0, 5, 10, 15, 20, 25], "target": [30, 45]} for key in scene_keys(data, "test")},
    )


def fewer_context_views_than_anchors(data: Path) -> None:
    keys = scene_keys(data, "test")
    write_index(
        data,
        {
            keys[0]: {"context": [0, 4, 8, 12, 16, 20], "target": [1]},
            keys[1]: {"context": [0, 9], "target": [3]},
        },
    )


def poison_first_test_scene(data: Path) -> str:
    """NaN cameras in the first test scene of the reader's order; returns its key."""
    split = data / "re10k" / "test"
    first = sorted(
        scene_keys(data, "test"), key=lambda k: (json.loads((split / "index.json").read_text())[k], k)
    )[0]
    path = split / json.loads((split / "index.json").read_text())[first]
    chunk = torch.load(path, weights_only=True)
    for item in chunk:
        if item["key"] == first:
            item["cameras"][:, 6] = float("nan")
    torch.save(chunk, path)
    return first


CASES = {
    "empty train split": (
        lambda data, config: [p.unlink() for p in (data / "re10k" / "train").iterdir()],
        r"split 'train' of .*re10k holds no scenes",
    ),
    "no recognisable layout": (
        lambda data, config: shutil.rmtree(data / "re10k") or (data / "re10k" / "photos").mkdir(parents=True),
        r"no dataset layout recognised in .*re10k; looked for",
    ),
    "truncated index.json": (
        lambda data, config: (data / "re10k" / "train" / "index.json").write_text('{"ab'),
        r"train/index\.json: cannot read the JSON file",
    ),
    "more context views than any training scene has": (
        lambda data, config: setattr(config.pipeline.datamanager, "num_context_views", 41),
        r"none of the 3 training scenes gives a training example with 41 context and 4 target views",
    ),
    "evaluation index is not JSON": (
        lambda data, config: (data / "re10k" / "evaluation" / INDEX_NAME).write_text("{"),
        rf"{INDEX_NAME}: cannot read the JSON file",
    ),
    "evaluation index of other scenes": (
        lambda data, config: write_index(data, {"elsewhere": {"context": [0, 1], "target": [2]}}),
        r"none of the 1 scenes of evaluation index .* is in the data",
    ),
    "evaluation index past the end of every scene": (
        lambda data, config: frames_past_the_end(data),
        r"does not fit 2 of the 2 scenes(.|\n)*frames \[45\], but the scene has only 40 frames",
    ),
    "evaluation index with string frames": (
        lambda data, config: write_index(data, {"x": {"context": ["0", "1"], "target": [2]}}),
        r"scene 'x' needs a non-empty list of frame numbers under 'context'",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_or_options_are_one_message_at_start_up(case, data, tmp_path, method_config):
    config = method_config(METHOD, data, tmp_path / "runs", steps=1)
    config.pipeline.datamanager.display_num_context_views = 6
    change, message = CASES[case]
    change(data, config)
    with pytest.raises(UserError, match=message) as raised:
        config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    assert raised.value.code.startswith("zpressor-ns: ")  # what Python prints, as the only line


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda data, config: setattr(config.pipeline.datamanager, "num_context_views", 2),
            r"num-context-views is 2, fewer than the 3 ZPressor anchors",
        ),
        (
            lambda data, config: fewer_context_views_than_anchors(data),
            r"context views of scene '\w+' in the evaluation index .* is 2, fewer than the 3 ZPressor anchors",
        ),
    ],
)
def test_fewer_context_views_than_anchors_is_refused_at_start_up(
    change, message, data, tmp_path, method_config
):
    config = method_config(METHOD, data, tmp_path / "runs", steps=1)
    change(data, config)
    with pytest.raises(UserError, match=message):
        config.pipeline.setup(device="cpu", test_mode="val")


def test_training_leaves_out_a_mismatched_scene_but_a_benchmark_refuses_it(
    data, tmp_path, method_config, caplog
):
    keys = scene_keys(data, "test")
    good = {"context": [0, 4, 8, 12, 16, 20], "target": [1, 2]}
    write_index(data, {keys[0]: good, keys[1]: {**good, "target": [1, 60]}})
    config = method_config(METHOD, data, tmp_path / "runs", steps=1)
    with caplog.at_level(logging.WARNING):
        training = config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    assert training.eval_data.keys() == [keys[0]]
    assert f"leaving scene {keys[1]!r} out of evaluation" in caplog.text

    benchmark = config.pipeline.datamanager.setup(device="cpu", test_mode="test")
    with pytest.raises(UserError, match=rf"does not fit 1 of the 2 scenes(.|\n)*{keys[1]}"):
        benchmark.benchmark_batches()  # what ns-eval asks for first


@pytest.mark.parametrize("num_workers", [0, 1])
def test_training_stops_with_one_message_when_no_scene_is_left(data, tmp_path, method_config, num_workers):
    config = method_config(METHOD, data, tmp_path / "runs", steps=1)
    config.pipeline.datamanager.num_workers = num_workers
    datamanager = config.pipeline.datamanager.setup(device="cpu", test_mode="val")
    assert datamanager.next_train(0)["context"]["image"].shape[:2] == (1, 6)
    # After the warm-up the sampler's context gap reaches 50 frames: none of the 40-frame scenes fits.
    with pytest.raises(UserError) as raised:  # a step out of order restarts the loader there
        datamanager.next_train(20_000)
    assert raised.value.code == (
        "zpressor-ns: training stopped: none of the 3 training scenes is usable (see the warnings above)"
    )


def test_a_broken_first_display_scene_is_replaced_by_the_next(data, tmp_path, method_config, caplog):
    broken = poison_first_test_scene(data)
    config = method_config(METHOD, data, tmp_path / "runs", steps=1)
    with caplog.at_level(logging.WARNING):
        datamanager = config.pipeline.datamanager.setup(device="cpu", test_mode="inference")
    other = next(key for key in scene_keys(data, "test") if key != broken)
    assert datamanager.display_scene == other
    assert f"showing scene {other!r} in the viewer" in caplog.text and broken in caplog.text

    config.pipeline.datamanager.display_scene = broken  # asked for by name: an error, not a substitute
    with pytest.raises(UserError, match=rf"'{broken}'.*NaN"):
        config.pipeline.datamanager.setup(device="cpu", test_mode="inference")


def run_cli(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    bin_dir = Path(sys.executable).parent
    return subprocess.run(
        [str(bin_dir / args[0]), *args[1:]], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_ns_train_prints_one_message_without_a_traceback(data, tmp_path):
    result = run_cli(
        [
            "ns-train",
            METHOD,
            "--machine.device-type", "cpu",
            "--vis", "tensorboard",
            "--output-dir", str(tmp_path / "runs"),
            "--pipeline.datamanager.num-workers", "0",
            "--pipeline.datamanager.num-context-views", "2",
            "re10k",
            "--data", str(data / "re10k"),
            "--near", str(SYNTHETIC_NEAR),
            "--far", str(SYNTHETIC_FAR),
        ],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "zpressor-ns: num-context-views is 2, fewer than the 3 ZPressor anchors the model keeps; give at "
        "least as many context views as anchors, or lower --pipeline.model.num-anchors"
    )


def test_ns_eval_with_a_bad_index_prints_one_message_and_writes_nothing(trained_run, tmp_path):
    bad_index = tmp_path / "index.json"
    bad_index.write_text(json.dumps({"only-elsewhere": {"context": [0, 1, 2], "target": [3]}}))
    config = copy.deepcopy(trained_run)
    config.pipeline.datamanager.eval_index = bad_index
    config_path = tmp_path / "config.yml"
    config_path.write_text(yaml.dump(config), "utf8")
    result = run_cli(
        [
            "ns-eval",
            "--load-config", str(config_path),
            "--output-path", str(tmp_path / "eval.json"),
            "--render-output-path", str(tmp_path / "renders"),
        ],
        tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("zpressor-ns: none of the 1 scenes of evaluation index") and "only-elsewhere" in last
    )
    assert not (tmp_path / "eval.json").exists()
    assert not list((tmp_path / "renders").glob("**/*"))  # ns-eval itself makes the folder, nothing is in it
