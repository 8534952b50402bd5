"""Per-pixel Gaussian parameters (the head's raw channels) -> world-space Gaussians.

Channel layout of the head output, per pixel: opacity (1), xy offset inside the pixel (2), scale (3),
quaternion in xyzw order (4), SH colour-major (3 x (degree + 1)^2), 85 channels at degree 4.
Activations are DepthSplat's by default: sigmoid opacity and offset, scale = min(exp(s - 4), scale_max) in
world units, normalised quaternion, SH damped per degree (0.1 * 0.25^l) with the DC term initialised from
the pixel colour. Means sit along the *normalised* pixel ray at the predicted depth (used as a distance).

MVSplat and pixelSplat differ in three named options: no opacity channel (``opacity_channel=False``: the
opacity comes from the depth distribution, 84 channels at degree 4), a depth-relative scale
(``scale_activation="depth_relative"``: (lo + (hi - lo) sigmoid(s)) * depth * 0.1 * (1/(fx W) + 1/(fy H))
with normalised focals, i.e. about a pixel's footprint at that depth) and no colour initialisation of the
DC term (``colour_dc_init=False``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from zpressor_ns.gaussians import Gaussians
from zpressor_ns.sh_rotation import num_coefficients, rotate_sh

# Zeroth-order real SH constant: DC coefficient c gives colour c * SH_C0 + 0.5.
SH_C0 = 0.28209479177387814
# Scales start at exp(-4) ~ 0.018 world units for a zero head output.
SCALE_LOG_OFFSET = 4.0
QUATERNION_EPS = 1e-8
# depth_relative scales are this fraction of a pixel's footprint at the Gaussian's depth, times the
# activated scale in [lo, hi] (MVSplat/pixelSplat's multiplier).
PIXEL_FOOTPRINT_FRACTION = 0.1

ScaleActivation = Literal["exp_clamped", "depth_relative"]


def num_gaussian_channels(sh_degree: int, opacity_channel: bool = True) -> int:
    """Head channels per pixel: [opacity,] offset, scale, quaternion, SH."""
    return int(opacity_channel) + 2 + 3 + 4 + 3 * num_coefficients(sh_degree)


def sh_damping(sh_degree: int, device: torch.device | str | None = None) -> Float[Tensor, " n"]:
    """1 for the DC term and 0.1 * 0.25^l for degree l: keeps early view dependence small.

    Coefficient i has degree floor(sqrt(i)) (exact in floating point for these small integers); unlike a
    tensor-valued repeat_interleave this needs no device-to-host copy on CUDA.
    """
    degrees = torch.arange(num_coefficients(sh_degree), device=device).float().sqrt().floor()
    return torch.where(degrees == 0, 1.0, 0.1 * 0.25**degrees)


def quaternion_xyzw_to_matrix(
    q: Float[Tensor, "*batch 4"], eps: float = QUATERNION_EPS
) -> Float[Tensor, "*batch 3 3"]:
    """Rotation matrix of a (not necessarily unit) quaternion in scipy's xyzw order."""
    x, y, z, w = q.unbind(-1)
    s = 2 / ((q * q).sum(-1) + eps)
    rows = (
        1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w),
        s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w),
        s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y),
    )  # fmt: skip
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def covariance_from_scale_rotation(
    scales: Float[Tensor, "*batch 3"], quaternions_xyzw: Float[Tensor, "*batch 4"]
) -> Float[Tensor, "*batch 3 3"]:
    """R S S^T R^T."""
    rotation = quaternion_xyzw_to_matrix(quaternions_xyzw)
    scale = torch.diag_embed(scales)
    return rotation @ scale @ scale.transpose(-1, -2) @ rotation.transpose(-1, -2)


def pixel_footprint(
    intrinsics: Float[Tensor, "*batch 3 3"], height: int, width: int
) -> Float[Tensor, " *batch"]:
    """Sum of a pixel's width and height at depth 1 in world units: 1/(fx W) + 1/(fy H) for normalised K.

    Computed as the original does, from the inverse of K's upper-left 2x2 block applied to (1/W, 1/H).
    """
    pixel_size = torch.tensor((1.0 / width, 1.0 / height), dtype=intrinsics.dtype, device=intrinsics.device)
    return (torch.linalg.inv(intrinsics[..., :2, :2]) @ pixel_size).sum(dim=-1)


def pixel_centres(
    height: int, width: int, device: torch.device | str | None = None
) -> Float[Tensor, "h w 2"]:
    """Normalised (x, y) image coordinates of the pixel centres, in (0, 1)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


@dataclass
class PixelGaussians:
    """Everything about the pixel Gaussians except where along its ray each one sits.

    With ``depth_scaled`` the covariances are those at depth 1 and grow with the squared depth (the
    depth-relative scale activation). ``opacities`` is None when the head has no opacity channel; the
    caller then gives them to :meth:`at_depths`.
    """

    origins: Float[Tensor, "batch view pixel 3"]
    directions: Float[Tensor, "batch view pixel 3"]  # unit length, world frame
    covariances: Float[Tensor, "batch view pixel 3 3"]
    harmonics: Float[Tensor, "batch view pixel 3 d_sh"]
    opacities: Float[Tensor, "batch view pixel"] | None
    depth_scaled: bool = False

    def at_depths(
        self,
        depths: Float[Tensor, "batch view height width"] | Float[Tensor, "batch view height width sample"],
        anchors: Int64[Tensor, "batch view"] | None = None,
        opacities: Float[Tensor, "batch view height width"]
        | Float[Tensor, "batch view height width sample"]
        | None = None,
    ) -> Gaussians:
        """Place the Gaussians at ``depths`` along their rays; G is view-major, then pixels (then samples).

        ``depths`` [B, V, H, W, S] places S Gaussians per pixel (pixelSplat's depth samples), sharing
        everything but the depth and, when given per sample, the opacity.
        """
        b, v, pixels = self.origins.shape[:3]
        per_pixel = depths.reshape(b, v, pixels, -1)  # [b, v, p, s]
        samples = per_pixel.shape[-1]
        means = self.origins[:, :, :, None] + self.directions[:, :, :, None] * per_pixel[..., None]
        covariances = self.covariances[:, :, :, None]
        if self.depth_scaled:
            covariances = covariances * per_pixel.square()[..., None, None]
        else:
            covariances = covariances.expand(b, v, pixels, samples, 3, 3)
        harmonics = self.harmonics[:, :, :, None].expand(-1, -1, -1, samples, -1, -1)
        if opacities is None:
            if self.opacities is None:
                raise ValueError("these Gaussians have no opacity channel: pass the opacities to at_depths")
            opacities = self.opacities[..., None].expand(b, v, pixels, samples)
        else:
            opacities = opacities.reshape(b, v, pixels, samples)
        return Gaussians(
            means=means.flatten(1, 3),
            covariances=covariances.flatten(1, 3),
            harmonics=harmonics.flatten(1, 3),
            opacities=opacities.flatten(1, 3),
            anchors=anchors,
        )


def decode_pixel_gaussians(
    raw: Float[Tensor, "batch view channel height width"],
    images: Float[Tensor, "batch view 3 height width"],
    c2w: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    sh_degree: int = 4,
    scale_max: float = 0.3,
    *,
    opacity_channel: bool = True,
    scale_activation: ScaleActivation = "exp_clamped",
    scale_range: tuple[float, float] = (0.5, 15.0),
    colour_dc_init: bool = True,
) -> PixelGaussians:
    """Activate the head's raw channels and express them in the world frame.

    ``images`` in [0, 1] initialise the DC colour (``colour_dc_init``); ``intrinsics`` are normalised
    (row 0 / W, row 1 / H). ``scale_max`` bounds the ``exp_clamped`` scales, ``scale_range`` the
    activated ``depth_relative`` ones (see the module docstring).
    """
    b, v, channels, h, w = raw.shape
    expected = num_gaussian_channels(sh_degree, opacity_channel)
    if channels != expected:
        raise ValueError(f"Gaussian head gave {channels} channels; SH degree {sh_degree} needs {expected}")
    n_sh = num_coefficients(sh_degree)
    per_pixel = raw.flatten(3).transpose(2, 3)  # [b, v, hw, channel]
    if opacity_channel:
        opacity, offset, scale, rotation, sh = per_pixel.split((1, 2, 3, 4, 3 * n_sh), dim=-1)
    else:
        opacity = None
        offset, scale, rotation, sh = per_pixel.split((2, 3, 4, 3 * n_sh), dim=-1)

    # Rays through the (shifted) pixel centres.
    pixel_size = torch.tensor((1.0 / w, 1.0 / h), dtype=raw.dtype, device=raw.device)
    xy = pixel_centres(h, w, raw.device).to(raw.dtype).reshape(1, 1, h * w, 2)
    xy = xy + (offset.sigmoid() - 0.5) * pixel_size
    camera_rays = torch.cat((xy, torch.ones_like(xy[..., :1])), dim=-1) @ torch.linalg.inv(
        intrinsics
    ).transpose(-1, -2)
    camera_rays = camera_rays / camera_rays.norm(dim=-1, keepdim=True)
    rotation_c2w = c2w[..., :3, :3]
    directions = camera_rays @ rotation_c2w.transpose(-1, -2)
    origins = c2w[..., None, :3, 3].expand_as(directions)

    if scale_activation == "exp_clamped":
        scales = torch.exp(scale - SCALE_LOG_OFFSET).clamp(max=scale_max)
    elif scale_activation == "depth_relative":
        low, high = scale_range
        footprint = PIXEL_FOOTPRINT_FRACTION * pixel_footprint(intrinsics, h, w)  # [b, v]
        scales = (low + (high - low) * scale.sigmoid()) * footprint[..., None, None]  # at depth 1
    else:
        raise ValueError(f"unknown scale activation {scale_activation!r}; use exp_clamped or depth_relative")
    quaternions = rotation / (rotation.norm(dim=-1, keepdim=True) + QUATERNION_EPS)
    covariances = covariance_from_scale_rotation(scales, quaternions)
    covariances = rotation_c2w[:, :, None] @ covariances @ rotation_c2w[:, :, None].transpose(-1, -2)

    sh = sh.unflatten(-1, (3, n_sh)) * sh_damping(sh_degree, raw.device).to(raw.dtype)
    if colour_dc_init:
        colour_dc = (images.flatten(3).transpose(2, 3) - 0.5) / SH_C0  # [b, v, hw, 3]
        sh = torch.cat((sh[..., :1] + colour_dc[..., None], sh[..., 1:]), dim=-1)
    harmonics = rotate_sh(sh, rotation_c2w[:, :, None, None])

    return PixelGaussians(
        origins=origins,
        directions=directions,
        covariances=covariances,
        harmonics=harmonics,
        opacities=None if opacity is None else opacity[..., 0].sigmoid(),
        depth_scaled=scale_activation == "depth_relative",
    )
