"""The encoder's CUDA path on fake CUDA tensors, on any machine: does it run, and what memory do its tensors take?

    python benchmarks/cuda_dry_run.py                       # paper preset, the efficiency sweep's settings
    python benchmarks/cuda_dry_run.py --views 12 36 --methods zpressor-depthsplat --out dry_run.json

PyTorch's ``FakeTensorMode`` gives tensors a device, shape and dtype but no data, so the paper-size
encoder "runs" on a CPU-only machine with every tensor on ``cuda``: the code path an H100 takes (device
placement, ZPressor's bf16 FlexAttention layout, the dtype of every intermediate) is exercised end to
end, and a mistake such as a tensor created on the CPU inside the forward fails here as it would there.
``torch.distributed._tools.mem_tracker.MemTracker`` follows every tensor's storage from allocation to
release, op by op, which gives the peak of live tensor bytes of one inference forward: weights, inputs
and activations, on CUDA dtypes.

What the dry run cannot see, so a measured ``torch.cuda.max_memory_allocated`` lies above it: kernel
workspaces (cuDNN, cuBLAS), the caching allocator's rounding, and whatever a real kernel allocates
internally. Four things are simulated, and only inside the dry run:

- FlexAttention (a higher-order op the tracker cannot follow) is replaced by a stand-in that allocates
  what the fused kernel returns, its output; the real kernel never materialises the score matrix either.
- Triton is reported available, so ZPressor picks the FlexAttention layout as it does on an H100.
- ``torch.compiler.is_compiling()`` reads True, which skips the one host-side check of the forward
  (finite camera centres); fake tensors have no values to check.
- cuDNN is off, so ``grid_sample`` dispatches to the kernel that fake tensors support.

Every row also carries the analytic peak of the family's memory model (``encoder.estimate_memory``, e.g.
``zpressor_ns/encoders/depthsplat/memory_budget.py``; the model behind ``num_anchors="auto"``) for comparison.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from common import markdown_table, write_json
from efficiency import DEFAULT_METHODS, ISSUE_VIEWS, METHODS, parse_size, runnable_size, synthetic_inputs

from zpressor_ns import attention
from zpressor_ns.encoders import build_encoder, required_multiple
from zpressor_ns.encoders.memory import ACTIVATION_SLACK

GB = 1e9
CUDA = torch.device("cuda", 0)  # the device the tracker files fake CUDA storages under


def _flex_stand_in(query, key, value, block_mask=None, scale=None):
    """What FlexAttention allocates for its caller: an output shaped like the query."""
    return torch.empty_like(query)


@contextlib.contextmanager
def simulated_cuda() -> Iterator[None]:
    """The four simulations listed in the module docstring, undone on exit."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(torch.compiler, "is_compiling", lambda: True))
        stack.enter_context(mock.patch("torch.utils._triton.has_triton", lambda: True))
        stack.enter_context(mock.patch.object(attention, "_flex_call", lambda device: _flex_stand_in))
        stack.enter_context(torch.backends.cudnn.flags(enabled=False))
        yield


def _gb(value: float) -> float:
    return round(value / GB, 3)


def _by_kind(snapshot: dict) -> dict[str, float]:
    """A tracker snapshot of the CUDA device keyed by kind name: PARAM, BUFFER, ACT, TEMP, OTH, Total."""
    return {str(kind).rsplit(".", 1)[-1]: value for kind, value in snapshot[CUDA].items()}


def _activations(by_kind: dict[str, float]) -> float:
    return by_kind.get("ACT", 0.0) + by_kind.get("TEMP", 0.0)


def _activations_while(tracker, module: torch.nn.Module | None) -> float | None:
    """Activation bytes at the peak reached while ``module`` ran (ZPressor: every view's features and
    keys/values are alive then, the memory model's "view phase")."""
    if module is None:
        return None
    from torch.distributed._tools.mem_tracker import _ModState

    return _activations(_by_kind(tracker.memory_tracking[module].snapshots[_ModState.PEAK_FW][-1]))


def dry_run(method: str, views: int, height: int, width: int, preset: str = "paper") -> dict[str, Any]:
    """One inference forward of ``method`` on fake CUDA tensors: its outputs' shapes and its memory."""
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.distributed._tools.mem_tracker import MemTracker

    encoder = build_encoder(method, preset).eval()  # real weights: their initialisation needs values
    device = CUDA
    with simulated_cuda(), FakeTensorMode(allow_non_fake_inputs=True):
        encoder = encoder.to(device)
        # The efficiency benchmark's inputs, made inside the fake mode: shapes without data, at any size.
        made = synthetic_inputs(views, 1, height, width, device, seed=0)
        inputs = tuple(made[name] for name in ("images", "c2w", "K", "near", "far"))
        tracker = MemTracker()
        tracker.track_external(encoder, *inputs)
        with tracker, torch.inference_mode():
            output = encoder(*inputs)
        peak = _by_kind(tracker.get_tracker_snapshot("peak"))
        view_phase = _activations_while(tracker, encoder.zpressor)
    for name in ("means", "covariances", "harmonics", "opacities"):
        tensor = getattr(output, name)
        if tensor.device.type != "cuda" or tensor.dtype != torch.float32:
            raise AssertionError(f"{method}: output {name} is {tensor.dtype} on {tensor.device}")
    kept = views if output.anchors is None else output.anchors.shape[1]
    model = encoder.estimate_memory(1, views, height, width, kept)  # shapes only: fake weights will do
    return {
        "method": method,
        "preset": preset,
        "views": views,
        "height": height,
        "width": width,
        "anchors": kept,
        "gaussians": int(output.means.shape[1]),
        "weights_gb": _gb(peak.get("PARAM", 0.0) + peak.get("BUFFER", 0.0)),
        "inputs_gb": _gb(peak.get("OTH", 0.0)),
        "activations_gb": _gb(_activations(peak)),
        "peak_gb": _gb(peak["Total"]),
        "zpressor_activations_gb": None if view_phase is None else _gb(view_phase),
        "model_activations_gb": _gb(max(model.view_phase, model.anchor_phase)),
        "model_view_phase_gb": _gb(model.view_phase),
        "model_peak_gb": _gb(model.peak),
        "model_slack": ACTIVATION_SLACK,
    }


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    header = [
        "method", "views", "size", "Gaussians", "weights GB", "inputs GB", "activations GB",
        "peak GB", "model: activations / peak GB", "while ZPressor runs GB (model)",
    ]  # fmt: skip
    cells = [
        [
            r["method"],
            r["views"],
            f"{r['height']}x{r['width']}",
            f"{r['gaussians']:,}",
            r["weights_gb"],
            r["inputs_gb"],
            r["activations_gb"],
            r["peak_gb"],
            f"{r['model_activations_gb']} / {r['model_peak_gb']}",
            None
            if r["zpressor_activations_gb"] is None
            else f"{r['zpressor_activations_gb']} ({r['model_view_phase_gb']})",
        ]  # fmt: skip
        for r in rows
    ]
    return markdown_table(header, cells, [False, True, False, True, True, True, True, True, True, True])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument("--views", nargs="+", type=int, default=list(ISSUE_VIEWS))
    parser.add_argument("--resolutions", nargs="+", type=parse_size, default=[(256, 448), (270, 480)])
    parser.add_argument("--preset", choices=("paper", "small"), default="paper")
    parser.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for method in args.methods:
        for requested in args.resolutions:
            height, width = runnable_size(
                *requested, math.lcm(*(required_multiple(m, args.preset) for m in args.methods))
            )
            for views in sorted(args.views):
                rows.append(dry_run(method, views, height, width, args.preset))
                print(
                    f"{method} {views} views {height}x{width}: peak {rows[-1]['peak_gb']} GB", file=sys.stderr
                )
    print(results_table(rows))
    if args.out:
        write_json(args.out, rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
