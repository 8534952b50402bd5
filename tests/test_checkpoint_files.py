"""Checkpoint files: weights-only reading with one clear message for refused and for unreadable files,
atomic writing, and the newest readable checkpoint of a run."""

from __future__ import annotations

import logging
import os

import pytest
import torch

from zpressor_ns.checkpoints import (
    RefusedCheckpoint,
    UnreadableCheckpoint,
    load_state_dict_file,
    read_checkpoint,
    write_checkpoint,
)


class RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_refused_and_unreadable_files_get_one_message_naming_the_file(tmp_path):
    crafted = tmp_path / "crafted.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}, "hook": RunsCode()}, crafted)
    for load in (read_checkpoint, load_state_dict_file):
        with pytest.raises(RefusedCheckpoint) as refused:
            load(crafted)
        message = str(refused.value)
        assert str(crafted) in message and "getcwd" in message and "refused" in message
        assert "weights_only" not in message and "\n" not in message
        assert refused.value.__cause__ is None and refused.value.__suppress_context__

    good = tmp_path / "good.ckpt"
    torch.save({"state_dict": {"w": torch.ones(1)}}, good)
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(good.read_bytes()[:100])
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    for path in (cut, empty):
        with pytest.raises(UnreadableCheckpoint, match="truncated or corrupt") as unreadable:
            load_state_dict_file(path)
        assert str(path) in str(unreadable.value) and "weights_only" not in str(unreadable.value)


def test_an_interrupted_write_leaves_the_previous_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "models" / "step-000000001.ckpt"
    write_checkpoint({"step": 1, "w": torch.arange(4.0)}, path)
    assert read_checkpoint(path)["step"] == 1

    def dies_half_way(payload, file):
        file.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # killed while writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint({"step": 2}, path, scratch_dir=tmp_path)
    assert read_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["step-000000001.ckpt"]


def test_resume_takes_the_newest_readable_checkpoint(tmp_path, caplog):
    pytest.importorskip("nerfstudio")
    from zpressor_ns.checkpoints import CheckpointError
    from zpressor_ns.nerfstudio.trainer import newest_readable_checkpoint

    def nerfstudio_checkpoint(step: int) -> dict:
        return {"step": step, "pipeline": {}, "optimizers": {}, "schedulers": {}, "scalers": {}}

    for step in (5, 10):
        torch.save(nerfstudio_checkpoint(step), tmp_path / f"step-{step:09d}.ckpt")
    whole = (tmp_path / "step-000000010.ckpt").read_bytes()
    (tmp_path / "step-000000015.ckpt").write_bytes(whole[: len(whole) // 3])
    (tmp_path / "notes.txt").write_text("not a checkpoint")
    with caplog.at_level(logging.WARNING):
        path, state = newest_readable_checkpoint(tmp_path)
    assert path.name == "step-000000010.ckpt" and state["step"] == 10
    assert "step-000000015.ckpt" in caplog.text and "resuming from step-000000010.ckpt" in caplog.text

    torch.save({"step": 20, "payload": RunsCode()}, tmp_path / "step-000000020.ckpt")
    with pytest.raises(RefusedCheckpoint, match="step-000000020.ckpt"):
        newest_readable_checkpoint(tmp_path)  # a refused file is never passed over
    for path in tmp_path.glob("step-*.ckpt"):
        path.write_bytes(b"")
    with pytest.raises(CheckpointError, match="none of the 4 checkpoints"):
        newest_readable_checkpoint(tmp_path)
