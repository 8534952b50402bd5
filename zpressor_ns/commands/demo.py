"""``zpressor-ns demo``: the whole product on an embedded default, CPU only, in minutes."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpressor_ns.cli import CommandError
from zpressor_ns.commands.runs import load_run

HELP = "train, evaluate and render the small model on synthetic scenes (CPU, minutes)"
DESCRIPTION = """\
Run the whole product on CPU in minutes:
  1. write synthetic RE10K-style scenes (as make-synthetic does) under OUTPUT/data,
  2. train the small ZPressor-DepthSplat on them with Nerfstudio's trainer (the code path of
     ns-train zpressor-depthsplat-small re10k), the run under OUTPUT/runs,
  3. score it on the synthetic benchmark index as ns-eval does (OUTPUT/eval.json, OUTPUT/renders),
  4. render a fly-through of one predicted test scene (OUTPUT/flythrough/flythrough.gif).
Scenes already written in OUTPUT/data are reused.
"""
EXAMPLE = "zpressor-ns demo --output demo_output --steps 300"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--output", type=Path, default=Path("demo_output"), help="folder for everything written"
    )
    parser.add_argument("--method", default="zpressor-depthsplat-small", help="registered method to train")
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--eval-views", type=int, default=6, help="context views of the evaluation index")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    parser.add_argument("--frames", type=int, default=48, help="frames of the fly-through")


def run(args: argparse.Namespace) -> int:
    import copy

    import torch
    from nerfstudio.configs.method_configs import all_methods
    from nerfstudio.scripts.train import train_loop

    from zpressor_ns.data.synthetic import SYNTHETIC_FAR, SYNTHETIC_NEAR, SyntheticConfig, make_synthetic
    from zpressor_ns.encoders.registry import registered_method_names
    from zpressor_ns.flythrough import render_flythrough
    from zpressor_ns.nerfstudio.runs import write_eval_report

    if args.method not in registered_method_names():
        raise CommandError(f"unknown method {args.method!r}; registered: {sorted(registered_method_names())}")

    out: Path = args.output
    data = out / "data"
    if not (data / "synthetic.json").exists():
        print("[1/4] writing synthetic scenes")
        synthetic = SyntheticConfig(
            seed=args.seed, layouts=("re10k",), eval_context_views=(args.eval_views, 12)
        )
        summary = make_synthetic(data, synthetic)
        print(summary.describe())
    else:
        print(f"[1/4] reusing synthetic scenes in {data}")
    index = _index_file(data / "re10k" / "evaluation", args.eval_views)

    config = copy.deepcopy(all_methods[args.method])
    config.machine.device_type = "cuda" if torch.cuda.is_available() else "cpu"
    config.output_dir = out / "runs"
    config.experiment_name = "synthetic-re10k"
    config.vis = "tensorboard"
    config.viewer.quit_on_train_completion = True
    config.max_num_iterations = args.steps
    config.steps_per_save = args.steps
    config.steps_per_eval_image = max(args.steps // 4, 1)
    config.steps_per_eval_all_images = 10 * args.steps  # ns-eval below scores the benchmark once
    datamanager = config.pipeline.datamanager
    datamanager.data = data / "re10k"
    datamanager.dataparser.near, datamanager.dataparser.far = SYNTHETIC_NEAR, SYNTHETIC_FAR
    datamanager.eval_index = index
    datamanager.max_fov_deg = None
    config.pipeline.display_refresh_every = 0
    config.set_timestamp()
    config.save_config()
    print(f"[2/4] training {args.method} for {args.steps} steps on {config.machine.device_type}")
    train_loop(local_rank=0, world_size=1, config=config)

    print("[3/4] evaluating on", index)
    # What ns-eval does, reading the run's files with the package's restricted loaders.
    config, pipeline, checkpoint, _ = load_run(config.get_base_dir() / "config.yml", test_mode="test")
    report = write_eval_report(config, pipeline, checkpoint, out / "eval.json", out / "renders")
    results = report["results"]
    print("      " + ", ".join(f"{k} {v:.4f}" for k, v in results.items() if not k.endswith("_std")))

    print("[4/4] rendering a fly-through of", pipeline.datamanager.display_scene)
    gif = render_flythrough(
        pipeline, out / "flythrough" / "flythrough.gif", args.frames, frames_dir=out / "flythrough"
    )
    print(
        f"done: run {config.get_base_dir()}, scores {out / 'eval.json'}, renders {out / 'renders'}, video {gif}"
    )
    return 0


def _index_file(folder: Path, views: int) -> Path:
    from zpressor_ns.nerfstudio.sweep import find_index_file

    path = find_index_file(folder, views)
    if path is None:
        available = sorted(p.name for p in folder.glob("*.json"))
        raise SystemExit(f"no evaluation index with {views} context views in {folder} (have {available})")
    return path
