"""The cross-view UNet: original parameter layout, zero-initialised residual paths, attention across views."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zpressor_ns.blocks.unet import UNET_PRESETS, CrossViewAttention, ResidualBlock, UNet, UNetConfig

REF = Path(__file__).resolve().parents[1] / ".ref"

# Where each UNet sits in the official DepthSplat state dict: Sequential(conv, GroupNorm, GELU, UNet, conv).
OFFICIAL_PREFIX = {
    "depth_regressor": "encoder.depth_predictor.regressor.0.",
    "gaussian_regressor": "encoder.gaussian_regressor.",
}


def randomised(unet: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, so the zero-initialised branches contribute."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in unet.parameters():
            parameter.copy_(0.2 * torch.randn(parameter.shape, generator=generator))
    return unet.eval()


def conv3x3(c_in: int, c_out: int) -> int:
    return c_in * c_out * 9 + c_out


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        # facts: regressor 6,895,872 = conv 1152->128 + GroupNorm(128) + UNet + conv 128->128.
        ("depth_regressor", 6_895_872 - conv3x3(1152, 128) - 2 * 128 - conv3x3(128, 128)),
        # facts: Gaussian regressor 5,680,576 = conv 133->32 + GroupNorm(32) + UNet + conv 32->32.
        ("gaussian_regressor", 5_680_576 - conv3x3(133, 32) - 2 * 32 - conv3x3(32, 32)),
        # facts: MVSplat's corr_refine_net 5,862,144 = conv 256->128 + GroupNorm(128) + UNet + conv 128->128.
        ("cost_volume_refiner", 5_862_144 - conv3x3(256, 128) - 2 * 128 - conv3x3(128, 128)),
    ],
)
def test_paper_unets_have_the_original_parameter_counts(preset, expected):
    assert sum(p.numel() for p in UNet(UNET_PRESETS[preset]).parameters()) == expected


def test_parameter_names_follow_the_official_layout():
    shapes = {k: tuple(v.shape) for k, v in UNet(UNET_PRESETS["depth_regressor"]).state_dict().items()}
    # Input conv, two res-block levels each followed by a strided conv, then res-block + attention at 1/4.
    assert shapes["input_blocks.0.0.weight"] == (128, 128, 3, 3)
    assert shapes["input_blocks.1.0.in_layers.2.weight"] == (128, 128, 3, 3)
    assert shapes["input_blocks.1.0.out_layers.3.weight"] == (128, 128, 3, 3)
    assert shapes["input_blocks.2.0.op.weight"] == (128, 128, 3, 3)
    assert shapes["input_blocks.5.1.qkv.weight"] == (384, 128, 1)
    assert shapes["input_blocks.5.1.proj_out.weight"] == (128, 128, 1)
    # The middle block's official index 1 is a parameter-free placeholder.
    assert "middle_block.0.in_layers.0.weight" in shapes and "middle_block.2.out_layers.3.bias" in shapes
    assert not any(k.startswith("middle_block.1.") for k in shapes)
    # Decoder: skip concatenation doubles the width and a 1x1 conv adapts the residual.
    assert shapes["output_blocks.0.0.skip_connection.weight"] == (128, 256, 1, 1)
    assert shapes["output_blocks.1.2.conv.weight"] == (128, 128, 3, 3)
    assert shapes["out.2.weight"] == (128, 128, 3, 3)
    assert not any("emb_layers" in k for k in shapes)


def test_post_norm_parameter_names_follow_mvsplats_layout():
    # Post-norm (MVSplat): conv before norm in every block, the zero-initialised norm closing each branch.
    unet = UNet(UNET_PRESETS["cost_volume_refiner"])
    shapes = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert shapes["input_blocks.1.0.in_layers.0.weight"] == (128, 128, 3, 3)
    assert shapes["input_blocks.1.0.in_layers.1.weight"] == (128,)
    assert shapes["input_blocks.1.0.out_layers.0.weight"] == (128, 128, 3, 3)
    assert shapes["input_blocks.1.0.out_layers.1.bias"] == (128,)
    assert shapes["output_blocks.0.0.skip_connection.weight"] == (128, 256, 1, 1)
    assert shapes["out.0.weight"] == (128, 128, 3, 3) and shapes["out.1.weight"] == (128,)
    assert not any(".in_layers.2." in k or ".out_layers.3." in k or k.startswith("out.2") for k in shapes)
    assert torch.equal(unet.state_dict()["input_blocks.1.0.out_layers.1.weight"], torch.zeros(128))
    assert torch.equal(unet.state_dict()["input_blocks.5.1.norm.weight"], torch.zeros(128))


@pytest.mark.parametrize(
    ("preset", "prefix"),
    [
        ("cost_volume_refiner", "encoder.depth_predictor.corr_refine_net.3."),
        ("depth_refiner", "encoder.depth_predictor.refine_unet.3."),
    ],
)
def test_post_norm_keys_and_shapes_equal_mvsplats_manifest(preset, prefix):
    manifest = REF / "fixtures" / "mvsplat_official_keys.json"
    if not manifest.exists():
        pytest.skip(f"{manifest} not present (git-ignored, dumped locally from the original code)")
    official = {
        k[len(prefix) :]: tuple(v)
        for k, v in json.loads(manifest.read_text())["zpressor-mvsplat"].items()
        if k.startswith(prefix)
    }
    ours = {k: tuple(v.shape) for k, v in UNet(UNET_PRESETS[preset]).state_dict().items()}
    assert ours == official


@pytest.mark.parametrize("preset", sorted(OFFICIAL_PREFIX))
def test_keys_and_shapes_equal_the_official_manifest(preset):
    manifest = REF / "official_keys_depthsplat_zp.json"
    if not manifest.exists():
        pytest.skip(f"{manifest} not present (git-ignored, made locally from the original code)")
    prefix = OFFICIAL_PREFIX[preset] + "3."
    official = {
        k[len(prefix) :]: tuple(v)
        for k, v in json.loads(manifest.read_text())["keys"].items()
        if k.startswith(prefix)
    }
    ours = {k: tuple(v.shape) for k, v in UNet(UNET_PRESETS[preset]).state_dict().items()}
    assert ours == official


@pytest.mark.parametrize("preset", ["depth_regressor_small", "gaussian_regressor_small"])
def test_a_fresh_unet_outputs_zero(preset):
    unet = UNet(UNET_PRESETS[preset])
    x = torch.randn(4, unet.config.channels, 32, 32)
    assert torch.equal(unet(x, num_views=2), torch.zeros_like(x))


@pytest.mark.parametrize("post_norm", [False, True])
def test_fresh_residual_and_attention_blocks_are_the_identity(post_norm):
    x = torch.randn(4, 32, 8, 8)
    assert torch.equal(ResidualBlock(32, 32, post_norm)(x), x)
    assert torch.equal(CrossViewAttention(32, 16, post_norm)(x, num_views=2), x)
    assert ResidualBlock(64, 32, post_norm)(torch.randn(2, 64, 8, 8)).shape == (2, 32, 8, 8)


def test_post_norm_blocks_normalise_after_each_convolution():
    """MVSplat's block: skip + SiLU(GN(conv(SiLU(GN(conv(x)))))), attention: x + GN(proj(attention(qkv(x))))."""
    block = randomised(ResidualBlock(32, 32, post_norm=True))
    x = torch.randn(2, 32, 8, 8)
    with torch.no_grad():
        conv_in, norm_in, _ = block.in_layers
        conv_out, norm_out, _ = block.out_layers
        hidden = F.silu(F.group_norm(conv_in(x), 8, norm_in.weight, norm_in.bias))
        expected = x + F.silu(F.group_norm(conv_out(hidden), 8, norm_out.weight, norm_out.bias))
        torch.testing.assert_close(block(x), expected)

        attention = randomised(CrossViewAttention(32, 32, post_norm=True))
        q, k, v = attention.qkv(x.flatten(2)).chunk(3, dim=1)  # one head, one view per scene
        mixed = torch.softmax(q.transpose(1, 2) @ k / math.sqrt(32), dim=-1) @ v.transpose(1, 2)
        projected = attention.proj_out(mixed.transpose(1, 2))
        normed = F.group_norm(projected, 8, attention.norm.weight, attention.norm.bias)
        torch.testing.assert_close(attention(x, num_views=1), x + normed.view_as(x))


@pytest.mark.parametrize("preset", ["depth_regressor_small", "gaussian_regressor_small"])
def test_views_of_a_scene_exchange_information_only_through_num_views(preset):
    unet = randomised(UNet(UNET_PRESETS[preset]))
    x = torch.randn(2, unet.config.channels, 32, 32)
    changed = x.clone()
    changed[1] += torch.randn_like(changed[1])
    with torch.no_grad():
        # One scene of two views: view 0 sees view 1.
        assert not torch.allclose(unet(x, num_views=2)[0], unet(changed, num_views=2)[0], atol=1e-4)
        # Two scenes of one view each: they are independent.
        torch.testing.assert_close(unet(x, num_views=1)[0], unet(changed, num_views=1)[0])


def test_scenes_in_a_batch_stay_independent():
    unet = randomised(UNet(UNET_PRESETS["depth_regressor_small"]))
    x = torch.randn(4, 32, 16, 16)  # two scenes of two views
    changed = x.clone()
    changed[2:] = torch.randn_like(changed[2:])
    with torch.no_grad():
        torch.testing.assert_close(unet(x, num_views=2)[:2], unet(changed, num_views=2)[:2])


def test_output_does_not_depend_on_view_order():
    # No view or position embedding in the attention: permuting the views permutes the outputs.
    unet = randomised(UNet(UNET_PRESETS["depth_regressor_small"]))
    x = torch.randn(3, 32, 16, 16)
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(
            unet(x[order], num_views=3), unet(x, num_views=3)[order], atol=1e-5, rtol=1e-5
        )


def test_attention_is_joint_softmax_over_all_views_with_per_head_qkv_groups():
    # The original splits the qkv output channels head by head, each head holding its q, k, v in turn,
    # and attends over the concatenated pixels of all views of a scene.
    attention = randomised(CrossViewAttention(32, head_channels=16))
    views, batch, height, width = 3, 2, 4, 5
    x = torch.randn(batch * views, 32, height, width)
    with torch.no_grad():
        qkv = attention.qkv(attention.norm(x).flatten(2))  # [batch*views, 96, tokens]
        qkv = qkv.view(batch, views, 2, 3, 16, height * width)  # (scene, view, head, q|k|v, channel, token)
        q, k, v = (qkv[:, :, :, i].permute(0, 2, 3, 1, 4).flatten(3) for i in range(3))  # [b, head, ch, v*t]
        weights = torch.softmax(torch.einsum("bhct,bhcs->bhts", q, k) / math.sqrt(16), dim=-1)
        mixed = torch.einsum("bhts,bhcs->bhct", weights, v)  # [b, head, ch, v*t]
        mixed = mixed.view(batch, 2, 16, views, height * width).permute(0, 3, 1, 2, 4)
        expected = x + attention.proj_out(mixed.reshape(batch * views, 32, -1)).view_as(x)
        torch.testing.assert_close(attention(x, num_views=views), expected)


def test_inputs_that_cannot_be_processed_are_refused():
    unet = UNet(UNET_PRESETS["gaussian_regressor_small"])
    with pytest.raises(ValueError, match="multiple of 16"):
        unet(torch.randn(2, 16, 24, 32), num_views=2)
    with pytest.raises(ValueError, match="3-view scenes"):
        unet(torch.randn(4, 16, 32, 32), num_views=3)
    with pytest.raises(ValueError, match="head_channels"):
        UNetConfig(channels=24, channel_mult=(1, 1), attention_resolutions=(2,), head_channels=16)


def _load_fixture(name: str) -> tuple[dict, dict]:
    weights, intermediates = REF / "fixtures" / f"{name}.pt", REF / "fixtures" / f"{name}_intermediates.pt"
    if not (weights.exists() and intermediates.exists()):
        pytest.skip(
            f"parity fixtures {weights.name} / {intermediates.name} not present (git-ignored, made locally)"
        )
    state = torch.load(weights, weights_only=True, mmap=True)["state_dict"]
    return state, torch.load(intermediates, weights_only=True, mmap=True)["tensors"]


def _official_regressor(state: dict, preset: str):
    """The official Sequential(conv, GroupNorm(8), GELU, UNet, conv) with our UNet inside."""
    prefix = OFFICIAL_PREFIX[preset]
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    unet = UNet(UNET_PRESETS[preset]).eval()
    unet.load_state_dict({k[2:]: v for k, v in weights.items() if k.startswith("3.")})

    def stem(x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, weights["0.weight"], weights["0.bias"], padding=1)
        return F.gelu(F.group_norm(x, 8, weights["1.weight"], weights["1.bias"]))

    def head(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, weights["4.weight"], weights["4.bias"], padding=1)

    return stem, unet, head


@pytest.mark.parametrize("fixture", ["depthsplat_zp_v12k6_64x128", "depthsplat_base_v4_64x128"])
def test_matches_the_original_regressor_unets(fixture):
    state, tensors = _load_fixture(fixture)
    views = tensors["regressor_in"].shape[0]  # one scene: all anchors (or all views) attend jointly
    with torch.no_grad():
        stem, unet, head = _official_regressor(state, "depth_regressor")
        unet_out = unet(stem(tensors["regressor_in"]), num_views=views)
        reference = tensors["regressor_unet_out"]
        torch.testing.assert_close(unet_out, reference, rtol=0, atol=1e-5 * reference.abs().max().item())
        reference = tensors["regressor_main_out"]
        torch.testing.assert_close(
            head(unet_out), reference, rtol=0, atol=1e-5 * reference.abs().max().item()
        )

        stem, unet, head = _official_regressor(state, "gaussian_regressor")
        inputs = torch.cat(
            (tensors["gaussian_regressor_in_rgb_depth_prob"], tensors["latent_features"]), dim=1
        )
        out = head(unet(stem(inputs), num_views=views))
        reference = tensors["gaussian_regressor_out"]
        torch.testing.assert_close(out, reference, rtol=0, atol=1e-5 * reference.abs().max().item())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_matches_cpu():
    unet = randomised(UNet(UNET_PRESETS["gaussian_regressor_small"]))
    x = torch.randn(4, 16, 32, 48)
    with torch.no_grad():
        expected = unet(x, num_views=2)
        # fp32 on both sides (no TF32 convolutions); the attention runs through a fused CUDA kernel.
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            got = unet.cuda()(x.cuda(), num_views=2).cpu()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-3 * expected.abs().max().item())
