"""benchmarks/view_trend_study.py: the paired gap statistics and the equal-budget training configs."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture(scope="module")
def study():
    """The script imported the way it runs (its folder on sys.path, for ``common``)."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("view_trend_study")
    finally:
        sys.path.remove(str(BENCHMARKS))


def _scores(psnr: list[float], ssim: list[float] | None = None) -> dict[str, dict[str, float]]:
    """Per-scene scores of scenes a, b, ...; no LPIPS (as on a machine without VGG16 weights)."""
    ssim = ssim or [0.5] * len(psnr)
    return {chr(97 + i): {"psnr": p, "ssim": s} for i, (p, s) in enumerate(zip(psnr, ssim))}


def test_gaps_are_paired_per_scene_with_standard_error(study):
    # Scene b is much harder for both methods: pairing cancels that, so the gap is exactly 1 or 3 dB.
    baseline = {8: _scores([20.0, 10.0]), 36: _scores([21.0, 11.0])}
    zpressor = {8: _scores([21.0, 13.0]), 36: _scores([23.0, 17.0], ssim=[0.6, 0.6])}
    gaps = study.paired_gaps(zpressor, baseline)
    assert [g["views"] for g in gaps] == [8, 36] and gaps[0]["scenes"] == 2
    # differences (1, 3): mean 2, sample std sqrt(2), standard error sqrt(2) / sqrt(2) = 1
    assert gaps[0]["psnr"] == pytest.approx(2.0) and gaps[0]["psnr_se"] == pytest.approx(1.0)
    assert gaps[1]["psnr"] == pytest.approx(4.0) and gaps[1]["psnr_se"] == pytest.approx(2.0)
    assert gaps[0]["ssim"] == pytest.approx(0.0) and gaps[1]["ssim"] == pytest.approx(0.1)
    assert gaps[0]["lpips"] is None and gaps[0]["lpips_se"] is None  # not measured, not zero

    change = study.gap_change(zpressor, baseline)
    # per-scene gap growth from 8 to 36 views: (2 - 1, 6 - 3) = (1, 3)
    assert (change["from_views"], change["to_views"], change["scenes"]) == (8, 36, 2)
    assert change["psnr"] == pytest.approx(2.0) and change["psnr_se"] == pytest.approx(1.0)
    assert change["lpips"] is None


def test_gaps_use_only_scenes_both_methods_scored(study):
    baseline = {12: _scores([20.0, 10.0, 30.0])}
    zpressor = {12: _scores([21.0, 11.0])}
    (gap,) = study.paired_gaps(zpressor, baseline)
    assert gap["scenes"] == 2 and gap["psnr"] == pytest.approx(1.0) and gap["psnr_se"] == pytest.approx(0.0)
    assert study.gap_change(zpressor, baseline) is None  # one view count: nothing to compare


def test_both_methods_train_with_the_same_budget_and_recipe(study, tmp_path):
    pytest.importorskip("nerfstudio")
    settings = study.StudySettings(
        out_dir=tmp_path,
        steps=37,
        train_scenes=3,
        test_scenes=2,
        frames=60,
        views=(8, 36),
        seed=5,
        device="cpu",
    )
    index = tmp_path / "index.json"
    zpressor = study.training_config(study.ZPRESSOR, settings, index)
    baseline = study.training_config(study.BASELINE, settings, index)
    assert zpressor.max_num_iterations == 37  # the schedule spans the run (max_steps None)
    assert zpressor.optimizers["encoder"]["scheduler"].max_steps is None
    assert zpressor.machine.seed == 5 and zpressor.pipeline.datamanager.num_context_views == 6
    parser = zpressor.pipeline.datamanager.dataparser
    assert parser.dataset == "dl3dv" and parser.data == tmp_path / "data" / "dl3dv"
    assert zpressor.get_base_dir() == settings.run_dir(study.ZPRESSOR)
    assert zpressor.pipeline.model.method != baseline.pipeline.model.method
    # Apart from the encoder (and the name), nothing may differ between the two runs.
    baseline.method_name = zpressor.method_name
    baseline.pipeline.model.method = zpressor.pipeline.model.method
    assert baseline == zpressor


def test_fewer_than_two_context_views_are_refused(study, tmp_path):
    with pytest.raises(SystemExit):
        study.parse_args(["--out-dir", str(tmp_path), "--views", "1", "8"])
