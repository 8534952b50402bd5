"""Resuming training: a run killed after a checkpoint and resumed with ``--load-dir`` ends where the
uninterrupted run ends, bit for bit on CPU (weights, Adam moments, schedule), whatever the number of
DataLoader workers; checkpoints are written atomically, and a truncated one is passed over with a warning
while a refused one stops the run with one message."""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil

import pytest
import torch

pytest.importorskip(
    "nerfstudio", reason="drives Nerfstudio, which the core does not need (the GPU machine has none)"
)

from nerfstudio.scripts.train import train_loop  # noqa: E402

from zpressor_ns.nerfstudio.pipeline import FeedForwardPipeline  # noqa: E402

METHOD = "zpressor-depthsplat-small"


class Killed(Exception):
    """Stands for the process being killed (nothing after it runs, nothing is saved)."""


def _config(method_config, synthetic_root, out, name, steps, workers):
    config = method_config(METHOD, synthetic_root, out, steps=steps)
    config.timestamp = name
    config.steps_per_save = 1
    config.steps_per_eval_image = 1  # evaluation between steps must not disturb training
    config.pipeline.datamanager.num_workers = workers
    config.pipeline.datamanager.num_target_views = 2
    # Random first anchors draw from the step's generator: a resume must restore those draws too.
    model = config.pipeline.model
    model.zpressor = dataclasses.replace(model.zpressor, first_anchor="random")
    return config


def _kill_at(monkeypatch, kill_step: int) -> None:
    train_step = FeedForwardPipeline.get_train_loss_dict

    def get_train_loss_dict(self, step: int):
        if step == kill_step:
            raise Killed
        return train_step(self, step)

    monkeypatch.setattr(FeedForwardPipeline, "get_train_loss_dict", get_train_loss_dict)


def _assert_same(actual, expected, where: str = "") -> None:
    if isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            _assert_same(actual[key], expected[key], f"{where}/{key}")
    elif isinstance(expected, list | tuple):
        assert len(actual) == len(expected), where
        for i, (a, e) in enumerate(zip(actual, expected)):
            _assert_same(a, e, f"{where}[{i}]")
    elif isinstance(expected, torch.Tensor):
        assert torch.equal(actual, expected), where
    else:
        assert actual == expected, where


def test_killed_run_resumes_to_the_uninterrupted_weights(
    synthetic_root, tmp_path, method_config, monkeypatch, caplog
):
    # Uninterrupted: steps 0-2 in the training process (an evaluation after step 1).
    full = _config(method_config, synthetic_root, tmp_path, "full", steps=3, workers=0)
    train_loop(local_rank=0, world_size=1, config=full)
    expected = torch.load(full.get_checkpoint_dir() / "step-000000002.ckpt", map_location="cpu")

    # The same command with two workers, killed during step 2 (after the checkpoint of step 1).
    killed = _config(method_config, synthetic_root, tmp_path, "killed", steps=3, workers=2)
    with monkeypatch.context() as patch:
        _kill_at(patch, 2)
        with pytest.raises(Killed):
            train_loop(local_rank=0, world_size=1, config=killed)
    saved = sorted(p.name for p in killed.get_checkpoint_dir().iterdir())
    assert saved == ["step-000000001.ckpt"]  # nothing half-written is left behind
    assert not list(killed.get_base_dir().glob(".*.partial"))

    # A newer checkpoint cut short (a kill while writing, with a writer that wrote in place).
    folder = tmp_path / "copied_checkpoints"
    shutil.copytree(killed.get_checkpoint_dir(), folder)
    whole = (folder / "step-000000001.ckpt").read_bytes()
    (folder / "step-000000002.ckpt").write_bytes(whole[: len(whole) // 2])

    # Resumed with one worker for the remaining step: --max-num-iterations counts steps after the load.
    resumed = _config(method_config, synthetic_root, tmp_path, "resumed", steps=1, workers=1)
    resumed.load_dir = folder
    with caplog.at_level(logging.WARNING):
        train_loop(local_rank=0, world_size=1, config=resumed)
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "step-000000002.ckpt" in warnings and "resuming from step-000000001.ckpt" in warnings
    actual = torch.load(resumed.get_checkpoint_dir() / "step-000000002.ckpt", map_location="cpu")

    assert actual["step"] == expected["step"] == 2
    weights = {k: v for k, v in expected["pipeline"].items() if k.startswith("_model.")}
    assert len(weights) > 100
    _assert_same(actual["pipeline"], expected["pipeline"], "pipeline")
    moments = expected["optimizers"]["encoder"]["state"]
    assert all({"exp_avg", "exp_avg_sq", "step"} <= set(s) for s in moments.values())
    _assert_same(actual["optimizers"], expected["optimizers"], "optimizers")
    _assert_same(actual["schedulers"], expected["schedulers"], "schedulers")


def test_a_refused_checkpoint_stops_the_resume_with_one_message(synthetic_root, tmp_path, method_config):
    class RunsCode:
        def __reduce__(self):
            return (os.getcwd, ())

    folder = tmp_path / "checkpoints"
    folder.mkdir()
    crafted = folder / "step-000000007.ckpt"
    torch.save({"step": 7, "pipeline": {}, "optimizers": {}, "scalers": {}, "payload": RunsCode()}, crafted)
    config = method_config(METHOD, synthetic_root, tmp_path, steps=1)
    config.load_dir = folder
    with pytest.raises(SystemExit) as stopped:
        train_loop(local_rank=0, world_size=1, config=config)
    message = str(stopped.value)
    assert str(crafted) in message and "refused" in message and "getcwd" in message
    assert "weights_only" not in message and "\n" not in message
