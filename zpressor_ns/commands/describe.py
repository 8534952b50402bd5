"""``zpressor-ns describe METHOD``: parameter counts of a registered method's encoder."""

from __future__ import annotations

import argparse
import json

import torch

from zpressor_ns.encoders.registry import PRESET_NAMES, build_encoder, registered_method_names, resolve_method

HELP = "print a registered method's parameter counts"
DESCRIPTION = """\
Build the encoder of METHOD (without running it or allocating its weights) and print its parameter
count, in total and per top-level module.

With --json the output is exactly {"total_params": N, "modules": {name: N}}. The paper methods have the
original code's counts: 116,072,834 (zpressor-depthsplat), 114,587,522 (depthsplat), 13,441,046
(zpressor-mvsplat), 11,955,734 (mvsplat).
"""
EXAMPLE = "zpressor-ns describe zpressor-depthsplat --json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=list(registered_method_names()), help="registered method name")
    parser.add_argument(
        "--preset", choices=PRESET_NAMES, default=None, help="model size (default: the method's own)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def parameter_counts(method: str, preset: str | None = None) -> dict:
    """{"total_params": N, "modules": {name: N}} of a registered method (built on the meta device)."""
    encoder_method, encoder_preset = resolve_method(method, preset)
    with torch.device("meta"):
        encoder = build_encoder(encoder_method, encoder_preset)
    modules = {name: sum(p.numel() for p in module.parameters()) for name, module in encoder.named_children()}
    modules = {name: count for name, count in modules.items() if count}
    return {"total_params": sum(p.numel() for p in encoder.parameters()), "modules": modules}


def run(args: argparse.Namespace) -> int:
    counts = parameter_counts(args.method, args.preset)
    if args.json:
        print(json.dumps(counts))
        return 0
    total = counts["total_params"]
    width = max(len(name) for name in counts["modules"])
    print(f"{args.method} ({resolve_method(args.method, args.preset)[1]} preset)")
    for name, count in sorted(counts["modules"].items(), key=lambda item: -item[1]):
        print(f"  {name:<{width}}  {count:>12,}  {100 * count / total:5.1f}%")
    print(f"  {'total':<{width}}  {total:>12,}")
    return 0
