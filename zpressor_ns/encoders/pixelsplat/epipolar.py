"""Epipolar geometry of pixelSplat: where a pixel's ray falls in the other views, and at what depth.

For every pixel of a (downscaled) feature map of view v, the ray segment between v's near and far planes
is projected into each other view u; ``num_samples`` points spread evenly along the visible part of that
projected segment pick up u's features (bilinear, zero outside), and the depth along v's ray that each
sample corresponds to (the least-squares crossing of v's ray and the ray through the sample in u) is
returned for a positional code. Segments that miss u's image entirely are marked invalid; their samples
sit at u's image corner (0, 0) and their features are zero, as in the original.

Conventions: OpenCV camera-to-world ``c2w``, normalised intrinsics ``K`` (image coordinates in [0, 1]).
The "other views" of view v are all views but v in ascending order (slot j of v is view j, or j + 1 from
v on). Everything is batched over views, pairs, rays and samples; no host synchronisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Float, Int64
from torch import Tensor

from zpressor_ns.gaussian_adapter import pixel_centres

# Tolerances of the original's visibility tests (points in front of the camera, inside the image).
BOUNDS_EPS = 1e-6
# Two rays closer to parallel than this (cosine above 1 - eps) have no crossing: depth "infinity".
PARALLEL_EPS = 1e-5
PARALLEL_DEPTH = 1e10
# Projection divides by z + this (float32 machine epsilon) and clips infinities to +-1e8.
PROJECTION_EPS = torch.finfo(torch.float32).eps
PROJECTION_INFINITY = 1e8


def other_views(views: int, device: torch.device | str | None = None) -> Int64[Tensor, "view other"]:
    """Row v: every view index but v, ascending."""
    slots = torch.arange(views - 1, device=device)[None, :].expand(views, -1)
    return slots + (slots >= torch.arange(views, device=device)[:, None]).long()


def pair_transpose(
    views: int, device: torch.device | str | None = None
) -> tuple[Int64[Tensor, "view other"], Int64[Tensor, "view other"]]:
    """(view, slot) index pair that swaps the roles of a view and its other views.

    ``x[b, view[u, j], slot[u, j]]`` is the entry of the pair (ray view = u's j-th other view, sampled
    view = u): it regroups per-ray-view data by the view it is sampled in, and back (an involution).
    """
    ray_view = other_views(views, device)
    sampled = torch.arange(views, device=device)[:, None]
    return ray_view, sampled - (sampled > ray_view).long()


def gather_other_views(x: Tensor) -> Tensor:
    """[B, V, ...] -> [B, V, V-1, ...]: for every view, the same tensor of each of its other views."""
    return x[:, other_views(x.shape[1], x.device)]


def _transform(
    matrix: Float[Tensor, "*#batch i j"], vectors: Float[Tensor, "*#batch j"]
) -> Float[Tensor, "*batch i"]:
    """``matrix @ vector`` over broadcast batches.

    The depth of a far epipolar sample is ill-conditioned (two nearly parallel rays cross there), so this
    module repeats the original's exact arithmetic: the same einsum, on homogeneous coordinates where
    the original uses them. A different but equivalent summation order moves those depths by 1e-4.
    """
    return torch.einsum("...ij,...j->...i", matrix, vectors)


def _homogeneous(x: Tensor, w: float) -> Tensor:
    return torch.cat((x, torch.full_like(x[..., :1], w)), dim=-1)


def world_rays(
    xy: Float[Tensor, "*#batch 2"],
    c2w: Float[Tensor, "*#batch 4 4"],
    intrinsics: Float[Tensor, "*#batch 3 3"],
) -> tuple[Float[Tensor, "*batch 3"], Float[Tensor, "*batch 3"]]:
    """Origins and unit directions (world frame) of the rays through normalised image points."""
    directions = _transform(torch.linalg.inv(intrinsics), _homogeneous(xy, 1.0))
    directions = directions / directions.norm(dim=-1, keepdim=True)
    directions = _transform(c2w, _homogeneous(directions, 0.0))[..., :3]
    origins = c2w[..., :3, 3].broadcast_to(directions.shape)
    return origins, directions


def _in_image(xy: Float[Tensor, "*batch 2"]) -> Bool[Tensor, " *batch"]:
    return ((xy >= -BOUNDS_EPS) & (xy <= 1 + BOUNDS_EPS)).all(dim=-1)


def _project_camera_points(
    points: Float[Tensor, "*#batch 3"], intrinsics: Float[Tensor, "*#batch 3 3"]
) -> Float[Tensor, "*batch 2"]:
    """Normalised image coordinates of camera-frame points (behind-camera points project mirrored)."""
    points = points / (points[..., 2:] + PROJECTION_EPS)
    points = points.nan_to_num(posinf=PROJECTION_INFINITY, neginf=-PROJECTION_INFINITY)
    return _transform(intrinsics, points)[..., :2]


@dataclass
class _Crossings:
    """Where rays cross image borders (or planes): ray parameter, image point, whether it is visible."""

    t: Float[Tensor, "*batch"]
    xy: Float[Tensor, "*batch 2"]
    valid: Bool[Tensor, "*batch"]


def _border_crossings(
    intrinsics: Float[Tensor, "*#batch 3 3"],
    origins: Float[Tensor, "*#batch 3"],
    directions: Float[Tensor, "*#batch 3"],
) -> _Crossings:
    """Crossings of the camera-frame rays' images with the four image borders x=0, x=1, y=0, y=1
    (stacked first). Divisions by zero give infinities or NaN, which the validity test rejects."""
    t_all, xy_all, valid_all = [], [], []
    for axis, border in ((0, 0.0), (0, 1.0), (1, 0.0), (1, 1.0)):
        other = 1 - axis
        focal, focal_other = intrinsics[..., axis, axis], intrinsics[..., other, other]
        centre, centre_other = intrinsics[..., axis, 2], intrinsics[..., other, 2]
        o_axis, o_other, o_z = origins[..., axis], origins[..., other], origins[..., 2]
        d_axis, d_other, d_z = directions[..., axis], directions[..., other], directions[..., 2]
        slope = (border - centre) / focal  # camera-frame x/z (or y/z) of the border
        t = (slope * o_z - o_axis) / (d_axis - slope * d_z)
        coordinate = centre_other + focal_other * (
            o_other * (slope * d_z - d_axis) + d_other * (o_axis - slope * o_z)
        ) / (d_z * o_axis - d_axis * o_z)
        on_border = torch.ones_like(coordinate) * border
        xy = torch.stack((on_border, coordinate) if axis == 0 else (coordinate, on_border), dim=-1)
        depth = (origins + t[..., None] * directions)[..., 2]
        t_all.append(t)
        xy_all.append(xy)
        valid_all.append(_in_image(xy) & (depth > -BOUNDS_EPS) & (t > -BOUNDS_EPS))
    return _Crossings(torch.stack(t_all), torch.stack(xy_all), torch.stack(valid_all))


def _pick_crossing(crossings: _Crossings, nearest: bool) -> _Crossings:
    """The visible border crossing with the smallest (``nearest``) or largest ray parameter."""
    t = crossings.t.masked_fill(~crossings.valid, float("inf") if nearest else float("-inf"))
    t, choice = t.min(dim=0) if nearest else t.max(dim=0)
    xy = crossings.xy.gather(0, choice[None, ..., None].expand(1, *choice.shape, 2))[0]
    return _Crossings(t, xy, crossings.valid.gather(0, choice[None])[0])


def _plane_crossing(
    origins: Float[Tensor, "*#batch 3"],
    directions: Float[Tensor, "*#batch 3"],
    t: Float[Tensor, "*#batch"],
    intrinsics: Float[Tensor, "*#batch 3 3"],
) -> _Crossings:
    point = origins + t[..., None] * directions
    xy = _project_camera_points(point, intrinsics)
    t = t.expand(xy.shape[:-1])
    return _Crossings(t, xy, _in_image(xy) & (point[..., 2] > -BOUNDS_EPS) & (t > -BOUNDS_EPS))


def project_segments(
    origins: Float[Tensor, "*#batch 3"],
    directions: Float[Tensor, "*#batch 3"],
    c2w: Float[Tensor, "*#batch 4 4"],
    intrinsics: Float[Tensor, "*#batch 3 3"],
    near: Float[Tensor, "*#batch"],
    far: Float[Tensor, "*#batch"],
) -> tuple[Float[Tensor, "*batch 2"], Float[Tensor, "*batch 2"], Bool[Tensor, " *batch"]]:
    """Visible part of the world-frame ray segments [near, far] in the image of the camera (c2w, K).

    Returns its image end points (near end first) and whether any of it is visible. An end outside the
    image is replaced by the border crossing nearest (near end) or farthest (far end) along the ray.
    """
    world_to_camera = torch.linalg.inv(c2w)
    camera_origins = _transform(world_to_camera, _homogeneous(origins, 1.0))[..., :3]
    camera_directions = _transform(world_to_camera, _homogeneous(directions, 0.0))[..., :3]

    borders = _border_crossings(intrinsics, camera_origins, camera_directions)
    first_border, last_border = _pick_crossing(borders, nearest=True), _pick_crossing(borders, nearest=False)
    at_near = _plane_crossing(camera_origins, camera_directions, near, intrinsics)
    at_far = _plane_crossing(camera_origins, camera_directions, far, intrinsics)

    start = torch.where(at_near.valid[..., None], at_near.xy, first_border.xy)
    end = torch.where(at_far.valid[..., None], at_far.xy, last_border.xy)
    visible = (at_near.valid | first_border.valid) & (at_far.valid | last_border.valid)
    return start, end, visible


def ray_crossing_depth(
    origins: Float[Tensor, "*#batch 3"],
    directions: Float[Tensor, "*#batch 3"],
    other_origins: Float[Tensor, "*#batch 3"],
    other_directions: Float[Tensor, "*#batch 3"],
) -> Float[Tensor, " *batch"]:
    """Distance from ``origins`` to the least-squares crossing of each ray with the other ray (unit
    directions). Near-parallel pairs have no crossing: their point lies at 1e10 in every coordinate.

    The crossing solves sum_i (d_i d_i^T - I) p = sum_i (d_i d_i^T - I) o_i with the same least-squares
    solver as the original (torch.linalg.lstsq), so the depths agree to rounding.
    """
    shape = torch.broadcast_shapes(
        origins.shape, directions.shape, other_origins.shape, other_directions.shape
    )
    rays = [t.expand(shape) for t in (origins, directions, other_origins, other_directions)]
    origins, directions, other_origins, other_directions = rays
    parallel = (directions * other_directions).sum(dim=-1) > 1 - PARALLEL_EPS
    eye = torch.eye(3, dtype=origins.dtype, device=origins.device)
    lhs, rhs = 0, 0
    for o, d in ((origins, directions), (other_origins, other_directions)):
        projector = d[..., :, None] * d[..., None, :] - eye
        lhs = lhs + projector
        rhs = rhs + _transform(projector, o)
    # Parallel pairs solve a harmless identity system instead (CUDA's solver assumes full rank).
    lhs = torch.where(parallel[..., None, None], eye, lhs)
    crossing = torch.linalg.lstsq(lhs.reshape(-1, 3, 3), rhs.reshape(-1, 3)).solution.reshape(shape)
    crossing = crossing.masked_fill(parallel[..., None], PARALLEL_DEPTH)
    return (crossing - origins).norm(dim=-1)


@dataclass
class EpipolarSamples:
    """Per ray view v, other-view slot o, ray r (pixel, row-major) and sample s along the projected ray."""

    features: Float[Tensor, "batch view other ray sample channel"]
    depths: Float[Tensor, "batch view other ray sample"]
    """Distance along v's ray of each sample (unclamped; 1e10-ish for parallel rays)."""
    visible: Bool[Tensor, "batch view other ray"]


def sample_epipolar_lines(
    features: Float[Tensor, "batch view channel height width"],
    c2w: Float[Tensor, "batch view 4 4"],
    intrinsics: Float[Tensor, "batch view 3 3"],
    near: Float[Tensor, "batch view"],
    far: Float[Tensor, "batch view"],
    num_samples: int,
) -> EpipolarSamples:
    """For every pixel of every view: ``num_samples`` features of each other view along its epipolar line."""
    b, v, channels, h, w = features.shape
    if v < 2:
        raise ValueError("epipolar sampling needs at least two views")
    device = features.device
    xy = pixel_centres(h, w, device).to(features.dtype).reshape(h * w, 2)
    origins, directions = world_rays(xy, c2w[:, :, None], intrinsics[:, :, None])  # [b, v, r, 3]

    other_c2w = gather_other_views(c2w)[:, :, :, None]  # [b, v, o, 1, 4, 4]
    other_k = gather_other_views(intrinsics)[:, :, :, None]
    start, end, visible = project_segments(
        origins[:, :, None],
        directions[:, :, None],
        other_c2w,
        other_k,
        near[:, :, None, None],
        far[:, :, None, None],
    )
    keep = visible[..., None].to(start.dtype)
    start = start.nan_to_num(posinf=0.0, neginf=0.0) * keep
    end = end.nan_to_num(posinf=0.0, neginf=0.0) * keep
    fractions = ((torch.arange(num_samples, device=device, dtype=start.dtype) + 0.5) / num_samples)[:, None]
    xy_samples = start[..., None, :] + fractions * (end - start)[..., None, :]  # [b, v, o, r, s, 2]

    # Bilinear lookups, one grid per sampled view: regroup the pairs by sampled view and back.
    pair_view, pair_slot = pair_transpose(v, device)
    batch_index = torch.arange(b, device=device)[:, None, None]
    by_sampled_view = xy_samples[batch_index, pair_view, pair_slot]  # [b, u, j, r, s, 2]
    looked_up = F.grid_sample(
        features.flatten(0, 1),
        (2 * by_sampled_view - 1).flatten(2, 4).flatten(0, 1)[:, :, None],
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )  # [b u, c, j r s, 1]
    looked_up = looked_up[..., 0].unflatten(0, (b, v)).unflatten(-1, (v - 1, h * w, num_samples))
    looked_up = looked_up.permute(0, 1, 3, 4, 5, 2)  # [b, u, j, r, s, c]
    sampled = looked_up[batch_index, pair_view, pair_slot] * keep[..., None]

    sample_origins, sample_directions = world_rays(
        xy_samples, other_c2w[:, :, :, :, None], other_k[..., None, :, :]
    )
    depths = ray_crossing_depth(
        origins[:, :, None, :, None], directions[:, :, None, :, None], sample_origins, sample_directions
    )
    return EpipolarSamples(features=sampled, depths=depths, visible=visible)
