"""``zpressor-ns export``: predict any scene of a trained run and write it as a standard 3DGS .ply."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpressor_ns.commands.runs import chosen_scene, load_run

HELP = "predict a scene of a trained run and write a standard 3DGS .ply"
DESCRIPTION = """\
Predict one scene of a trained run from its context views and write the Gaussians as a standard 3DGS
.ply (positions, scales, rotations, opacities, SH truncated to degree 3 for common viewers).

ns-export gaussian-splat writes the run's display scene; this command picks any scene of the run's
display split and the number of context views (chosen over the whole scene by the official index
rule), and writes with a vectorised writer, so millions of Gaussians take seconds.
"""
EXAMPLE = "zpressor-ns export --load-config outputs/re10k/zpressor-depthsplat/RUN/config.yml --views 24 --output scene.ply"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of the run")
    parser.add_argument("--output", type=Path, required=True, help=".ply file to write")
    parser.add_argument("--scene", default=None, help="scene key (default: the run's display scene)")
    parser.add_argument("--views", type=int, default=None, help="context views (default: the run's)")
    parser.add_argument("--min-opacity", type=float, default=1 / 255, help="drop fainter Gaussians")


def run(args: argparse.Namespace) -> int:
    from zpressor_ns.export import write_ply

    _, pipeline, _, _ = load_run(args.load_config, test_mode="inference")
    datamanager = pipeline.datamanager
    scene = chosen_scene(datamanager, args.scene)
    context = datamanager.display_context(scene, args.views or datamanager.display_num_context)
    gaussians = pipeline.model.set_display_scene(context)
    report = write_ply(
        args.output,
        gaussians.means[0],
        gaussians.covariances[0],
        gaussians.harmonics[0],
        gaussians.opacities[0],
        min_opacity=args.min_opacity,
    )
    print(
        f"{scene}: wrote {report.written} Gaussians to {report.path} "
        f"(dropped {report.dropped_transparent} transparent, {report.dropped_non_finite} non-finite)"
    )
    return 0
