"""Shared helpers for the benchmark scripts: synchronised timing, peak memory, OOM detection, output.

Timing follows one rule on every device: warm-up calls first (kernel selection, compilation and the
allocator's growth stay out of the figures), then each timed call is bracketed by a device
synchronisation, so asynchronous CUDA work is counted where it runs. Peak memory on CUDA is
``torch.cuda.max_memory_allocated`` after a reset that follows the warm-up, so it includes whatever is
still allocated (weights, inputs) plus the largest transient of the timed calls. On CPU the closest
cheap figure is the growth of the process's peak resident set size (``ru_maxrss``) over a baseline.
Process CPU time is recorded beside wall time: on a shared machine, waiting threads inflate wall time
while CPU time still shows the work done.
"""

from __future__ import annotations

import json
import platform
import re
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

MIB = 2**20


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as ``torch.device`` reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return device


def device_name(device: torch.device) -> str:
    """Human-readable name of the device the numbers were taken on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def device_slug(name: str) -> str:
    """File-name form of a device name: ``NVIDIA H100 80GB HBM3`` -> ``h100_80gb_hbm3``, any CPU -> ``cpu``."""
    if name.startswith("cpu"):
        return "cpu"
    words = [w for w in re.split(r"[^a-z0-9]+", name.lower()) if w and w != "nvidia"]
    return "_".join(words) or "gpu"


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (a no-op on CPU, where calls are synchronous)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Measured:
    """Wall and process-CPU times of the timed calls in ms (warm-up excluded), their CUDA peak, and the
    last call's result."""

    all_ms: tuple[float, ...]
    peak_mib: float | None
    output: Any
    cpu_ms: tuple[float, ...] = ()

    @property
    def median_ms(self) -> float:
        return statistics.median(self.all_ms)


def reset_peak_memory(device: torch.device) -> None:
    """Start a fresh CUDA peak window: cached blocks released, the high-water mark set to what is live."""
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def measure_calls(function: Callable[[], Any], device: torch.device, warmup: int, reps: int) -> Measured:
    """Call ``function`` ``warmup`` times untimed, reset the CUDA peak, then time ``reps`` calls.

    Each timed call is synchronised on both sides. The previous result is dropped before the next call,
    so the peak holds one result at a time, as a real caller would. ``peak_mib`` is None off CUDA.
    """
    if reps < 1:
        raise ValueError(f"reps must be at least 1, got {reps}")
    for _ in range(warmup):
        function()
    reset_peak_memory(device)
    times, cpu_times = [], []
    output = None
    for _ in range(reps):
        output = None
        synchronize(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        output = function()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1e3)
        cpu_times.append((time.process_time() - cpu_start) * 1e3)
    peak = peak_cuda_mib(device) if device.type == "cuda" else None
    return Measured(tuple(times), peak, output, tuple(cpu_times))


def peak_cuda_mib(device: torch.device) -> float:
    """Largest allocation total since the last :func:`reset_peak_memory`, in MiB."""
    return torch.cuda.max_memory_allocated(device) / MIB


def peak_rss_mib() -> float:
    """The process's peak resident set size so far, in MiB (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / MIB if sys.platform == "darwin" else peak / 1024


def is_out_of_memory(error: BaseException) -> bool:
    """True for the allocator's OOM and for cuBLAS/cuDNN workspace failures, which arrive as RuntimeError."""
    if isinstance(error, torch.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and (
        "out of memory" in text.lower() or "ALLOC_FAILED" in text or "CUDNN_STATUS_ALLOC" in text
    )


def environment(device: torch.device) -> dict[str, Any]:
    """What a reader needs to compare figures: device, library versions, matmul precision."""
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "matmul_precision": torch.get_float32_matmul_precision(),
    }


def write_json(path: Path, payload: Any) -> None:
    """Write ``payload`` as indented JSON, creating the parent folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align_right: Sequence[bool]) -> str:
    """A GitHub Markdown table; ``None`` cells print as ``-``."""
    if len(align_right) != len(header):
        raise ValueError("markdown_table: one alignment per column")
    rule = ["---:" if right else "---" for right in align_right]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("-" if cell is None else str(cell) for cell in row) + " |")
    return "\n".join(lines)
