"""Latency and peak memory of the ZPressor module alone, per attention backend and input size.

    python benchmarks/zpressor_module.py --tiny                      # CPU smoke run, seconds
    python benchmarks/zpressor_module.py --out zpressor_module.json  # CUDA: the issue's sizes
    python benchmarks/zpressor_module.py --views 36 200 --tokens 60x107 --backends flex sdpa
    python benchmarks/zpressor_module.py --original PATH/TO/ZPressor  # also time the original module

Inference (no autograd), B=1, C=128, 1 head, 6 layers, random weights and cameras. On CUDA the timing is
synchronised, after warm-up, the median of ``--repeats`` runs; peak memory is the largest allocation
during one forward, inputs included, as ``torch.cuda.max_memory_allocated`` reports it. ``--original``
imports the original ``zpressor`` package from a local checkout (it needs einops and scikit-learn) and
runs it with the same weights, so its latency, memory and output difference land in the same table.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import environment, measure_calls, resolve_device, write_json

from zpressor_ns.checkpoints import import_official_zpressor
from zpressor_ns.zpressor import ZPressor

# The issue's measurement points: (views, tokens per view) for DepthSplat at 256x448 and at 480P.
ISSUE_SIZES = [(12, (32, 56)), (36, (32, 56)), (100, (32, 56)), (200, (32, 56)), (500, (32, 56))]
ISSUE_SIZES += [(36, (60, 107)), (100, (60, 107)), (200, (60, 107))]
TINY_SIZES = [(6, (4, 6)), (12, (4, 6))]


@dataclass
class Measurement:
    views: int
    tokens: str
    anchors: int
    backend: str
    device: str
    compiled: bool
    ms_median: float
    ms_min: float
    peak_mib: float | None
    max_abs_diff_vs_original: float | None = None


def parse_tokens(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit()):
        raise argparse.ArgumentTypeError(f"tokens must look like 32x56, got {text!r}")
    return int(height), int(width)


def make_inputs(views: int, tokens: tuple[int, int], dim: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(1, views, dim, *tokens, generator=generator)
    c2w = torch.eye(4).repeat(1, views, 1, 1)
    c2w[..., :3, 3] = torch.randn(1, views, 3, generator=generator)
    return features.to(device), c2w.to(device)


def load_original(checkout: Path):
    """The original ``ZPressor`` class from a local checkout of its repository (never downloaded)."""
    package_parent = checkout if (checkout / "zpressor" / "zpressor.py").is_file() else checkout.parent
    if not (package_parent / "zpressor" / "zpressor.py").is_file():
        raise SystemExit(f"--original: no zpressor/zpressor.py under {checkout}")
    sys.path.insert(0, str(package_parent))
    try:
        from zpressor.zpressor import ZPressor as OriginalZPressor
    except ImportError as error:
        raise SystemExit(
            f"--original: cannot import the original package ({error}); it needs einops and sklearn"
        ) from error
    return OriginalZPressor


def run_size(
    args, views: int, tokens: tuple[int, int], device: torch.device, original_class
) -> list[Measurement]:
    features, c2w = make_inputs(views, tokens, args.dim, device)
    label = f"{tokens[0]}x{tokens[1]}"
    results: list[Measurement] = []
    reference = None
    weights = None
    if original_class is not None:
        original = original_class(embed_dim=args.dim, num_heads=1, num_layers=6).to(device).eval()
        weights = import_official_zpressor(original.state_dict(), "")
        # The original rearranges its input list in place, hence the fresh list on every call.
        with torch.inference_mode():
            measured = measure_calls(
                lambda: original([features], extrinsics=c2w, cluster_num=args.anchors),
                device,
                args.warmup,
                args.repeats,
            )
        reference = measured.output[0]
        results.append(
            Measurement(
                views,
                label,
                args.anchors,
                "original",
                str(device),
                False,
                measured.median_ms,
                min(measured.all_ms),
                measured.peak_mib,
            )
        )
    for backend in args.backends:
        module = ZPressor(dim=args.dim, attention_backend=backend).to(device).eval()
        if weights is not None:
            module.load_state_dict(weights, strict=True)
        forward = torch.compile(module) if args.compile else module
        with torch.inference_mode():
            measured = measure_calls(
                lambda forward=forward: forward(features, c2w, args.anchors).features,
                device,
                args.warmup,
                args.repeats,
            )
        output = measured.output
        diff = None if reference is None else (output.float() - reference.float()).abs().max().item()
        results.append(
            Measurement(
                views,
                label,
                args.anchors,
                backend,
                str(device),
                args.compile,
                measured.median_ms,
                min(measured.all_ms),
                measured.peak_mib,
                diff,
            )
        )
        del module, forward, output, measured
    return results


def print_table(results: list[Measurement]) -> None:
    header = (
        f"{'views':>6} {'tokens':>8} {'backend':>9} {'ms':>9} {'min ms':>9} {'peak MiB':>10} {'|diff|':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        peak = "-" if r.peak_mib is None else f"{r.peak_mib:.0f}"
        diff = "-" if r.max_abs_diff_vs_original is None else f"{r.max_abs_diff_vs_original:.1e}"
        print(
            f"{r.views:>6} {r.tokens:>8} {r.backend:>9} {r.ms_median:>9.2f} {r.ms_min:>9.2f} {peak:>10} {diff:>9}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument(
        "--views", type=int, nargs="+", help="view counts (with --tokens: their cross product)"
    )
    parser.add_argument(
        "--tokens", type=parse_tokens, nargs="+", help="token grids per view, e.g. 32x56 60x107"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes that run in seconds on CPU")
    parser.add_argument("--anchors", type=int, default=6)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument(
        "--backends", nargs="+", help="attention backends (default: flex sdpa on CUDA, all on CPU)"
    )
    parser.add_argument("--original", type=Path, help="local checkout of the original ZPressor repository")
    parser.add_argument("--compile", action="store_true", help="wrap the module in torch.compile")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 5 on CUDA, 1 on CPU)")
    parser.add_argument("--repeats", type=int, help="timed runs (default 20 on CUDA, 3 on CPU)")
    parser.add_argument("--out", type=Path, help="write the measurements as JSON here")
    args = parser.parse_args(argv)

    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    if on_cuda:
        torch.set_float32_matmul_precision(
            "high"
        )  # TF32 projections, as the original training/eval code sets
    args.backends = args.backends or (["flex", "sdpa"] if on_cuda else ["math", "cluster", "sdpa", "flex"])
    args.warmup = args.warmup if args.warmup is not None else (5 if on_cuda else 1)
    args.repeats = args.repeats if args.repeats is not None else (20 if on_cuda else 3)
    if args.views or args.tokens:
        sizes = [(v, t) for t in (args.tokens or [(32, 56)]) for v in (args.views or [12])]
    else:
        sizes = TINY_SIZES if args.tiny or not on_cuda else ISSUE_SIZES
    original_class = load_original(args.original) if args.original else None

    results: list[Measurement] = []
    for views, tokens in sizes:
        results.extend(run_size(args, views, tokens, device, original_class))
    print_table(results)
    if args.out:
        payload = {"environment": environment(device), "measurements": [asdict(r) for r in results]}
        write_json(args.out, payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
