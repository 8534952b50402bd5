"""The MVSplat encoder (small preset, CPU, fp32): where ZPressor sits, what the anchors' stages see, the
Gaussians' layout, streaming, the memory model and the errors a user can meet. Numerical parity with the
original is in test_mvsplat_parity.py."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from zpressor_ns.blocks.position import add_window_position
from zpressor_ns.blocks.unet import CrossViewAttention
from zpressor_ns.encoders import build_encoder
from zpressor_ns.encoders.memory import BYTES_PER_GB
from zpressor_ns.encoders.mvsplat.encoder import MVSplatEncoder
from zpressor_ns.encoders.mvsplat.memory_budget import anchor_phase_values, cnn_chunk_values
from zpressor_ns.live_tensors import LiveTensorBytes

H, W = 32, 48  # the smallest size with H != W that every stage of the small preset accepts


def scene(views: int, seed: int, batch: int = 1, height: int = H, width: int = W):
    """Cameras along x with jitter (distinct centres), looking down +z, random images."""
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(batch, views, 1, 1)
    c2w[..., 0, 3] = torch.linspace(0.0, 1.5, views) + 0.3 * torch.rand(batch, views, generator=generator)
    c2w[..., 1, 3] = 0.2 * torch.rand(batch, views, generator=generator)
    k = torch.tensor([[0.9, 0.0, 0.5], [0.0, 1.2, 0.5], [0.0, 0.0, 1.0]]).repeat(batch, views, 1, 1)
    images = torch.rand(batch, views, 3, height, width, generator=generator)
    return images, c2w, k, torch.ones(batch, views), torch.full((batch, views), 100.0)


def randomised(encoder: MVSplatEncoder, seed: int = 0) -> MVSplatEncoder:
    """Perturb every parameter so that the zero-initialised U-Net norms let every branch contribute."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(0.05 * torch.randn(parameter.shape, generator=generator))
    return encoder.eval()


def variant(encoder: MVSplatEncoder, **options) -> MVSplatEncoder:
    """The same weights under other options (configs are frozen)."""
    other = MVSplatEncoder(replace(encoder.config, **options))
    other.load_state_dict(encoder.state_dict())
    return other.train(encoder.training)


@pytest.fixture(scope="module")
def zp_encoder() -> MVSplatEncoder:
    torch.manual_seed(0)
    return randomised(build_encoder("zpressor-mvsplat", "small"))


@pytest.fixture(scope="module")
def base_encoder() -> MVSplatEncoder:
    torch.manual_seed(1)
    return randomised(build_encoder("mvsplat", "small"), seed=1)


def test_gaussians_are_anchor_major_on_each_anchors_pixel_rays(zp_encoder) -> None:
    images, c2w, k, near, far = scene(6, seed=0)
    with torch.no_grad():
        out = zp_encoder(images, c2w, k, near, far, num_anchors=3)
    assert out.anchors.shape == (1, 3) and out.clusters.shape == (1, 6)
    assert out.means.shape == (1, 3 * H * W, 3) and out.harmonics.shape == (1, 3 * H * W, 3, 25)
    assert out.depths.shape == (1, 3, H, W) and out.latent is None and out.intermediate is None
    assert bool(((out.depths >= 1.0 - 1e-5) & (out.depths <= 100.0 + 1e-3)).all())
    assert bool(((out.opacities > 0) & (out.opacities < 1)).all())
    means = out.means.view(3, H * W, 3)
    for slot, view in enumerate(out.anchors[0].tolist()):
        # Block ``slot`` holds anchor ``view``'s pixels, each at its depth along the normalised ray.
        distance = (means[slot] - c2w[0, view, :3, 3]).norm(dim=-1)
        torch.testing.assert_close(distance, out.depths[0, slot].flatten(), rtol=1e-5, atol=1e-5)


def test_zpressor_fuses_the_raw_quarter_features_and_replaces_them_downstream(zp_encoder) -> None:
    """ZPressor reads the CNN's 1/4 maps without position code; its output is what the transformer (after
    the window code), the feature upsampler and everything after see; only anchor images are used."""
    images, c2w, k, near, far = scene(6, seed=1)
    recorded: dict = {}
    hooks = [
        zp_encoder.zpressor.register_forward_hook(
            lambda m, args, out: recorded.update(zp_in=args[0], zp=out)
        ),
        zp_encoder.transformer.register_forward_hook(lambda m, args, out: recorded.update(mv_in=args[0])),
        zp_encoder.feature_upsampler.register_forward_hook(
            lambda m, args, out: recorded.update(up_in=args[0])
        ),
        zp_encoder.depth_refiner.register_forward_hook(
            lambda m, args, out: recorded.update(refine_in=args[0])
        ),
    ]
    try:
        with torch.no_grad():
            out = zp_encoder(images, c2w, k, near, far, num_anchors=3)
            normalised = (images - zp_encoder.image_mean) / zp_encoder.image_std
            quarter = zp_encoder.cnn(normalised.flatten(0, 1))[2].unflatten(0, (1, 6))
    finally:
        for hook in hooks:
            hook.remove()
    c = zp_encoder.config.feature_channels
    fused = recorded["zp"].features  # [1, 3, c, H/4, W/4]
    torch.testing.assert_close(recorded["zp_in"], quarter, rtol=0, atol=1e-6)
    assert quarter.shape[-2:] == (H // 4, W // 4)
    torch.testing.assert_close(recorded["mv_in"], add_window_position(fused, 2))
    torch.testing.assert_close(recorded["up_in"][:, c:], fused.flatten(0, 1))
    anchor_images = images[0, out.anchors[0]]
    torch.testing.assert_close(recorded["refine_in"][:, :3], anchor_images)
    # The supports changed the anchors' features (the fusion is not a no-op).
    anchors_raw = quarter[0, out.anchors[0]]
    assert not torch.allclose(fused[0], anchors_raw, atol=1e-3)


def test_baseline_keeps_every_view(base_encoder) -> None:
    images, c2w, k, near, far = scene(4, seed=2)
    with torch.no_grad():
        out = base_encoder(images, c2w, k, near, far)
    assert out.anchors is None and out.clusters is None
    assert out.means.shape == (1, 4 * H * W, 3)
    with pytest.raises(ValueError, match="only applies to encoders with ZPressor"):
        base_encoder(images, c2w, k, near, far, num_anchors=2)


@pytest.mark.parametrize("method", ["zpressor-mvsplat", "mvsplat"])
def test_every_chunk_size_gives_the_same_gaussians(method, zp_encoder, base_encoder) -> None:
    encoder = zp_encoder if method == "zpressor-mvsplat" else base_encoder
    views = 7 if encoder.zpressor is not None else 4
    inputs = scene(views, seed=3, batch=2)  # two layouts: the anchors differ between batch elements
    with torch.no_grad():
        expected = variant(encoder, view_chunk=views)(*inputs)
        for chunk in (1, 3):
            out = variant(encoder, view_chunk=chunk)(*inputs)
            for name in ("means", "covariances", "harmonics", "opacities", "depths"):
                reference = getattr(expected, name)
                torch.testing.assert_close(
                    getattr(out, name), reference, rtol=0, atol=1e-5 * reference.abs().max().item()
                )
    if encoder.zpressor is not None:
        assert not torch.equal(expected.anchors[0], expected.anchors[1])


def test_memory_model_matches_the_live_tensors_of_the_anchor_stages(zp_encoder) -> None:
    # With as many anchors as views nothing is a support: the peak is the anchor stages'.
    k, height, width = 3, 64, 128
    inputs = scene(k, seed=6, height=height, width=width)
    modelled = k * height * width * anchor_phase_values(zp_encoder.config, k) * 4
    # The model counts the CUDA path, where the heads' GELU writes its own map; on CPU oneDNN fuses it into
    # the convolution (one hidden map fewer), which the model then over-counts, never under-counts.
    for fused in (False, True):
        tracker = LiveTensorBytes()
        with torch.inference_mode(), torch.backends.mkldnn.flags(enabled=fused), tracker:
            zp_encoder(*inputs, num_anchors=k)
        if fused:
            assert tracker.peak <= modelled
        else:
            assert 0.9 * tracker.peak <= modelled <= 1.1 * tracker.peak


def test_memory_model_counts_the_cnn_working_set(zp_encoder) -> None:
    images = torch.rand(1, 4, 3, 64, 128)
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        zp_encoder._view_features(images)
    modelled = 4 * 64 * 128 * cnn_chunk_values(zp_encoder.config) * 4
    assert 0.9 * tracker.peak <= modelled <= 1.2 * tracker.peak


def test_auto_anchors_follow_the_budget(zp_encoder) -> None:
    views = 6
    inputs = scene(views, seed=7)
    budget = zp_encoder.estimate_memory(1, views, H, W, 4).peak / BYTES_PER_GB
    with torch.no_grad():
        out = variant(zp_encoder, memory_budget_gb=budget)(*inputs, num_anchors="auto")
    assert out.anchors.shape == (1, 4)
    paper = build_encoder("zpressor-mvsplat", memory_budget_gb=6.0)
    chosen = [paper.resolve_num_anchors("auto", 1, 100, size, size) for size in (128, 256, 512)]
    assert chosen == sorted(chosen, reverse=True) and chosen[-1] >= 2


def test_inputs_the_encoder_cannot_take_are_refused(zp_encoder, base_encoder) -> None:
    images, c2w, k, near, far = scene(4, seed=8)
    with pytest.raises(ValueError, match="exceeds the number of context views"):
        zp_encoder(images, c2w, k, near, far, num_anchors=5)
    with pytest.raises(ValueError, match="needs at least 2 context views"):
        base_encoder(images[:, :1], c2w[:, :1], k[:, :1], near[:, :1], far[:, :1])
    images, c2w, k, near, far = scene(4, seed=8, height=40, width=48)
    with pytest.raises(ValueError, match=r"not a multiple of 16.*\(32, 48\)"):
        zp_encoder(images, c2w, k, near, far)


def test_unet_groups_follow_the_originals_fixed_frame_count(base_encoder) -> None:
    """unet_group_size=F: with V views, view v attends with v + V/F, v + 2V/F, ... (the original's
    (view, batch) layout cut into rows of F), each group on its own; outputs come back in view order."""
    encoder = variant(base_encoder, unet_group_size=2)
    with torch.no_grad():  # attention that weighs: its closing norm at 1, sharper scores
        for block in encoder.depth_refiner.modules():
            if isinstance(block, CrossViewAttention):
                block.norm.weight.fill_(1.0)
                block.qkv.weight.mul_(8.0)
    x = torch.randn(2 * 6, 3 + 16 + 2, H, W)  # two scenes of six views, the depth refiner's input
    with torch.no_grad():
        grouped = encoder._across_views(encoder.depth_refiner, x, 2, 6).unflatten(0, (2, 6))
        scenes = x.unflatten(0, (2, 6))
        for scene_index in range(2):
            for views in ([0, 3], [1, 4], [2, 5]):
                alone = encoder.depth_refiner(scenes[scene_index, views], 2)
                torch.testing.assert_close(grouped[scene_index, views], alone, rtol=0, atol=1e-5)
        joint = encoder.depth_refiner(x, 6).unflatten(0, (2, 6))
    assert not torch.allclose(grouped, joint, atol=1e-3)  # the randomised attention mixes views
    images, c2w, k, near, far = scene(5, seed=9)
    with pytest.raises(ValueError, match="unet_group_size=2 needs a multiple of 2 kept views, got 5"):
        encoder(images, c2w, k, near, far)
    with pytest.raises(ValueError, match="unet_group_size must be at least 1"):
        build_encoder("mvsplat", "small", unet_group_size=0)
