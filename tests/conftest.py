"""Shared fixtures: a small synthetic RE10K-layout dataset and a 3-step training run, made once per session."""

from __future__ import annotations

import contextlib
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
    datamanager = config.pipeline.datamanager
    if "pixelsplat" in method:
        # ZPressor attends over every pixel in pixelSplat: a smaller image keeps the CPU runs short.
        datamanager.image_shape = (16, 32)
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


@pytest.fixture(
    scope="session",
    params=["zpressor-depthsplat-small", "zpressor-mvsplat-small", "zpressor-pixelsplat-small"],
)
def trained_run(request, synthetic_root, tmp_path_factory, method_config):
    """3 steps of each family's small ZPressor method through Nerfstudio's trainer, config.yml written as
    ns-train does."""
    from nerfstudio.scripts.train import train_loop

    config = method_config(request.param, synthetic_root, tmp_path_factory.mktemp("runs"), steps=3)
    config.save_config()
    train_loop(local_rank=0, world_size=1, config=config)
    return config


@pytest.fixture
def without_shape_checks():
    """A context in which the run-time shape and type checks of the annotations are off.

    The suite runs with jaxtyping's import hook and beartype (pyproject's ``--jaxtyping-packages``), so a
    wrong shape fails at the annotation. Tests that feed deliberately wrong input to see the package's own
    error message (what users get: the checks run in the tests only) call it there, and so do tests of
    torch.compile'd code, whose graphs a checker's bookkeeping would break.
    """

    @contextlib.contextmanager
    def unchecked():
        import jaxtyping

        before = jaxtyping.config.jaxtyping_disable
        jaxtyping.config.update("jaxtyping_disable", True)
        try:
            yield
        finally:
            jaxtyping.config.update("jaxtyping_disable", before)

    return unchecked


@pytest.fixture(scope="session")
def most_gaussians():
    """The number of Gaussians a trained run's scene has: anchors x pixels x Gaussians per pixel."""

    def count(run) -> int:
        from zpressor_ns.encoders import encoder_config, resolve_method

        config = encoder_config(*resolve_method(run.method_name))
        height, width = run.pipeline.datamanager.image_shape
        return config.num_anchors * height * width * getattr(config, "gaussians_per_pixel", 1)

    return count


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
