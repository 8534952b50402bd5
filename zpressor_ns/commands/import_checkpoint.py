"""``zpressor-ns import-checkpoint IN OUT``: convert official weights to this project's encoder names."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from zpressor_ns.encoders.registry import (
    PRESET_NAMES,
    build_encoder,
    encoder_config,
    families,
    family_of,
    registered_method_names,
    resolve_method,
)
from zpressor_ns.pretrained import convert_weights, kinds, read_weights_file

HELP = "convert an official ZPressor checkpoint or initialisation file"
_INIT_FILES = "\n".join(
    f"  {family.name}: {init.kind}: {init.description}"
    for family in families().values()
    for init in family.init_weights
)
DESCRIPTION = f"""\
Convert IN to a plain state dict (torch.save of a dict of tensors, this project's parameter names)
for METHOD's encoder, and print the coverage: tensors used, ignored (unused by the original code too),
unused and missing.

IN may be a published ZPressor Lightning checkpoint of the method's family (e.g.
depthsplat-dl3dv-zpressor-n50-256x448.ckpt: the whole encoder) or one of the initialisation files the
original loads before training:
{_INIT_FILES}
Files are read without unpickling arbitrary objects.

Exit status: 0 when every key of IN was used or knowingly ignored (and, for a whole model, every
encoder parameter was provided); 1 otherwise, and nothing is written.
"""
EXAMPLE = (
    "zpressor-ns import-checkpoint depthsplat-dl3dv-zpressor-n50-256x448.ckpt converted.pt "
    "--method zpressor-depthsplat"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="official checkpoint or initialisation weights")
    parser.add_argument("output", type=Path, help="where to write the converted state dict")
    parser.add_argument(
        "--method",
        choices=list(registered_method_names()),
        default="zpressor-depthsplat",
        help="target encoder",
    )
    parser.add_argument(
        "--preset", choices=PRESET_NAMES, default=None, help="model size (default: the method's own)"
    )
    all_kinds = sorted({kind for family in families().values() for kind in kinds(family)})
    parser.add_argument("--kind", choices=["auto", *all_kinds], default="auto", help="what IN is")


def run(args: argparse.Namespace) -> int:
    method, preset = resolve_method(args.method, args.preset)
    family, _ = family_of(method)
    with torch.device("meta"):
        encoder_state = build_encoder(method, preset).state_dict()
    try:
        weights = read_weights_file(args.input, family)
        conversion = convert_weights(
            weights, encoder_state, method, args.kind, encoder_config(method, preset)
        )
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {args.input}: {error}", file=sys.stderr)
        return 1
    print(conversion.summary())
    if not conversion.complete or (conversion.whole_model and conversion.missing):
        print(f"error: {args.input} does not fit the {args.method} encoder; nothing written", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    torch.save(conversion.tensors, args.output)
    print(f"wrote {len(conversion.tensors)} tensors to {args.output}")
    return 0
