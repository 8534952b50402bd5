"""Per-pixel Gaussian parameters (a head's raw channels) -> world-space Gaussians.

Two activations, as the original code families have them:

- DepthSplat (:func:`decode_pixel_gaussians`): per pixel opacity (1), xy offset inside the pixel (2),
  scale (3), quaternion in xyzw order (4), SH colour-major (3 x (degree + 1)^2), 85 channels at degree 4.
  Sigmoid opacity and offset, scale = min(exp(s - 4), scale_max) in world units, SH DC initialised from
  the pixel colour. Covariances do not depend on depth, so one decode serves several depth maps.
- MVSplat and pixelSplat (:func:`decode_depth_scaled_gaussians`): no opacity channel (it comes from the
  depth branch), offset (2), scale (3), quaternion (4), SH, 84 channels at degree 4. Scale =
  (scale_min + (scale_max - scale_min) sigmoid(s)) x depth x 0.1 (1/(fx W) + 1/(fy H)) with normalised
  focals: about a tenth of a pixel's footprint at that depth, so covariances depend on depth. Any number
  of depth samples per pixel (pixelSplat draws 3, MVSplat has 1) share the pixel's channels. No colour
  initialisation of the DC term.

Both: normalised quaternion, SH damped per degree (0.1 * 0.25^l) and rotated into the world frame, means
along the *normalised* pixel ray at the predicted depth (used as a distance).
"""

from __future__ import annotations

from dataclasses import dataclass

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
# Depth-scaled heads: a Gaussian's scale unit is this fraction of a pixel's footprint at its depth.
PIXEL_FOOTPRINT_FRACTION = 0.1


def num_gaussian_channels(sh_degree: int) -> int:
    """DepthSplat's head channels per pixel: opacity, offset, scale, quaternion, SH."""
    return 1 + 2 + 3 + 4 + 3 * num_coefficients(sh_degree)


def num_depth_scaled_channels(sh_degree: int) -> int:
    """MVSplat's and pixelSplat's head channels per pixel: offset, scale, quaternion, SH (no opacity)."""
    return 2 + 3 + 4 + 3 * num_coefficients(sh_degree)


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
    scales: Float[Tensor, "*#batch 3"], quaternions_xyzw: Float[Tensor, "*#batch 4"]
) -> Float[Tensor, "*#batch 3 3"]:
    """R S S^T R^T."""
    rotation = quaternion_xyzw_to_matrix(quaternions_xyzw)
    scale = torch.diag_embed(scales)
    return rotation @ scale @ scale.transpose(-1, -2) @ rotation.transpose(-1, -2)


def pixel_centres(
    height: int, width: int, device: torch.device | str | None = None
) -> Float[Tensor, "h w 2"]:
    """Normalised (x, y) image coordinates of the pixel centres, in (0, 1)."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack((grid_x, grid_y), dim=-1)


def pixel_rays(
    offset_logits: Float[Tensor, "batch view pixel 2"],
    c2w: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    image_shape: tuple[int, int],
) -> tuple[Float[Tensor, "batch view pixel 3"], Float[Tensor, "batch view pixel 3"]]:
    """World-frame origins and unit directions of the rays through the pixel centres, each shifted inside
    its pixel by (sigmoid(offset) - 0.5) pixels; pixels row-major."""
    h, w = image_shape
    pixel_size = torch.tensor((1.0 / w, 1.0 / h), dtype=offset_logits.dtype, device=offset_logits.device)
    xy = pixel_centres(h, w, offset_logits.device).to(offset_logits.dtype).reshape(1, 1, h * w, 2)
    xy = xy + (offset_logits.sigmoid() - 0.5) * pixel_size
    camera_rays = torch.cat((xy, torch.ones_like(xy[..., :1])), dim=-1) @ torch.linalg.inv(
        intrinsics
    ).transpose(-1, -2)
    camera_rays = camera_rays / camera_rays.norm(dim=-1, keepdim=True)
    directions = camera_rays @ c2w[..., :3, :3].transpose(-1, -2)
    origins = c2w[..., None, :3, 3].expand_as(directions)
    return origins, directions


def world_covariances(
    scales: Float[Tensor, "batch view *#pixel 3"],
    quaternion_logits: Float[Tensor, "batch view *#pixel 4"],
    rotation_c2w: Float[Tensor, "batch view 3 3"],
) -> Float[Tensor, "batch view *#pixel 3 3"]:
    """Camera-frame R(q) S S^T R(q)^T of the normalised xyzw quaternion, rotated into the world frame.

    The pixel axes broadcast: pixelSplat's depth samples share their pixel's rotation."""
    quaternions = quaternion_logits / (quaternion_logits.norm(dim=-1, keepdim=True) + QUATERNION_EPS)
    covariances = covariance_from_scale_rotation(scales, quaternions)
    rotation = rotation_c2w
    for _ in range(scales.dim() - 3):  # broadcast over the pixel (and sample) axes
        rotation = rotation.unsqueeze(2)
    return rotation @ covariances @ rotation.transpose(-1, -2)


def depth_scale_unit(
    intrinsics: Float[Tensor, "batch view 3 3"], image_shape: tuple[int, int]
) -> Float[Tensor, "batch view"]:
    """0.1 (1/(fx W) + 1/(fy H)) for normalised intrinsics (through the inverse of K's 2x2 block, as the
    original computes it): a tenth of a pixel's footprint per unit of depth."""
    h, w = image_shape
    pixel_size = torch.tensor((1.0 / w, 1.0 / h), dtype=intrinsics.dtype, device=intrinsics.device)
    per_axis = PIXEL_FOOTPRINT_FRACTION * (torch.linalg.inv(intrinsics[..., :2, :2]) @ pixel_size)
    return per_axis.sum(dim=-1)


def decode_depth_scaled_gaussians(
    raw: Float[Tensor, "batch view pixel channel"],
    depths: Float[Tensor, "batch view pixel sample"],
    opacities: Float[Tensor, "batch view pixel sample"],
    c2w: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    image_shape: tuple[int, int],
    *,
    sh_degree: int = 4,
    scale_min: float = 0.5,
    scale_max: float = 15.0,
    anchors: Int64[Tensor, "batch view"] | None = None,
) -> Gaussians:
    """MVSplat's and pixelSplat's activation (module docstring): world-space Gaussians, G ordered view,
    pixel (row-major), depth sample. ``raw`` holds each pixel's offset, scale, quaternion and SH channels;
    ``depths`` are distances along the pixel's ray, ``opacities`` are used as given."""
    b, v, pixels, channels = raw.shape
    expected = num_depth_scaled_channels(sh_degree)
    if channels != expected:
        raise ValueError(f"Gaussian head gave {channels} channels; SH degree {sh_degree} needs {expected}")
    if depths.shape[:3] != (b, v, pixels) or opacities.shape != depths.shape:
        raise ValueError(
            f"depths {tuple(depths.shape)} and opacities {tuple(opacities.shape)} must be "
            f"[{b}, {v}, {pixels}, samples] to match the raw channels {tuple(raw.shape)}"
        )
    n_sh = num_coefficients(sh_degree)
    offset, scale, rotation, sh = raw.split((2, 3, 4, 3 * n_sh), dim=-1)
    origins, directions = pixel_rays(offset, c2w, intrinsics, image_shape)
    rotation_c2w = c2w[..., :3, :3]

    unit = depth_scale_unit(intrinsics, image_shape)[:, :, None, None, None]
    scales = scale_min + (scale_max - scale_min) * scale.sigmoid()  # [b, v, pixel, 3]
    scales = scales[:, :, :, None] * depths[..., None] * unit  # [b, v, pixel, sample, 3]
    covariances = world_covariances(scales, rotation[:, :, :, None], rotation_c2w)

    sh = sh.unflatten(-1, (3, n_sh)) * sh_damping(sh_degree, raw.device).to(raw.dtype)
    harmonics = rotate_sh(sh, rotation_c2w[:, :, None, None])[:, :, :, None]
    means = origins[:, :, :, None] + directions[:, :, :, None] * depths[..., None]
    samples = depths.shape[-1]
    return Gaussians(
        means=means.reshape(b, -1, 3),
        covariances=covariances.reshape(b, -1, 3, 3),
        harmonics=harmonics.expand(b, v, pixels, samples, 3, n_sh).reshape(b, -1, 3, n_sh),
        opacities=opacities.reshape(b, -1),
        anchors=anchors,
    )


@dataclass
class PixelGaussians:
    """Everything about the pixel Gaussians except where along its ray each one sits."""

    origins: Float[Tensor, "batch view pixel 3"]
    directions: Float[Tensor, "batch view pixel 3"]  # unit length, world frame
    covariances: Float[Tensor, "batch view pixel 3 3"]
    harmonics: Float[Tensor, "batch view pixel 3 d_sh"]
    opacities: Float[Tensor, "batch view pixel"]

    def at_depths(
        self,
        depths: Float[Tensor, "batch view height width"],
        anchors: Int64[Tensor, "batch view"] | None = None,
    ) -> Gaussians:
        """Place the Gaussians at ``depths`` along their rays; G is view-major, then pixels."""
        means = self.origins + self.directions * depths.flatten(2)[..., None]
        return Gaussians(
            means=means.flatten(1, 2),
            covariances=self.covariances.flatten(1, 2),
            harmonics=self.harmonics.flatten(1, 2),
            opacities=self.opacities.flatten(1, 2),
            anchors=anchors,
        )


def decode_pixel_gaussians(
    raw: Float[Tensor, "batch view channel height width"],
    images: Float[Tensor, "batch view 3 height width"],
    c2w: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    sh_degree: int = 4,
    scale_max: float = 0.3,
) -> PixelGaussians:
    """Activate the head's raw channels and express them in the world frame.

    ``images`` in [0, 1] initialise the DC colour; ``intrinsics`` are normalised (row 0 / W, row 1 / H).
    """
    b, v, channels, h, w = raw.shape
    expected = num_gaussian_channels(sh_degree)
    if channels != expected:
        raise ValueError(f"Gaussian head gave {channels} channels; SH degree {sh_degree} needs {expected}")
    n_sh = num_coefficients(sh_degree)
    per_pixel = raw.flatten(3).transpose(2, 3)  # [b, v, hw, channel]
    opacity, offset, scale, rotation, sh = per_pixel.split((1, 2, 3, 4, 3 * n_sh), dim=-1)

    origins, directions = pixel_rays(offset, c2w, intrinsics, (h, w))
    rotation_c2w = c2w[..., :3, :3]
    scales = torch.exp(scale - SCALE_LOG_OFFSET).clamp(max=scale_max)
    covariances = world_covariances(scales, rotation, rotation_c2w)

    sh = sh.unflatten(-1, (3, n_sh)) * sh_damping(sh_degree, raw.device).to(raw.dtype)
    colour_dc = (images.flatten(3).transpose(2, 3) - 0.5) / SH_C0  # [b, v, hw, 3]
    sh[..., 0] += colour_dc  # sh is a fresh product: the DC term is updated in place, not concatenated
    harmonics = rotate_sh(sh, rotation_c2w[:, :, None, None])

    return PixelGaussians(
        origins=origins,
        directions=directions,
        covariances=covariances,
        harmonics=harmonics,
        opacities=opacity[..., 0].sigmoid(),
    )
