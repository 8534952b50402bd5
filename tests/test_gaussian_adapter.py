"""Gaussian adapter: the raw head channels become world-space Gaussians (DepthSplat's activation, and the
depth-scaled one of MVSplat and pixelSplat)."""

from __future__ import annotations

import math

import pytest
import torch

from zpressor_ns.gaussian_adapter import (
    SH_C0,
    covariance_from_scale_rotation,
    decode_depth_scaled_gaussians,
    decode_pixel_gaussians,
    num_depth_scaled_channels,
    num_gaussian_channels,
    sh_damping,
)
from zpressor_ns.sh_rotation import rotate_sh


def random_rotations(n: int, seed: int) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(n, 3, 3, generator=torch.Generator().manual_seed(seed)))
    return q * torch.linalg.det(q)[:, None, None]


def camera(rotation: torch.Tensor | None = None, centre=(0.0, 0.0, 0.0)) -> torch.Tensor:
    c2w = torch.eye(4)
    if rotation is not None:
        c2w[:3, :3] = rotation
    c2w[:3, 3] = torch.tensor(centre)
    return c2w


def normalised_k(fx=0.8, fy=1.1, cx=0.5, cy=0.5) -> torch.Tensor:
    return torch.tensor([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def decode(raw, images, c2w, k, **kwargs):
    return decode_pixel_gaussians(raw, images, c2w, k, **kwargs)


def test_layout_and_damping_match_depthsplat() -> None:
    assert num_gaussian_channels(4) == 85
    assert num_gaussian_channels(0) == 13
    damping = sh_damping(4)
    assert damping.shape == (25,)
    for degree in range(5):
        block = damping[degree**2 : (degree + 1) ** 2]
        expected = 1.0 if degree == 0 else 0.1 * 0.25**degree
        torch.testing.assert_close(block, torch.full_like(block, expected))


def test_zero_head_output_gives_initial_gaussians() -> None:
    h, w = 4, 6
    raw = torch.zeros(1, 1, 85, h, w)
    images = torch.rand(1, 1, 3, h, w)
    rotation = random_rotations(1, seed=2)[0].float()
    pixels = decode(raw, images, camera(rotation)[None, None], normalised_k()[None, None])
    gaussians = pixels.at_depths(torch.full((1, 1, h, w), 2.0))
    assert gaussians.means.shape == (1, h * w, 3)
    torch.testing.assert_close(gaussians.opacities, torch.full((1, h * w), 0.5))
    # Zero quaternion and zero scale logits: an isotropic Gaussian of std exp(-4), in any frame.
    eye = torch.eye(3).expand(1, h * w, 3, 3)
    torch.testing.assert_close(gaussians.covariances, eye * math.exp(-8), atol=1e-9, rtol=1e-5)
    # SH: only the DC term, which reproduces the pixel colour and is invariant under rotation.
    colour = gaussians.harmonics[..., 0] * SH_C0 + 0.5
    torch.testing.assert_close(
        colour, images.flatten(3).transpose(2, 3).reshape(1, h * w, 3), atol=1e-5, rtol=0
    )
    assert gaussians.harmonics[..., 1:].abs().max() < 1e-6


def test_means_lie_on_pixel_rays_at_the_predicted_distance() -> None:
    h, w = 5, 7
    generator = torch.Generator().manual_seed(0)
    raw = torch.randn(1, 2, 85, h, w, generator=generator)
    raw[:, :, 1:3] = 0.0  # no sub-pixel offset: rays through the pixel centres
    rotation = random_rotations(2, seed=7).float()
    c2w = torch.stack([camera(rotation[0], (1.0, 2.0, 3.0)), camera(rotation[1], (-1.0, 0.5, 0.0))])[None]
    k = torch.stack([normalised_k(), normalised_k(0.6, 0.9, 0.45, 0.55)])[None]
    depths = 1.0 + torch.rand(1, 2, h, w, generator=generator)
    means = decode(raw, torch.rand(1, 2, 3, h, w), c2w, k).at_depths(depths).means.reshape(2, h * w, 3)
    for view in range(2):
        local = (means[view] - c2w[0, view, :3, 3]) @ c2w[0, view, :3, :3]  # world -> camera
        # Depth is a distance along the normalised ray, not a z value.
        torch.testing.assert_close(local.norm(dim=-1), depths[0, view].flatten(), atol=1e-5, rtol=1e-5)
        projected = local @ k[0, view].T
        uv = projected[:, :2] / projected[:, 2:]
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        centres = torch.stack(((xs.flatten() + 0.5) / w, (ys.flatten() + 0.5) / h), dim=-1)
        torch.testing.assert_close(uv, centres, atol=1e-5, rtol=0)


def test_offsets_move_means_within_one_pixel() -> None:
    h, w = 2, 2
    raw = torch.zeros(1, 1, 85, h, w)
    raw[:, :, 1] = 50.0  # sigmoid -> 1: shift x by half a pixel
    raw[:, :, 2] = -50.0  # sigmoid -> 0: shift y by minus half a pixel
    means = decode(raw, torch.rand(1, 1, 3, h, w), camera()[None, None], normalised_k()[None, None])
    local = means.at_depths(torch.ones(1, 1, h, w)).means[0]
    uv = (local @ normalised_k().T)[:, :2] / (local @ normalised_k().T)[:, 2:]
    torch.testing.assert_close(uv[0], torch.tensor([1.0 / w, 0.0]), atol=1e-5, rtol=0)


def test_scale_is_capped_and_covariance_rotates_with_the_camera() -> None:
    raw = torch.zeros(1, 1, 85, 1, 1)
    raw[0, 0, 3:6, 0, 0] = torch.tensor([100.0, 4.0, 2.0])  # exp(96) -> cap 0.3, exp(0) = 1 -> cap, exp(-2)
    raw[0, 0, 6:10, 0, 0] = torch.tensor([0.3, -0.2, 0.5, 0.8])
    rotation = random_rotations(1, seed=9)[0].float()
    cov = decode(raw, torch.zeros(1, 1, 3, 1, 1), camera(rotation)[None, None], normalised_k()[None, None])
    cov = cov.covariances[0, 0, 0]
    eigen = torch.linalg.eigvalsh(cov)
    expected = torch.tensor([math.exp(-2) ** 2, 0.09, 0.09]).sort().values
    torch.testing.assert_close(eigen, expected, atol=1e-6, rtol=1e-5)
    local = covariance_from_scale_rotation(torch.tensor([0.3, 0.3, math.exp(-2)]), raw[0, 0, 6:10, 0, 0])
    torch.testing.assert_close(cov, rotation @ local @ rotation.T, atol=1e-7, rtol=1e-5)


def test_gaussians_are_ordered_view_major_then_row_major_pixels() -> None:
    h, w = 3, 4
    raw = torch.zeros(1, 2, 85, h, w)
    depths = torch.arange(2 * h * w, dtype=torch.float32).reshape(1, 2, h, w) + 1.0
    c2w = torch.stack([camera(), camera()])[None]
    k = normalised_k()[None, None].expand(1, 2, 3, 3)
    means = decode(raw, torch.rand(1, 2, 3, h, w), c2w, k).at_depths(depths).means
    torch.testing.assert_close(means.norm(dim=-1)[0], depths.flatten(), atol=1e-5, rtol=1e-6)


def test_wrong_channel_count_is_refused() -> None:
    with pytest.raises(ValueError, match="needs 85"):
        decode(
            torch.zeros(1, 1, 84, 2, 2),
            torch.zeros(1, 1, 3, 2, 2),
            camera()[None, None],
            normalised_k()[None, None],
        )


# ---------------------------------------------------------------------------------------------------
# The depth-scaled activation (MVSplat, pixelSplat): no opacity channel, scale proportional to depth


def decode_scaled(raw, depths, opacities, c2w, k, image_shape, **kwargs):
    return decode_depth_scaled_gaussians(raw, depths, opacities, c2w, k, image_shape, **kwargs)


def test_depth_scaled_layout_has_no_opacity_channel() -> None:
    assert num_depth_scaled_channels(4) == 84
    assert num_depth_scaled_channels(0) == 12


def test_depth_scaled_scale_is_a_tenth_of_the_pixel_footprint_times_depth() -> None:
    h, w, depth = 4, 6, 2.5
    fx, fy = 0.8, 1.1
    raw = torch.zeros(1, 1, h * w, 84)  # sigmoid(0) = 0.5: scale factor 0.5 + 14.5 / 2
    rotation = random_rotations(1, seed=4)[0].float()
    out = decode_scaled(
        raw,
        torch.full((1, 1, h * w, 1), depth),
        torch.full((1, 1, h * w, 1), 0.3),
        camera(rotation)[None, None],
        normalised_k(fx, fy)[None, None],
        (h, w),
    )
    scale = (0.5 + 14.5 * 0.5) * depth * 0.1 * (1 / (fx * w) + 1 / (fy * h))
    # A zero quaternion logit gives the identity: an isotropic Gaussian, the same in any frame.
    eye = torch.eye(3).expand(1, h * w, 3, 3)
    torch.testing.assert_close(out.covariances, eye * scale**2, atol=1e-5 * scale**2, rtol=1e-5)
    torch.testing.assert_close(out.opacities, torch.full((1, h * w), 0.3))
    # No colour initialisation of the DC term: zero SH channels stay zero.
    assert torch.equal(out.harmonics, torch.zeros(1, h * w, 3, 25))


def test_depth_scaled_scales_span_scale_min_to_scale_max() -> None:
    raw = torch.zeros(1, 1, 1, 84)
    raw[0, 0, 0, 2:5] = torch.tensor([-100.0, 100.0, 0.0])
    raw[0, 0, 0, 5:9] = torch.tensor([0.0, 0.0, 0.0, 1.0])  # identity rotation (xyzw)
    k = normalised_k(1.0, 1.0)[None, None]
    out = decode_scaled(raw, torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1), camera()[None, None], k, (1, 1))
    unit = 0.1 * (1.0 + 1.0)  # 1/(fx W) + 1/(fy H) at one pixel
    expected = torch.tensor([0.5, 15.0, 0.5 + 14.5 * 0.5]) * unit
    torch.testing.assert_close(out.covariances[0, 0].diagonal(), expected**2, atol=1e-7, rtol=1e-5)


def test_depth_scaled_samples_share_their_pixels_channels_in_view_pixel_sample_order() -> None:
    """pixelSplat draws several depths per pixel: each sample sits on the pixel's ray at its own depth,
    its covariance grows with depth squared, its SH and rotation are the pixel's."""
    h, w, samples = 3, 5, 3
    generator = torch.Generator().manual_seed(1)
    raw = torch.randn(1, 2, h * w, 84, generator=generator)
    depths = 1.0 + 4 * torch.rand(1, 2, h * w, samples, generator=generator)
    opacities = torch.rand(1, 2, h * w, samples, generator=generator)
    rotation = random_rotations(2, seed=3).float()
    c2w = torch.stack([camera(rotation[0], (1.0, 0.0, 2.0)), camera(rotation[1], (0.0, -1.0, 0.5))])[None]
    k = torch.stack([normalised_k(), normalised_k(0.7, 0.9)])[None]
    out = decode_scaled(raw, depths, opacities, c2w, k, (h, w))
    n = 2 * h * w * samples
    assert out.means.shape == (1, n, 3) and out.harmonics.shape == (1, n, 3, 25)
    means = out.means.view(2, h * w, samples, 3)
    covariances = out.covariances.view(2, h * w, samples, 3, 3)
    harmonics = out.harmonics.view(2, h * w, samples, 3, 25)
    torch.testing.assert_close(out.opacities.view(2, h * w, samples), opacities[0])
    for view in range(2):
        offsets = means[view] - c2w[0, view, :3, 3]
        torch.testing.assert_close(offsets.norm(dim=-1), depths[0, view], atol=1e-5, rtol=1e-5)
        directions = offsets / offsets.norm(dim=-1, keepdim=True)
        torch.testing.assert_close(directions[:, 1:], directions[:, :1].expand_as(directions[:, 1:]))
        ratio = (depths[0, view, :, 1:] / depths[0, view, :, :1]) ** 2
        torch.testing.assert_close(
            covariances[view, :, 1:], covariances[view, :, :1] * ratio[..., None, None], rtol=1e-4, atol=1e-7
        )
        assert torch.equal(harmonics[view, :, 1:], harmonics[view, :, :1].expand_as(harmonics[view, :, 1:]))
    # SH: damped per degree, then rotated into the world frame, as DepthSplat's (without the colour init).
    sh = raw[..., 9:].unflatten(-1, (3, 25)) * sh_damping(4)
    expected = rotate_sh(sh, c2w[:, :, None, None, :3, :3])
    torch.testing.assert_close(harmonics[:, :, 0], expected[0], atol=1e-5, rtol=1e-5)


def test_depth_scaled_decoding_refuses_mismatched_inputs(without_shape_checks) -> None:
    args = (camera()[None, None], normalised_k()[None, None], (2, 2))
    with without_shape_checks(), pytest.raises(ValueError, match="needs 84"):
        decode_scaled(torch.zeros(1, 1, 4, 85), torch.ones(1, 1, 4, 1), torch.ones(1, 1, 4, 1), *args)
    with without_shape_checks(), pytest.raises(ValueError, match="must be"):
        decode_scaled(torch.zeros(1, 1, 4, 84), torch.ones(1, 1, 4, 2), torch.ones(1, 1, 4, 1), *args)
