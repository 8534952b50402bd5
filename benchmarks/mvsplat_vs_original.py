"""Our MVSplat encoder against the original on the same weights and inputs, timed in one process.

    python benchmarks/mvsplat_vs_original.py --harness PATH/official_mvsplat_harness.py --ref .ref \
        --views 12 --anchors 6 --size 64x64 --reps 5

The original is built and driven by its parity harness (``shared/parity/official_mvsplat_harness.py``: the
unmodified code extracted under ``--ref``, never shipped; it needs einops, jaxtyping, scikit-learn and e3nn
on the path), with its random initialisation; its state dict is imported into ours with
``import_official`` exactly as a published checkpoint would be. Both run the harness's synthetic context
under ``torch.inference_mode()``, calls interleaved (original, ours, original, ...) after one warm-up each,
so a busy machine slows both alike; the table gives the median wall time and process CPU time per forward,
and the largest difference of the Gaussian means (the original's ZPressor cross-attention runs in bf16, ours
in fp32 on CPU). Set ``OMP_NUM_THREADS`` for a fixed thread count.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from common import markdown_table, write_json
from efficiency import parse_size

from zpressor_ns.encoders import build_encoder, import_official


def load_harness(path: Path):
    """The parity harness as a module (it stays outside this repository)."""
    if not path.is_file():
        raise SystemExit(f"--harness: {path} does not exist (shared/parity/official_mvsplat_harness.py)")
    spec = importlib.util.spec_from_file_location("official_mvsplat_harness", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def timed(call: Callable[[], object]) -> tuple[float, float, object]:
    """(wall ms, process CPU ms, result) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu), result


def compare(
    harness, official, ref: Path, views: int, anchors: int | None, size: tuple[int, int], reps: int
) -> dict:
    """One setting: both encoders on the same weights and context; medians over ``reps`` interleaved calls.

    ``official`` is ``harness.import_official``'s (module, global config): imported once per process, as the
    original reads its Hydra-global config through the module it first imported."""
    height, width = size
    zpressor = anchors is not None
    argv = ["--ref", str(ref), "--views", str(views), "--height", str(height), "--width", str(width)]
    argv += ["--device", "cpu", "--reps", str(reps)]
    argv += ["--anchors", str(anchors)] if zpressor else ["--no-zpressor"]
    args = harness.parse_args(argv)
    official_module, global_cfg = official
    original, _ = harness.build_encoder(official_module, global_cfg, args, args.seed)
    original.eval()
    method = "zpressor-mvsplat" if zpressor else "mvsplat"
    ours = build_encoder(method).eval()
    state = {f"encoder.{key}": value for key, value in original.state_dict().items()}
    ours.load_state_dict(import_official(state, method), strict=True)
    context = harness.synthetic_context(views, height, width, args.input_seed)
    context = harness.apply_data_shim(original, context)
    inputs = tuple(context[name] for name in ("image", "extrinsics", "intrinsics", "near", "far"))

    def run_original():
        with harness.zpressor_attention(args.zp_attention):
            return harness.forward(original, context)

    def run_ours():
        return ours(*inputs, num_anchors=anchors)

    times: dict[str, list[tuple[float, float]]] = {"original": [], "ours": []}
    with torch.inference_mode():
        outputs = {"original": run_original(), "ours": run_ours()}  # warm-up
        for _ in range(reps):
            for name, call in (("original", run_original), ("ours", run_ours)):
                wall, cpu, _ = timed(call)
                times[name].append((wall, cpu))
    difference = (outputs["ours"].means - outputs["original"].means).abs().max().item()
    row = {
        "method": method,
        "views": views,
        "anchors": anchors if zpressor else views,
        "height": height,
        "width": width,
        "gaussians": int(outputs["ours"].means.shape[1]),
        "max_abs_means_diff": difference,
        "threads": torch.get_num_threads(),
        "reps": reps,
        "zpressor_attention_original": args.zp_attention,
    }
    for name, samples in times.items():
        row[f"{name}_wall_ms"] = round(statistics.median(w for w, _ in samples), 1)
        row[f"{name}_cpu_ms"] = round(statistics.median(c for _, c in samples), 1)
    row["ratio_wall"] = round(row["ours_wall_ms"] / row["original_wall_ms"], 2)
    return row


def results_table(rows: Sequence[dict]) -> str:
    header = [
        "method", "views -> kept", "size", "original ms (CPU ms)", "ours ms (CPU ms)", "ours / original",
        "max |means diff|",
    ]  # fmt: skip
    cells = [
        [
            r["method"],
            f"{r['views']} -> {r['anchors']}",
            f"{r['height']}x{r['width']}",
            f"{r['original_wall_ms']} ({r['original_cpu_ms']})",
            f"{r['ours_wall_ms']} ({r['ours_cpu_ms']})",
            r["ratio_wall"],
            f"{r['max_abs_means_diff']:.1e}",
        ]
        for r in rows
    ]
    return markdown_table(header, cells, [False, True, False, True, True, True, True])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--harness", type=Path, required=True, help="official_mvsplat_harness.py")
    parser.add_argument("--ref", type=Path, required=True, help="folder holding the extracted original code")
    parser.add_argument("--views", nargs="+", type=int, default=[12])
    parser.add_argument("--anchors", type=int, default=6, help="ZPressor's anchors (6 in the paper)")
    parser.add_argument("--baseline-views", nargs="*", type=int, default=[2, 4], help="views of the baseline")
    parser.add_argument("--size", type=parse_size, default=(64, 64), help="HxW, multiples of 16")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    harness = load_harness(args.harness)
    official = harness.import_official(args.ref.resolve(), False)[:2]
    settings = [(v, args.anchors) for v in args.views] + [(v, None) for v in args.baseline_views]
    rows = [compare(harness, official, args.ref, v, k, args.size, args.reps) for v, k in settings]
    for row in rows:
        print(f"{row['method']} {row['views']} views: ours/original {row['ratio_wall']}", file=sys.stderr)
    print(results_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
