"""Rendering predicted Gaussians into target views: gsplat on CUDA, the pure-PyTorch rasterizer elsewhere.

Both backends follow the original decoder (INRIA rasterizer, ``cuda_splatting.py``) where gsplat can:
covariances are used as given, SH of the predicted degree, colour = SH + 0.5 clamped at 0, a 0.3 pixel
2D dilation (classic mode, no antialiasing compensation), black background by default, and:

- Principal point: the original builds its projection from the field of view alone, so it ignores cx and
  cy and always projects through the image centre. ``centred_principal_point=True`` (the default) does
  the same; False uses the cx, cy of ``K``.
- Near cull: the original rescales each view's world by 1/near and culls camera z <= 0.2 there, i.e.
  z <= 0.2 * near in world units; here z < ``NEAR_CULL_FACTOR * near`` is culled (the boundary itself
  has measure zero).
- Far: the INRIA rasterizer's frustum test checks only the near side (far only sets the [0, 1] depth
  mapping of its projection matrix), so nothing is culled beyond ``far`` unless ``cull_beyond_far``.
- Where gsplat and INRIA differ (alpha clamp 0.999 vs 0.99, transmittance stop at <= 1e-4 vs < 1e-4,
  discriminant floor 0.01 vs 0.1) both backends follow gsplat, so CPU and GPU images agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from zpressor_ns.cameras import invert_rigid
from zpressor_ns.gaussians import Gaussians
from zpressor_ns.rasterize_torch import RasterSettings, rasterize_gaussians_torch
from zpressor_ns.spherical_harmonics import sh_degree_from_coefficients

NEAR_CULL_FACTOR = 0.2
# gsplat's own default far plane: "no far culling".
_UNBOUNDED_FAR = 1e10

Backend = Literal["auto", "gsplat", "torch"]


@dataclass
class RenderOutput:
    """Rendered target views. ``depth`` is the expected camera z (gsplat "ED"), 0 where nothing was hit."""

    color: Float[Tensor, "batch view 3 height width"]
    depth: Float[Tensor, "batch view height width"]
    alpha: Float[Tensor, "batch view height width"]


def pixel_intrinsics(
    K: Float[Tensor, "*batch 3 3"], width: int, height: int, centred_principal_point: bool = True
) -> Float[Tensor, "*batch 3 3"]:
    """Normalised intrinsics -> pixel intrinsics for the rasterizers (skew dropped, as the original does)."""
    fx, fy = K[..., 0, 0] * width, K[..., 1, 1] * height
    if centred_principal_point:
        cx, cy = torch.full_like(fx, width / 2), torch.full_like(fy, height / 2)
    else:
        cx, cy = K[..., 0, 2] * width, K[..., 1, 2] * height
    zeros, ones = torch.zeros_like(fx), torch.ones_like(fx)
    rows = [
        torch.stack([fx, zeros, cx], -1),
        torch.stack([zeros, fy, cy], -1),
        torch.stack([zeros, zeros, ones], -1),
    ]
    return torch.stack(rows, dim=-2)


def _check_inputs(gaussians: Gaussians, c2w: Tensor, K: Tensor, near: Tensor, far: Tensor) -> None:
    batch, num_gaussians = gaussians.means.shape[:2]
    expected = {
        "gaussians.means": (gaussians.means, (batch, num_gaussians, 3)),
        "gaussians.covariances": (gaussians.covariances, (batch, num_gaussians, 3, 3)),
        "gaussians.opacities": (gaussians.opacities, (batch, num_gaussians)),
    }
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"render_gaussians: {name} has shape {tuple(tensor.shape)}, expected {shape}")
    harmonics = gaussians.harmonics.shape
    if harmonics[:3] != (batch, num_gaussians, 3) or len(harmonics) != 4:
        raise ValueError(
            f"render_gaussians: gaussians.harmonics has shape {tuple(harmonics)}, expected "
            f"({batch}, {num_gaussians}, 3, (degree + 1) ** 2) (colour-major)"
        )
    sh_degree_from_coefficients(harmonics[-1])
    if c2w.ndim != 4 or c2w.shape[0] != batch or c2w.shape[2:] != (4, 4):
        raise ValueError(
            f"render_gaussians: c2w has shape {tuple(c2w.shape)}, expected ({batch}, views, 4, 4)"
        )
    views = c2w.shape[1]
    for name, tensor, shape in (
        ("K", K, (batch, views, 3, 3)),
        ("near", near, (batch, views)),
        ("far", far, (batch, views)),
    ):
        if tuple(tensor.shape) != shape:
            raise ValueError(f"render_gaussians: {name} has shape {tuple(tensor.shape)}, expected {shape}")
    if not bool((near > 0).all()):
        raise ValueError("render_gaussians: near must be positive (it sets the near cull plane)")


def render_gaussians(
    gaussians: Gaussians,
    c2w: Float[Tensor, "batch view 4 4"],
    K: Float[Tensor, "batch view 3 3"],
    near: Float[Tensor, "batch view"],
    far: Float[Tensor, "batch view"],
    image_shape: tuple[int, int],
    background: tuple[float, float, float] = (0.0, 0.0, 0.0),
    backend: Backend = "auto",
    centred_principal_point: bool = True,
    cull_beyond_far: bool = False,
    settings: RasterSettings | None = None,
) -> RenderOutput:
    """Render each scene's Gaussians into its target cameras (OpenCV c2w, normalised K).

    ``backend="auto"`` picks gsplat for CUDA tensors and the PyTorch rasterizer otherwise; both are
    differentiable. Rasterization runs in fp32 (fp64 inputs stay fp64 on the PyTorch backend).
    ``settings`` tunes the PyTorch rasterizer; gsplat uses only its ``eps2d``.
    """
    _check_inputs(gaussians, c2w, K, near, far)
    if backend == "auto":
        backend = "gsplat" if gaussians.means.is_cuda else "torch"
    if backend not in ("gsplat", "torch"):
        raise ValueError(f"render_gaussians: unknown backend {backend!r}; use 'auto', 'gsplat' or 'torch'")
    if backend == "gsplat" and not gaussians.means.is_cuda:
        raise ValueError("render_gaussians: backend 'gsplat' needs CUDA tensors; use backend='torch' on CPU")
    height, width = image_shape
    settings = settings or RasterSettings()
    # gsplat renders fp32; the PyTorch rasterizer keeps fp64 (exactness tests) and lifts bf16/fp16.
    dtype = (
        torch.float32 if backend == "gsplat" else torch.promote_types(gaussians.means.dtype, torch.float32)
    )
    device = gaussians.means.device
    world_to_camera = invert_rigid(c2w.to(dtype))
    intrinsics = pixel_intrinsics(K.to(dtype), width, height, centred_principal_point)
    near_plane = NEAR_CULL_FACTOR * near.to(dtype)
    far_plane = far.to(dtype) if cull_beyond_far else torch.full_like(near_plane, _UNBOUNDED_FAR)
    backgrounds = torch.tensor(background, dtype=dtype, device=device).expand(*c2w.shape[:2], 3)
    means, covariances, harmonics, opacities = (
        t.to(dtype)
        for t in (gaussians.means, gaussians.covariances, gaussians.harmonics, gaussians.opacities)
    )
    if backend == "torch":
        color, depth, alpha = rasterize_gaussians_torch(
            means, covariances, harmonics, opacities, world_to_camera, intrinsics, near_plane, far_plane,
            backgrounds, width, height, settings,
        )  # fmt: skip
    else:
        color, depth, alpha = _rasterize_gsplat(
            means, covariances, harmonics, opacities, world_to_camera, intrinsics, near_plane, far_plane,
            backgrounds, width, height, settings.eps2d,
        )  # fmt: skip
    return RenderOutput(color=color.permute(0, 1, 4, 2, 3), depth=depth, alpha=alpha)


def _rasterize_gsplat(
    means: Float[Tensor, "batch gaussian 3"],
    covariances: Float[Tensor, "batch gaussian 3 3"],
    harmonics: Float[Tensor, "batch gaussian 3 d_sh"],
    opacities: Float[Tensor, "batch gaussian"],
    world_to_camera: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    near_plane: Float[Tensor, "batch view"],
    far_plane: Float[Tensor, "batch view"],
    backgrounds: Float[Tensor, "batch view 3"],
    width: int,
    height: int,
    eps2d: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """gsplat 1.4.0 ``rasterization`` per scene (it does not batch scenes), all of a scene's views at once.

    gsplat takes one near/far per call, so a scene whose views disagree on them is rendered view by view.
    """
    try:
        from gsplat import rasterization
    except ImportError as error:
        raise RuntimeError(
            "render_gaussians: backend 'gsplat' needs the gsplat package (pip install gsplat==1.4.0; its "
            "CUDA code compiles on first use), or use backend='torch'"
        ) from error
    sh_degree = sh_degree_from_coefficients(harmonics.shape[-1])
    num_views = world_to_camera.shape[1]
    colors, depths, alphas = [], [], []
    for b in range(means.shape[0]):
        near_values, far_values = near_plane[b].tolist(), far_plane[b].tolist()
        shared = len(set(near_values)) == 1 and len(set(far_values)) == 1
        groups = [range(num_views)] if shared else [range(v, v + 1) for v in range(num_views)]
        sh_coefficients = harmonics[b].transpose(-1, -2).contiguous()  # gsplat wants [N, K, 3]
        for views in groups:
            chosen = slice(views.start, views.stop)
            rendered, alpha, _ = rasterization(
                means=means[b],
                quats=None,
                scales=None,
                opacities=opacities[b],
                colors=sh_coefficients,
                viewmats=world_to_camera[b, chosen],
                Ks=intrinsics[b, chosen],
                width=width,
                height=height,
                near_plane=near_values[views.start],
                far_plane=far_values[views.start],
                eps2d=eps2d,
                sh_degree=sh_degree,
                backgrounds=backgrounds[b, chosen],
                render_mode="RGB+ED",
                rasterize_mode="classic",
                covars=covariances[b],
            )
            colors.append(rendered[..., :3])
            depths.append(rendered[..., 3])
            alphas.append(alpha[..., 0])
    batch = means.shape[0]
    return tuple(
        torch.cat(parts).reshape(batch, num_views, *parts[0].shape[1:]) for parts in (colors, depths, alphas)
    )
