"""The plane-sweep cost volume against the direct recipe: warp each neighbour with ``grid_sample`` at every
candidate depth, correlate with the reference, average over neighbours."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from zpressor_ns.blocks import cost_volume
from zpressor_ns.blocks.cost_volume import inverse_depth_candidates, nearest_views, plane_sweep_cost_volume


def cameras(views: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras on a short wobbly path (c2w, OpenCV) and pixel intrinsics of an 8x12 feature map."""
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(2, views, 1, 1)
    angle = 0.1 * torch.randn(2, views, generator=generator)
    c2w[..., 0, 0], c2w[..., 0, 2] = angle.cos(), angle.sin()
    c2w[..., 2, 0], c2w[..., 2, 2] = -angle.sin(), angle.cos()
    c2w[..., :3, 3] = 0.1 * torch.randn(2, views, 3, generator=generator)
    K = torch.tensor([[10.0, 0.0, 5.5], [0.0, 10.0, 3.5], [0.0, 0.0, 1.0]]).expand(2, views, 3, 3)
    return c2w, K


def direct_cost_volume(features, K, c2w, neighbours, inverse_depths):
    b, v, c, h, w = features.shape
    d = inverse_depths.shape[-1]
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    pixels = torch.stack((xs, ys, torch.ones_like(xs))).reshape(3, -1)
    out = torch.zeros(b, v, d, h, w)
    for i in range(b):
        for j in range(v):
            for n in neighbours[i, j].tolist():
                pose = torch.linalg.inv(c2w[i, n]) @ c2w[i, j]
                rays = pose[:3, :3] @ torch.linalg.inv(K[i, j]) @ pixels  # [3, hw]
                points = rays[:, None] / inverse_depths[i, j][None, :, None] + pose[:3, 3, None, None]
                projected = K[i, j] @ points.reshape(3, -1)
                xy = projected[:2] / projected[2:].clamp(min=cost_volume.MIN_PROJECTED_DEPTH)
                grid = torch.stack((2 * xy[0] / (w - 1) - 1, 2 * xy[1] / (h - 1) - 1), -1).view(
                    1, d * h, w, 2
                )
                warped = F.grid_sample(features[i, n][None], grid, align_corners=True).view(c, d, h, w)
                out[i, j] += (features[i, j][:, None] * warped).sum(0) / math.sqrt(c)
            out[i, j] /= neighbours.shape[-1]
    return out


@pytest.mark.parametrize(
    ("strategy", "chunk_bytes"),
    [("correlate", cost_volume.CHUNK_BYTES), ("correlate", 60_000), ("correlate", 1), ("warp", 0)],
)
def test_matches_warping_every_candidate_with_grid_sample(monkeypatch, strategy, chunk_bytes):
    # Default: all views at once; 60 kB: one view and blocks of 29 of its 96 pixels; 1: one pixel at a time.
    monkeypatch.setattr(cost_volume, "CHUNK_BYTES", chunk_bytes)
    views, c, h, w = 4, 16, 8, 12
    features = torch.randn(2, views, c, h, w, generator=torch.Generator().manual_seed(0))
    c2w, K = cameras(views, seed=1)
    neighbours = nearest_views(c2w, 3)
    # Near candidates project far outside the neighbour: zero padding must match grid_sample's.
    inverse_depths = inverse_depth_candidates(torch.full((2, views), 0.2), torch.full((2, views), 20.0), 9)
    ours = plane_sweep_cost_volume(features, K, c2w, neighbours, inverse_depths, strategy)
    expected = direct_cost_volume(features, K, c2w, neighbours, inverse_depths)
    assert ours.shape == (2, views, 9, h, w)
    torch.testing.assert_close(ours, expected, atol=2e-5, rtol=1e-5)
    assert (expected == 0).any() and (expected != 0).float().mean() > 0.5  # both regimes are exercised


def test_gradients_reach_the_features():
    features = torch.randn(1, 3, 8, 4, 6, requires_grad=True)
    c2w, K = cameras(3, seed=2)
    inverse_depths = inverse_depth_candidates(torch.ones(2, 3), torch.full((2, 3), 10.0), 5)[:1]
    cost = plane_sweep_cost_volume(features, K[:1], c2w[:1], nearest_views(c2w[:1], 3), inverse_depths)
    (grad,) = torch.autograd.grad(cost.square().sum(), features)
    assert (grad.flatten(2).abs().sum(-1) > 0).all()


def test_auto_correlates_small_maps_on_cpu_and_warps_large_ones(monkeypatch, without_shape_checks):
    """Correlation is quadratic in the map's pixels: beyond 16 pixels per candidate the warp is taken."""
    taken = []

    def recorded(name):
        def compute(features, intrinsics, c2w, neighbours, inverse_depths):
            taken.append(name)
            return features.new_zeros(*features.shape[:2], inverse_depths.shape[-1], *features.shape[-2:])

        return compute

    for name in ("correlated_cost_volume", "warped_cost_volume"):
        monkeypatch.setattr(cost_volume, name, recorded(name))
    c2w, K = cameras(3, seed=3)
    neighbours = nearest_views(c2w, 2)
    inverse_depths = inverse_depth_candidates(torch.ones(2, 3), torch.full((2, 3), 10.0), 4)
    for h, w in ((8, 8), (8, 9)):  # 64 pixels = 16 x 4 candidates; 72 pixels
        plane_sweep_cost_volume(torch.zeros(2, 3, 2, h, w), K, c2w, neighbours, inverse_depths)
    assert taken == ["correlated_cost_volume", "warped_cost_volume"]
    with without_shape_checks(), pytest.raises(ValueError, match="strategy"):
        plane_sweep_cost_volume(torch.zeros(2, 3, 2, 8, 8), K, c2w, neighbours, inverse_depths, "fast")
