"""The DepthSplat(+ZPressor) encoder: paper parameter counts, output contract, and behaviour on CPU (small preset)."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import pytest
import torch

from zpressor_ns.encoders import build_encoder, encoder_config, required_multiple

H, W = 64, 64


def cameras(views: int, seed: int = 0):
    """A forward-facing rig along x with some jitter (distinct centres, no distance ties)."""
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(1, views, 1, 1)
    c2w[0, :, 0, 3] = torch.linspace(0.0, 1.5, views) + 0.05 * torch.rand(views, generator=generator)
    c2w[0, :, 1, 3] = 0.1 * torch.rand(views, generator=generator)
    k = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]]).repeat(1, views, 1, 1)
    images = torch.rand(1, views, 3, H, W, generator=generator)
    return images, c2w, k, torch.ones(1, views), torch.full((1, views), 100.0)


@pytest.fixture(scope="module")
def zp_encoder():
    torch.manual_seed(0)
    return build_encoder("zpressor-depthsplat", "small").eval()


@pytest.fixture(scope="module")
def base_encoder():
    torch.manual_seed(1)
    return build_encoder("depthsplat", "small").eval()


def test_paper_configuration_has_the_original_parameter_counts() -> None:
    # Totals and per-module counts of the original encoder (facts sheet, measured on the original code).
    expected_modules = {
        "vit": 86_579_712,
        "dpt": 7_965_561,
        "depth_regressor": 6_895_872,
        "depth_regressor_residual": 147_584,
        "transformer": 3_150_336,
        "gaussian_regressor": 5_680_576,
        "feature_upsampler": 2_147_328,
        "zpressor": 1_485_312,
        "cnn": 1_049_120,
        "depth_head": 590_208,
        "gaussian_head": 381_225,
    }
    for method, total in (("zpressor-depthsplat", 116_072_834), ("depthsplat", 114_587_522)):
        with torch.device("meta"):
            encoder = build_encoder(method)
        counts = {name: sum(p.numel() for p in m.parameters()) for name, m in encoder.named_children()}
        assert sum(p.numel() for p in encoder.parameters()) == total, method
        wanted = {
            k: v for k, v in expected_modules.items() if method.startswith("zpressor") or k != "zpressor"
        }
        assert {k: v for k, v in counts.items() if v} == wanted, method


def test_required_image_multiple() -> None:
    # Depth U-Net (3 levels) on the 1/8 grid -> 8 * 4; Gaussian U-Net (5 levels) at full res -> 16.
    assert required_multiple("zpressor-depthsplat", "paper") == 32
    assert required_multiple("zpressor-depthsplat", "small") == 32
    assert encoder_config("depthsplat").use_zpressor is False
    with pytest.raises(
        ValueError, match=r"unknown method 'gaussian-splatter'; choose one of \[.*'depthsplat'"
    ):
        build_encoder("gaussian-splatter")


def test_training_outputs_follow_the_contract(zp_encoder) -> None:
    images, c2w, k, near, far = cameras(5)
    encoder = copy.deepcopy(zp_encoder).train()
    # A fresh DPT head outputs zero (final depth = upsampled low-res depth); make it refine something.
    with torch.no_grad():
        encoder.dpt.scratch.output_conv[-1].bias.fill_(0.01)
    out = encoder(images, c2w, k, near, far, num_anchors=2)
    g = 2 * H * W
    assert out.means.shape == (1, g, 3) and out.covariances.shape == (1, g, 3, 3)
    assert out.harmonics.shape == (1, g, 3, 25) and out.opacities.shape == (1, g)
    assert out.anchors.shape == (1, 2) and len(set(out.anchors[0].tolist())) == 2
    assert out.clusters.shape == (1, 5)
    assert out.depths.shape == (1, 2, H, W)
    assert out.depths.min() >= 1.0 - 1e-4 and out.depths.max() <= 100.0 + 1e-2  # clamped to [near, far]
    assert out.latent.shape == (1, 2, 32, H, W)
    inter = out.intermediate
    assert inter is not None and inter.means.shape == out.means.shape
    # Same raw channels, different depth: only the means differ.
    assert torch.equal(inter.covariances, out.covariances) and torch.equal(inter.opacities, out.opacities)
    assert not torch.allclose(inter.means, out.means)
    assert torch.isfinite(out.means).all() and torch.isfinite(out.harmonics).all()


def test_eval_mode_has_no_intermediate_and_num_anchors_defaults_to_config(zp_encoder) -> None:
    images, c2w, k, near, far = cameras(4)
    with torch.no_grad():
        out = zp_encoder(images, c2w, k, near, far)
    assert out.intermediate is None
    assert out.anchors.shape == (1, zp_encoder.config.num_anchors)


def test_fresh_encoder_gives_initial_gaussians_in_anchor_order(zp_encoder) -> None:
    # Scale and SH rows of the head start at zero: std exp(-4) everywhere, DC colour = the anchor's pixel.
    images, c2w, k, near, far = cameras(4, seed=3)
    with torch.no_grad():
        out = zp_encoder(images, c2w, k, near, far, num_anchors=2)
    eigen = torch.linalg.eigvalsh(out.covariances[0])
    torch.testing.assert_close(eigen, torch.full_like(eigen, math.exp(-8)), atol=1e-8, rtol=1e-4)
    colours = out.harmonics[0, :, :, 0] * 0.28209479177387814 + 0.5
    anchor_pixels = images[0, out.anchors[0]].permute(0, 2, 3, 1).reshape(-1, 3)
    torch.testing.assert_close(colours, anchor_pixels, atol=1e-5, rtol=0)


def test_view_order_does_not_change_the_gaussians(zp_encoder, base_encoder) -> None:
    images, c2w, k, near, far = cameras(5, seed=4)
    perm = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        a = zp_encoder(images, c2w, k, near, far, num_anchors=3)
        b = zp_encoder(images[:, perm], c2w[:, perm], k[:, perm], near[:, perm], far[:, perm], num_anchors=3)
        # The same views become anchors, in the same (FPS) order.
        assert perm[b.anchors[0]].tolist() == a.anchors[0].tolist()
        torch.testing.assert_close(b.means, a.means, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(b.harmonics, a.harmonics, atol=1e-4, rtol=1e-4)
        # Without ZPressor every view is kept, in input order.
        c = base_encoder(images[:, :3], c2w[:, :3], k[:, :3], near[:, :3], far[:, :3])
        p3 = torch.tensor([2, 0, 1])
        d = base_encoder(images[:, p3], c2w[:, p3], k[:, p3], near[:, p3], far[:, p3])
    assert c.anchors is None and c.means.shape == (1, 3 * H * W, 3)
    blocks = c.means.reshape(3, H * W, 3)
    torch.testing.assert_close(d.means.reshape(3, H * W, 3), blocks[p3], atol=1e-4, rtol=1e-4)


def test_scenes_in_a_batch_do_not_interact(zp_encoder) -> None:
    first, second = cameras(4, seed=5), cameras(4, seed=6)
    batch = [torch.cat((x, y)) for x, y in zip(first, second, strict=True)]
    with torch.no_grad():
        together = zp_encoder(*batch, num_anchors=2)
        alone = zp_encoder(*second, num_anchors=2)
    torch.testing.assert_close(together.means[1:], alone.means, atol=1e-4, rtol=1e-4)
    assert torch.equal(together.anchors[1:], alone.anchors)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(2)
    encoder = build_encoder("zpressor-depthsplat", "small").train()
    images, c2w, k, near, far = cameras(4, seed=7)
    out = encoder(images, c2w, k, near, far, num_anchors=2)
    loss = out.means.square().mean() + out.harmonics.square().mean() + out.intermediate.means.square().mean()
    (loss + out.latent.square().mean()).backward()
    without = [name for name, p in encoder.named_parameters() if p.grad is None]
    assert not without
    for name, module in encoder.named_children():
        assert any(p.grad.abs().sum() > 0 for p in module.parameters()), name


def test_bad_inputs_get_clear_errors(zp_encoder, without_shape_checks) -> None:
    images, c2w, k, near, far = cameras(4)
    with pytest.raises(ValueError, match="multiple of 32"):
        zp_encoder(images[..., :48], c2w, k, near, far)
    with without_shape_checks(), pytest.raises(ValueError, match="c2w must have shape"):
        zp_encoder(images, c2w[:, :3], k, near, far)
    with pytest.raises(ValueError, match="exceeds the number of context views"):
        zp_encoder(images, c2w, k, near, far, num_anchors=5)
    with pytest.raises(ValueError, match="at least 2"):
        zp_encoder(images, c2w, k, near, far, num_anchors=1)


def test_core_import_does_not_need_nerfstudio() -> None:
    code = (
        "import sys; import zpressor_ns.encoders, zpressor_ns.gaussian_adapter; "
        "print('nerfstudio' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_agrees_with_cpu(zp_encoder) -> None:
    # On CUDA ZPressor's attention runs in bf16 (as the original's flash path); the rest stays fp32.
    inputs = cameras(5, seed=8)
    with torch.no_grad():
        cpu = zp_encoder(*inputs, num_anchors=2)
        gpu = copy.deepcopy(zp_encoder).cuda()(*(x.cuda() for x in inputs), num_anchors=2)
    assert torch.equal(gpu.anchors.cpu(), cpu.anchors)
    scale = cpu.means.abs().max()
    assert (gpu.means.cpu() - cpu.means).abs().max() <= 1e-2 * scale


def test_the_cpu_gaussian_head_in_view_chunks_gives_the_same_gaussians(zp_encoder, monkeypatch) -> None:
    from zpressor_ns.encoders.depthsplat import encoder as module

    inputs = cameras(4)
    with torch.inference_mode():
        whole = zp_encoder(*inputs, num_anchors=3)
        calls = []
        hook = zp_encoder.gaussian_head.register_forward_hook(lambda m, i, o: calls.append(o.shape[0]))
        monkeypatch.setattr(module, "CPU_HEAD_CHUNK_PIXELS", 2 * H * W)  # two views per step: 2 + 1
        try:
            chunked = zp_encoder(*inputs, num_anchors=3)
        finally:
            hook.remove()
    assert calls == [2, 1]
    for key in ("means", "covariances", "harmonics", "opacities"):
        torch.testing.assert_close(getattr(chunked, key), getattr(whole, key), atol=1e-5, rtol=1e-5)
