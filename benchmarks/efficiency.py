"""Gaussians, encoder latency, render latency and peak memory of the encoders with and without ZPressor vs views.

    python benchmarks/efficiency.py --tiny                    # CPU smoke run (small preset, 64x128, 4 and 8 views)
    python benchmarks/efficiency.py                           # CUDA: the issue's sweep, paper preset
    python benchmarks/efficiency.py --views 1000 --resolutions 270x480 --methods zpressor-depthsplat
    python benchmarks/efficiency.py --methods zpressor-mvsplat mvsplat --resolutions 256x256

Any registered method can be measured (``--methods``); the default is DepthSplat's pair.

Every (method, views, resolution) runs in a fresh process of this script (``--single``), so each peak
is clean and an out-of-memory setting cannot leave the allocator fragmented for the next one. A setting
that runs out of memory gives a row with status "OOM" and null numbers, and larger view counts of the
same method and resolution are then not run (also "OOM", with a note), unless ``--no-skip-after-oom``.

Per setting: B=1, random images, context cameras on a smooth forward path (near 1, far 200, normalised
K), the encoder in eval mode under ``torch.inference_mode()``. ``latency_ms`` is the median encoder
forward, ``render_ms`` the median time to render ``--target-views`` cameras placed between the context
ones; both synchronised, after warm-up. ``peak_mib`` is ``torch.cuda.max_memory_allocated`` over the
timed encoder forwards after a reset that follows the warm-up (weights and inputs included). On CPU it
is the growth of the process's peak RSS over its size right after import (``memory_kind`` says which).

Sizes must be multiples of every measured encoder's ``required_multiple`` (DepthSplat 32, MVSplat 16):
other sizes are centre-cropped to the largest multiple that fits (270x480, DL3DV's 480P, runs as 256x480),
and the row keeps both.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from common import (
    device_name,
    device_slug,
    environment,
    is_out_of_memory,
    markdown_table,
    measure_calls,
    peak_rss_mib,
    resolve_device,
    write_json,
)
from jaxtyping import Float
from torch import Tensor

from zpressor_ns.encoders import build_encoder, encoder_config, method_names, required_multiple
from zpressor_ns.gaussians import Gaussians
from zpressor_ns.pretrained import load_pretrained
from zpressor_ns.render import render_gaussians

# Every registered method can be measured; by default the DepthSplat pair (the paper's efficiency figure).
METHODS = method_names()
DEFAULT_METHODS = ("depthsplat", "zpressor-depthsplat")
ISSUE_VIEWS = (12, 24, 36, 64, 100, 200, 500)
ISSUE_RESOLUTIONS = ((256, 448), (270, 480))
TINY_VIEWS = (4, 8)
TINY_RESOLUTIONS = ((64, 128),)
NEAR, FAR = 1.0, 200.0
# Normalised horizontal focal length (about 64 degrees of horizontal field of view), square pixels.
FOCAL_X = 0.8
# Test hook: "method:views:HxW" makes that setting raise torch.OutOfMemoryError at its first forward,
# so the OOM path can be checked without a GPU.
FORCE_OOM_ENV = "ZPRESSOR_BENCH_FORCE_OOM"
# Row fields that hold measurements: all null unless the setting ran to the end.
MEASURED_FIELDS = (
    "gaussians", "latency_ms", "latency_ms_all", "render_ms", "render_ms_all", "peak_mib", "render_peak_mib"
)  # fmt: skip
DTYPES = {
    "tf32": "fp32 weights and activations; TF32 matmuls/convolutions on CUDA (exact fp32 on CPU)",
    "fp32": "fp32 with TF32 disabled (matmul precision 'highest')",
    "bf16": "fp32 weights under torch.autocast(bfloat16)",
}


@dataclass(frozen=True)
class Setting:
    """One measurement point. ``height``/``width`` are what runs; ``requested`` is what was asked for."""

    method: str
    views: int
    height: int
    width: int
    requested: tuple[int, int]

    @property
    def size(self) -> str:
        return f"{self.height}x{self.width}"

    @property
    def size_note(self) -> str | None:
        if self.requested == (self.height, self.width):
            return None
        return f"centre crop of {self.requested[0]}x{self.requested[1]}"

    def matches(self, spec: str) -> bool:
        return spec == f"{self.method}:{self.views}:{self.size}"


@dataclass(frozen=True)
class Options:
    """What every setting of a sweep shares (passed on to the ``--single`` child processes)."""

    preset: str
    device: str
    dtype: str
    reps: int
    warmup: int
    target_views: int
    seed: int
    weights: dict[str, str] = field(default_factory=dict)


def parse_size(text: str) -> tuple[int, int]:
    height, _, width = text.partition("x")
    if not (height.isdigit() and width.isdigit()) or int(height) == 0 or int(width) == 0:
        raise argparse.ArgumentTypeError(f"sizes look like 256x448 (height x width), got {text!r}")
    return int(height), int(width)


def runnable_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The largest centre crop of ``height`` x ``width`` whose sides are multiples of ``multiple``.

    Cropping (rather than padding) keeps every pixel real, as the original's patch shim does; it floors
    to 32 here, not the shim's 64, because 32 is all this encoder needs.
    """
    cropped = (height // multiple * multiple, width // multiple * multiple)
    if 0 in cropped:
        raise ValueError(f"{height}x{width} is smaller than the encoder's multiple of {multiple}")
    return cropped


def sweep_settings(
    methods: Sequence[str], views: Sequence[int], resolutions: Sequence[tuple[int, int]], multiple: int
) -> list[Setting]:
    """Settings ordered method, resolution, then views ascending (so an OOM can skip the larger ones)."""
    settings = []
    for method in methods:
        for requested in resolutions:
            height, width = runnable_size(*requested, multiple)
            settings.extend(Setting(method, v, height, width, requested) for v in sorted(views))
    return settings


def camera_path(s: Float[Tensor, " n"]) -> Float[Tensor, "n 4 4"]:
    """OpenCV c2w along a gently curving forward path, ``s`` in [0, 1] (about 1.5 units long).

    The sideways drift is not symmetric, so farthest-point sampling of the camera centres has no ties.
    """
    s = s.double()
    position = torch.stack(
        [0.2 * torch.sin(1.5 * math.pi * s) + 0.08 * s, 0.03 * torch.cos(3.0 * s), 1.5 * s], dim=-1
    )
    yaw = 0.15 * torch.cos(1.5 * math.pi * s)
    c2w = torch.eye(4, dtype=torch.float64).repeat(len(s), 1, 1)
    c2w[:, 0, 0], c2w[:, 0, 2] = torch.cos(yaw), torch.sin(yaw)
    c2w[:, 2, 0], c2w[:, 2, 2] = -torch.sin(yaw), torch.cos(yaw)
    c2w[:, :3, 3] = position
    return c2w.float()


def synthetic_inputs(
    views: int, target_views: int, height: int, width: int, device: torch.device, seed: int
) -> dict[str, Tensor]:
    """B=1 context (random images) and target cameras; the targets lie between the context cameras."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(1, views, 3, height, width, generator=generator)
    margin = 0.5 / (views - 1)
    context = camera_path(torch.linspace(0.0, 1.0, views))
    target = camera_path(torch.linspace(margin, 1.0 - margin, target_views))
    K = torch.tensor([[FOCAL_X, 0.0, 0.5], [0.0, FOCAL_X * width / height, 0.5], [0.0, 0.0, 1.0]])
    tensors = {
        "images": images,
        "c2w": context[None],
        "K": K.expand(1, views, 3, 3),
        "near": torch.full((1, views), NEAR),
        "far": torch.full((1, views), FAR),
        "target_c2w": target[None],
        "target_K": K.expand(1, target_views, 3, 3),
        "target_near": torch.full((1, target_views), NEAR),
        "target_far": torch.full((1, target_views), FAR),
    }
    return {name: tensor.to(device) for name, tensor in tensors.items()}


def weights_for(method: str, specs: Sequence[str]) -> dict[str, str]:
    """``--weights`` entries are ``PATH`` (every method) or ``METHOD=PATH``; checked before any run."""
    chosen: dict[str, str] = {}
    for spec in specs:
        name, separator, path = spec.partition("=")
        if not separator:
            name, path = method, spec
        if name not in METHODS:
            raise SystemExit(f"--weights {spec!r}: unknown method {name!r}; use one of {list(METHODS)}")
        if not Path(path).is_file():
            raise SystemExit(f"--weights {spec!r}: no such file {path}")
        if name == method:
            chosen[method] = path
    return chosen


def apply_dtype(dtype: str, device: torch.device) -> None:
    """Set the process-wide matmul precision for ``dtype`` (CPU keeps exact fp32 in every mode)."""
    if device.type != "cuda":
        return
    strict = dtype == "fp32"
    torch.set_float32_matmul_precision("highest" if strict else "high")
    torch.backends.cudnn.allow_tf32 = not strict


def measure_setting(setting: Setting, options: Options, device: torch.device, row: dict[str, Any]) -> None:
    """Build, warm up and time one setting, filling ``row`` in place (``row["phase"]`` tracks progress)."""
    rss_before = peak_rss_mib()
    row["phase"] = "build"
    encoder = build_encoder(setting.method, options.preset)
    if setting.method in options.weights:
        load_pretrained(encoder, options.weights[setting.method])
    encoder = encoder.to(device).eval()
    inputs = synthetic_inputs(
        setting.views, options.target_views, setting.height, setting.width, device, options.seed
    )
    forced_oom = any(setting.matches(spec) for spec in os.environ.get(FORCE_OOM_ENV, "").split(","))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=options.dtype == "bf16")

    def encode() -> Gaussians:
        if forced_oom:
            raise torch.OutOfMemoryError(f"forced by {FORCE_OOM_ENV} (test hook)")
        with autocast:
            out = encoder(inputs["images"], inputs["c2w"], inputs["K"], inputs["near"], inputs["far"])
        # Only the Gaussians go on to the renderer; the latents and depths are dropped here.
        return Gaussians(out.means, out.covariances, out.harmonics, out.opacities, out.anchors)

    with torch.inference_mode():
        row["phase"] = "encoder"
        encoded = measure_calls(encode, device, options.warmup, options.reps)
        gaussians = encoded.output
        row["gaussians"] = int(gaussians.means.shape[1])
        row["latency_ms"] = round(encoded.median_ms, 2)
        row["latency_ms_all"] = [round(t, 2) for t in encoded.all_ms]
        row["peak_mib"] = None if encoded.peak_mib is None else round(encoded.peak_mib, 1)

        row["phase"] = "render"
        rendered = measure_calls(
            lambda: render_gaussians(
                gaussians,
                inputs["target_c2w"],
                inputs["target_K"],
                inputs["target_near"],
                inputs["target_far"],
                (setting.height, setting.width),
            ),
            device,
            options.warmup,
            options.reps,
        )
        row["render_ms"] = round(rendered.median_ms, 2)
        row["render_ms_all"] = [round(t, 2) for t in rendered.all_ms]
        row["render_peak_mib"] = None if rendered.peak_mib is None else round(rendered.peak_mib, 1)
    if device.type != "cuda":
        row["peak_mib"] = round(peak_rss_mib() - rss_before, 1)
    row["phase"] = None


def base_row(setting: Setting, options: Options) -> dict[str, Any]:
    """A row with every field present: the headline fields first, the measured ones still null."""
    anchors = setting.views
    config = encoder_config(setting.method, options.preset)
    if config.use_zpressor:
        anchors = min(config.num_anchors, setting.views)
    return {
        "method": setting.method,
        "views": setting.views,
        "height": setting.height,
        "width": setting.width,
        "gaussians": None,
        "latency_ms": None,
        "render_ms": None,
        "peak_mib": None,
        "status": "ok",
        "anchors": anchors,
        "requested_size": f"{setting.requested[0]}x{setting.requested[1]}",
        "size_note": setting.size_note,
        "target_views": options.target_views,
        "latency_ms_all": None,
        "render_ms_all": None,
        "render_peak_mib": None,
        "memory_kind": None,
        "preset": options.preset,
        "weights": options.weights.get(setting.method, "random"),
        "dtype": options.dtype,
        "reps": options.reps,
        "warmup": options.warmup,
        # Where an OOM or error struck (build, encoder, render), and why a row was not measured.
        "phase": None,
        "note": None,
    }


def run_single(setting: Setting, options: Options) -> dict[str, Any]:
    """Measure one setting in this process; OOM and other errors become the row's status."""
    device = resolve_device(options.device)
    apply_dtype(options.dtype, device)
    row = base_row(setting, options)
    row["memory_kind"] = "cuda_max_allocated" if device.type == "cuda" else "cpu_peak_rss_growth"
    row.update(environment(device))
    try:
        measure_setting(setting, options, device, row)
    except Exception as error:  # every failure still produces a row; the phase stays as it was
        row.update(dict.fromkeys(MEASURED_FIELDS))
        if is_out_of_memory(error):
            row["status"] = "OOM"
        else:
            row["status"] = f"error: {type(error).__name__}: {' '.join(str(error).split())}"
            traceback.print_exc(file=sys.stderr)
    return row


def child_command(setting: Setting, options: Options) -> list[str]:
    command = [sys.executable, str(Path(__file__).resolve())]
    command += ["--single", setting.method, str(setting.views), setting.size]
    command += ["--preset", options.preset, "--device", options.device, "--dtype", options.dtype]
    command += ["--reps", str(options.reps), "--warmup", str(options.warmup)]
    command += ["--target-views", str(options.target_views), "--seed", str(options.seed)]
    for method, path in options.weights.items():
        command += ["--weights", f"{method}={path}"]
    return command


def run_in_subprocess(setting: Setting, options: Options, timeout_s: float) -> dict[str, Any]:
    """Run one setting as ``--single`` in a fresh interpreter; a timeout or crash still gives a row."""
    row = base_row(setting, options)
    try:
        done = subprocess.run(
            child_command(setting, options), capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        row["status"] = f"error: TimeoutExpired: setting took longer than {timeout_s:g} s"
        return row
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    if done.returncode == 0 and lines:
        child_row = json.loads(lines[-1])
        child_row["size_note"] = setting.size_note
        child_row["requested_size"] = row["requested_size"]
        return child_row
    last_error = (done.stderr.strip().splitlines() or ["no output"])[-1]
    row["status"] = f"error: ChildProcessError: exit code {done.returncode}: {last_error}"
    return row


def run_sweep(
    settings: Sequence[Setting],
    options: Options,
    timeout_s: float,
    skip_after_oom: bool,
    previous: Sequence[dict[str, Any]],
    out: Path,
) -> list[dict[str, Any]]:
    """Measure every setting in its own process and return all rows, ``previous`` ones included.

    A setting that already has a row in ``previous`` (not an error) is not run again. ``out`` is
    rewritten after every row, so a sweep cut off by a time limit keeps what it measured.
    """
    from tqdm import tqdm

    rows = {_row_key(row): row for row in previous}
    oom_at: dict[tuple[str, str], int] = {}
    progress = tqdm(settings, desc="settings", unit="setting", file=sys.stderr)
    for setting in progress:
        progress.set_postfix_str(f"{setting.method} {setting.views}v {setting.size}")
        line = (setting.method, setting.size)
        row = base_row(setting, options)
        key = _row_key(row)
        if key in rows and not rows[key]["status"].startswith("error"):
            row = rows[key]
        elif skip_after_oom and line in oom_at:
            row["status"] = "OOM"
            row["note"] = f"not run: out of memory at {oom_at[line]} views"
        else:
            row = run_in_subprocess(setting, options, timeout_s)
        if row["status"] == "OOM" and line not in oom_at:
            oom_at[line] = setting.views
        rows[key] = row
        write_json(out, _sorted_rows(rows.values()))
    return _sorted_rows(rows.values())


def _row_key(row: dict[str, Any]) -> tuple:
    """What makes two rows the same measurement (for ``--resume``)."""
    fields = ("method", "views", "height", "width", "preset", "weights", "dtype", "target_views")
    return tuple(row[k] for k in fields)


def _sorted_rows(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["method"], r["height"], r["width"], r["views"]))


def results_table(rows: Sequence[dict[str, Any]]) -> str:
    """The rows as a Markdown table (sizes that were cropped say so)."""
    header = ["method", "views", "size", "Gaussians", "encoder ms", "render ms", "peak MiB", "status"]
    body = []
    for row in rows:
        size = f"{row['height']}x{row['width']}"
        if row.get("size_note"):
            size += f" ({row['size_note']})"
        gaussians = None if row["gaussians"] is None else f"{row['gaussians']:,}"
        status = row["status"] + (f" ({row['note']})" if row.get("note") else "")
        body.append(
            [
                row["method"],
                row["views"],
                size,
                gaussians,
                row["latency_ms"],
                row["render_ms"],
                row["peak_mib"],
                status,
            ]
        )
    return markdown_table(header, body, [False, True, False, True, True, True, True, False])


def plot_results(rows: Sequence[dict[str, Any]], path: Path, device: str) -> None:
    """Three panels vs views (Gaussians, encoder latency, peak memory), one line per method and size.

    An out-of-memory setting is an ``x`` on the top edge of each panel, in its line's colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullLocator
    from matplotlib.transforms import blended_transform_factory

    panels = [
        ("gaussians", "Gaussians"),
        ("latency_ms", "encoder latency (ms)"),
        ("peak_mib", "peak memory (MiB)"),
    ]
    memory_kinds = {row["memory_kind"] for row in rows if row.get("memory_kind")}
    if memory_kinds == {"cpu_peak_rss_growth"}:
        panels[2] = ("peak_mib", "peak RSS growth (MiB, CPU)")
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.2), constrained_layout=True)
    lines = sorted({(row["method"], row["height"], row["width"]) for row in rows})
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (method, height, width) in enumerate(lines):
        colour = colours[index % len(colours)]
        chosen = sorted(
            (r for r in rows if (r["method"], r["height"], r["width"]) == (method, height, width)),
            key=lambda r: r["views"],
        )
        for axis, (key, _) in zip(axes, panels, strict=True):
            ok = [r for r in chosen if r["status"] == "ok" and r[key] is not None]
            axis.plot(
                [r["views"] for r in ok],
                [r[key] for r in ok],
                "o-",
                color=colour,
                label=f"{method} {height}x{width}",
            )
            oom = [r["views"] for r in chosen if r["status"] == "OOM"]
            top_edge = blended_transform_factory(axis.transData, axis.transAxes)
            axis.plot(oom, [0.97] * len(oom), "x", color=colour, markersize=9, mew=2, transform=top_edge)
    views = sorted({row["views"] for row in rows})
    for axis, (_, label) in zip(axes, panels, strict=True):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(views, [str(v) for v in views])
        axis.xaxis.set_minor_locator(NullLocator())
        axis.set_xlabel("context views")
        axis.set_ylabel(label)
        axis.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8, title="x on top edge = out of memory", title_fontsize=8)
    figure.suptitle(f"DepthSplat with and without ZPressor vs context views ({device})")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def probe_device(device: str) -> str:
    """The name of the device the children will use, asked of a short-lived process.

    The sweep process itself never touches CUDA, so it holds no context on the GPU being measured.
    """
    if device == "cpu":
        return device_name(torch.device("cpu"))
    command = [sys.executable, str(Path(__file__).resolve()), "--describe-device", "--device", device]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"cannot use device {device!r}: {done.stderr.strip().splitlines()[-1:]}")
    return done.stdout.strip()


def default_out(device: str, tiny: bool) -> Path:
    """``benchmarks/results/efficiency_<gpu>.json`` (``_tiny`` added for the smoke configuration)."""
    suffix = "_tiny" if tiny else ""
    return Path(__file__).resolve().parent / "results" / f"efficiency_{device_slug(device)}{suffix}.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(DEFAULT_METHODS))
    parser.add_argument(
        "--views", nargs="+", type=int, help=f"context view counts (default {list(ISSUE_VIEWS)})"
    )
    parser.add_argument(
        "--resolutions",
        nargs="+",
        type=parse_size,
        help="HxW sizes (default 256x448 270x480; cropped to 32s)",
    )
    parser.add_argument("--preset", choices=("paper", "small"), help="encoder size (default paper)")
    parser.add_argument(
        "--weights",
        nargs="+",
        default=[],
        metavar="[METHOD=]PATH",
        help="checkpoints (default: random weights)",
    )
    parser.add_argument("--device", help="auto, cuda or cpu (default auto)")
    parser.add_argument(
        "--dtype",
        choices=sorted(DTYPES),
        default="tf32",
        help="; ".join(f"{k}: {v}" for k, v in DTYPES.items()),
    )
    parser.add_argument("--reps", type=int, help="timed forwards per setting (default 3)")
    parser.add_argument("--warmup", type=int, help="untimed forwards first (default 1)")
    parser.add_argument("--target-views", type=int, default=8, help="cameras rendered per setting")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and images")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds allowed per setting")
    parser.add_argument(
        "--out", type=Path, help="JSON rows (default benchmarks/results/efficiency_<gpu>.json)"
    )
    parser.add_argument("--plot", type=Path, help="PNG plot (default: --out with .png)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="keep the rows already in --out; settings found there are not re-run",
    )
    parser.add_argument(
        "--no-skip-after-oom", action="store_true", help="also run larger view counts after an out-of-memory"
    )
    parser.add_argument(
        "--tiny", action="store_true", help="CPU smoke run: small preset, 64x128, views 4 8, 1 rep"
    )
    parser.add_argument("--describe-device", action="store_true", help="internal: print the device name")
    parser.add_argument(
        "--single",
        nargs=3,
        metavar=("METHOD", "VIEWS", "HxW"),
        help="internal: measure one setting, print a JSON row",
    )
    return parser


def options_from(args: argparse.Namespace, methods: Sequence[str]) -> Options:
    tiny = args.tiny
    weights: dict[str, str] = {}
    for method in methods:
        weights.update(weights_for(method, args.weights))
    options = Options(
        preset=args.preset or ("small" if tiny else "paper"),
        device=args.device or ("cpu" if tiny else "auto"),
        dtype=args.dtype,
        reps=args.reps if args.reps is not None else (1 if tiny else 3),
        warmup=args.warmup if args.warmup is not None else 1,
        target_views=args.target_views,
        seed=args.seed,
        weights=weights,
    )
    if options.reps < 1 or options.warmup < 0 or options.target_views < 1:
        raise SystemExit("--reps and --target-views must be at least 1, --warmup at least 0")
    return options


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.describe_device:
        print(device_name(resolve_device(args.device or "auto")))
        return 0
    if args.single:
        method, views, size = args.single
        options = options_from(args, [method])
        height, width = parse_size(size)
        torch.manual_seed(options.seed)
        row = run_single(Setting(method, int(views), height, width, (height, width)), options)
        print(json.dumps(row))
        return 0

    options = options_from(args, args.methods)
    views = args.views or (TINY_VIEWS if args.tiny else ISSUE_VIEWS)
    if min(views) < 2:
        raise SystemExit("--views: DepthSplat needs at least 2 context views")
    resolutions = args.resolutions or (TINY_RESOLUTIONS if args.tiny else ISSUE_RESOLUTIONS)
    settings = sweep_settings(
        args.methods,
        views,
        resolutions,
        math.lcm(*(required_multiple(m, options.preset) for m in args.methods)),
    )
    device = probe_device(options.device)
    out = args.out or default_out(device, args.tiny)
    previous = json.loads(out.read_text()) if args.resume and out.is_file() else []
    rows = run_sweep(settings, options, args.timeout, not args.no_skip_after_oom, previous, out)
    plot = args.plot or out.with_suffix(".png")
    plot_results(rows, plot, device)
    print(f"{device}; {DTYPES[options.dtype]}; preset {options.preset}; {options.target_views} target views")
    print(results_table(rows))
    print(f"wrote {out} and {plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
