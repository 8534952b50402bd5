"""The DPT refinement head: original parameters and key layout, resolution, wiring of every input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from zpressor_ns.blocks.dpt import DPT_PRESETS, DPTHead

REF = Path(__file__).resolve().parents[1] / ".ref"
OFFICIAL_PREFIX = "encoder.depth_predictor.upsampler."


def small_inputs(batch: int = 2, h8: int = 4, w8: int = 6, seed: int = 0) -> dict:
    """Inputs of the small preset on a 1/8 grid of h8 x w8 (images of 8*h8 x 8*w8)."""
    config = DPT_PRESETS["small"]
    generator = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    return {
        "vit_features": [rand(batch, config.vit_channels, h8, w8) for _ in range(4)],
        "cnn_features": [
            rand(batch, c, h8 * f, w8 * f) for c, f in zip(config.cnn_channels, (4, 2, 1), strict=True)
        ],
        "mv_features": rand(batch, config.mv_channels, h8, w8),
        "inverse_depth": rand(batch, 1, h8, w8).abs(),
    }


def randomised(head: DPTHead) -> DPTHead:
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.copy_(0.1 * torch.randn(parameter.shape, generator=generator))
    return head.eval()


def test_vitb_head_has_the_original_parameter_count():
    # facts: "DPT upsampler 7 965 561" for vitb (features 48, out_channels 96/192/384/768).
    assert sum(p.numel() for p in DPTHead(DPT_PRESETS["vitb"]).parameters()) == 7_965_561


def test_parameter_names_follow_the_official_layout():
    keys = {k.rsplit(".", 1)[0] for k in DPTHead(DPT_PRESETS["vitb"]).state_dict()}
    expected = {f"projects.{i}" for i in range(4)}
    expected |= {"resize_layers.0", "resize_layers.1", "resize_layers.3"}  # index 2 (1/8) is an identity
    expected |= {f"concat_projects.{i}" for i in range(3)}
    expected |= {f"scratch.layer{i}_rn" for i in range(1, 5)}
    for i in range(1, 5):
        units = ("resConfUnit2",) if i == 4 else ("resConfUnit1", "resConfUnit2")
        expected |= {f"scratch.refinenet{i}.out_conv"}
        expected |= {f"scratch.refinenet{i}.{unit}.conv{j}" for unit in units for j in (1, 2)}
    expected |= {f"scratch.output_conv.{i}" for i in (0, 2, 4)}
    assert keys == expected


def test_keys_and_shapes_equal_the_official_manifest():
    manifest = REF / "official_keys_depthsplat_zp.json"
    if not manifest.exists():
        pytest.skip(f"{manifest} not present (git-ignored, made locally from the original code)")
    official = {
        k[len(OFFICIAL_PREFIX) :]: tuple(v)
        for k, v in json.loads(manifest.read_text())["keys"].items()
        if k.startswith(OFFICIAL_PREFIX)
    }
    assert {k: tuple(v.shape) for k, v in DPTHead(DPT_PRESETS["vitb"]).state_dict().items()} == official


def test_fresh_head_outputs_a_zero_residual_at_full_resolution():
    with torch.no_grad():
        out = DPTHead(DPT_PRESETS["small"])(**small_inputs(h8=4, w8=6))
    assert out.shape == (2, 1, 32, 48)
    assert torch.equal(out, torch.zeros_like(out))


def test_every_input_reaches_the_output():
    head = randomised(DPTHead(DPT_PRESETS["small"]))
    inputs = small_inputs()
    leaves = [
        *inputs["vit_features"],
        *inputs["cnn_features"],
        inputs["mv_features"],
        inputs["inverse_depth"],
    ]
    for leaf in leaves:
        leaf.requires_grad_(True)
    head(**inputs).square().sum().backward()
    assert all(leaf.grad is not None and leaf.grad.abs().sum() > 0 for leaf in leaves)


def test_each_image_is_refined_independently():
    head = randomised(DPTHead(DPT_PRESETS["small"]))
    inputs = small_inputs()
    changed = small_inputs()
    changed["mv_features"][1] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(head(**inputs)[0], head(**changed)[0])


def test_mismatched_inputs_are_refused():
    head = DPTHead(DPT_PRESETS["small"])
    inputs = small_inputs()
    inputs["cnn_features"] = inputs["cnn_features"][::-1]  # coarsest first is wrong
    with pytest.raises(ValueError, match="1/8 grid"):
        head(**inputs)
    inputs = small_inputs()
    inputs["vit_features"] = inputs["vit_features"][:3]
    with pytest.raises(ValueError, match="4 ViT feature maps"):
        head(**inputs)


@pytest.mark.parametrize("fixture", ["depthsplat_zp_v12k6_64x128", "depthsplat_base_v4_64x128"])
def test_matches_the_original_head_on_fixture_weights(fixture):
    weights, intermediates = (
        REF / "fixtures" / f"{fixture}.pt",
        REF / "fixtures" / f"{fixture}_intermediates.pt",
    )
    if not (weights.exists() and intermediates.exists()):
        pytest.skip(
            f"parity fixtures {weights.name} / {intermediates.name} not present (git-ignored, made locally)"
        )
    state = torch.load(weights, weights_only=True, mmap=True)["state_dict"]
    tensors = torch.load(intermediates, weights_only=True, mmap=True)["tensors"]
    head = DPTHead(DPT_PRESETS["vitb"]).eval()
    head.load_state_dict(
        {k[len(OFFICIAL_PREFIX) :]: v for k, v in state.items() if k.startswith(OFFICIAL_PREFIX)}
    )

    # The CNN ran on every view; the head sees the anchors (all views without ZPressor), in anchor order.
    views = tensors["lowres_inverse_depth"].shape[0]
    anchors = tensors["anchor_indices"][0] if "anchor_indices" in tensors else torch.arange(views)
    # Stage outputs, named as in the dump, to localise a mismatch.
    stages = {
        "dpt_layer1": head.concat_projects[0],
        "dpt_layer2": head.concat_projects[1],
        "dpt_layer3": head.concat_projects[2],
        "dpt_layer4": head.resize_layers[3],
        **{f"dpt_path{i}": getattr(head.scratch, f"refinenet{i}") for i in range(1, 5)},
    }
    ours = {}
    hooks = [
        module.register_forward_hook(lambda _m, _i, out, name=name: ours.__setitem__(name, out))
        for name, module in stages.items()
    ]
    with torch.no_grad():
        residual = head(
            list(tensors["vit_features_s8"]),
            [tensors[f"cnn_features_s{s}"][anchors] for s in (2, 4, 8)],
            tensors["mv_transformer_out"][0],
            tensors["lowres_inverse_depth"],
        )
    for hook in hooks:
        hook.remove()
    for name, value in [*ours.items(), ("dpt_residual_inverse_depth", residual)]:
        reference = tensors[name]
        torch.testing.assert_close(
            value,
            reference,
            rtol=0,
            atol=1e-5 * reference.abs().max().item(),
            msg=lambda m, name=name: f"{name}: {m}",
        )
