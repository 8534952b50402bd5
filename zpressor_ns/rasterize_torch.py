"""A pure-PyTorch Gaussian rasterizer with the semantics of gsplat 1.4.0 ``rasterization`` (classic mode).

It is the CPU renderer (tests, CPU training, machines without gsplat's CUDA build) and reproduces what
gsplat computes, so images agree within float rounding:

- projection: EWA splatting with the perspective Jacobian evaluated at the mean clamped to 1.3x the
  field of view, a 2D dilation of ``eps2d`` pixels, culling of depths outside [near, far], of
  footprints that are not positive definite and of footprints off screen; radius =
  ceil(3 sqrt(largest eigenvalue))
  with gsplat's 0.01 floor on the discriminant;
- colour: SH along (mean - camera centre) + 0.5, clamped at 0;
- which Gaussians a pixel sees: those whose radius box touches the pixel's 16x16 *tile* (gsplat's rule,
  which lets a Gaussian reach a little beyond its radius inside those tiles);
- compositing front to back by camera z (ties by Gaussian index): alpha = min(0.999, o exp(-sigma)),
  entries with alpha < 1/255 skipped (gsplat's sigma < 0 skip cannot trigger on a positive definite
  footprint), and a pixel stops *before* the Gaussian that would take its transmittance to 1e-4 or
  below;
- outputs: colour + (1 - alpha) background, alpha = sum of weights, expected depth sum(w z) / alpha.

The work is vectorised over scenes, views and pixels: every (view, 8x8 pixel block) gets the depth-sorted
list of Gaussians that can reach it, and blocks are composited as dense [blocks, pixels, Gaussians]
tensors with a cumulative product, in cache-sized chunks (the exponent of every pixel/Gaussian pair comes
from one batched matmul, see ``log_alpha_coefficients``). A Gaussian is left out of a block only
when it cannot reach alpha >= 1/255 there (a conservative bound from its largest eigenvalue), so the
finer blocks change speed, never the image. With gradients on, each chunk is recomputed in the
backward pass (activation checkpointing) so memory stays at one chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int64
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from zpressor_ns.spherical_harmonics import evaluate_sh

ALPHA_MAX = 0.999
ALPHA_MIN = 1.0 / 255.0
TRANSMITTANCE_STOP = 1e-4
# Slack on the exponent when deciding that a Gaussian cannot reach a block: covers float rounding and
# gsplat's fast exp, so no pair that gsplat would composite is ever left out.
_REACH_SIGMA_SLACK = 0.01


@dataclass(frozen=True)
class RasterSettings:
    """Knobs of the rasterizer. ``eps2d`` and ``tile_size`` are semantics (gsplat's defaults);
    ``block_size`` and ``max_block_elements`` only trade speed against memory."""

    eps2d: float = 0.3
    tile_size: int = 16
    block_size: int = 8
    max_block_elements: int = 1 << 19

    def __post_init__(self) -> None:
        if self.block_size <= 0 or self.tile_size % self.block_size != 0:
            raise ValueError(
                f"block_size ({self.block_size}) must be a positive divisor of tile_size ({self.tile_size})"
            )
        if self.max_block_elements <= 0:
            raise ValueError("max_block_elements must be positive")


@dataclass
class ProjectedGaussians:
    """Per (scene, view, Gaussian) screen-space footprints; entries with ``visible`` False are culled."""

    means2d: Float[Tensor, "scene view gaussian 2"]
    conics: Float[Tensor, "scene view gaussian 3"]
    depths: Float[Tensor, "scene view gaussian"]
    radii: Float[Tensor, "scene view gaussian"]
    largest_variance: Float[Tensor, "scene view gaussian"]
    visible: Bool[Tensor, "scene view gaussian"]


def project_gaussians(
    means: Float[Tensor, "scene gaussian 3"],
    covariances: Float[Tensor, "scene gaussian 3 3"],
    world_to_camera: Float[Tensor, "scene view 4 4"],
    intrinsics: Float[Tensor, "scene view 3 3"],
    near_plane: Float[Tensor, "scene view"],
    far_plane: Float[Tensor, "scene view"],
    width: int,
    height: int,
    eps2d: float,
) -> ProjectedGaussians:
    """EWA projection of every Gaussian into every view of its scene (pinhole, pixel intrinsics).

    Culled entries get safe stand-in values (depth 1, unit determinant) instead of inf/NaN so that their
    zero gradients stay zero.
    """
    rotation = world_to_camera[..., :3, :3]
    translation = world_to_camera[..., :3, 3]
    means_cam = torch.einsum("svij,snj->svni", rotation, means) + translation[:, :, None, :]
    x, y, z = means_cam.unbind(-1)
    in_depth_range = (z >= near_plane[..., None]) & (z <= far_plane[..., None])
    z = torch.where(in_depth_range, z, torch.ones_like(z))

    fx, fy = intrinsics[..., 0, 0, None], intrinsics[..., 1, 1, None]
    cx, cy = intrinsics[..., 0, 2, None], intrinsics[..., 1, 2, None]
    # The Jacobian is evaluated at the mean clamped to 1.3x the half field of view (as gsplat/INRIA do)
    # so that Gaussians far outside the image do not get huge footprints.
    margin_x = 0.3 * 0.5 * width / fx
    margin_y = 0.3 * 0.5 * height / fy
    slope_x = torch.minimum(torch.maximum(x / z, -(cx / fx + margin_x)), (width - cx) / fx + margin_x)
    slope_y = torch.minimum(torch.maximum(y / z, -(cy / fy + margin_y)), (height - cy) / fy + margin_y)
    zeros = torch.zeros_like(z)
    jacobian_x = torch.stack([fx / z, zeros, -fx * slope_x / z], dim=-1)
    jacobian_y = torch.stack([zeros, fy / z, -fy * slope_y / z], dim=-1)
    # Rows of J R: the world-space directions whose covariance gives the 2D footprint.
    row_x = torch.einsum("svni,svik->svnk", jacobian_x, rotation)
    row_y = torch.einsum("svni,svik->svnk", jacobian_y, rotation)
    cov_row_x = torch.einsum("snkl,svnl->svnk", covariances, row_x)
    cov_row_y = torch.einsum("snkl,svnl->svnk", covariances, row_y)
    var_x = (row_x * cov_row_x).sum(-1) + eps2d
    var_y = (row_y * cov_row_y).sum(-1) + eps2d
    cov_xy = (row_x * cov_row_y).sum(-1)

    det = var_x * var_y - cov_xy * cov_xy
    invertible = (det > 0) & (var_x > 0)  # positive definite (a non-PSD input covariance can break it)
    det = torch.where(invertible, det, torch.ones_like(det))
    conics = torch.stack([var_y / det, -cov_xy / det, var_x / det], dim=-1)

    half_trace = 0.5 * (var_x + var_y)
    spread = half_trace * half_trace - det
    largest_variance = half_trace + torch.sqrt(spread.clamp_min(0.0))
    radii = torch.ceil(3.0 * torch.sqrt(half_trace + torch.sqrt(spread.clamp_min(0.01)))).detach()

    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    mean_x, mean_y = means2d.detach().unbind(-1)
    on_screen = (
        (mean_x + radii > 0) & (mean_x - radii < width) & (mean_y + radii > 0) & (mean_y - radii < height)
    )
    visible = in_depth_range & invertible & (radii > 0) & on_screen
    return ProjectedGaussians(
        means2d=means2d,
        conics=conics,
        depths=z,
        radii=torch.where(visible, radii, torch.zeros_like(radii)),
        largest_variance=largest_variance.detach(),
        visible=visible,
    )


def view_dependent_colors(
    means: Float[Tensor, "scene gaussian 3"],
    harmonics: Float[Tensor, "scene gaussian 3 d_sh"],
    camera_centres: Float[Tensor, "scene view 3"],
) -> Float[Tensor, "scene view gaussian 3"]:
    """3DGS colour: SH along the viewing ray (camera -> mean), plus 0.5, clamped at 0."""
    directions = means[:, None] - camera_centres[:, :, None]
    return (evaluate_sh(harmonics[:, None], directions) + 0.5).clamp_min(0.0)


@dataclass
class BlockLists:
    """For each (view, pixel block), the Gaussians that can reach it, sorted front to back.

    ``gaussian_ids`` index the flattened [scene * view * gaussian] arrays; entries of block ``k`` are
    ``gaussian_ids[starts[k] : starts[k] + counts[k]]``.
    """

    gaussian_ids: Int64[Tensor, " intersections"]
    starts: Int64[Tensor, " blocks"]
    counts: Int64[Tensor, " blocks"]


def _enumerate_blocks(
    first_x: Int64[Tensor, " n"],
    last_x: Int64[Tensor, " n"],
    first_y: Int64[Tensor, " n"],
    last_y: Int64[Tensor, " n"],
) -> tuple[Int64[Tensor, " m"], Int64[Tensor, " m"], Int64[Tensor, " m"]]:
    """Every (owner, x, y) with x in [first_x, last_x) and y in [first_y, last_y) of its owner."""
    span_x = last_x - first_x
    per_owner = span_x * (last_y - first_y)
    owner = torch.repeat_interleave(torch.arange(len(per_owner), device=per_owner.device), per_owner)
    local = torch.arange(len(owner), device=owner.device) - (torch.cumsum(per_owner, 0) - per_owner)[owner]
    span = span_x[owner]
    return owner, first_x[owner] + local % span, first_y[owner] + local // span


def build_block_lists(
    projected: ProjectedGaussians,
    opacities: Float[Tensor, "scene gaussian"],
    width: int,
    height: int,
    settings: RasterSettings,
) -> BlockLists:
    """Bin visible Gaussians into pixel blocks with gsplat's tile rule, then sort each bin by depth."""
    num_scenes, num_views, num_gaussians = projected.depths.shape
    tile, block = settings.tile_size, settings.block_size
    blocks_per_tile = tile // block
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    blocks_x, blocks_y = math.ceil(width / block), math.ceil(height / block)
    num_blocks = num_scenes * num_views * blocks_x * blocks_y

    flat_ids = projected.visible.reshape(-1).nonzero().squeeze(1)
    means2d = projected.means2d.detach().reshape(-1, 2)[flat_ids]
    mean_x, mean_y = means2d.unbind(-1)
    radii = projected.radii.reshape(-1)[flat_ids]
    variance = projected.largest_variance.reshape(-1)[flat_ids]
    scene_of = flat_ids // (num_views * num_gaussians)
    opacity = opacities.detach()[scene_of, flat_ids % num_gaussians]

    # gsplat's tile range [first, last) of the radius box, then expressed in blocks.
    def tile_range(centre: Tensor, num_tiles: int) -> tuple[Tensor, Tensor]:
        first = torch.floor(centre / tile - radii / tile).clamp(0, num_tiles)
        last = torch.ceil(centre / tile + radii / tile).clamp(0, num_tiles)
        return first.long() * blocks_per_tile, last.long() * blocks_per_tile

    # Blocks whose pixel centres lie within reach: beyond it o exp(-sigma) < 1/255 for sure.
    reach_sigma = torch.log(255.0 * opacity.clamp_min(1e-30)) + _REACH_SIGMA_SLACK
    reachable = reach_sigma > 0
    reach = torch.sqrt(2.0 * variance * reach_sigma.clamp_min(0.0))

    def block_range(centre: Tensor, num_tiles: int, num_blocks_axis: int) -> tuple[Tensor, Tensor]:
        tile_first, tile_last = tile_range(centre, num_tiles)
        near_first = torch.ceil((centre - reach - block + 0.5) / block).long()
        near_last = torch.floor((centre + reach - 0.5) / block).long() + 1
        first = torch.maximum(tile_first, near_first).clamp(0, num_blocks_axis)
        last = torch.minimum(torch.minimum(tile_last, near_last), torch.full_like(near_last, num_blocks_axis))
        return first, torch.where(reachable, torch.maximum(last, first), first)

    first_x, last_x = block_range(mean_x, tiles_x, blocks_x)
    first_y, last_y = block_range(mean_y, tiles_y, blocks_y)
    owner, block_x, block_y = _enumerate_blocks(first_x, last_x, first_y, last_y)

    # Exact test: distance from the mean to the block's nearest pixel centre.
    def gap(centre: Tensor, block_index: Tensor) -> Tensor:
        low = block_index * block + 0.5
        return centre - torch.minimum(torch.maximum(centre, low), low + (block - 1))

    gap_x, gap_y = gap(mean_x[owner], block_x), gap(mean_y[owner], block_y)
    keep = gap_x * gap_x + gap_y * gap_y <= reach[owner] ** 2
    del gap_x, gap_y  # the candidate arrays are the memory peak for large scenes
    owner, block_x, block_y = owner[keep], block_x[keep], block_y[keep]

    view_of = flat_ids[owner] // num_gaussians
    block_key = (view_of * blocks_y + block_y) * blocks_x + block_x
    # Sort key as gsplat's: block in the high bits, float32 depth bits (monotonic for positive depths)
    # in the low bits; a stable sort keeps Gaussian order for equal depths (fp64 inputs are ordered by
    # their float32 depth too).
    depth_bits = projected.depths.detach().reshape(-1)[flat_ids[owner]].float().view(torch.int32).long()
    order = torch.sort((block_key << 32) | depth_bits, stable=True).indices
    counts = torch.bincount(block_key, minlength=num_blocks)
    return BlockLists(
        gaussian_ids=flat_ids[owner[order]],
        starts=torch.cumsum(counts, 0) - counts,
        counts=counts,
    )


def pixel_basis(block_size: int, dtype: torch.dtype, device: torch.device) -> Float[Tensor, "pixel 6"]:
    """Monomials (1, u, v, u^2, v^2, uv) of each pixel centre's offset (u, v) from its block's centre."""
    offsets = torch.arange(block_size, dtype=dtype, device=device) + 0.5 - block_size / 2
    v, u = (t.reshape(-1) for t in torch.meshgrid(offsets, offsets, indexing="ij"))
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v], dim=-1)


def log_alpha_coefficients(
    offsets: Float[Tensor, "block slot 2"],
    conics: Float[Tensor, "block slot 3"],
    opacities: Float[Tensor, "block slot"],
) -> Float[Tensor, "block slot 6"]:
    """Coefficients of log(o) - sigma as a quadratic in the pixel offset from the block centre.

    ``offsets`` are the projected means relative to the block centre. Writing the Gaussian's exponent
    as a polynomial turns its evaluation over all pixels of all blocks into one batched matmul with
    ``pixel_basis``; expanding around the block centre keeps the terms small, so fp32 rounding stays
    around 1e-5 in sigma. Opacities are clamped before the log so that padding slots (opacity 0) give
    alpha 0 with finite gradients.
    """
    mx, my = offsets.unbind(-1)
    a, b, c = conics.unbind(-1)
    sigma_at_centre = 0.5 * (a * mx * mx + c * my * my) + b * mx * my
    return torch.stack(
        [
            torch.log(opacities.clamp_min(1e-30)) - sigma_at_centre,
            a * mx + b * my,
            c * my + b * mx,
            -0.5 * a,
            -0.5 * c,
            -b,
        ],
        dim=-1,
    )


def composite_blocks(
    basis: Float[Tensor, "pixel 6"],
    coefficients: Float[Tensor, "block slot 6"],
    features: Float[Tensor, "block slot feature"],
) -> tuple[Float[Tensor, "block pixel feature"], Float[Tensor, "block pixel"]]:
    """Front-to-back alpha compositing of depth-sorted Gaussians over each block's pixels.

    Returns the weighted feature sums and the accumulated alpha (sum of weights). gsplat also skips
    entries with sigma < 0; footprints are positive definite after projection culling, so sigma < 0
    only arises from rounding at a Gaussian's centre and is not tested here.
    """
    raw_alpha = torch.exp(torch.matmul(basis, coefficients.transpose(1, 2)))
    # Masks multiply rather than select: on CPU this is several times faster than torch.where.
    alpha = raw_alpha.clamp_max(ALPHA_MAX) * (raw_alpha >= ALPHA_MIN)
    transmittance_after = torch.cumprod(1.0 - alpha, dim=-1)
    # A pixel stops before the Gaussian that would take its transmittance to 1e-4 or below; the
    # transmittance only decreases, so exactly the entries whose own "after" value is above it count.
    composited = transmittance_after > TRANSMITTANCE_STOP
    transmittance_before = torch.cat(
        [torch.ones_like(transmittance_after[..., :1]), transmittance_after[..., :-1]], dim=-1
    )
    weights = alpha * transmittance_before * composited
    return torch.bmm(weights, features), weights.sum(-1)


def _chunks(counts: list[int], pixels_per_block: int, max_elements: int) -> list[tuple[int, int]]:
    """Split blocks (sorted by descending count) into [start, end) runs of bounded dense size."""
    runs, start = [], 0
    while start < len(counts):
        per_block = max(counts[start], 1) * pixels_per_block
        end = min(len(counts), start + max(1, max_elements // per_block))
        runs.append((start, end))
        start = end
    return runs


def rasterize_gaussians_torch(
    means: Float[Tensor, "scene gaussian 3"],
    covariances: Float[Tensor, "scene gaussian 3 3"],
    harmonics: Float[Tensor, "scene gaussian 3 d_sh"],
    opacities: Float[Tensor, "scene gaussian"],
    world_to_camera: Float[Tensor, "scene view 4 4"],
    intrinsics: Float[Tensor, "scene view 3 3"],
    near_plane: Float[Tensor, "scene view"],
    far_plane: Float[Tensor, "scene view"],
    background: Float[Tensor, "scene view 3"],
    width: int,
    height: int,
    settings: RasterSettings | None = None,
) -> tuple[
    Float[Tensor, "scene view height width 3"],
    Float[Tensor, "scene view height width"],
    Float[Tensor, "scene view height width"],
]:
    """Render every view of every scene: (colour, expected z-depth, alpha), channels last like gsplat.

    ``intrinsics`` are in pixels, ``world_to_camera`` in OpenCV axes; ``near_plane`` must be positive.
    Differentiable with respect to the Gaussians (and the cameras).
    """
    settings = settings or RasterSettings()
    num_scenes, num_views = world_to_camera.shape[:2]
    projected = project_gaussians(
        means, covariances, world_to_camera, intrinsics, near_plane, far_plane, width, height, settings.eps2d
    )
    rotation = world_to_camera[..., :3, :3]
    camera_centres = -torch.einsum("svji,svj->svi", rotation, world_to_camera[..., :3, 3])
    colors = view_dependent_colors(means, harmonics, camera_centres)
    # Depth rides along as a fourth feature; its background is 0 (gsplat's "ED" mode).
    features = torch.cat([colors, projected.depths[..., None]], dim=-1).reshape(-1, 4)
    flat_means2d = projected.means2d.reshape(-1, 2)
    flat_conics = projected.conics.reshape(-1, 3)
    flat_opacities = opacities[:, None, :].expand(-1, num_views, -1).reshape(-1)

    lists = build_block_lists(projected, opacities, width, height, settings)
    block = settings.block_size
    blocks_x, blocks_y = math.ceil(width / block), math.ceil(height / block)
    basis = pixel_basis(block, means.dtype, means.device)

    busy = lists.counts.nonzero().squeeze(1)
    busy = busy[torch.sort(lists.counts[busy], descending=True, stable=True).indices]
    pixels_per_block = block * block
    needs_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means, covariances, harmonics, opacities, world_to_camera, intrinsics)
    )
    outputs, alphas = [], []
    for start, end in _chunks(lists.counts[busy].tolist(), pixels_per_block, settings.max_block_elements):
        blocks = busy[start:end]
        slots = torch.arange(int(lists.counts[blocks[0]]), device=means.device)
        filled = slots[None, :] < lists.counts[blocks, None]
        entry = (lists.starts[blocks, None] + slots[None, :]).clamp_max(lists.gaussian_ids.numel() - 1)
        ids = lists.gaussian_ids[entry]
        centre_x = (blocks % blocks_x) * block + block / 2
        centre_y = ((blocks // blocks_x) % blocks_y) * block + block / 2
        centres = torch.stack([centre_x, centre_y], dim=-1).to(means.dtype)
        coefficients = log_alpha_coefficients(
            flat_means2d[ids] - centres[:, None, :],
            flat_conics[ids],
            torch.where(filled, flat_opacities[ids], 0.0),
        )
        if needs_grad:
            feature_sum, alpha = checkpoint(
                composite_blocks, basis, coefficients, features[ids], use_reentrant=False
            )
        else:
            feature_sum, alpha = composite_blocks(basis, coefficients, features[ids])
        outputs.append(feature_sum)
        alphas.append(alpha)

    total = num_scenes * num_views * blocks_x * blocks_y
    feature_image = torch.zeros(total, pixels_per_block, 4, dtype=means.dtype, device=means.device)
    alpha_image = torch.zeros(total, pixels_per_block, dtype=means.dtype, device=means.device)
    if outputs:
        feature_image = feature_image.index_copy(0, busy, torch.cat(outputs))
        alpha_image = alpha_image.index_copy(0, busy, torch.cat(alphas))

    def to_image(per_block: Tensor) -> Tensor:
        channels = per_block.shape[2:]
        grid = per_block.reshape(num_scenes, num_views, blocks_y, blocks_x, block, block, *channels)
        grid = grid.transpose(3, 4).reshape(
            num_scenes, num_views, blocks_y * block, blocks_x * block, *channels
        )
        return grid[:, :, :height, :width]

    feature_image, alpha_image = to_image(feature_image), to_image(alpha_image)
    color = feature_image[..., :3] + (1.0 - alpha_image[..., None]) * background[:, :, None, None, :]
    depth = feature_image[..., 3] / alpha_image.clamp_min(1e-10)
    return color, depth, alpha_image
