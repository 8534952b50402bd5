"""``zpressor-ns render``: a fly-through of a predicted scene as an animated GIF, without ffmpeg."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpressor_ns.cli import CommandError
from zpressor_ns.commands.runs import chosen_scene, load_run

HELP = "fly through a predicted scene of a trained run and write a GIF (no ffmpeg)"
DESCRIPTION = """\
Predict one scene of a trained run from its context views and render a smooth camera path through
it (positions interpolated, rotations slerped along the context cameras in frame order), written as
an animated GIF with Pillow: no ffmpeg needed. With --frames-dir the frames are also written as PNGs.

ns-render interpolate renders the run's display scene to MP4 and needs ffmpeg, which it checks only
after loading the model; use this command where ffmpeg is missing or a GIF is enough.
"""
EXAMPLE = (
    "zpressor-ns render --load-config outputs/re10k/zpressor-depthsplat/RUN/config.yml --output flight.gif"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of the run")
    parser.add_argument("--output", type=Path, default=Path("flight.gif"), help="GIF file to write")
    parser.add_argument("--frames", type=int, default=48, help="frames of the camera path")
    parser.add_argument("--frame-ms", type=int, default=80, help="milliseconds each frame is shown")
    parser.add_argument("--scene", default=None, help="scene key (default: the run's display scene)")
    parser.add_argument("--views", type=int, default=None, help="context views (default: the run's)")
    parser.add_argument(
        "--frames-dir", type=Path, default=None, help="also write PNG frames here (default: none)"
    )


def run(args: argparse.Namespace) -> int:
    from zpressor_ns.flythrough import render_flythrough

    if args.output.suffix.lower() != ".gif":
        raise CommandError(f"--output {args.output}: give a .gif file (this command writes GIFs only)")
    if args.frames < 2:
        raise CommandError(f"--frames {args.frames}: a fly-through needs at least 2 frames")
    _, pipeline, _, _ = load_run(args.load_config, test_mode="inference")
    scene = chosen_scene(pipeline.datamanager, args.scene)
    gif = render_flythrough(
        pipeline,
        args.output,
        args.frames,
        scene=scene,
        num_context=args.views,
        frames_dir=args.frames_dir,
        frame_ms=args.frame_ms,
    )
    print(
        f"{scene}: wrote {args.frames} frames to {gif}"
        + (f" and {args.frames_dir}" if args.frames_dir else "")
    )
    return 0
