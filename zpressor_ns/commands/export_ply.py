"""``zpressor-ns export``: predict any scene of a trained run and write it as a standard 3DGS .ply.

``ns-export gaussian-splat`` writes the run's display scene; this picks the scene and the number of
context views (chosen by the official index rule over the whole scene) and writes with a vectorised
writer, so millions of Gaussians take seconds. SH are truncated to degree 3 for common viewers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "predict a scene of a trained run and write a standard 3DGS .ply"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of the run")
    parser.add_argument("--output", type=Path, required=True, help=".ply file to write")
    parser.add_argument("--scene", default=None, help="scene key (default: the run's display scene)")
    parser.add_argument("--views", type=int, default=None, help="context views (default: the run's)")
    parser.add_argument("--min-opacity", type=float, default=1 / 255, help="drop fainter Gaussians")


def run(args: argparse.Namespace) -> int:
    from zpressor_ns.export import write_ply
    from zpressor_ns.nerfstudio.runs import RUN_ERRORS, load_run

    try:
        _, pipeline, _, _ = load_run(args.load_config, test_mode="inference")
    except RUN_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    datamanager = pipeline.datamanager
    scene = args.scene or datamanager.display_scene
    if scene not in datamanager.display_scene_keys():
        print(f"scene {scene!r} is not in the run's {datamanager.config.display_split} split")
        return 2
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
