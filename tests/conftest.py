"""Shared fixtures: a small synthetic RE10K-layout dataset and a 3-step training run, made once per session."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from zpressor_ns.data.synthetic import SYNTHETIC_FAR, SYNTHETIC_NEAR, SyntheticConfig, make_synthetic

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


def _tiny_method_config(method: str, root: Path, out: Path, steps: int):
    from nerfstudio.configs.method_configs import all_methods

    config = copy.deepcopy(all_methods[method])
    config.machine.device_type = "cpu"
    config.output_dir = out
    config.experiment_name = "test"
    config.timestamp = "run"
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.max_num_iterations = steps
    config.steps_per_save = steps
    config.steps_per_eval_image = 2
    config.steps_per_eval_all_images = 1000
    config.optimizers["encoder"]["scheduler"].max_steps = 100
    datamanager = config.pipeline.datamanager
    datamanager.data = root / "re10k"
    datamanager.dataparser.near, datamanager.dataparser.far = SYNTHETIC_NEAR, SYNTHETIC_FAR
    datamanager.eval_index = root / "re10k" / "evaluation" / "re10k_ctx_6v_tgt_8v_n40.json"
    datamanager.num_workers = 0
    datamanager.max_fov_deg = None
    return config


@pytest.fixture(scope="session")
def method_config():
    """Factory of CPU configs of a registered method on the synthetic data: (method, root, out, steps)."""
    return _tiny_method_config


@pytest.fixture(scope="session", params=["zpressor-depthsplat-small", "zpressor-mvsplat-small"])
def trained_run(request, synthetic_root, tmp_path_factory, method_config):
    """3 steps of each family's small ZPressor method through Nerfstudio's trainer, config.yml written as
    ns-train does."""
    from nerfstudio.scripts.train import train_loop

    config = method_config(request.param, synthetic_root, tmp_path_factory.mktemp("runs"), steps=3)
    config.save_config()
    train_loop(local_rank=0, world_size=1, config=config)
    return config


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
