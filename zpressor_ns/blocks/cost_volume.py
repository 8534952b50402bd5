"""Plane-sweep cost volume over inverse-depth candidates, built from each view's nearest other views.

For every reference pixel and candidate depth the neighbour's features are sampled where that 3D point
projects; the correlation with the reference feature (dot product / sqrt(C)) is averaged over the
neighbours. Candidates are uniform in inverse depth between 1/far and 1/near, which spends resolution
where parallax is large (near the camera).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int64
from torch import Tensor

# Points closer than this to the neighbour's image plane are clamped before the perspective divide.
MIN_PROJECTED_DEPTH = 1e-3


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


def plane_sweep_cost_volume(
    features: Float[Tensor, "batch view channel height width"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    c2w: Float[Tensor, "batch view 4 4"],
    neighbours: Int64[Tensor, "batch view neighbour"],
    inverse_depths: Float[Tensor, "batch view candidate"],
) -> Float[Tensor, "batch view candidate height width"]:
    """Mean correlation with the neighbours' warped features for every inverse-depth candidate.

    ``intrinsics`` are in pixels of the feature map. Geometry carries no gradient (as in the original);
    the features do. One neighbour at a time: its sampling grid, its features and one warped
    [channel, candidate] volume per view are alive at once, so memory grows with the views, not with
    views x neighbours (MVSplat matches every view against all others).
    """
    b, v, c, h, w = features.shape
    d = inverse_depths.shape[-1]
    batch_index = torch.arange(b, device=features.device)[:, None]
    with torch.no_grad():
        neighbour_c2w = c2w[batch_index[..., None], neighbours]  # [b, v, m, 4, 4]
        ref_to_neighbour = torch.linalg.inv(neighbour_c2w) @ c2w[:, :, None]
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
