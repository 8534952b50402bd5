"""This project's pixelSplat encoder against the original on CPU: same size, same weights, one run.

    python benchmarks/pixelsplat_versus_original.py --ref .ref                           # the table in BENCHMARKS
    python benchmarks/pixelsplat_versus_original.py --ref .ref --no-zpressor --views 4 --out base.json

``--ref`` is a local extract of the original code (never downloaded), laid out as
``shared/parity/official_pixelsplat_harness.md`` describes: ``<ref>/pixelsplat/src``, ``<ref>/zpressor`` and
``<ref>/dino``; the original imports einops, jaxtyping, e3nn and scikit-learn (put them on PYTHONPATH with
``pip install --no-deps --target DIR ...``). The original encoder is built by that harness
(``--harness``, default ``../shared/parity/official_pixelsplat_harness.py`` beside the checkout, or
``$ZPRESSOR_SHARED_DIR/parity/...``), at the paper configuration with random weights; its state dict goes
through ``import_official`` into this project's encoder, and both get the same inputs (the harness's
synthetic context after the original's data shims, whose near/far are the bounds shim's).

Both run in this process, one thread, in eval mode under ``torch.inference_mode()``, called in turn
(alternating which goes first), ``--warmup`` untimed calls then ``--reps`` timed ones; figures are
medians of wall time. Memory is the peak of live tensor bytes during one more call of each, counted by
a dispatch-mode tracker (weights and inputs excluded), so it is the same count on both sides. The
original's ZPressor uses its fp32 ``default`` attention here (its ``flash_attn`` path casts to bf16),
which makes the two outputs comparable: with the same random draws (a generator seeded like the
original's global RNG), the largest difference of the Gaussian means is reported.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from common import environment, markdown_table, write_json

from zpressor_ns.attention import ATTENTION_BACKENDS
from zpressor_ns.encoders import ZPressorOptions, build_encoder, import_official
from zpressor_ns.live_tensors import LiveTensorBytes

REPO = Path(__file__).resolve().parents[1]
DEFAULT_HARNESS = (
    Path(os.environ.get("ZPRESSOR_SHARED_DIR") or REPO.parent / "shared")
    / "parity"
    / "official_pixelsplat_harness.py"
)


def load_harness(path: Path):
    if not path.is_file():
        raise SystemExit(f"error: the original's harness {path} is missing (give --harness PATH)")
    spec = importlib.util.spec_from_file_location("official_pixelsplat_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def original_encoder(harness, args: argparse.Namespace):
    """The original encoder (random weights) and its shimmed inputs, as the harness builds them."""
    official, global_cfg, _ = harness.import_official(args.ref, typecheck=False)
    settings = argparse.Namespace(
        no_zpressor=args.no_zpressor, anchors=args.anchors, views=args.views, dino_dir=args.ref / "dino"
    )
    encoder, _ = harness.build_encoder(official, global_cfg, settings, seed=args.seed)
    encoder.eval()
    context = harness.synthetic_context(args.views, args.height, args.width, seed=args.seed)
    return encoder, harness.apply_data_shim(encoder, context)


def timed(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    harness = load_harness(args.harness)
    theirs, context = original_encoder(harness, args)
    method = "pixelsplat" if args.no_zpressor else "zpressor-pixelsplat"
    sizes = {"num_context_views": args.views} if args.no_zpressor else {"num_anchors": args.anchors}
    state = {f"encoder.{key}": value for key, value in theirs.state_dict().items()}
    zpressor = ZPressorOptions(attention_backend=args.zpressor_attention)
    ours = build_encoder(method, zpressor=zpressor, **sizes).eval()
    ours.load_state_dict(import_official(state, method, **sizes), strict=True)
    inputs = (context["image"], context["extrinsics"], context["intrinsics"], context["near"], context["far"])

    def call_theirs():
        torch.manual_seed(args.seed)
        with harness.zpressor_attention("default"):
            return harness.forward(theirs, context)

    def call_ours():
        return ours(*inputs, generator=torch.Generator().manual_seed(args.seed))

    calls = {"original": call_theirs, "zpressor-ns": call_ours}
    times: dict[str, list[float]] = {name: [] for name in calls}
    peaks: dict[str, int] = {}
    with torch.inference_mode():
        outputs = {name: call() for name, call in calls.items()}
        for _ in range(args.warmup):
            for call in calls.values():
                call()
        for rep in range(args.reps):
            for name in sorted(calls, reverse=rep % 2 == 1):
                times[name].append(timed(calls[name]))
        for name, call in calls.items():
            tracker = LiveTensorBytes()
            with tracker:
                call()
            peaks[name] = tracker.peak
    difference = (outputs["original"].means - outputs["zpressor-ns"].means).abs().max().item()
    rows = [
        {
            "implementation": name if name == "original" else f"{name} ({args.zpressor_attention})",
            "method": method,
            "views": args.views,
            "anchors": args.anchors if not args.no_zpressor else args.views,
            "size": f"{args.height}x{args.width}",
            "gaussians": int(outputs[name].means.shape[1]),
            "params": sum(p.numel() for p in (theirs if name == "original" else ours).parameters()),
            "median_ms": round(statistics.median(times[name]), 1),
            "all_ms": [round(t, 1) for t in times[name]],
            "peak_tensor_mib": round(peaks[name] / 2**20, 1),
        }
        for name in calls
    ]
    return {"rows": rows, "max_abs_means_difference": difference, **environment(torch.device("cpu"))}


def table(result: dict[str, Any]) -> str:
    header = [
        "implementation",
        "method",
        "views -> kept",
        "size",
        "Gaussians",
        "params",
        "median ms",
        "peak tensor MiB",
    ]
    cells = [
        [
            r["implementation"],
            r["method"],
            f"{r['views']} -> {r['anchors']}",
            r["size"],
            f"{r['gaussians']:,}",
            f"{r['params']:,}",
            r["median_ms"],
            r["peak_tensor_mib"],
        ]
        for r in result["rows"]
    ]
    return markdown_table(header, cells, [False, False, False, False, True, True, True, True])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--ref", type=Path, required=True, help="extract of the original code (see above)")
    parser.add_argument(
        "--harness", type=Path, default=DEFAULT_HARNESS, help="official_pixelsplat_harness.py"
    )
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--anchors", type=int, default=4)
    parser.add_argument("--no-zpressor", action="store_true", help="the baseline (every view kept)")
    parser.add_argument("--height", type=int, default=32)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, the images and the draws")
    parser.add_argument(
        "--zpressor-attention",
        choices=ATTENTION_BACKENDS,
        default="auto",
        help="this project's ZPressor attention backend (auto: the CPU default)",
    )
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    args.ref = args.ref.resolve()
    result = run(args)
    print(table(result))
    print(
        f"max |means difference| (original with fp32 ZPressor attention): {result['max_abs_means_difference']:.2e}"
    )
    if args.out:
        write_json(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
