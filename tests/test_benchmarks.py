"""Benchmark scripts: the efficiency CPU smoke sweep and its OOM handling, the shared helpers, and the JSON
fields of the ZPressor-module and rasterizer benchmarks."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zpressor_ns.encoders import encoder_config

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "efficiency.py"
TINY_HEIGHT, TINY_WIDTH = 64, 128
FORCED_OOM = f"zpressor-depthsplat:8:{TINY_HEIGHT}x{TINY_WIDTH}"
HEADLINE_FIELDS = {
    "method": str,
    "views": int,
    "height": int,
    "width": int,
    "gaussians": int,
    "latency_ms": float,
    "render_ms": float,
    "peak_mib": float,
    "status": str,
}


@pytest.fixture(scope="module")
def benchmarks_on_path():
    """The benchmarks folder on sys.path, as when a script runs there: the scripts import ``common`` by name."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield
    finally:
        sys.path.remove(str(BENCHMARKS))


@pytest.fixture(scope="module")
def modules(benchmarks_on_path):
    """``efficiency`` and ``common``."""
    return importlib.import_module("efficiency"), importlib.import_module("common")


@pytest.fixture(scope="module")
def scripts(benchmarks_on_path):
    """``zpressor_module`` and ``rasterizer``."""
    return importlib.import_module("zpressor_module"), importlib.import_module("rasterizer")


@pytest.fixture(scope="module")
def tiny_sweep(tmp_path_factory):
    """The ``--tiny`` sweep with one setting forced out of memory (no warm-up, 2 targets: seconds less)."""
    out = tmp_path_factory.mktemp("efficiency") / "efficiency_cpu.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ZPRESSOR_BENCH_FORCE_OOM": FORCED_OOM}
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--warmup", "0", "--target-views", "2", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done, json.loads(out.read_text()), out


def test_tiny_sweep_rows_have_the_issue_schema(tiny_sweep):
    _, rows, _ = tiny_sweep
    assert [(r["method"], r["views"]) for r in rows] == [
        ("depthsplat", 4),
        ("depthsplat", 8),
        ("zpressor-depthsplat", 4),
        ("zpressor-depthsplat", 8),
    ]
    for row in rows:
        assert row["status"] in ("ok", "OOM")
        assert (row["height"], row["width"]) == (TINY_HEIGHT, TINY_WIDTH)
        assert row["memory_kind"] == "cpu_peak_rss_growth"
        assert row["preset"] == "small" and row["weights"] == "random"
        for name, kind in HEADLINE_FIELDS.items():
            value = row[name]
            if row["status"] == "ok" or name not in ("gaussians", "latency_ms", "render_ms", "peak_mib"):
                assert isinstance(value, kind), f"{name}={value!r} in {row}"
            else:
                assert value is None


def test_gaussian_counts_are_kept_views_times_pixels(tiny_sweep):
    _, rows, _ = tiny_sweep
    anchors = encoder_config("zpressor-depthsplat", "small").num_anchors
    pixels = TINY_HEIGHT * TINY_WIDTH
    for row in rows:
        if row["status"] != "ok":
            continue
        kept = anchors if row["method"] == "zpressor-depthsplat" else row["views"]
        assert row["anchors"] == kept
        assert row["gaussians"] == kept * pixels


def test_forced_oom_gives_an_oom_row_and_spares_the_others(tiny_sweep):
    _, rows, _ = tiny_sweep
    by_setting = {(r["method"], r["views"]): r for r in rows}
    oom = by_setting[("zpressor-depthsplat", 8)]
    assert oom["status"] == "OOM"
    assert oom["phase"] == "encoder"
    assert all(oom[name] is None for name in ("gaussians", "latency_ms", "render_ms", "peak_mib"))
    others = [r for key, r in by_setting.items() if key != ("zpressor-depthsplat", 8)]
    assert [r["status"] for r in others] == ["ok"] * 3
    for row in others:
        assert row["latency_ms"] > 0 and row["render_ms"] > 0 and row["peak_mib"] > 0
        assert len(row["latency_ms_all"]) == row["reps"] == 1
        assert row["target_views"] == 2 and row["warmup"] == 0


def test_tiny_sweep_writes_a_png_and_prints_a_markdown_table(tiny_sweep):
    done, rows, out = tiny_sweep
    png = out.with_suffix(".png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)
    assert sum("| OOM" in line for line in table) == 1


def test_oom_skips_larger_view_counts_and_resume_keeps_rows(modules, tmp_path, monkeypatch):
    efficiency, _ = modules
    options = efficiency.Options("small", "cpu", "tf32", reps=1, warmup=0, target_views=2, seed=0)
    settings = efficiency.sweep_settings(["depthsplat"], [12, 24, 36], [(64, 128)], 32)
    calls = []

    def fake_child(setting, options, timeout_s):
        calls.append(setting.views)
        row = efficiency.base_row(setting, options)
        row["status"] = "OOM" if setting.views >= 24 else "ok"
        return row

    monkeypatch.setattr(efficiency, "run_in_subprocess", fake_child)
    out = tmp_path / "rows.json"
    rows = efficiency.run_sweep(settings, options, 10.0, True, [], out)
    assert calls == [12, 24]
    assert [r["status"] for r in rows] == ["ok", "OOM", "OOM"]
    assert rows[2]["note"] == "not run: out of memory at 24 views"
    assert json.loads(out.read_text()) == rows

    calls.clear()
    more = efficiency.sweep_settings(["depthsplat"], [12, 48], [(64, 128)], 32)
    resumed = efficiency.run_sweep(more, options, 10.0, False, rows, out)
    assert calls == [48]  # 12 views was already measured
    assert [r["views"] for r in resumed] == [12, 24, 36, 48]


def test_480p_is_cropped_to_the_encoders_multiple_and_says_so(modules):
    efficiency, _ = modules
    assert efficiency.runnable_size(270, 480, 32) == (256, 480)
    assert efficiency.runnable_size(256, 448, 32) == (256, 448)
    with pytest.raises(ValueError, match="smaller"):
        efficiency.runnable_size(20, 480, 32)
    (setting,) = efficiency.sweep_settings(["zpressor-depthsplat"], [12], [(270, 480)], 32)
    assert (setting.height, setting.width) == (256, 480)
    assert setting.size_note == "centre crop of 270x480"


def test_cameras_are_rigid_distinct_and_targets_lie_between_context(modules):
    efficiency, _ = modules
    inputs = efficiency.synthetic_inputs(12, 8, 64, 128, torch.device("cpu"), seed=0)
    rotations = inputs["c2w"][0, :, :3, :3]
    identity = torch.eye(3).expand_as(rotations)
    torch.testing.assert_close(rotations @ rotations.transpose(-1, -2), identity, atol=1e-6, rtol=0)
    centres = inputs["c2w"][0, :, :3, 3]
    assert torch.cdist(centres, centres).add(torch.eye(12)).min() > 1e-3
    target_z = inputs["target_c2w"][0, :, 2, 3]
    assert centres[0, 2] < target_z.min() and target_z.max() < centres[-1, 2]
    assert inputs["K"][0, 0, 0, 0] * 128 == pytest.approx(inputs["K"][0, 0, 1, 1] * 64)  # square pixels


def test_an_encoder_error_becomes_an_error_row(modules):
    efficiency, _ = modules
    options = efficiency.Options("small", "cpu", "tf32", reps=1, warmup=0, target_views=2, seed=0)
    setting = efficiency.Setting("depthsplat", 2, 48, 128, (48, 128))  # 48 is not a multiple of 32
    row = efficiency.run_single(setting, options)
    assert row["status"].startswith("error: ValueError: image size 48x128 is not a multiple of 32")
    assert row["phase"] == "encoder" and row["latency_ms"] is None


def test_a_setting_past_its_timeout_gives_an_error_row(modules):
    efficiency, _ = modules
    options = efficiency.Options("small", "cpu", "tf32", reps=1, warmup=0, target_views=2, seed=0)
    setting = efficiency.Setting("depthsplat", 4, 64, 128, (64, 128))
    row = efficiency.run_in_subprocess(setting, options, timeout_s=0.05)
    assert row["status"] == "error: TimeoutExpired: setting took longer than 0.05 s"
    assert row["latency_ms"] is None


def test_weights_option_assigns_files_to_methods(modules, tmp_path):
    efficiency, _ = modules
    checkpoint = tmp_path / "zp.ckpt"
    checkpoint.write_bytes(b"")
    assert efficiency.weights_for("depthsplat", [str(checkpoint)]) == {"depthsplat": str(checkpoint)}
    named = [f"zpressor-depthsplat={checkpoint}"]
    assert efficiency.weights_for("depthsplat", named) == {}
    assert efficiency.weights_for("zpressor-depthsplat", named) == {"zpressor-depthsplat": str(checkpoint)}
    with pytest.raises(SystemExit, match="no such file"):
        efficiency.weights_for("depthsplat", [str(tmp_path / "missing.ckpt")])
    with pytest.raises(SystemExit, match="unknown method"):
        efficiency.weights_for("depthsplat", [f"splatter={checkpoint}"])


def test_measure_calls_excludes_warmup_and_returns_the_last_result(modules):
    _, common = modules
    counter = iter(range(100))
    measured = common.measure_calls(lambda: next(counter), torch.device("cpu"), warmup=2, reps=3)
    assert len(measured.all_ms) == 3 and all(t >= 0 for t in measured.all_ms)
    assert measured.output == 4  # calls 0 and 1 were the warm-up
    assert measured.peak_mib is None
    with pytest.raises(ValueError, match="reps"):
        common.measure_calls(lambda: None, torch.device("cpu"), warmup=0, reps=0)


def test_out_of_memory_recognition(modules):
    _, common = modules
    assert common.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert common.is_out_of_memory(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling ..."))
    assert not common.is_out_of_memory(RuntimeError("shape mismatch"))
    assert not common.is_out_of_memory(ValueError("out of memory"))  # not raised by an allocator


def test_device_slug_names_the_results_file(modules):
    efficiency, common = modules
    assert common.device_slug("NVIDIA H100 80GB HBM3") == "h100_80gb_hbm3"
    assert common.device_slug("cpu (x86_64, 2 threads)") == "cpu"
    assert (
        efficiency.default_out("NVIDIA H100 80GB HBM3", tiny=False).name == "efficiency_h100_80gb_hbm3.json"
    )


def test_markdown_table_marks_missing_cells(modules):
    _, common = modules
    table = common.markdown_table(["a", "b"], [[1, None]], [False, True])
    assert table.splitlines() == ["| a | b |", "|---|---:|", "| 1 | - |"]


def test_measure_calls_separates_process_cpu_time_from_wall_time(modules):
    _, common = modules

    def sleep_then_spin() -> None:
        time.sleep(0.03)  # wall time, no CPU work
        deadline = time.process_time() + 0.01
        while time.process_time() < deadline:
            pass

    measured = common.measure_calls(sleep_then_spin, torch.device("cpu"), warmup=1, reps=2)
    assert len(measured.cpu_ms) == 2
    for wall, cpu in zip(measured.all_ms, measured.cpu_ms, strict=True):
        assert wall >= 40 and 10 <= cpu < 30


def test_zpressor_module_json_keeps_its_fields(scripts, tmp_path, capsys):
    zpressor_module, _ = scripts
    out = tmp_path / "zpressor_module.json"
    arguments = ["--device", "cpu", "--views", "6", "--tokens", "2x3", "--backends", "math"]
    assert zpressor_module.main([*arguments, "--warmup", "0", "--repeats", "2", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert {"device", "torch"} <= payload["environment"].keys()
    (row,) = payload["measurements"]
    assert (row["views"], row["tokens"], row["backend"], row["device"]) == (6, "2x3", "math", "cpu")
    assert 0 < row["ms_min"] <= row["ms_median"]
    assert row["peak_mib"] is None and row["max_abs_diff_vs_original"] is None
    assert "|diff|" in capsys.readouterr().out


def test_rasterizer_case_reports_seconds_per_pixel_aligned_scene(scripts):
    _, rasterizer = scripts
    case = rasterizer.Case("tiny", 8, 12, 2, 1, backward=True)
    result = rasterizer.run_case(case, "torch", torch.device("cpu"), repeats=3)
    assert result["gaussians"] == 2 * 8 * 12  # one Gaussian per context pixel
    assert 0 < result["best_seconds"] <= result["median_seconds"]
    assert 0 <= result["best_cpu_seconds"]
    assert result["name"] == "tiny" and result["backend"] == "torch"


# ---------------------------------------------------------------------------------------------------
# Against the original code (benchmarks/versus_original.py)


def test_versus_original_skips_cleanly_without_the_original(tmp_path):
    script = BENCHMARKS / "versus_original.py"
    out = tmp_path / "versus.json"
    done = subprocess.run(
        [sys.executable, str(script), "--original", str(tmp_path / "absent"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "skipped" in done.stderr and "absent" in done.stderr and not out.exists()
    usage = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert usage.returncode == 0 and "--original" in usage.stdout


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK),
    reason="needs Linux's resettable resident high-water mark",
)
def test_stage_clock_charges_each_stage_its_own_memory_and_time(benchmarks_on_path):
    versus = importlib.import_module("versus_original")
    clock = versus.StageClock({"call": ("call:start", "call:end"), "big": ("big:start", "big:end")})

    def call() -> None:
        for _ in range(2):  # a stage that runs twice: times add up, growth is the larger run's
            clock.event("big:start")
            block = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched
            deadline = time.process_time() + 0.02
            while time.process_time() < deadline:
                pass
            del block
            clock.event("big:end")
        small = torch.ones(2**20 // 4)  # outside the stage
        del small

    figures, _ = versus.measure(call, clock)
    big = figures["stages"]["big"]
    assert 60 <= big["growth_mib"] < 80 and big["cpu_ms"] >= 40
    assert 60 <= figures["growth_mib"] < 80 and figures["cpu_ms"] >= big["cpu_ms"]


# ---------------------------------------------------------------------------------------------------
# The CUDA path on fake CUDA tensors (benchmarks/cuda_dry_run.py)


@pytest.fixture(scope="module")
def dry_runs(benchmarks_on_path, tmp_path_factory):
    """Paper-size dry runs: the script for ZPressor at 12 views (JSON), then 24 views and the baseline."""
    dry = importlib.import_module("cuda_dry_run")
    out = tmp_path_factory.mktemp("dry") / "dry_run.json"
    arguments = ["--methods", "zpressor-depthsplat", "--views", "12", "--resolutions", "256x448"]
    assert dry.main([*arguments, "--out", str(out)]) == 0
    (twelve,) = json.loads(out.read_text())
    return (
        dry,
        twelve,
        dry.dry_run("zpressor-depthsplat", 24, 256, 448),
        dry.dry_run("depthsplat", 12, 256, 448),
    )


def test_paper_encoders_run_their_cuda_path_on_fake_tensors(dry_runs):
    """Every output on CUDA in fp32 (checked inside the dry run), Gaussians of the kept views only, and the
    weights counted once: the parameter counts of the issue in fp32."""
    _, twelve, twentyfour, baseline = dry_runs
    pixels = 256 * 448
    assert (twelve["anchors"], twelve["gaussians"]) == (6, 6 * pixels)
    assert twentyfour["gaussians"] == 6 * pixels and baseline["gaussians"] == 12 * pixels
    assert twelve["weights_gb"] == pytest.approx(116_072_834 * 4 / 1e9, abs=2e-3)
    assert baseline["weights_gb"] == pytest.approx(114_587_522 * 4 / 1e9, abs=2e-3)


def test_zpressor_memory_stays_flat_and_matches_the_memory_model(dry_runs):
    dry, twelve, twentyfour, baseline = dry_runs
    # Twelve more views add their images, nothing else: the anchors' stages set the peak.
    assert twentyfour["activations_gb"] == twelve["activations_gb"]
    image_gb = 12 * 3 * 256 * 448 * 4 / 1e9
    assert twentyfour["peak_gb"] - twelve["peak_gb"] == pytest.approx(image_gb, abs=2e-3)
    # The baseline keeps all 12 views: twice the anchors' activations.
    assert baseline["activations_gb"] == pytest.approx(2 * twelve["activations_gb"], rel=0.01)
    # The analytic model behind num_anchors="auto" agrees with the tracked tensors where the anchors
    # set the peak, and is conservative (never below) while ZPressor runs.
    for row in (twelve, twentyfour, baseline):
        assert row["model_activations_gb"] == pytest.approx(row["activations_gb"], rel=0.02)
    assert twelve["model_view_phase_gb"] >= twelve["zpressor_activations_gb"] > 0
    # The simulation is undone afterwards.
    assert not torch.compiler.is_compiling()
    assert dry.attention._flex_call(torch.device("cpu")) is not dry._flex_stand_in


def test_pixelsplat_runs_its_cuda_path_within_its_memory_model(benchmarks_on_path):
    """The paper pixelSplat encoders on fake CUDA tensors (small images; the shapes scale with pixels):
    3 Gaussians per pixel of the kept views, the weights of the original's parameter counts, and the
    memory model above the tracked tensors but within 50% of them."""
    dry = importlib.import_module("cuda_dry_run")
    zpressor, baseline = dry.dry_run("zpressor-pixelsplat", 6, 32, 32), dry.dry_run("pixelsplat", 4, 32, 32)
    assert (zpressor["anchors"], zpressor["gaussians"]) == (4, 4 * 32 * 32 * 3)
    assert baseline["gaussians"] == 4 * 32 * 32 * 3
    assert zpressor["weights_gb"] == pytest.approx(120_465_236 * 4 / 1e9, abs=2e-3)
    assert baseline["weights_gb"] == pytest.approx(118_979_924 * 4 / 1e9, abs=2e-3)
    for row in (zpressor, baseline):
        assert row["activations_gb"] <= row["model_activations_gb"] <= 1.5 * row["activations_gb"]


@pytest.mark.parametrize(("method", "views"), [("zpressor-mvsplat", (8, 24)), ("mvsplat", (2, 6))])
def test_mvsplat_dry_run_follows_its_memory_model(dry_runs, method, views):
    """MVSplat's CUDA path on fake tensors: Gaussians of the kept views, ZPressor's activations flat in the
    views, the baseline's growing with them, and the memory model within 2% of the tracked tensors."""
    dry = dry_runs[0]
    rows = [dry.dry_run(method, v, 128, 128) for v in views]
    kept = [6, 6] if method == "zpressor-mvsplat" else list(views)
    assert [r["gaussians"] for r in rows] == [k * 128 * 128 for k in kept]
    for row in rows:
        assert row["model_activations_gb"] == pytest.approx(row["activations_gb"], rel=0.02, abs=2e-3)
    if method == "zpressor-mvsplat":
        assert rows[0]["activations_gb"] == rows[1]["activations_gb"]
        assert rows[0]["weights_gb"] == pytest.approx(13_441_046 * 4 / 1e9, abs=2e-3)
    else:
        assert rows[1]["activations_gb"] == pytest.approx(3 * rows[0]["activations_gb"], rel=0.05)


def test_mvsplat_against_the_original_on_the_same_weights(benchmarks_on_path, tmp_path, monkeypatch):
    """benchmarks/mvsplat_vs_original.py runs the original through its parity harness (when both are here:
    the original code extracted into .ref/, its extra packages in .ref/site, ../shared beside the checkout
    or $ZPRESSOR_SHARED_DIR)."""
    ref = Path(__file__).resolve().parents[1] / ".ref"
    shared = Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
    harness = shared / "parity" / "official_mvsplat_harness.py"
    for needed in (ref / "mvsplat" / "src", ref / "site", harness):
        if not needed.exists():
            pytest.skip(f"{needed} not present (the original code and its harness are not shipped)")
    monkeypatch.syspath_prepend(str(ref / "site"))  # einops, e3nn: the original's imports, not ours
    script = importlib.import_module("mvsplat_vs_original")
    out = tmp_path / "rows.json"
    arguments = ["--harness", str(harness), "--ref", str(ref), "--views", "4", "--anchors", "2"]
    arguments += ["--baseline-views", "2", "--size", "16x32", "--reps", "1", "--out", str(out)]
    assert script.main(arguments) == 0
    rows = json.loads(out.read_text())
    assert [(r["method"], r["views"], r["anchors"]) for r in rows] == [
        ("zpressor-mvsplat", 4, 2),
        ("mvsplat", 2, 2),
    ]
    for row in rows:
        assert row["original_wall_ms"] > 0 and row["ours_wall_ms"] > 0
        assert row["max_abs_means_diff"] < 1e-2  # the same weights: only ZPressor's bf16 in the original


def test_pixelsplat_against_the_original_on_the_same_weights(benchmarks_on_path, tmp_path, monkeypatch):
    """benchmarks/pixelsplat_versus_original.py runs the original through its parity harness (when both are
    here: the original code extracted into .ref/, its extra packages in .ref/site, ../shared beside the
    checkout or $ZPRESSOR_SHARED_DIR)."""
    ref = Path(__file__).resolve().parents[1] / ".ref"
    shared = Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
    harness = shared / "parity" / "official_pixelsplat_harness.py"
    for needed in (ref / "pixelsplat" / "src", ref / "dino", ref / "site", harness):
        if not needed.exists():
            pytest.skip(f"{needed} not present (the original code and its harness are not shipped)")
    monkeypatch.syspath_prepend(str(ref / "site"))  # einops, e3nn: the original's imports, not ours
    # The originals are all top-level packages named ``src``: forget one another test imported.
    for name in [name for name in sys.modules if name == "src" or name.startswith("src.")]:
        monkeypatch.delitem(sys.modules, name)
    script = importlib.import_module("pixelsplat_versus_original")
    out = tmp_path / "result.json"
    arguments = ["--harness", str(harness), "--ref", str(ref), "--views", "4", "--anchors", "2"]
    arguments += ["--height", "16", "--width", "16", "--reps", "1", "--warmup", "0", "--out", str(out)]
    assert script.main(arguments) == 0
    result = json.loads(out.read_text())
    assert [row["implementation"] for row in result["rows"]] == ["original", "zpressor-ns (auto)"]
    for row in result["rows"]:
        assert (row["gaussians"], row["params"]) == (2 * 16 * 16 * 3, 120_464_724)  # K=2: no view embeddings
        assert row["median_ms"] > 0 and row["peak_tensor_mib"] > 0
    assert result["max_abs_means_difference"] < 1e-3  # the same weights and draws, fp32 on both sides


# ---------------------------------------------------------------------------------------------------
# Replicates of the view-trend study read together (benchmarks/view_trend_replicates.py)


def _study_json(path: Path, seed: int, gaps: dict[int, float], change: float) -> Path:
    """The fields of a view_trend_study.py result that the replicate summary reads."""
    payload = {
        "settings": {"seed": seed},
        "gap_zpressor_minus_baseline": [{"views": v, "psnr": g, "psnr_se": 0.1} for v, g in gaps.items()],
        "gap_change": {"from_views": 8, "to_views": 36, "psnr": change, "psnr_se": 0.2},
    }
    path.write_text(json.dumps(payload))
    return path


def test_replicates_report_the_spread_between_training_runs(benchmarks_on_path, tmp_path, capsys):
    replicates = importlib.import_module("view_trend_replicates")
    files = [
        _study_json(tmp_path / "b.json", 1, {8: -1.0, 36: 0.0}, 1.0),
        _study_json(tmp_path / "a.json", 0, {8: -2.0, 36: 1.0}, 3.0),
        _study_json(tmp_path / "c.json", 2, {8: -3.0, 36: -1.0, 12: -2.5}, 2.0),
    ]
    out = tmp_path / "summary"
    assert replicates.main([*map(str, files), "--out", str(out)]) == 0
    summary = json.loads(out.with_suffix(".json").read_text())
    assert summary["seeds"] == [0, 1, 2]  # ordered by seed, whatever the file order
    assert [row["views"] for row in summary["psnr_gap"]] == [8, 36]  # only counts every run scored
    at_8 = summary["psnr_gap"][0]
    assert at_8["runs"] == [-2.0, -1.0, -3.0] and at_8["mean"] == pytest.approx(-2.0)
    assert at_8["se"] == pytest.approx(1.0 / 3**0.5)  # sample SD 1 over sqrt(3) runs
    change = summary["psnr_gap_change"]
    assert change["mean"] == pytest.approx(2.0) and change["grew_in_runs"] == 3
    assert "| change 8 -> 36 | +3.00 | +1.00 | +2.00 | +2.00 ± 0.58 |" in capsys.readouterr().out
    assert out.with_suffix(".png").stat().st_size > 0


def test_replicates_refuse_runs_that_measured_different_changes(benchmarks_on_path, tmp_path):
    replicates = importlib.import_module("view_trend_replicates")
    first = replicates.load_run(_study_json(tmp_path / "a.json", 0, {8: -1.0}, 1.0))
    second = dict(first, change_views=(12, 36))
    with pytest.raises(ValueError, match="different view counts"):
        replicates.summarise([first, second])
