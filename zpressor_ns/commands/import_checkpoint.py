"""``zpressor-ns import-checkpoint IN OUT``: convert official weights to this project's encoder names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from zpressor_ns.backbones.depthsplat import PRESETS, REGISTERED_METHODS, build_encoder, resolve_method
from zpressor_ns.pretrained import KINDS, convert_weights, read_weights_file

HELP = "convert an official ZPressor/DepthSplat checkpoint"
DESCRIPTION = """\
Convert IN to a plain state dict (torch.save of a dict of tensors, this project's parameter names)
for METHOD's encoder, and print the coverage: tensors used, ignored (unused by the original code too),
unused and missing.

IN may be a published ZPressor/DepthSplat Lightning checkpoint (e.g.
depthsplat-dl3dv-zpressor-n50-256x448.ckpt: the whole encoder), Depth Anything V2 ViT-B weights
(depth_anything_v2_vitb.pth: the ViT) or UniMatch GMFlow weights (gmflow-scale1-things-e9887eda.pth:
the CNN and the multi-view transformer). Files are read without unpickling arbitrary objects.

Exit status: 0 when every key of IN was used or knowingly ignored (and, for a whole model, every
encoder parameter was provided); 1 otherwise, and nothing is written.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="official checkpoint or initialisation weights")
    parser.add_argument("output", type=Path, help="where to write the converted state dict")
    parser.add_argument(
        "--method", choices=list(REGISTERED_METHODS), default="zpressor-depthsplat", help="target encoder"
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None, help="model size")
    parser.add_argument("--kind", choices=["auto", *KINDS], default="auto", help="what IN is")


def run(args: argparse.Namespace) -> int:
    method, preset = resolve_method(args.method, args.preset)
    with torch.device("meta"):
        encoder_state = build_encoder(method, preset).state_dict()
    try:
        conversion = convert_weights(read_weights_file(args.input), encoder_state, method, args.kind)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 1
    print(conversion.summary())
    whole_model = conversion.kind in ("official", "converted")
    if not conversion.complete or (whole_model and conversion.missing):
        print(f"error: {args.input} does not fit the {args.method} encoder; nothing written", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(conversion.tensors, args.output)
    print(f"wrote {len(conversion.tensors)} tensors to {args.output}")
    return 0
