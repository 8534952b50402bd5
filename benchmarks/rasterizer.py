"""Rasterizer speed (and, on CUDA, torch-vs-gsplat agreement) on pixel-aligned scenes like DepthSplat's.

Each scene places one Gaussian per pixel of its context views on a wavy surface 2-6 units away, sized like
a pixel footprint, with random opacities and degree-4 SH, and renders nearby target views. Prints a table
and writes the numbers as JSON.

    python benchmarks/rasterizer.py --output rasterizer.json            # CPU (2 threads by default)
    python benchmarks/rasterizer.py --device cuda --output rasterizer_h100.json
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from common import environment, measure_calls, resolve_device, write_json

from zpressor_ns.gaussians import Gaussians
from zpressor_ns.render import render_gaussians


@dataclass(frozen=True)
class Case:
    name: str
    height: int
    width: int
    context_views: int
    target_views: int
    backward: bool


CASES = (
    Case("64x64 ~8k Gaussians, 4 views, forward", 64, 64, 2, 4, False),
    Case("64x64 ~8k Gaussians, 4 views, forward+backward", 64, 64, 2, 4, True),
    Case("64x128 ~16k Gaussians, 4 views, forward+backward", 64, 128, 2, 4, True),
    Case("64x128 ~33k Gaussians, 4 views, forward+backward", 64, 128, 4, 4, True),
    Case("256x448 ~229k Gaussians, 4 views, forward", 256, 448, 2, 4, False),
)


def camera_path(count: int, device: torch.device) -> torch.Tensor:
    """OpenCV c2w of cameras on a short sideways walk looking down +z."""
    c2w = torch.eye(4, device=device).repeat(count, 1, 1)
    c2w[:, 0, 3] = torch.linspace(-0.3, 0.3, count, device=device)
    angle = torch.linspace(-0.05, 0.05, count, device=device)
    c2w[:, 0, 0], c2w[:, 0, 2], c2w[:, 2, 0], c2w[:, 2, 2] = (
        angle.cos(),
        angle.sin(),
        -angle.sin(),
        angle.cos(),
    )
    return c2w


def pixel_aligned_scene(case: Case, device: torch.device, generator: torch.Generator) -> Gaussians:
    """One Gaussian per context pixel, unprojected onto a wavy depth surface."""
    focal = 1.0
    v, u = torch.meshgrid(
        (torch.arange(case.height, device=device) + 0.5) / case.height - 0.5,
        (torch.arange(case.width, device=device) + 0.5) / case.width - 0.5,
        indexing="ij",
    )
    means, scales = [], []
    for c2w in camera_path(case.context_views, device):
        depth = (
            4.0
            + 1.5 * torch.sin(6 * u) * torch.cos(5 * v)
            + 0.5 * torch.rand(u.shape, generator=generator).to(device)
        )
        rays = torch.stack([u / focal, v / focal * case.height / case.width, torch.ones_like(u)], dim=-1)
        points = rays * depth[..., None]
        means.append(points.reshape(-1, 3) @ c2w[:3, :3].T + c2w[:3, 3])
        scales.append((depth / (focal * case.width) * 1.5).reshape(-1))
    means = torch.cat(means)
    scale = torch.cat(scales)
    count = means.shape[0]
    axes = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator).to(device))[0]
    stretch = scale[:, None] * (0.5 + torch.rand(count, 3, generator=generator).to(device))
    covariances = axes @ torch.diag_embed(stretch**2) @ axes.transpose(-1, -2)
    harmonics = torch.randn(count, 3, 25, generator=generator).to(device) * 0.1
    opacities = torch.rand(count, generator=generator).to(device)
    return Gaussians(means[None], covariances[None], harmonics[None], opacities[None])


def timing_seconds(function: Callable[[], None], repeats: int, device: torch.device) -> dict[str, float]:
    """Wall and process-CPU seconds of ``function`` after one warm-up call: best and median of ``repeats``.

    The best run is the least disturbed by other jobs on a shared machine; CPU seconds show the work
    done (on a contended machine, waiting threads make wall time much larger).
    """
    measured = measure_calls(function, device, warmup=1, reps=repeats)
    return {
        "best_seconds": min(measured.all_ms) / 1e3,
        "median_seconds": measured.median_ms / 1e3,
        "best_cpu_seconds": min(measured.cpu_ms) / 1e3,
    }


def run_case(case: Case, backend: str, device: torch.device, repeats: int) -> dict:
    generator = torch.Generator().manual_seed(0)
    gaussians = pixel_aligned_scene(case, device, generator)
    c2w = camera_path(case.target_views, device)[None] + 0.0
    c2w[..., 1, 3] += 0.05
    K = torch.tensor([[1.0, 0, 0.5], [0, case.width / case.height, 0.5], [0, 0, 1]], device=device)
    K = K.expand(1, case.target_views, 3, 3)
    near = torch.ones(1, case.target_views, device=device)
    far = torch.full((1, case.target_views), 100.0, device=device)
    shape = (case.height, case.width)

    if case.backward:
        leaves = [
            t.detach().requires_grad_()
            for t in (gaussians.means, gaussians.covariances, gaussians.harmonics, gaussians.opacities)
        ]

        def step() -> None:
            out = render_gaussians(Gaussians(*leaves), c2w, K, near, far, shape, backend=backend)
            (out.color.sum() + out.depth.mean()).backward()
    else:

        def step() -> None:
            with torch.no_grad():
                render_gaussians(gaussians, c2w, K, near, far, shape, backend=backend)

    timing = timing_seconds(step, repeats, device)
    result = {**asdict(case), "backend": backend, "gaussians": gaussians.means.shape[1], **timing}
    if device.type == "cuda" and backend == "torch":
        with torch.no_grad():
            ours = render_gaussians(gaussians, c2w, K, near, far, shape, backend="torch")
            reference = render_gaussians(gaussians, c2w, K, near, far, shape, backend="gsplat")
        result["max_abs_diff_color_vs_gsplat"] = float((ours.color - reference.color).abs().max())
        result["max_abs_diff_alpha_vs_gsplat"] = float((ours.alpha - reference.alpha).abs().max())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (CUDA when available)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--output", default="rasterizer_benchmark.json", help="where to write the JSON results"
    )
    parser.add_argument("--skip-large", action="store_true", help="skip the 256x448 case")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    backends = ["torch", "gsplat"] if device.type == "cuda" else ["torch"]

    load_at_start = os.getloadavg()[0]
    results = []
    print(
        f"{'case':52s} {'backend':8s} {'gaussians':>9s} {'best s':>8s} {'median s':>8s} {'cpu s':>8s}  vs gsplat"
    )
    for case in CASES:
        if args.skip_large and case.height * case.width > 64 * 128:
            continue
        for backend in backends:
            result = run_case(case, backend, device, args.repeats)
            diff = result.get("max_abs_diff_color_vs_gsplat")
            extra = (
                ""
                if diff is None
                else f"  color {diff:.2e}, alpha {result['max_abs_diff_alpha_vs_gsplat']:.2e}"
            )
            print(
                f"{case.name:52s} {backend:8s} {result['gaussians']:9d} {result['best_seconds']:8.3f} "
                f"{result['median_seconds']:8.3f} {result['best_cpu_seconds']:8.3f}{extra}"
            )
            results.append(result)
    machine = {
        **environment(device),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "load_average_1min": [load_at_start, os.getloadavg()[0]],  # at start and end: other jobs' share
    }
    write_json(Path(args.output), {"environment": machine, "results": results})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
