"""The DINOv2-style ViT: hub-compatible parameters, positional-embedding resampling, intermediate layers."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from zpressor_ns.blocks.vit import VIT_PRESETS, VisionTransformer, ViTConfig, build_vit

FIXTURES = Path(__file__).resolve().parents[1] / ".ref" / "fixtures"


@pytest.fixture(scope="module")
def tiny() -> VisionTransformer:
    torch.manual_seed(0)
    return build_vit("tiny").eval()


def count_parameters(name: str) -> int:
    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        return sum(p.numel() for p in build_vit(name).parameters())


def test_vitb_has_the_parameter_count_of_depthsplats_dinov2():
    # facts: "DINOv2-B 86 579 712" inside DepthSplat, which deletes the hub model's mask_token.
    assert count_parameters("vitb") == 86_579_712


def test_vits_and_vitl_sizes_are_those_published_for_dinov2():
    # DINOv2's model card: ViT-S/14 21 M, ViT-L/14 300 M parameters (rounded).
    assert 21e6 < count_parameters("vits") < 23e6
    assert 300e6 < count_parameters("vitl") < 306e6


def test_depthsplat_reads_these_blocks():
    assert VIT_PRESETS["vits"].intermediate_layers == (2, 5, 8, 11)
    assert VIT_PRESETS["vitb"].intermediate_layers == (2, 5, 8, 11)
    assert VIT_PRESETS["vitl"].intermediate_layers == (4, 11, 17, 23)


def test_state_dict_uses_dinov2_hub_names(tiny):
    dim, cfg = tiny.config.dim, tiny.config
    expected = {
        "cls_token": (1, 1, dim),
        "pos_embed": (1, 37 * 37 + 1, dim),
        "patch_embed.proj.weight": (dim, 3, 14, 14),
        "patch_embed.proj.bias": (dim,),
        "norm.weight": (dim,),
        "norm.bias": (dim,),
    }
    for i in range(cfg.depth):
        block = {
            "norm1.weight": (dim,),
            "norm1.bias": (dim,),
            "attn.qkv.weight": (3 * dim, dim),
            "attn.qkv.bias": (3 * dim,),
            "attn.proj.weight": (dim, dim),
            "attn.proj.bias": (dim,),
            "ls1.gamma": (dim,),
            "norm2.weight": (dim,),
            "norm2.bias": (dim,),
            "mlp.fc1.weight": (4 * dim, dim),
            "mlp.fc1.bias": (4 * dim,),
            "mlp.fc2.weight": (dim, 4 * dim),
            "mlp.fc2.bias": (dim,),
            "ls2.gamma": (dim,),
        }
        expected.update({f"blocks.{i}.{name}": shape for name, shape in block.items()})
    assert {k: tuple(v.shape) for k, v in tiny.state_dict().items()} == expected


def test_depthsplat_input_gives_an_18_by_32_patch_grid(tiny):
    # 256x448 images are resized to (256 // 14 * 14, 448 // 14 * 14) = 252x448 before the ViT.
    outputs = tiny.get_intermediate_layers(torch.rand(2, 3, 252, 448))
    assert len(outputs) == 4
    assert all(out.shape == (2, tiny.config.dim, 18, 32) for out in outputs)
    assert tiny.interpolated_pos_embed(18, 32).shape == (1, 1 + 18 * 32, tiny.config.dim)


def test_training_grid_uses_the_stored_embedding_unchanged(tiny):
    assert torch.equal(tiny.interpolated_pos_embed(37, 37), tiny.pos_embed)


def _cubic_weights(t: float, a: float = -0.75) -> list[float]:
    """Keys' cubic-convolution weights for the 4 taps around a sample at fraction t."""

    def kernel(x: float) -> float:
        x = abs(x)
        if x <= 1:
            return (a + 2) * x**3 - (a + 3) * x**2 + 1
        if x < 2:
            return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
        return 0.0

    return [kernel(t + 1), kernel(t), kernel(1 - t), kernel(2 - t)]


def _resample_axis(grid: torch.Tensor, out_size: int, scale: float, axis: int) -> torch.Tensor:
    """Bicubic resampling along one axis: output i reads input (i + 0.5) / scale - 0.5, edges clamped."""
    n = grid.shape[axis]
    slices = []
    for i in range(out_size):
        src = (i + 0.5) / scale - 0.5
        base = math.floor(src)
        weights = _cubic_weights(src - base)
        taps = [min(max(base + k, 0), n - 1) for k in (-1, 0, 1, 2)]
        slices.append(sum(w * grid.select(axis, j) for w, j in zip(weights, taps, strict=True)))
    return torch.stack(slices, dim=axis)


def test_positional_embedding_is_resampled_like_dinov2(tiny):
    # DINOv2 resamples with the scale factor (grid + 0.1) / 37 rather than to an output size; pretrained
    # weights depend on that exact sampling. Reference: separable Keys cubic (a = -0.75) written out here.
    grid_h, grid_w = 4, 9
    patch_pos = tiny.pos_embed[0, 1:].detach().double().reshape(37, 37, -1)
    expected = _resample_axis(patch_pos, grid_h, (grid_h + 0.1) / 37, axis=0)
    expected = _resample_axis(expected, grid_w, (grid_w + 0.1) / 37, axis=1)
    got = tiny.interpolated_pos_embed(grid_h, grid_w)[0].detach().double()
    torch.testing.assert_close(got[0], tiny.pos_embed[0, 0].detach().double())
    torch.testing.assert_close(got[1:], expected.reshape(grid_h * grid_w, -1), rtol=0, atol=1e-6)


def test_intermediate_layers_are_normed_patch_tokens_after_each_requested_block(tiny):
    images = torch.rand(2, 3, 28, 42)
    with torch.no_grad():
        tokens = torch.cat((tiny.cls_token.expand(2, -1, -1), tiny.patch_embed(images)), dim=1)
        tokens = tokens + tiny.interpolated_pos_embed(2, 3)
        after = []
        for block in tiny.blocks:
            tokens = block(tokens)
            after.append(tokens)
        raw = tiny.get_intermediate_layers(images, indices=[1, 3], norm=False)
        normed = tiny.get_intermediate_layers(images, indices=[1, 3])
        default = tiny(images)
    for out, i in zip(raw, (1, 3), strict=True):
        assert out.shape == (2, tiny.config.dim, 2, 3)
        # Row-major patch order: token 1 + r * 3 + c is the patch in row r, column c.
        torch.testing.assert_close(out.flatten(2).transpose(1, 2), after[i][:, 1:])
    torch.testing.assert_close(normed[1].flatten(2).transpose(1, 2), tiny.norm(after[3][:, 1:]))
    assert len(default) == len(tiny.config.intermediate_layers)
    torch.testing.assert_close(default[1], tiny.get_intermediate_layers(images, indices=[1])[0])


def test_attention_is_standard_multi_head_softmax_attention(tiny):
    attn = tiny.blocks[0].attn
    x = torch.randn(3, 7, tiny.config.dim)
    heads, head_dim = attn.num_heads, tiny.config.dim // attn.num_heads
    with torch.no_grad():
        q, k, v = attn.qkv(x).view(3, 7, 3, heads, head_dim).unbind(2)
        weights = torch.softmax(torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head_dim), dim=-1)
        expected = attn.proj(torch.einsum("bhqk,bkhd->bqhd", weights, v).reshape(3, 7, -1))
        torch.testing.assert_close(attn(x), expected)


def test_input_not_a_multiple_of_the_patch_size_is_refused(tiny):
    with pytest.raises(ValueError, match="multiple of the patch size"):
        tiny(torch.rand(1, 3, 30, 42))


def test_bad_configs_are_refused():
    with pytest.raises(ValueError):
        ViTConfig(dim=64, depth=4, num_heads=3, intermediate_layers=(0,))
    with pytest.raises(ValueError):
        ViTConfig(dim=64, depth=4, num_heads=2, intermediate_layers=(1, 4))
    with pytest.raises(ValueError, match="unknown ViT size"):
        build_vit("vitg")


@pytest.mark.parametrize("fixture", ["depthsplat_zp_v12k6_64x128", "depthsplat_base_v4_64x128"])
def test_matches_the_original_dinov2_on_official_weights(fixture):
    weights, intermediates = FIXTURES / f"{fixture}.pt", FIXTURES / f"{fixture}_intermediates.pt"
    if not (weights.exists() and intermediates.exists()):
        pytest.skip(
            f"parity fixtures {weights.name} / {intermediates.name} not present (git-ignored, made locally)"
        )
    state = torch.load(weights, weights_only=True, mmap=True)["state_dict"]
    tensors = torch.load(intermediates, weights_only=True, mmap=True)["tensors"]
    prefix = "encoder.depth_predictor.pretrained."
    with torch.device("meta"):
        vit = build_vit("vitb").eval()
    vit.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, assign=True)
    images = tensors["vit_input"]
    with torch.no_grad():
        outputs = vit.get_intermediate_layers(images)
        tokens = torch.cat((vit.cls_token.expand(len(images), -1, -1), vit.patch_embed(images)), dim=1)
        pos = vit.interpolated_pos_embed(images.shape[-2] // 14, images.shape[-1] // 14)
    ours = torch.stack([out.flatten(2).transpose(1, 2) for out in outputs])
    reference = tensors["vit_intermediate_tokens"]
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5 * reference.abs().max().item())
    torch.testing.assert_close(tokens + pos, tensors["vit_tokens_prepared"], rtol=0, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_matches_cpu(tiny):
    images = torch.rand(2, 3, 56, 126)
    with torch.no_grad():
        expected = tiny(images)
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            gpu_vit = build_vit("tiny").cuda().eval()
            gpu_vit.load_state_dict(tiny.state_dict())
            got = [out.cpu() for out in gpu_vit(images.cuda())]
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-3 * b.abs().max().item())
