"""Parity with the ORIGINAL DepthSplat(+ZPressor) encoder on dumped random (perturbed) weights.

The fixtures are written by the original code (see shared/parity/official_depthsplat_harness.md) into
the git-ignored ``.ref/fixtures/``; the tests skip where they are absent. Weights are imported with
``import_official`` exactly as a published checkpoint would be, so this also checks the key mapping.
"""

from __future__ import annotations

import torch
from parity import FIXTURES, assert_close, load_fixture

from zpressor_ns.encoders import build_encoder, import_official


def run(method: str, fixture: dict, recorded: dict):
    torch.manual_seed(123)  # a different init than the dump: every value must come from the state dict
    encoder = build_encoder(method).eval()
    encoder.load_state_dict(import_official(fixture["state_dict"], method), strict=True)
    encoder.transformer.register_forward_hook(lambda m, args, out: recorded.update(transformer=out))
    if encoder.zpressor is not None:
        encoder.zpressor.register_forward_hook(
            lambda m, args, out: recorded.update(zpressor_in=args[0], zp=out)
        )
    inputs = fixture["inputs"]
    with torch.no_grad():
        return encoder(
            inputs["image"], inputs["extrinsics"], inputs["intrinsics"], inputs["near"], inputs["far"]
        )


def check_outputs(out, reference: dict, rel: float) -> None:
    for key in ("means", "covariances", "harmonics", "opacities"):
        assert_close(key, getattr(out, key), reference[key], rel)
    assert_close("depths", out.depths, reference["depths"], rel)
    assert_close("latent", out.latent, reference["latent_z"], rel)


def test_zpressor_depthsplat_matches_the_original() -> None:
    fixture = load_fixture("depthsplat_zp_v12k6_64x128.pt")
    recorded: dict = {}
    out = run("zpressor-depthsplat", fixture, recorded)
    # Stage by stage first, so a failure names the first stage that drifts. The fixture's own intermediates
    # come from the original's bf16 ZPressor path; the separate intermediates file (when present) is the
    # fp32 replay and allows tight checks.
    inter = fixture["intermediates"]
    assert_close("zpressor input (CNN 1/8 + window PE)", recorded["zpressor_in"], inter["zpressor_in"], 1e-6)
    assert torch.equal(recorded["zp"].clusters, inter["clusters"])
    assert torch.equal(out.anchors, fixture["outputs_zp_fp32"]["anchor_indices"])
    assert_close("zpressor output vs bf16 reference", recorded["zp"].features, inter["zpressor_out"], 2e-3)
    fp32_path = FIXTURES / "depthsplat_zp_v12k6_64x128_intermediates.pt"
    if fp32_path.is_file():
        fp32 = torch.load(fp32_path, map_location="cpu", weights_only=True)["tensors"]
        assert_close("zpressor output", recorded["zp"].features, fp32["zpressor_out"], 1e-5)
        assert_close("multi-view transformer", recorded["transformer"], fp32["mv_transformer_out"], 1e-4)
    # The fp32 reference: ZPressor's attention in exact fp32, as here on CPU.
    check_outputs(out, fixture["outputs_zp_fp32"], 1e-4)
    # The original's own path runs ZPressor's cross-attention in bf16: close, not equal.
    for key in ("means", "opacities"):
        assert_close(f"{key} vs bf16 reference", getattr(out, key), fixture["outputs"][key], 5e-3)


def test_depthsplat_baseline_matches_the_original() -> None:
    fixture = load_fixture("depthsplat_base_v4_64x128.pt")
    recorded: dict = {}
    out = run("depthsplat", fixture, recorded)
    assert out.anchors is None
    assert_close(
        "multi-view transformer",
        recorded["transformer"],
        fixture["intermediates"]["mv_transformer_out"],
        1e-4,
    )
    check_outputs(out, fixture["outputs"], 1e-4)
