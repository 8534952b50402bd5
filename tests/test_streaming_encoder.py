"""Streaming the views through the encoder: the same numbers for every chunk size, nothing of the supports'
per-view activations kept, and the anchor count from a memory budget (small preset, CPU, fp32)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from zpressor_ns.blocks.position import add_window_position
from zpressor_ns.encoders import build_encoder, encoder_config
from zpressor_ns.encoders.depthsplat.encoder import DepthSplatEncoder
from zpressor_ns.encoders.depthsplat.memory_budget import (
    anchor_phase_values,
    anchors_for_budget,
    cnn_chunk_values,
    estimate_memory,
)
from zpressor_ns.encoders.memory import BYTES_PER_GB
from zpressor_ns.live_tensors import LiveTensorBytes

H, W = 64, 64
OUTPUTS = ("means", "covariances", "harmonics", "opacities", "depths", "latent")


def scene(views: int, seed: int, batch: int = 1, height: int = H, width: int = W):
    """Cameras along x with jitter (distinct centres); each batch element its own layout and images."""
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(batch, views, 1, 1)
    c2w[..., 0, 3] = torch.linspace(0.0, 1.5, views) + 0.3 * torch.rand(batch, views, generator=generator)
    c2w[..., 1, 3] = 0.2 * torch.rand(batch, views, generator=generator)
    k = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]]).repeat(batch, views, 1, 1)
    images = torch.rand(batch, views, 3, height, width, generator=generator)
    return images, c2w, k, torch.ones(batch, views), torch.full((batch, views), 100.0)


def variant(encoder: DepthSplatEncoder, **options) -> DepthSplatEncoder:
    """The same weights and mode under other streaming options (a new encoder: configs are frozen)."""
    other = DepthSplatEncoder(replace(encoder.config, **options))
    other.load_state_dict(encoder.state_dict())
    return other.train(encoder.training)


def assert_outputs_close(out, reference, rel: float = 1e-5) -> None:
    for name in OUTPUTS:
        ours, expected = getattr(out, name), getattr(reference, name)
        scale = expected.abs().max().item()
        torch.testing.assert_close(ours, expected, rtol=0, atol=rel * scale, msg=name)


@pytest.fixture(scope="module")
def zp_encoder() -> DepthSplatEncoder:
    torch.manual_seed(0)
    encoder = build_encoder("zpressor-depthsplat", "small").eval()
    # A fresh DPT head outputs zero; make the refinement (and its gradients) part of the comparison.
    with torch.no_grad():
        encoder.dpt.scratch.output_conv[-1].bias.fill_(0.01)
    return encoder


@pytest.fixture(scope="module")
def base_encoder() -> DepthSplatEncoder:
    torch.manual_seed(1)
    return build_encoder("depthsplat", "small").eval()


# ---------------------------------------------------------------------------------------------------
# Same numbers for every chunk size


@pytest.mark.parametrize("method", ["zpressor-depthsplat", "depthsplat"])
def test_every_chunk_size_gives_the_same_gaussians(method, zp_encoder, base_encoder) -> None:
    encoder = zp_encoder if method == "zpressor-depthsplat" else base_encoder
    views = 7 if encoder.zpressor is not None else 4
    inputs = scene(views, seed=3, batch=2)  # two layouts: the anchors differ between batch elements
    recorded = {}
    reference = variant(encoder, view_chunk=views)
    watched = reference.zpressor if reference.zpressor is not None else reference.transformer
    watched.register_forward_hook(lambda module, args, out: recorded.update(streamed=args[0]))
    with torch.no_grad():
        expected = reference(*inputs)
        # The streamed per-view stage against all views in one batched pass (input order).
        images = inputs[0]
        normalised = (images - reference.image_mean) / reference.image_std
        eighth = reference.cnn(normalised.flatten(0, 1))[2].unflatten(0, images.shape[:2])
        positioned = add_window_position(eighth, reference.config.attention_splits)
        outputs = {chunk: variant(encoder, view_chunk=chunk)(*inputs) for chunk in (1, 3)}
    # ZPressor's input (every view), or the transformer's without it.
    torch.testing.assert_close(recorded["streamed"], positioned, rtol=0, atol=1e-5)
    if reference.zpressor is not None:
        assert not torch.equal(expected.anchors[0], expected.anchors[1])
    for out in outputs.values():
        if reference.zpressor is not None:
            assert torch.equal(out.anchors, expected.anchors)
            assert torch.equal(out.clusters, expected.clusters)
        assert_outputs_close(out, expected)


def _loss_and_gradients(encoder: DepthSplatEncoder, inputs) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    encoder.zero_grad()
    out = encoder(*inputs)
    weights = torch.Generator().manual_seed(0)
    loss = sum(
        (t * torch.rand(t.shape, generator=weights)).mean()
        for t in (out.means, out.harmonics, out.opacities, out.latent, out.intermediate.means)
    )
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in encoder.named_parameters()}


def _gradient_scales(gradients: dict[str, torch.Tensor]) -> dict[str, float]:
    """Each gradient's own size, floored at 1e-3 of its module's largest: a conv bias right before an
    instance norm has an exactly zero gradient, so only rounding noise would be compared there."""
    module_max: dict[str, float] = {}
    for name, grad in gradients.items():
        module = name.split(".")[0]
        module_max[module] = max(module_max.get(module, 0.0), grad.abs().max().item())
    return {
        name: max(grad.abs().max().item(), 1e-3 * module_max[name.split(".")[0]])
        for name, grad in gradients.items()
    }


@pytest.mark.parametrize("method", ["zpressor-depthsplat", "depthsplat"])
def test_training_gives_the_same_gradients_for_every_chunk_size(method, zp_encoder, base_encoder) -> None:
    encoder = (zp_encoder if method == "zpressor-depthsplat" else base_encoder).train()
    try:
        views = 5 if encoder.zpressor is not None else 3
        images, c2w, k, near, _ = scene(views, seed=4)
        inputs = (images, c2w, k, near, 10 * near)  # a short depth range keeps 1/depth well conditioned
        loss, expected = _loss_and_gradients(variant(encoder, view_chunk=views), inputs)
        scales = _gradient_scales(expected)
        for option in ({"view_chunk": 1}, {"view_chunk": 2, "checkpoint_view_chunks": True}):
            other_loss, gradients = _loss_and_gradients(variant(encoder, **option), inputs)
            torch.testing.assert_close(other_loss, loss, rtol=1e-5, atol=0)
            for name, grad in gradients.items():
                # Backward through twenty-odd layers carries the fp32 rounding of different convolution
                # batch sizes further than the forward: up to ~1.1e-4 of a gradient's size (the transformer's
                # attention projections, whose gradients are small), hence 2e-4; a wrong path is off by O(1).
                torch.testing.assert_close(grad, expected[name], rtol=0, atol=2e-4 * scales[name], msg=name)
        # Supports' CNN features are trained through ZPressor (and every view's without it).
        assert expected["cnn.conv1.weight"].abs().sum() > 0
    finally:
        encoder.eval()


# ---------------------------------------------------------------------------------------------------
# Memory: nothing of a support outlives its chunk but its position-coded 1/8 map


def _view_phase(encoder: DepthSplatEncoder, views: int, height: int, width: int) -> dict[str, int]:
    """Live bytes when ZPressor starts and when the transformer (the first anchor stage) starts, and the
    peak up to ZPressor (inference)."""
    inputs = scene(views, seed=5, height=height, width=width)
    tracker, recorded = LiveTensorBytes(), {}

    def at_zpressor(module, args) -> None:
        recorded.update(entry=tracker.live, peak=tracker.peak)

    def at_transformer(module, args) -> None:
        recorded.update(anchor_stages=tracker.live)

    hooks = (
        encoder.zpressor.register_forward_pre_hook(at_zpressor),
        encoder.transformer.register_forward_pre_hook(at_transformer),
    )
    try:
        with torch.inference_mode(), tracker:
            encoder(*inputs)
    finally:
        for hook in hooks:
            hook.remove()
    return recorded


def test_only_anchor_features_and_support_maps_are_alive_when_zpressor_runs(zp_encoder) -> None:
    encoder = variant(zp_encoder, view_chunk=2)
    height, width, views = 32, 64, 18
    cfg = encoder.config
    k = cfg.num_anchors
    pixels = height * width
    c1, c2, c = cfg.cnn_channels[0], cfg.cnn_channels[1], cfg.feature_channels
    # Anchors: 1/2, 1/4, 1/8 maps and the position-coded 1/8 map; every view: its position-coded 1/8 map.
    anchor_bytes = k * 4 * (c1 * pixels // 4 + c2 * pixels // 16 + 2 * c * pixels // 64)
    map_bytes = 4 * c * pixels // 64
    small_tensors = 16 * 1024  # cameras, indices, clusters
    assert small_tensors < c1 * pixels // 4 * 4  # less than one support's half-resolution CNN map
    recorded = _view_phase(encoder, views, height, width)
    assert recorded["entry"] <= anchor_bytes + views * map_bytes + small_tensors
    # By the anchor stages the supports' maps are gone: the anchors' features, fused maps and images
    # (gathered, and normalised for the ViT) remain.
    anchor_images = k * 2 * 3 * pixels * 4
    assert recorded["anchor_stages"] <= anchor_bytes + k * map_bytes + anchor_images + small_tensors


def test_view_phase_memory_grows_by_a_small_map_per_view_not_by_cnn_activations(zp_encoder) -> None:
    encoder = variant(zp_encoder, view_chunk=2)
    height, width = 32, 64
    few, many = (_view_phase(encoder, v, height, width)["peak"] for v in (6, 18))
    per_view = (many - few) / 12
    # The CNN alone holds five half-resolution maps of the stem's width per view in flight.
    cnn_working_set = 5 * encoder.config.cnn_channels[0] * height * width // 4 * 4
    assert per_view < cnn_working_set / 4


# ---------------------------------------------------------------------------------------------------
# Anchors from a memory budget


PAPER = encoder_config("zpressor-depthsplat")
PAPER_WEIGHTS = 0.47e9  # about 116 M fp32 parameters


def test_anchor_count_grows_with_the_budget_and_stays_between_two_and_the_views() -> None:
    chosen = [
        anchors_for_budget(PAPER, 36, 256, 448, budget, weight_bytes=PAPER_WEIGHTS)
        for budget in (2.0, 2.5, 3.0, 4.0, 6.0, 10.0, 40.0)
    ]
    assert chosen == sorted(chosen)
    assert chosen[0] >= 2 and chosen[-1] == 36  # a large budget keeps every view, never more
    assert len(set(chosen)) > 2


def test_anchor_count_shrinks_with_resolution_and_batch() -> None:
    sizes = [(128, 224), (256, 448), (288, 512), (512, 896)]
    chosen = [anchors_for_budget(PAPER, 100, h, w, 8.0, weight_bytes=PAPER_WEIGHTS) for h, w in sizes]
    assert chosen == sorted(chosen, reverse=True) and chosen[0] > chosen[-1]
    alone = anchors_for_budget(PAPER, 100, 256, 448, 8.0, weight_bytes=PAPER_WEIGHTS)
    assert anchors_for_budget(PAPER, 100, 256, 448, 8.0, weight_bytes=PAPER_WEIGHTS, batch=2) < alone


def test_chosen_anchor_count_is_the_largest_that_fits() -> None:
    budget = 3.5
    k = anchors_for_budget(PAPER, 64, 256, 448, budget, weight_bytes=PAPER_WEIGHTS)

    def peak(anchors: int) -> float:
        return estimate_memory(PAPER, 64, anchors, 256, 448, weight_bytes=PAPER_WEIGHTS).peak

    assert 2 <= k < 64
    assert peak(k) <= budget * BYTES_PER_GB < peak(k + 1)


def test_budget_errors_are_clear() -> None:
    with pytest.raises(ValueError, match="even 2 anchors need about"):
        anchors_for_budget(PAPER, 12, 256, 448, 0.5, weight_bytes=PAPER_WEIGHTS)
    with pytest.raises(ValueError, match="only the ZPressor encoder has anchors"):
        anchors_for_budget(encoder_config("depthsplat"), 12, 256, 448, 8.0, weight_bytes=PAPER_WEIGHTS)
    with pytest.raises(ValueError, match="view_chunk must be at least 1"):
        replace(PAPER, view_chunk=0)
    with pytest.raises(ValueError, match="memory_budget_gb must be positive"):
        replace(PAPER, memory_budget_gb=0.0)


def test_memory_model_matches_the_live_tensors_of_the_anchor_stages(zp_encoder) -> None:
    # With as many anchors as views nothing is a support: the peak is the anchor stages'.
    k, height, width = 3, 64, 128
    inputs = scene(k, seed=6, height=height, width=width)
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        zp_encoder(*inputs, num_anchors=k)
    modelled = k * height * width * anchor_phase_values(zp_encoder.config) * 4
    assert 0.9 * tracker.peak <= modelled <= 1.1 * tracker.peak


def test_memory_model_counts_the_cnn_working_set(zp_encoder) -> None:
    images = torch.rand(4, 3, 64, 128)
    tracker = LiveTensorBytes()
    with torch.inference_mode(), tracker:
        normalised = (images - zp_encoder.image_mean) / zp_encoder.image_std
        zp_encoder.cnn(normalised)
    modelled = 4 * 64 * 128 * cnn_chunk_values(zp_encoder.config) * 4
    assert 0.9 * tracker.peak <= modelled <= 1.2 * tracker.peak


def test_auto_anchors_follow_the_budget(zp_encoder, base_encoder) -> None:
    views = 6
    inputs = scene(views, seed=7)
    weights = zp_encoder.weight_bytes()
    cfg = zp_encoder.config
    budget = estimate_memory(cfg, views, 4, H, W, weight_bytes=weights).peak / BYTES_PER_GB
    assert anchors_for_budget(cfg, views, H, W, budget, weight_bytes=weights) == 4
    with torch.no_grad():
        out = variant(zp_encoder, memory_budget_gb=budget)(*inputs, num_anchors="auto")
    assert out.anchors.shape == (1, 4)
    with pytest.raises(ValueError, match="set memory_budget_gb"):
        zp_encoder(*inputs, num_anchors="auto")
    with pytest.raises(ValueError, match="only applies to encoders with ZPressor"):
        base_encoder(*inputs, num_anchors="auto")


# ---------------------------------------------------------------------------------------------------
# ZPressor with a clustering chosen beforehand


def test_zpressor_reuses_a_clustering_chosen_from_the_cameras(zp_encoder) -> None:
    module = zp_encoder.zpressor
    _, c2w, _, _, _ = scene(8, seed=8, batch=2)
    features = torch.randn(2, 8, module.config.dim, 2, 4)
    clustering = module.cluster(c2w, 3)
    with torch.no_grad():
        given = module(features, c2w, 3, clustering=clustering)
        chosen = module(features, c2w, 3)
    assert torch.equal(given.anchors, chosen.anchors) and torch.equal(given.clusters, chosen.clusters)
    assert torch.equal(given.features, chosen.features)
    with pytest.raises(ValueError, match="clustering must be anchors"):
        module(features, c2w, 4, clustering=clustering)


def test_pose_free_clustering_runs_the_stage_on_feature_tokens(zp_encoder) -> None:
    """clustering='kmeans' (pose-free) clusters the views by their mean ZPressor input and fuses into the
    member closest to each centre; with the cameras' order scrambled the anchors follow the images."""
    from zpressor_ns.encoders import ZPressorOptions

    images, c2w, k, near, far = scene(6, seed=3)
    encoder = variant(zp_encoder, zpressor=ZPressorOptions(clustering="kmeans")).eval()
    with torch.no_grad():
        out = encoder(images, c2w, k, near, far, num_anchors=3)
        tokens = encoder._view_features(images)[-1].flatten(3).mean(-1)
        expected_anchors, expected_clusters = encoder.zpressor.cluster(None, 3, tokens=tokens)
        scrambled = encoder(images, c2w.flip(1), k, near, far, num_anchors=3)
    assert torch.equal(out.anchors, expected_anchors) and torch.equal(out.clusters, expected_clusters)
    assert torch.equal(scrambled.anchors, out.anchors)  # chosen from the images, not the poses
    assert out.means.shape == (1, 3 * H * W, 3) and torch.isfinite(out.means).all()
