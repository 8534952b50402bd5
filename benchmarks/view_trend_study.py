"""Does ZPressor's advantage over the baseline grow with the number of context views? A small-scale study.

    OMP_NUM_THREADS=1 nice -n 10 python benchmarks/view_trend_study.py --out-dir /tmp/view_trend \\
        --results benchmarks/results/view_trend_cpu

(One thread: on a 2-core machine shared with other jobs, two OpenMP threads made a training step
about 8x slower; see docs/BENCHMARKS.md.)

1. writes synthetic DL3DV-style scenes (``make_synthetic``; 72x128 frames, so the 64x128 model input is a
   crop, not an upscale) with evaluation indices for every view count of ``--views``;
2. trains ``depthsplat-small`` and ``zpressor-depthsplat-small`` with the same budget: the same steps,
   seed, data, recipe and 6 context views (ZPressor compresses them to its 3 anchors), each in a fresh
   process so that one run's writers, random state and memory cannot touch the other's;
3. scores both at every view count with the sweep (``zpressor_ns.nerfstudio.sweep``, as ``ns-eval`` scores), with
   ZPressor keeping its 3 anchors at every count;
4. writes ``<results>.json`` (rows, per-scene scores, paired gaps, settings, timings, commands) and
   ``<results>.png``, and prints the table.

The gap is ZPressor minus baseline, paired per test scene; its standard error comes from the spread of
the per-scene differences, so it measures the scene sample only, not the spread between training seeds.
``--skip-train`` re-scores the runs already in ``--out-dir``.
"""

from __future__ import annotations

import argparse
import copy
import json
import multiprocessing
import os
import platform
import shlex
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import environment, resolve_device, write_json

from zpressor_ns.data.synthetic import SYNTHETIC_FAR, SYNTHETIC_NEAR, SyntheticConfig, make_synthetic
from zpressor_ns.nerfstudio.sweep import (
    METRICS,
    SweepRow,
    find_index_file,
    markdown_table,
    sweep_pipeline,
    write_outputs,
)

BASELINE = "depthsplat-small"
ZPRESSOR = "zpressor-depthsplat-small"
METHODS = (ZPRESSOR, BASELINE)
PAPER_VIEWS = (8, 12, 16, 24, 36)
FRAME_SIZE = (72, 128)  # (height, width) written; the small methods crop 64x128 out of it
EXPERIMENT = "view-trend"
RUN_TIMESTAMP = "run"  # fixed, so --skip-train finds the runs again
PerScene = dict[int, dict[str, dict[str, float]]]  # views -> scene -> metric -> score


@dataclass(frozen=True)
class StudySettings:
    out_dir: Path
    steps: int
    train_scenes: int
    test_scenes: int
    frames: int
    views: tuple[int, ...]
    seed: int
    device: str

    @property
    def data(self) -> Path:
        return self.out_dir / "data"

    @property
    def index_dir(self) -> Path:
        return self.data / "dl3dv" / "evaluation"

    def synthetic(self) -> SyntheticConfig:
        return SyntheticConfig(
            seed=self.seed,
            num_train_scenes=self.train_scenes,
            num_test_scenes=self.test_scenes,
            dl3dv_frames=self.frames,
            dl3dv_size=FRAME_SIZE,
            layouts=("dl3dv",),
            eval_context_views=self.views,
        )

    def run_dir(self, method: str) -> Path:
        return self.out_dir / "runs" / EXPERIMENT / method / RUN_TIMESTAMP


# ---- 1. data ------------------------------------------------------------------------------------
def prepare_data(settings: StudySettings) -> dict:
    """Write the scenes once; a later call with the same settings reuses them (and their timing)."""
    config = settings.synthetic()
    record_path = settings.out_dir / "data_generation.json"
    written = settings.data / "synthetic.json"
    if written.exists():
        if json.loads(written.read_text())["config"] != json.loads(json.dumps(asdict(config))):
            raise SystemExit(
                f"{settings.data} holds scenes made with other settings; choose a new --out-dir "
                "or give the settings it was made with"
            )
        print(f"[data] reusing the scenes in {settings.data}")
        return json.loads(record_path.read_text())
    print(f"[data] writing {settings.train_scenes} train + {settings.test_scenes} test scenes")
    summary = make_synthetic(settings.data, config)
    print(summary.describe())
    record = {
        "seconds": round(summary.seconds, 1),
        "frames": summary.frames,
        "bytes": sum(p.stat().st_size for p in settings.data.rglob("*") if p.is_file()),
        "synthetic_config": asdict(config),
    }
    write_json(record_path, record)
    return record


# ---- 2. training --------------------------------------------------------------------------------
def training_config(method: str, settings: StudySettings, eval_index: Path):
    """The registered method's recipe with this study's budget and data; identical for both methods."""
    from nerfstudio.configs.method_configs import all_methods
    from zpressor_ns.dataparsers import MULTISCENE_DATAPARSERS

    config = copy.deepcopy(all_methods[method])
    config.machine.device_type = settings.device
    config.machine.seed = settings.seed
    config.output_dir = settings.out_dir / "runs"
    config.experiment_name = EXPERIMENT
    config.timestamp = RUN_TIMESTAMP
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.max_num_iterations = settings.steps
    config.steps_per_save = settings.steps
    config.steps_per_eval_image = 0  # scoring happens once, in the sweep
    config.steps_per_eval_all_images = 0
    config.optimizers["encoder"]["scheduler"].max_steps = settings.steps
    config.pipeline.display_refresh_every = 0
    datamanager = config.pipeline.datamanager
    datamanager.dataparser = copy.deepcopy(MULTISCENE_DATAPARSERS["dl3dv"])
    datamanager.dataparser.data = settings.data / "dl3dv"
    datamanager.dataparser.near, datamanager.dataparser.far = SYNTHETIC_NEAR, SYNTHETIC_FAR
    datamanager.eval_index = eval_index
    datamanager.max_fov_deg = None  # the synthetic DL3DV-like cameras are about 71 degrees wide
    return config


def recipe_facts() -> dict[str, int]:
    """Context views the methods train with, and ZPressor's anchors, as registered."""
    from nerfstudio.configs.method_configs import all_methods

    from zpressor_ns.encoders import encoder_config

    pipeline = all_methods[ZPRESSOR].pipeline
    anchors = (
        pipeline.model.num_anchors or encoder_config(pipeline.model.method, pipeline.model.preset).num_anchors
    )
    return {"train_context_views": pipeline.datamanager.num_context_views, "zpressor_anchors": anchors}


def _train_in_this_process(config_path: str, record_path: str) -> None:
    """Train from a saved config.yml (what ``ns-train --load-config`` reads) and record the wall time."""
    import yaml
    from nerfstudio.scripts.train import train_loop

    config = yaml.load(Path(config_path).read_text(), Loader=yaml.Loader)
    started = time.perf_counter()
    train_loop(local_rank=0, world_size=1, config=config)
    seconds = time.perf_counter() - started
    record = {
        "steps": config.max_num_iterations,
        "seconds": round(seconds, 1),
        "seconds_per_step": round(seconds / config.max_num_iterations, 3),
        "torch_threads": torch.get_num_threads(),
        "config": config_path,
    }
    Path(record_path).write_text(json.dumps(record, indent=2) + "\n")


def train(method: str, settings: StudySettings) -> dict:
    """Train one method in a fresh process; returns its timing record."""
    eval_index = find_index_file(settings.index_dir, min(settings.views))
    config = training_config(method, settings, eval_index)
    config.save_config()
    config_path = config.get_base_dir() / "config.yml"
    record_path = config.get_base_dir() / "training.json"
    print(f"[train] {method}: {settings.steps} steps on {settings.device} -> {config.get_base_dir()}")
    process = multiprocessing.get_context("spawn").Process(
        target=_train_in_this_process, args=(str(config_path), str(record_path))
    )
    process.start()
    process.join()
    if process.exitcode != 0:
        raise SystemExit(f"training {method} failed (exit code {process.exitcode}); see the output above")
    record = json.loads(record_path.read_text())
    print(f"[train] {method}: {record['seconds']:.0f} s, {record['seconds_per_step']:.2f} s/step")
    return record


def existing_training(method: str, settings: StudySettings) -> dict:
    record_path = settings.run_dir(method) / "training.json"
    if not record_path.exists():
        raise SystemExit(
            f"--skip-train: no finished run of {method} in {settings.run_dir(method)}; run without --skip-train"
        )
    record = json.loads(record_path.read_text())
    if record["steps"] != settings.steps:
        raise SystemExit(
            f"--skip-train: {settings.run_dir(method)} was trained for {record['steps']} steps, "
            f"not --steps {settings.steps}"
        )
    return record


def training_log(run_dir: Path) -> dict:
    """From a run's TensorBoard events: the trainer's median step time and its training PSNR curve (one
    random example per logged step, so noisy)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    scalars = events.Tags()["scalars"]
    step_seconds = (
        [e.value for e in events.Scalars("Train Iter (time)")] if "Train Iter (time)" in scalars else []
    )
    psnr = events.Scalars("Train Metrics Dict/psnr") if "Train Metrics Dict/psnr" in scalars else []
    return {
        "median_step_seconds": round(statistics.median(step_seconds), 3) if step_seconds else None,
        "train_psnr": [[e.step, round(e.value, 2)] for e in psnr],
    }


# ---- 3. evaluation ------------------------------------------------------------------------------
def evaluate(method: str, settings: StudySettings) -> tuple[list[SweepRow], PerScene]:
    """The sweep's rows of one trained run, and the per-scene scores behind each row."""
    from nerfstudio.utils.eval_utils import eval_setup

    _, pipeline, _, _ = eval_setup(settings.run_dir(method) / "config.yml", test_mode="test")
    print(f"[eval] {method}: views {list(settings.views)}")
    rows = sweep_pipeline(pipeline, method, list(settings.views), settings.index_dir, progress=False)
    return rows, {row.views: row.per_scene for row in rows if row.status == "ok"}


def mean_and_se(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and standard error of the mean; None where there are too few values."""
    mean = statistics.fmean(values) if values else None
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else None
    return mean, se


def _gap(zpressor: PerScene, baseline: PerScene, views: int, scene: str, metric: str) -> float | None:
    """ZPressor minus baseline on one scene, or None where either lacks the metric (LPIPS without VGG16)."""
    ours, theirs = zpressor[views][scene].get(metric), baseline[views][scene].get(metric)
    return None if ours is None or theirs is None else ours - theirs


def paired_gaps(zpressor: PerScene, baseline: PerScene) -> list[dict]:
    """Per view count and metric: mean over the scenes both scored of (ZPressor - baseline), and its
    standard error."""
    gaps = []
    for views in sorted(set(zpressor) & set(baseline)):
        scenes = sorted(set(zpressor[views]) & set(baseline[views]))
        row: dict = {"views": views, "scenes": len(scenes)}
        for metric in METRICS:
            differences = [_gap(zpressor, baseline, views, s, metric) for s in scenes]
            row[metric], row[f"{metric}_se"] = mean_and_se(differences if None not in differences else [])
        gaps.append(row)
    return gaps


def gap_change(zpressor: PerScene, baseline: PerScene) -> dict | None:
    """How the gap moves from the fewest to the most views, paired per scene scored at both counts."""
    views = sorted(set(zpressor) & set(baseline))
    if len(views) < 2:
        return None
    low, high = views[0], views[-1]
    scenes = sorted(set(zpressor[low]) & set(baseline[low]) & set(zpressor[high]) & set(baseline[high]))
    change: dict = {"from_views": low, "to_views": high, "scenes": len(scenes)}
    for metric in METRICS:
        pairs = [
            (_gap(zpressor, baseline, high, s, metric), _gap(zpressor, baseline, low, s, metric))
            for s in scenes
        ]
        complete = all(None not in pair for pair in pairs)
        deltas = [at_high - at_low for at_high, at_low in pairs] if complete else []
        change[metric], change[f"{metric}_se"] = mean_and_se(deltas)
    return change


# ---- 4. outputs ---------------------------------------------------------------------------------
def plot(rows: list[SweepRow], gaps: list[dict], training: dict[str, dict], path: Path) -> None:
    """PSNR, SSIM and LPIPS against views for both methods, the paired PSNR gap with its error bars, and
    the training PSNR curves (how far training got)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("psnr", "PSNR (dB)"), ("ssim", "SSIM"), ("lpips", "LPIPS (lower is better)"))
    figure, axes = plt.subplots(1, len(panels) + 2, figsize=(20, 3.4))
    for method in dict.fromkeys(row.method for row in rows):
        ok = sorted((r for r in rows if r.method == method and r.status == "ok"), key=lambda r: r.views)
        for axis, (metric, label) in zip(axes, panels):
            points = [(r.views, getattr(r, metric)) for r in ok if getattr(r, metric) is not None]
            if points:
                axis.plot(*zip(*points), marker="o", label=method)
            axis.set_ylabel(label)
    for axis, (metric, _) in zip(axes, panels):
        if all(getattr(row, metric) is None for row in rows):
            axis.text(0.5, 0.5, "not measured", transform=axis.transAxes, ha="center", color="grey")
    gap_axis = axes[len(panels)]
    gap_axis.errorbar(
        [g["views"] for g in gaps],
        [g["psnr"] for g in gaps],
        yerr=[g["psnr_se"] or 0.0 for g in gaps],
        marker="o",
        capsize=3,
        color="black",
    )
    gap_axis.axhline(0.0, color="grey", linewidth=0.8)
    gap_axis.set_ylabel("PSNR gap, ZPressor - baseline (dB)")
    views = sorted({row.views for row in rows})
    for axis in axes[:-1]:
        axis.set_xticks(views)
        axis.set_xlabel("context views")
    curve_axis = axes[-1]
    for method, record in training.items():
        curve = record.get("train_psnr", [])
        window = min(5, len(curve))
        if window:
            smoothed = [
                statistics.fmean(v for _, v in curve[i : i + window]) for i in range(len(curve) - window + 1)
            ]
            curve_axis.plot([step for step, _ in curve[window - 1 :]], smoothed, label=method)
    curve_axis.set_xlabel("training step")
    curve_axis.set_ylabel("training PSNR (dB), mean of 5 logs")
    for axis in axes:
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def gap_table(gaps: list[dict]) -> str:
    """Markdown: the paired gap per view count, mean ± standard error over scenes."""
    lines = ["| Views | Scenes | PSNR gap | SSIM gap | LPIPS gap |", "|---:|---:|---:|---:|---:|"]
    for gap in gaps:
        cells = []
        for metric in METRICS:
            mean, se = gap[metric], gap[f"{metric}_se"]
            cells.append("-" if mean is None else f"{mean:+.3f}" + ("" if se is None else f" ± {se:.3f}"))
        lines.append(f"| {gap['views']} | {gap['scenes']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def reproduce_commands(settings: StudySettings, argv: list[str]) -> dict[str, str]:
    """The whole study as run (``--skip-train`` dropped), the command that re-scores its runs, and the
    equivalent sweep command."""
    threads = os.environ.get("OMP_NUM_THREADS")
    script = (f"OMP_NUM_THREADS={threads} " if threads else "") + "python benchmarks/view_trend_study.py "
    study = shlex.join([arg for arg in argv if arg != "--skip-train"])
    configs = " ".join(str(settings.run_dir(m) / "config.yml") for m in METHODS)
    return {
        "study": script + study,
        "rescore": script + study + " --skip-train",
        "sweep": f"zpressor-ns sweep --load-config {configs} --views {' '.join(map(str, settings.views))} "
        f"--index-dir {settings.index_dir} --output {settings.out_dir / 'sweep'}",
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out-dir", type=Path, required=True, help="scenes, runs and sweep outputs")
    parser.add_argument("--steps", type=int, default=450, help="training steps of each method")
    parser.add_argument("--train-scenes", type=int, default=28, help="synthetic training scenes")
    parser.add_argument("--test-scenes", type=int, default=8, help="synthetic test scenes")
    parser.add_argument("--frames", type=int, default=60, help="frames per synthetic scene")
    parser.add_argument(
        "--views", type=int, nargs="+", default=list(PAPER_VIEWS), help="context-view counts to score"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the scenes and of training")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--skip-train", action="store_true", help="re-score the runs already in --out-dir")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="path stem of the result JSON and PNG (default: OUT_DIR/view_trend)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1 or min(args.views) < 2 or args.test_scenes < 1 or args.train_scenes < 1:
        parser.error("need --steps >= 1, --views >= 2, and at least one train and one test scene")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = resolve_device(args.device)
    settings = StudySettings(
        out_dir=args.out_dir,
        steps=args.steps,
        train_scenes=args.train_scenes,
        test_scenes=args.test_scenes,
        frames=args.frames,
        views=tuple(sorted(set(args.views))),
        seed=args.seed,
        device=device.type,
    )
    results = args.results or settings.out_dir / "view_trend"

    data = prepare_data(settings)
    missing = [v for v in settings.views if find_index_file(settings.index_dir, v) is None]
    if missing:
        raise SystemExit(
            f"no evaluation index for {missing} context views in {settings.index_dir}: "
            f"{settings.frames} frames cannot hold that many context views plus "
            f"{settings.synthetic().eval_target_views} targets; use more --frames"
        )
    training = {}
    for method in METHODS:
        record = existing_training(method, settings) if args.skip_train else train(method, settings)
        training[method] = {**record, **training_log(settings.run_dir(method))}

    rows: list[SweepRow] = []
    per_scene: dict[str, PerScene] = {}
    for method in METHODS:
        method_rows, per_scene[method] = evaluate(method, settings)
        rows += method_rows
    gaps = paired_gaps(per_scene[ZPRESSOR], per_scene[BASELINE])
    change = gap_change(per_scene[ZPRESSOR], per_scene[BASELINE])

    payload = {
        "question": "does ZPressor's advantage over the baseline grow with the number of context views?",
        "settings": {
            "steps": settings.steps,
            "seed": settings.seed,
            "train_scenes": settings.train_scenes,
            "test_scenes": settings.test_scenes,
            "frames_per_scene": settings.frames,
            "frame_size": list(FRAME_SIZE),
            "views": list(settings.views),
            "methods": list(METHODS),
            **recipe_facts(),
        },
        "machine": {
            **environment(device),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "data_generation": data,
        "training": training,
        "rows": [asdict(row) for row in rows],
        "gap_zpressor_minus_baseline": gaps,
        "gap_change": change,
        "per_scene": {m: {str(v): s for v, s in by_views.items()} for m, by_views in per_scene.items()},
        "commands": reproduce_commands(settings, sys.argv[1:] if argv is None else argv),
    }
    write_outputs(rows, settings.out_dir / "sweep")  # what ``zpressor-ns sweep`` writes for these runs
    json_path = results.with_suffix(".json")
    write_json(json_path, payload)
    plot(rows, gaps, training, results.with_suffix(".png"))

    print(markdown_table(rows))
    print()
    print(gap_table(gaps))
    if change is not None:
        print(
            f"gap change {change['from_views']} -> {change['to_views']} views: PSNR "
            f"{change['psnr']:+.3f} ± {change['psnr_se'] or 0:.3f} dB over {change['scenes']} scenes"
        )
    print(f"wrote {json_path} and {results.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
