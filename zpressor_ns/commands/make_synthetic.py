"""``zpressor-ns make-synthetic OUT``: write procedurally textured scenes in the RE10K and DL3DV layouts."""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from zpressor_ns.data.synthetic import (
    LAYOUTS,
    SyntheticConfig,
    check_output_folder,
    make_synthetic,
    scene_specs,
)

HELP = "write procedurally textured scenes in the RE10K and DL3DV layouts"
DESCRIPTION = """\
Render synthetic rooms with textured walls and objects by analytic ray casting and write them as
datasets the original code could read:

  OUT/re10k/{train,test}/*.torch + index.json        RE10K chunks (forward walks)
  OUT/dl3dv/{train,test}/<hash>/nerfstudio/...       raw DL3DV layout (loops), images_8 PNGs
  OUT/<layout>/evaluation/*_ctx_<N>v_tgt_8v_n<W>.json evaluation indices (the official rule)
  OUT/synthetic.json                                 the settings and the recommended near/far

The same seed gives the same files. The default size takes seconds on a laptop CPU.
"""
EXAMPLE = "zpressor-ns make-synthetic synthetic_data --layouts re10k --scenes-train 6"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = SyntheticConfig()
    parser.add_argument("out", type=Path, help="output folder (its re10k/ and dl3dv/ must be new or empty)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--scenes-train",
        type=int,
        default=defaults.num_train_scenes,
        help="training scenes per layout (default: %(default)s)",
    )
    parser.add_argument(
        "--scenes-test",
        type=int,
        default=defaults.num_test_scenes,
        help="test scenes per layout (default: %(default)s)",
    )
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"frames per scene for every layout (default: {defaults.re10k_frames} re10k, {defaults.dl3dv_frames} dl3dv)",
    )
    parser.add_argument(
        "--height",
        type=int,
        default=None,
        help=f"image height for every layout (default: {defaults.re10k_size[0]} "
        f"re10k, {defaults.dl3dv_size[0]} dl3dv); give --width too",
    )
    parser.add_argument(
        "--width",
        type=int,
        default=None,
        help="image width, with --height (default: each layout's, see --height)",
    )
    parser.add_argument(
        "--layouts",
        nargs="+",
        choices=LAYOUTS,
        default=list(defaults.layouts),
        help="layouts to write (default: both)",
    )


def config_from_args(args: argparse.Namespace) -> SyntheticConfig:
    """The generation settings the command line asks for (unset options keep the config defaults)."""
    if (args.height is None) != (args.width is None):
        raise ValueError("give --height and --width together")
    options: dict = {
        "seed": args.seed,
        "num_train_scenes": args.scenes_train,
        "num_test_scenes": args.scenes_test,
        "layouts": tuple(dict.fromkeys(args.layouts)),
    }
    if args.frames is not None:
        options.update(re10k_frames=args.frames, dl3dv_frames=args.frames)
    if args.height is not None:
        options.update(re10k_size=(args.height, args.width), dl3dv_size=(args.height, args.width))
    return SyntheticConfig(**options)


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
        check_output_folder(args.out, config)
    except (ValueError, FileExistsError) as error:
        print(f"make-synthetic: {error}")
        return 2
    with tqdm(total=len(scene_specs(config)), unit="scene", desc="rendering") as progress:
        summary = make_synthetic(args.out, config, on_scene_written=lambda spec: progress.update())
    print(summary.describe())
    return 0
