"""Nerfstudio 1.1.5 checkpoints hold numpy scalars; they must load with torch's safe (weights-only) loader."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

import zpressor_ns  # noqa: F401 - importing the package registers the allow-list


def test_numpy_scalars_load_weights_only(tmp_path):
    path = tmp_path / "step-000000001.ckpt"
    state = {"optimizers": {"encoder": {"param_groups": [{"lr": np.float64(2e-4)}]}}, "step": np.int64(1)}
    torch.save(state, path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert loaded["optimizers"]["encoder"]["param_groups"][0]["lr"] == pytest.approx(2e-4)


def test_arbitrary_objects_are_still_refused(tmp_path):
    path = tmp_path / "evil.ckpt"
    torch.save({"payload": pickle.PickleError("not a tensor")}, path)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, map_location="cpu", weights_only=True)
