"""The pixelSplat(+ZPressor) encoder: the original's parameter counts, its epipolar geometry, the output
contract, the random forward (seedable, never touching the global RNG) and the memory model (small preset,
CPU, fp32). Parity with the original code itself is in ``test_pixelsplat_parity.py``."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from zpressor_ns.encoders import build_encoder, encoder_config, import_official, required_multiple
from zpressor_ns.encoders.memory import BYTES_PER_GB
from zpressor_ns.encoders.pixelsplat.encoder import PixelSplatEncoder
from zpressor_ns.encoders.pixelsplat.epipolar import (
    other_views,
    pair_transpose,
    project_segments,
    ray_crossing_depth,
    sample_epipolar_lines,
)
from zpressor_ns.encoders.pixelsplat.epipolar_transformer import (
    depth_from_relative_disparity,
    relative_disparity,
)
from zpressor_ns.encoders.pixelsplat.memory_budget import backbone_values, estimate_memory, head_values

H, W = 16, 16  # ZPressor attends over every pixel: small images keep the CPU tests fast
K_NORM = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]])


def scene(views: int, seed: int = 0, batch: int = 1):
    """Forward-facing cameras along x with jitter (distinct centres), random images, near 0.5 / far 50."""
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(batch, views, 1, 1)
    c2w[..., 0, 3] = torch.linspace(0.0, 1.5, views) + 0.1 * torch.rand(batch, views, generator=generator)
    c2w[..., 1, 3] = 0.1 * torch.rand(batch, views, generator=generator)
    images = torch.rand(batch, views, 3, H, W, generator=generator)
    k = K_NORM.repeat(batch, views, 1, 1)
    return images, c2w, k, torch.full((batch, views), 0.5), torch.full((batch, views), 50.0)


@pytest.fixture(scope="module")
def zp_encoder() -> PixelSplatEncoder:
    torch.manual_seed(0)
    return build_encoder("zpressor-pixelsplat", "small").eval()


@pytest.fixture(scope="module")
def base_encoder() -> PixelSplatEncoder:
    torch.manual_seed(1)
    return build_encoder("pixelsplat", "small").eval()


def total_params(method: str, **overrides) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build_encoder(method, **overrides).parameters())


# ---------------------------------------------------------------------------------------------------
# The paper configuration


def test_paper_configuration_has_the_original_parameter_counts() -> None:
    # Measured on the original code (shared/parity/official_pixelsplat_harness.md).
    assert total_params("zpressor-pixelsplat") == 120_465_236  # K = 4 anchors
    assert total_params("pixelsplat", num_context_views=2) == 118_979_412  # no view embeddings
    assert total_params("pixelsplat") == 118_979_924  # the published baseline: 4 views
    assert total_params("pixelsplat", num_context_views=12) == 118_980_948
    # With ZPressor the embeddings follow the anchors, not the context views (as the original).
    assert total_params("zpressor-pixelsplat", num_context_views=12) == 120_465_236
    assert total_params("zpressor-pixelsplat", num_anchors=6) == 120_465_236 + 2 * 128
    with torch.device("meta"):
        encoder = build_encoder("zpressor-pixelsplat")
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in encoder.named_children()}
    assert counts["zpressor"] == 1_485_312
    assert counts["feature_projection"] == 65_664 and counts["image_skip"] == 18_944
    assert counts["gaussian_head"] == 10_836 and counts["depth_head"] == 8_256
    assert counts["epipolar"] == 6_638_848 + 4 * 128
    assert sum(p.numel() for p in encoder.backbone.vit.parameters()) == 85_807_872


def test_describe_reports_the_total(capsys) -> None:
    from zpressor_ns.cli import main

    assert main(["describe", "zpressor-pixelsplat", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 120_465_236
    assert main(["describe", "pixelsplat", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["total_params"] == 118_979_924


def test_image_sides_are_multiples_of_sixteen() -> None:
    assert required_multiple("zpressor-pixelsplat") == 16
    assert required_multiple("pixelsplat", "small") == 16
    with pytest.raises(ValueError, match="at least 2 context views"):
        encoder_config("pixelsplat", num_context_views=1)


# ---------------------------------------------------------------------------------------------------
# Epipolar geometry


def test_other_views_and_their_transpose() -> None:
    assert other_views(4).tolist() == [[1, 2, 3], [0, 2, 3], [0, 1, 3], [0, 1, 2]]
    view, slot = pair_transpose(4)
    # Entry (u, j) names the pair whose ray view is view[u, j] and whose j-th other view is u.
    others = other_views(4)
    assert torch.equal(others[view, slot], torch.arange(4)[:, None].expand(4, 3))
    # Applying the transpose twice is the identity.
    assert torch.equal(view[view, slot], torch.arange(4)[:, None].expand(4, 3))
    assert torch.equal(slot[view, slot], torch.arange(3)[None].expand(4, 3))


def test_ray_segment_projects_onto_the_epipolar_line() -> None:
    # Camera 1 sits 1 unit right of camera 0; the centre ray of camera 0 from depth 2 to 10 appears in
    # camera 1 at x = 0.5 - 0.9/z (normalised), on the centre row.
    origin = torch.zeros(3)
    direction = torch.tensor([0.0, 0.0, 1.0])
    c2w = torch.eye(4)
    c2w[0, 3] = 1.0
    start, end, visible = project_segments(
        origin, direction, c2w, K_NORM, torch.tensor(2.0), torch.tensor(10.0)
    )
    assert bool(visible)
    torch.testing.assert_close(start, torch.tensor([0.5 - 0.9 / 2, 0.5]))
    torch.testing.assert_close(end, torch.tensor([0.5 - 0.9 / 10, 0.5]))
    # From depth 0.5 the near end lies left of the image: the segment starts at the border x = 0.
    start, _, visible = project_segments(
        origin, direction, c2w, K_NORM, torch.tensor(0.5), torch.tensor(10.0)
    )
    assert bool(visible)
    torch.testing.assert_close(start, torch.tensor([0.0, 0.5]))
    # A ray pointing away from a camera that looks the other way is not visible.
    behind = torch.eye(4)
    behind[:3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0]))
    *_, visible = project_segments(origin, direction, behind, K_NORM, torch.tensor(2.0), torch.tensor(10.0))
    assert not bool(visible)


def test_crossing_depth_of_two_rays() -> None:
    origin = torch.zeros(3)
    direction = torch.tensor([0.0, 0.0, 1.0])
    other_origin = torch.tensor([1.0, 0.0, 0.0])
    to_point = torch.tensor([-1.0, 0.0, 4.0])
    depth = ray_crossing_depth(origin, direction, other_origin, to_point / to_point.norm())
    torch.testing.assert_close(depth, torch.tensor(4.0))
    # Parallel rays never cross: their depth is beyond any far plane.
    assert ray_crossing_depth(origin, direction, other_origin, direction) > 1e9


def test_epipolar_samples_read_the_other_view_along_the_line() -> None:
    # Features that encode each pixel's column: the samples of view 0's centre pixel in view 1 lie on
    # the epipolar line between the projections of near and far, so their columns fall from left to right.
    views, h, w = 2, 8, 8
    columns = (torch.arange(w, dtype=torch.float32) + 0.5) / w
    features = columns.expand(1, views, 1, h, w).clone()
    c2w = torch.eye(4).repeat(1, views, 1, 1)
    c2w[0, 1, 0, 3] = 0.2
    k = K_NORM.repeat(1, views, 1, 1)
    samples = sample_epipolar_lines(
        features, c2w, k, torch.full((1, views), 0.5), torch.full((1, views), 20.0), 8
    )
    assert samples.features.shape == (1, views, 1, h * w, 8, 1)
    centre = (h // 2) * w + w // 2
    values = samples.features[0, 0, 0, centre, :, 0]
    assert bool(samples.visible[0, 0, 0, centre])
    assert torch.all(values[1:] >= values[:-1] - 1e-6) and values[-1] > values[0]
    # Sample depths rise from near to far along the ray.
    depths = samples.depths[0, 0, 0, centre]
    assert torch.all(depths[1:] > depths[:-1]) and 0.5 <= depths[0] and depths[-1] <= 20.0 + 1e-3


def test_relative_disparity_round_trip() -> None:
    near, far = torch.tensor(0.5), torch.tensor(80.0)
    depth = torch.tensor([0.5, 1.0, 7.0, 80.0])
    disparity = relative_disparity(depth, near, far)
    torch.testing.assert_close(disparity[[0, -1]], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(depth_from_relative_disparity(disparity, near, far), depth)


# ---------------------------------------------------------------------------------------------------
# The forward


def test_output_contract_three_gaussians_per_pixel_in_anchor_order(zp_encoder) -> None:
    images, c2w, k, near, far = scene(6)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        out = zp_encoder(images, c2w, k, near, far, generator=generator)
    anchors = 3
    g = anchors * H * W * 3
    assert out.means.shape == (1, g, 3) and out.covariances.shape == (1, g, 3, 3)
    assert out.harmonics.shape == (1, g, 3, 25) and out.opacities.shape == (1, g)
    assert out.anchors.shape == (1, anchors) and out.clusters.shape == (1, 6)
    assert out.depths.shape == (1, anchors, H, W, 3)
    # Anchor-major, then pixel, then sample: each block of H*W*3 Gaussians lies on its anchor's rays.
    centres = c2w[0, out.anchors[0], :3, 3]
    means = out.means[0].view(anchors, H * W * 3, 3)
    distances = (means - centres[:, None]).norm(dim=-1).view(anchors, H, W, 3)
    torch.testing.assert_close(distances, out.depths[0], rtol=1e-4, atol=1e-4)
    assert bool((out.depths >= 0.5 - 1e-4).all() and (out.depths <= 50.0 + 1e-3).all())
    # Opacities are bucket probabilities / 3; covariances are symmetric positive definite.
    assert bool((out.opacities > 0).all() and (out.opacities <= 1 / 3).all())
    torch.testing.assert_close(out.covariances, out.covariances.transpose(-1, -2))
    assert bool((torch.linalg.eigvalsh(out.covariances) > 0).all())


def test_random_forward_is_seedable_and_leaves_the_global_rng_alone(zp_encoder) -> None:
    inputs = scene(6, seed=1)
    state = torch.get_rng_state()
    with torch.no_grad():
        first = zp_encoder(*inputs, generator=torch.Generator().manual_seed(5))
        again = zp_encoder(*inputs, generator=torch.Generator().manual_seed(5))
        other = zp_encoder(*inputs, generator=torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(first.means, again.means) and torch.equal(first.opacities, again.opacities)
    assert not torch.equal(first.depths, other.depths)
    # Without a generator the draws come from the global RNG, so seeding it repeats the forward.
    torch.manual_seed(3)
    with torch.no_grad():
        seeded = zp_encoder(*inputs)
    torch.manual_seed(3)
    with torch.no_grad():
        reseeded = zp_encoder(*inputs)
    assert torch.equal(seeded.means, reseeded.means)


def test_deterministic_forward_takes_the_most_likely_bucket(zp_encoder) -> None:
    images, c2w, k, near, far = scene(6, seed=2)
    with torch.no_grad():
        out = zp_encoder(
            images, c2w, k, near, far, deterministic=True, generator=torch.Generator().manual_seed(0)
        )
        sampled = zp_encoder(images, c2w, k, near, far, generator=torch.Generator().manual_seed(0))
    assert out.means.shape[1] == 3 * H * W and out.depths.shape == (1, 3, H, W, 1)
    # One Gaussian per pixel with the top bucket's probability, still divided by 3 (as the original);
    # a sampled bucket is never more likely than the top one.
    top = out.opacities.view(1, 3, H * W)
    assert bool((sampled.opacities.view(1, 3, H * W, 3) <= top[..., None] + 1e-7).all())
    assert bool((top <= 1 / 3).all())


def test_scenes_in_a_batch_do_not_interact(zp_encoder) -> None:
    batch = scene(6, seed=3, batch=2)
    with torch.no_grad():
        both = zp_encoder(*batch, deterministic=True, generator=torch.Generator().manual_seed(0))
        second = zp_encoder(
            *(x[1:] for x in batch), deterministic=True, generator=torch.Generator().manual_seed(0)
        )
    # The view-embedding shuffle is drawn once per call, so it is the same for both calls here.
    torch.testing.assert_close(both.means[1:], second.means, rtol=1e-5, atol=1e-5)
    assert torch.equal(both.anchors[1:], second.anchors)


def test_view_embeddings_serve_more_views_as_the_original_tiles_them(base_encoder) -> None:
    # A 3-view baseline evaluated on 5 views: slot r uses row r mod 3, exactly as loading the weights into
    # an encoder built for 5 views with the original's tiling (new row n = old row n mod old rows).
    inputs = scene(5, seed=4)
    tiled = build_encoder("pixelsplat", "small", num_context_views=5).eval()
    official = {f"encoder.{key}": value for key, value in _to_official(base_encoder).items()}
    tiled.load_state_dict(import_official(official, "pixelsplat", "small", num_context_views=5))
    rows = tiled.epipolar.view_embeddings.weight
    assert torch.equal(rows[3], rows[0]) and torch.equal(rows[4], rows[1])
    with torch.no_grad():
        ours = base_encoder(*inputs, deterministic=True, generator=torch.Generator().manual_seed(9))
        theirs = tiled(*inputs, deterministic=True, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(ours.means, theirs.means)
    # Two views need no embeddings; an encoder without them refuses more views with a clear message.
    two = build_encoder("pixelsplat", "small", num_context_views=2).eval()
    assert two.epipolar.view_embeddings is None
    with pytest.raises(ValueError, match="no view embeddings"):
        two(*scene(3))


def _to_official(encoder: PixelSplatEncoder) -> dict[str, torch.Tensor]:
    """This encoder's state dict under the original's names (the inverse of the key map)."""
    from zpressor_ns.encoders.pixelsplat.official_keys import module_prefixes

    pairs = module_prefixes(encoder.config)
    renamed = {}
    for key, value in encoder.state_dict().items():
        theirs = next(t + key[len(o) :] for t, o in pairs if key.startswith(o))
        renamed[theirs] = value
    return renamed


def test_gradients_reach_every_parameter_but_the_unused_slot_embedding() -> None:
    torch.manual_seed(2)
    encoder = build_encoder("zpressor-pixelsplat", "small").train()
    out = encoder(*scene(6, seed=5), generator=torch.Generator().manual_seed(0))
    (out.means.square().mean() + out.harmonics.square().mean() + out.opacities.mean()).backward()
    missing = [name for name, p in encoder.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # With K anchors only rows 0..K-2 of the view embeddings are ever used (as in the original).
    assert missing == [], missing
    assert encoder.epipolar.view_embeddings.weight.grad[-1].abs().sum() == 0


def test_bad_inputs_get_clear_errors(zp_encoder) -> None:
    images, c2w, k, near, far = scene(6)
    with pytest.raises(ValueError, match="not a multiple of 16"):
        zp_encoder(images[..., :8, :], c2w, k, near, far)
    with pytest.raises(ValueError, match="exceeds the number of context views"):
        zp_encoder(images, c2w, k, near, far, num_anchors=7)
    with pytest.raises(ValueError, match="at least 2 anchors"):
        zp_encoder(images, c2w, k, near, far, num_anchors=1)


# ---------------------------------------------------------------------------------------------------
# Memory


def test_memory_model_bounds_the_live_tensors(base_encoder) -> None:
    from zpressor_ns.live_tensors import LiveTensorBytes

    views = 3
    inputs = scene(views, seed=6)
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        base_encoder(*inputs)
    modelled = estimate_memory(base_encoder.config, views, views, H, W, weight_bytes=0)
    activations = max(modelled.view_phase, modelled.anchor_phase)
    assert tracker.peak <= activations + modelled.inputs <= 1.5 * tracker.peak
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        base_encoder._view_features(inputs[0])
    per_view = views * H * W * backbone_values(base_encoder.config) * 4
    assert 0.8 * tracker.peak <= per_view <= 1.5 * tracker.peak
    assert head_values(base_encoder.config) > 0


def test_auto_anchors_follow_the_budget(zp_encoder) -> None:
    views = 6
    inputs = scene(views, seed=7)
    budget = zp_encoder.estimate_peak_bytes(1, views, H, W, 4) / BYTES_PER_GB
    auto = PixelSplatEncoder(replace(zp_encoder.config, memory_budget_gb=budget)).eval()
    auto.load_state_dict(zp_encoder.state_dict())
    with torch.no_grad():
        out = auto(
            *inputs, num_anchors="auto", deterministic=True, generator=torch.Generator().manual_seed(0)
        )
    assert out.anchors.shape == (1, 4)
    # The paper model at 256x256: ZPressor at 12 views needs far less than the baseline at 12 views.
    with torch.device("meta"):
        paper_zp, paper_base = build_encoder("zpressor-pixelsplat"), build_encoder("pixelsplat")
    zp_peak = paper_zp.estimate_peak_bytes(1, 12, 256, 256, 4)
    assert zp_peak < paper_base.estimate_peak_bytes(1, 12, 256, 256, 12) / 2
    assert paper_zp.estimate_peak_bytes(1, 12, 256, 256, 5) > zp_peak


def test_core_import_does_not_need_nerfstudio() -> None:
    code = (
        "import sys; sys.modules['nerfstudio'] = None; "
        "from zpressor_ns.encoders import build_encoder; build_encoder('zpressor-pixelsplat', 'small')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert math.isfinite(total_params("pixelsplat", preset="small"))
