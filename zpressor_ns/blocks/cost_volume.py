"""Plane-sweep cost volume over inverse-depth candidates, built from each view's nearest other views.

For every reference pixel and candidate depth the neighbour's features are sampled (bilinearly) where that
3D point projects; the correlation with the reference feature (dot product / sqrt(C)) is averaged over the
neighbours. Candidates are uniform in inverse depth between 1/far and 1/near, which spends resolution
where parallax is large (near the camera).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64
from torch import Tensor

# Points closer than this to the neighbour's image plane are clamped before the perspective divide.
MIN_PROJECTED_DEPTH = 1e-3
# Scores and sampling taps alive at once in the cost volume: views are taken in chunks that stay below it.
CHUNK_BYTES = 1 << 28
# The correlation strategy costs pixels x channels per (reference pixel, neighbour) against the warp's
# 4 taps x candidates x channels: it is taken on CPU while the map has at most this many pixels per
# candidate (quadratic in the pixels, it would lose to warping on large maps).
MAX_PIXELS_PER_CANDIDATE = 16


def nearest_views(c2w: Float[Tensor, "batch view 4 4"], count: int) -> Int64[Tensor, "batch view neighbour"]:
    """The ``count - 1`` views whose camera centres are closest to each view's, nearest first.

    ``count`` includes the view itself (the original's ``nearest_n_views``); a view with fewer other
    views gets all of them.
    """
    centres = c2w[..., :3, 3].detach()
    order = torch.argsort(torch.cdist(centres, centres), dim=-1)
    return order[..., :count][..., 1:]


def all_other_views(
    batch: int, views: int, cyclic: bool = False, device: torch.device | str | None = None
) -> Int64[Tensor, "batch view neighbour"]:
    """For each view, every other view: ascending (MVSplat's transformer) or cyclic, v+1, v+2, ... mod V
    (MVSplat's cost volume, one neighbour per rotation of the views). The order fixes float rounding and
    the transformer's shift-mask layout, so it follows the original's."""
    view = torch.arange(views, device=device)
    offsets = torch.arange(1, views, device=device)
    if cyclic:
        others = (view[:, None] + offsets[None, :]) % views
    else:  # skip the view itself: v' < v stays, v' >= v moves up by one
        others = offsets[None, :] - 1 + (offsets[None, :] - 1 >= view[:, None]).long()
    return others.expand(batch, views, views - 1)


def inverse_depth_candidates(
    near: Float[Tensor, "*batch"], far: Float[Tensor, "*batch"], count: int
) -> Float[Tensor, "*batch candidate"]:
    """``count`` inverse depths from 1/far to 1/near, evenly spaced."""
    steps = torch.linspace(0, 1, count, dtype=near.dtype, device=near.device)
    low, high = 1.0 / far, 1.0 / near
    return low[..., None] + steps * (high - low)[..., None]


def _reference_to_neighbour(
    c2w: Float[Tensor, "batch view 4 4"], neighbours: Int64[Tensor, "batch view neighbour"]
) -> Float[Tensor, "batch view neighbour 4 4"]:
    """Each view's camera frame into each of its neighbours' frames: neighbour w2c @ reference c2w."""
    batch_index = torch.arange(c2w.shape[0], device=c2w.device)[:, None, None]
    return torch.linalg.inv(c2w[batch_index, neighbours]) @ c2w[:, :, None]


def _warp_grid(
    intrinsics: Float[Tensor, "n 3 3"],
    ref_to_neighbour: Float[Tensor, "n 4 4"],
    depths: Float[Tensor, "n candidate"],
    height: int,
    width: int,
) -> Float[Tensor, "n candidate_height width 2"]:
    """Where each (candidate depth, pixel) of the reference lands in the neighbour, in grid_sample units."""
    n, d = depths.shape
    ys, xs = torch.meshgrid(
        torch.arange(height, device=depths.device, dtype=depths.dtype),
        torch.arange(width, device=depths.device, dtype=depths.dtype),
        indexing="ij",
    )
    pixels = torch.stack((xs, ys, torch.ones_like(xs)), dim=0).reshape(1, 3, -1)  # integer pixel positions
    rays = torch.linalg.inv(intrinsics) @ pixels  # [n, 3, hw]
    rotated = ref_to_neighbour[:, :3, :3] @ rays  # [n, 3, hw]
    points = rotated[:, :, None, :] * depths[:, None, :, None] + ref_to_neighbour[:, :3, 3, None, None]
    projected = (intrinsics @ points.reshape(n, 3, -1)).reshape(n, 3, d, -1)
    xy = projected[:, :2] / projected[:, 2:].clamp(min=MIN_PROJECTED_DEPTH)
    grid_x = 2 * xy[:, 0] / (width - 1) - 1
    grid_y = 2 * xy[:, 1] / (height - 1) - 1
    return torch.stack((grid_x, grid_y), dim=-1).reshape(n, d * height, width, 2)


def _bilinear_taps(
    grid: Float[Tensor, "*batch 2"], height: int, width: int
) -> tuple[Int64[Tensor, "*batch 4"], Float[Tensor, "*batch 4"]]:
    """The four pixels around each sample (flat indices) and their bilinear weights, as ``grid_sample``
    with ``align_corners=True`` and zero padding takes them: a pixel outside the map weighs nothing."""
    x = (grid[..., 0] + 1) / 2 * (width - 1)
    y = (grid[..., 1] + 1) / 2 * (height - 1)
    x0, y0 = x.floor(), y.floor()
    x1, y1 = x0 + 1, y0 + 1
    xs = torch.stack((x0, x1, x0, x1), dim=-1)
    ys = torch.stack((y0, y0, y1, y1), dim=-1)
    weights = torch.stack(
        ((x1 - x) * (y1 - y), (x - x0) * (y1 - y), (x1 - x) * (y - y0), (x - x0) * (y - y0)), -1
    )
    inside = (xs >= 0) & (xs <= width - 1) & (ys >= 0) & (ys <= height - 1)
    index = torch.where(inside, ys * width + xs, 0).long()
    return index, torch.where(inside, weights, 0)


CostVolumeStrategy = Literal["auto", "warp", "correlate"]


def plane_sweep_cost_volume(
    features: Float[Tensor, "batch view channel height width"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    c2w: Float[Tensor, "batch view 4 4"],
    neighbours: Int64[Tensor, "batch view neighbour"],
    inverse_depths: Float[Tensor, "batch view candidate"],
    strategy: CostVolumeStrategy = "auto",
) -> Float[Tensor, "batch view candidate height width"]:
    """Mean correlation with the neighbours' warped features for every inverse-depth candidate.

    ``intrinsics`` are in pixels of the feature map. Geometry carries no gradient (as in the original);
    the features do. Two strategies compute the same function: ``warp`` (the original's: sample each
    neighbour at every candidate with ``grid_sample``, memory linear in the pixels, the CUDA path whose
    memory the models count) and ``correlate`` (one matrix product per view and neighbour, then bilinear
    taps: several times faster on CPU, quadratic in the pixels). ``auto`` correlates on CPU for maps of at
    most ``MAX_PIXELS_PER_CANDIDATE`` pixels per candidate, and warps otherwise.
    """
    if strategy not in ("auto", "warp", "correlate"):
        raise ValueError(f"cost volume strategy must be 'auto', 'warp' or 'correlate', got {strategy!r}")
    if strategy == "auto":
        small = features.shape[-2] * features.shape[-1] <= MAX_PIXELS_PER_CANDIDATE * inverse_depths.shape[-1]
        strategy = "correlate" if features.device.type == "cpu" and small else "warp"
    compute = correlated_cost_volume if strategy == "correlate" else warped_cost_volume
    return compute(features, intrinsics, c2w, neighbours, inverse_depths)


def warped_cost_volume(
    features: Float[Tensor, "batch view channel height width"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    c2w: Float[Tensor, "batch view 4 4"],
    neighbours: Int64[Tensor, "batch view neighbour"],
    inverse_depths: Float[Tensor, "batch view candidate"],
) -> Float[Tensor, "batch view candidate height width"]:
    """:func:`plane_sweep_cost_volume` by warping, one neighbour at a time: its sampling grid, its features
    and one warped [channel, candidate] volume per view are alive at once, so memory grows with the views,
    not with views x neighbours (MVSplat matches every view against all others)."""
    b, v, c, h, w = features.shape
    d = inverse_depths.shape[-1]
    batch_index = torch.arange(b, device=features.device)[:, None]
    with torch.no_grad():
        ref_to_neighbour = _reference_to_neighbour(c2w, neighbours)  # [b, v, m, 4, 4]
        depths = (1.0 / inverse_depths).reshape(b * v, d)
    reference = features.reshape(b * v, c, 1, h, w)
    total = features.new_zeros(b * v, d, h, w)
    for j in range(neighbours.shape[-1]):
        with torch.no_grad():
            grid = _warp_grid(
                intrinsics.reshape(-1, 3, 3), ref_to_neighbour[:, :, j].reshape(-1, 4, 4), depths, h, w
            )
        warped = F.grid_sample(
            features[batch_index, neighbours[..., j]].reshape(b * v, c, h, w),
            grid,
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        ).reshape(b * v, c, d, h, w)
        total = total + (reference * warped).sum(1)
    cost = total / (c**0.5) / neighbours.shape[-1]
    return cost.reshape(b, v, d, h, w)


def correlated_cost_volume(
    features: Float[Tensor, "batch view channel height width"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    c2w: Float[Tensor, "batch view 4 4"],
    neighbours: Int64[Tensor, "batch view neighbour"],
    inverse_depths: Float[Tensor, "batch view candidate"],
) -> Float[Tensor, "batch view candidate height width"]:
    """:func:`plane_sweep_cost_volume` from correlations with the neighbours' pixels.

    Sampling is linear, so the correlation with a bilinearly warped feature is the same bilinear blend of
    the correlations with the four pixels around the sample. Those come from one matrix product per
    (view, neighbour), reference pixels x neighbour pixels, from which each candidate gathers its four
    taps: no warped [channel, candidate, h, w] volume is ever built (the original holds one per neighbour)
    and the channel reduction is a matmul instead of a strided sum. Views, and for large maps or many
    neighbours (MVSplat matches every view against all others) blocks of reference pixels, go in chunks
    that keep scores and taps under ``CHUNK_BYTES``.
    """
    b, v, c, h, w = features.shape
    d, m, pixels = inverse_depths.shape[-1], neighbours.shape[-1], h * w
    n = b * v
    flat = features.reshape(n, c, pixels)
    neighbour_index = (neighbours + v * torch.arange(b, device=features.device)[:, None, None]).reshape(n, m)
    with torch.no_grad():
        ref_to_neighbour = _reference_to_neighbour(c2w, neighbours).reshape(n, m, 4, 4)
        depths = (1.0 / inverse_depths).reshape(n, 1, d).expand(n, m, d)
        pixel_k = intrinsics.reshape(n, 1, 3, 3).expand(n, m, 3, 3)
    # Bytes per (view, neighbour, reference pixel): a row of scores, and per candidate its sample point,
    # four tap indices, weights and gathered scores.
    unit = 4 * pixels + d * (8 + 4 * (8 + 4 + 4))
    views_per_chunk = max(1, CHUNK_BYTES // (unit * m * pixels))
    block = pixels if views_per_chunk > 1 else max(1, min(pixels, CHUNK_BYTES // (unit * m)))
    costs = []
    for start in range(0, n, views_per_chunk):
        chunk = slice(start, start + views_per_chunk)
        k = min(n, start + views_per_chunk) - start
        with torch.no_grad():
            grid = _warp_grid(
                pixel_k[chunk].reshape(-1, 3, 3), ref_to_neighbour[chunk].reshape(-1, 4, 4),
                depths[chunk].reshape(-1, d), h, w,
            ).view(k, m, d, pixels, 2)  # fmt: skip
        reference = flat[chunk].transpose(1, 2)[:, None]  # [k, 1, pixels, c]
        neighbour_maps = flat[neighbour_index[chunk]]  # [k, m, c, pixels]
        parts = []
        for first in range(0, pixels, block):
            rows = slice(first, first + block)
            with torch.no_grad():
                # Taps ordered (view, neighbour, reference pixel, candidate, corner): gathered along score rows.
                index, weights = _bilinear_taps(grid[:, :, :, rows].transpose(2, 3), h, w)
            scores = reference[:, :, rows] @ neighbour_maps  # [k, m, rows, pixels]
            sampled = scores.gather(-1, index.flatten(-2)).view(index.shape)
            parts.append(((sampled * weights).sum(-1) / (c**0.5)).mean(1))  # [k, rows, d]
        costs.append(torch.cat(parts, dim=1))
    return torch.cat(costs).transpose(1, 2).reshape(b, v, d, h, w)
