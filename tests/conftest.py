"""Shared fixtures: a small synthetic RE10K-layout dataset written once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zpressor_ns.data.synthetic import SyntheticConfig, make_synthetic

SMALL_SYNTHETIC = SyntheticConfig(
    seed=7,
    num_train_scenes=3,
    num_test_scenes=2,
    re10k_frames=40,
    layouts=("re10k",),
    eval_context_views=(6, 8),
)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """OUT of ``make-synthetic`` with 3 train and 2 test RE10K-style scenes of 40 frames."""
    out = tmp_path_factory.mktemp("synthetic")
    make_synthetic(out, SMALL_SYNTHETIC)
    return out


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
