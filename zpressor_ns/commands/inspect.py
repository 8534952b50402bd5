"""``zpressor-ns inspect PATH``: detect a dataset's layout and list its scenes and cameras."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from zpressor_ns.cameras import camera_centres
from zpressor_ns.data.readers import LAYOUTS, LayoutError, open_dataset
from zpressor_ns.data.scene import Scene, SceneError, field_of_view_deg

HELP = "detect a dataset layout and list its scenes, frames and cameras"
DESCRIPTION = """\
Detect the layout of PATH (RE10K/ACID chunks, DL3DV raw or converted, Nerfstudio transforms.json
scenes) and print each scene's key, frame count, image size and cameras.

With --json the output is exactly
  {"scenes": [{"key", "num_frames", "height", "width", "frames": [{"index", "c2w", "K"}]}]}
with every frame listed, c2w as 4x4 OpenCV camera-to-world and K as 3x3 normalised intrinsics.

Reading a scene checks its cameras and the header of its first frame. --check also reads the
header of every frame and reports, on stderr, each frame that is not an image or differs in size
from the scene's first frame (slower: every frame file is opened).

Exit status: 0 on success, 1 when some scenes could not be read or (with --check) have bad frames
(reported on stderr), 2 when no layout is recognised at PATH.
"""
EXAMPLE = "zpressor-ns inspect /data/re10k --split test"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", type=Path, help="dataset folder (or a transforms.json)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON with every camera")
    parser.add_argument("--layout", default="auto", choices=["auto", *LAYOUTS], help="skip detection")
    parser.add_argument("--split", default=None, help="train or test (default: both)")
    parser.add_argument(
        "--check", action="store_true", help="read every frame's header and report each bad frame"
    )
    parser.add_argument(
        "--image-dir",
        default=None,
        help="image folder of transforms.json layouts, e.g. images_4 (default: DL3DV images_8, else as written)",
    )


def scene_record(scene: Scene) -> dict:
    """One scene in the --json schema."""
    return {
        "key": scene.key,
        "num_frames": scene.num_frames,
        "height": scene.height,
        "width": scene.width,
        "frames": [
            {"index": i, "c2w": c2w.tolist(), "K": K.tolist()}
            for i, (c2w, K) in enumerate(zip(scene.c2w.double(), scene.K.double(), strict=True))
        ],
    }


def scene_row(scene: Scene, key_width: int) -> str:
    centre = ", ".join(f"{v + 0.0:+.3f}" for v in camera_centres(scene.c2w[0]).tolist())
    fov_x, fov_y = field_of_view_deg(scene.K[0]).tolist()
    return (
        f"{scene.key:<{key_width}} {scene.num_frames:>6} {f'{scene.height}x{scene.width}':>10}  "
        f"({centre})  {fov_x:5.1f} x {fov_y:5.1f}"
    )


def run(args: argparse.Namespace) -> int:
    try:
        reader = open_dataset(args.path, args.split, layout=args.layout, image_dir=args.image_dir)
    except LayoutError as error:
        print(f"zpressor-ns inspect: {error}", file=sys.stderr)
        return 2
    except SceneError as error:
        print(f"zpressor-ns inspect: {error}", file=sys.stderr)
        return 1

    records, failures = [], 0
    key_width = max(len(key) for key in reader.keys())
    if not args.json:
        print(f"{args.path}: layout {reader.layout}, {len(reader.keys())} scenes")
        print(
            f"{'key':<{key_width}} {'frames':>6} {'HxW':>10}  first camera centre          fov (deg, h x v)"
        )
    for key in reader.keys():
        try:
            scene = reader.scene(key)
        except SceneError as error:
            failures += 1
            print(f"zpressor-ns inspect: {error}", file=sys.stderr)
            continue
        problems = scene.frame_problems() if args.check else []
        for problem in problems:
            print(f"zpressor-ns inspect: {problem}", file=sys.stderr)
        failures += bool(problems)
        if args.json:
            records.append(scene_record(scene))
        else:
            print(scene_row(scene, key_width))
    if args.json:
        json.dump({"scenes": records}, sys.stdout)
        sys.stdout.write("\n")
    return 1 if failures else 0
