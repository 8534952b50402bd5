"""pixelSplat checkpoint import: every original tensor has exactly one place in our encoder, and back.

The original names are reconstructed from our encoder with a map written here, independently of the
package's, from the original module paths; a hand-checked subset of names and shapes (read off the
original code) is always tested. Where the original's key manifests exist (dumped from the original code
into the git-ignored ``.ref/``: ``official_keys_pixelsplat_{zp_k4,base_v2,base_v4}.json``, the state dict
names and shapes of the fixtures of ``official_pixelsplat_harness.py --dump``), all names and shapes are
compared with them exactly.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch

from zpressor_ns.commands import import_checkpoint
from zpressor_ns.encoders import build_encoder, import_official
from zpressor_ns.pretrained import load_pretrained

REF = Path(__file__).resolve().parents[1] / ".ref"

# Our module path (regular expression) -> the original's ("encoder." + ...), first match wins.
TO_OFFICIAL = (
    (r"backbone\.vit\.", "backbone.dino."),
    (r"backbone\.resnet\.", "backbone.resnet_backbone.model."),
    (r"backbone\.resnet_projections\.(\d)\.", r"backbone.resnet_backbone.projections.layer\1."),
    (r"backbone\.(global|local)_token_mlp\.", r"backbone.\1_token_mlp."),
    (r"feature_projection\.", "backbone_projection.1."),
    (r"zpressor\.layers\.(\d)\.cross\.to_q\.", r"zipmatch.cross_attn_layers.0.\1.projq."),
    (r"zpressor\.layers\.(\d)\.cross\.to_kv\.", r"zipmatch.cross_attn_layers.0.\1.proj_kv."),
    (r"zpressor\.layers\.(\d)\.cross\.out\.", r"zipmatch.cross_attn_layers.0.\1.proj."),
    (r"zpressor\.layers\.(\d)\.cross\.norm_query\.", r"zipmatch.cross_attn_layers.0.\1.norm1."),
    (r"zpressor\.layers\.(\d)\.cross\.norm_context\.", r"zipmatch.cross_attn_layers.0.\1.norm2."),
    (r"zpressor\.layers\.(\d)\.self_attn\.", r"zipmatch.self_attn_layers.0.\1."),
    (r"zpressor\.layers\.(\d)\.mlp\.", r"zipmatch.self_attn_layers.0.\1.mlp."),
    (r"epipolar\.downscale\.", "epipolar_transformer.downscaler."),
    (r"epipolar\.upscale\.", "epipolar_transformer.upscaler."),
    (r"epipolar\.refine\.", "epipolar_transformer.upscale_refinement."),
    (r"epipolar\.depth_encoding\.", "epipolar_transformer.depth_encoding.1."),
    (r"epipolar\.view_embeddings\.", "epipolar_transformer.view_embeddings."),
    (r"epipolar\.layers\.(\d)\.cross_norm\.", r"epipolar_transformer.transformer.layers.\1.0.norm."),
    (
        r"epipolar\.layers\.(\d)\.cross\.to_out\.",
        r"epipolar_transformer.transformer.layers.\1.0.fn.to_out.0.",
    ),
    (r"epipolar\.layers\.(\d)\.cross\.", r"epipolar_transformer.transformer.layers.\1.0.fn."),
    (r"epipolar\.layers\.(\d)\.image_norm\.", r"epipolar_transformer.transformer.layers.\1.1.norm."),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.position\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.positional_encoding.1.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.patch_embed\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.patch_embedder.0.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.unpatch\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.resampler.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.layers\.(\d)\.attention_norm\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.transformer.layers.\2.0.norm.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.layers\.(\d)\.attention\.to_out\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.transformer.layers.\2.0.fn.to_out.0.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.layers\.(\d)\.attention\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.transformer.layers.\2.0.fn.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.layers\.(\d)\.mlp_norm\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.transformer.layers.\2.1.norm.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.layers\.(\d)\.mlp\.2\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.transformer.layers.\2.1.fn.net.3.",
    ),
    (
        r"epipolar\.layers\.(\d)\.image_attention\.layers\.(\d)\.mlp\.0\.",
        r"epipolar_transformer.transformer.layers.\1.1.fn.self_attention.transformer.layers.\2.1.fn.net.0.",
    ),
    (r"image_skip\.", "high_resolution_skip.0."),
    (r"depth_head\.", "depth_predictor.projection.1."),
    (r"gaussian_head\.", "to_gaussians.1."),
)

# Read off the original code (and its key manifest): name -> shape in the paper model with ZPressor, K=4.
HAND_CHECKED = {
    "backbone.dino.pos_embed": (1, 785, 768),  # 28 x 28 patches of 8 px (224 px pretraining) + class token
    "backbone.dino.blocks.11.attn.qkv.weight": (2304, 768),
    "backbone.resnet_backbone.model.layer4.2.conv3.weight": (2048, 512, 1, 1),  # never run, but saved
    "backbone.resnet_backbone.model.bn1.running_var": (64,),
    "backbone.resnet_backbone.model.bn1.num_batches_tracked": (),
    "backbone.resnet_backbone.projections.layer3.weight": (512, 1024, 1, 1),
    "backbone.global_token_mlp.2.weight": (512, 768),
    "backbone_projection.1.weight": (128, 512),
    "zipmatch.cross_attn_layers.0.5.proj_kv.weight": (256, 128),
    "epipolar_transformer.downscaler.weight": (128, 128, 4, 4),
    "epipolar_transformer.depth_encoding.1.weight": (128, 20),  # 10 octaves x (sin, cos)
    "epipolar_transformer.transformer.layers.1.0.fn.to_kv.weight": (1024, 128),  # 4 heads x 128, k and v
    "epipolar_transformer.transformer.layers.1.1.norm.bias": (128,),
    "epipolar_transformer.transformer.layers.0.1.fn.self_attention.positional_encoding.1.weight": (128, 40),
    "epipolar_transformer.transformer.layers.0.1.fn.self_attention.transformer.layers.1.1.fn.net.3.weight": (
        128,
        256,
    ),
    "epipolar_transformer.upscale_refinement.2.weight": (128, 256, 7, 7),
    "epipolar_transformer.view_embeddings.weight": (4, 128),
    "depth_predictor.projection.1.weight": (64, 128),  # 32 buckets x (probability, offset)
    "to_gaussians.1.weight": (84, 128),  # offset 2, scale 3, rotation 4, SH 75
    "high_resolution_skip.0.weight": (128, 3, 7, 7),
}


def to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    official = {}
    for key, tensor in state.items():
        for ours, theirs in TO_OFFICIAL:
            match = re.match(ours, key)
            if match:
                official["encoder." + match.expand(theirs) + key[match.end() :]] = tensor
                break
        else:
            raise AssertionError(f"no original name for {key}")
    return official


def paper_state(method: str, **overrides) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_encoder(method, **overrides).state_dict()


@pytest.mark.parametrize(
    ("method", "overrides", "count"),
    [
        ("zpressor-pixelsplat", {}, 677),
        ("pixelsplat", {"num_context_views": 2}, 574),
        ("pixelsplat", {}, 575),
    ],
)
def test_original_names_round_trip(method: str, overrides: dict, count: int) -> None:
    ours = paper_state(method, **overrides)
    official = to_official(ours)
    assert len(official) == count  # tensors in the original's state dict (BatchNorm statistics included)
    back = import_official(official, method, **overrides)
    assert back.keys() == ours.keys()
    assert all(back[key] is official[theirs] for key, theirs in zip(ours, official, strict=True))


def test_hand_checked_names_and_shapes() -> None:
    official = {key: tuple(t.shape) for key, t in to_official(paper_state("zpressor-pixelsplat")).items()}
    assert {key: official.get("encoder." + key) for key in HAND_CHECKED} == HAND_CHECKED


@pytest.mark.parametrize(
    ("method", "overrides", "manifest"),
    [
        ("zpressor-pixelsplat", {}, "zp_k4"),
        ("pixelsplat", {"num_context_views": 2}, "base_v2"),
        ("pixelsplat", {}, "base_v4"),
    ],
)
def test_names_and_shapes_equal_the_original_manifest(method: str, overrides: dict, manifest: str) -> None:
    path = REF / f"official_keys_pixelsplat_{manifest}.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (dumped from the original code, not shipped)")
    expected = json.loads(path.read_text())["keys"]
    official = {key: list(t.shape) for key, t in to_official(paper_state(method, **overrides)).items()}
    assert official == expected


def test_view_embeddings_are_tiled_as_the_original_test_script_does() -> None:
    # The 4-view baseline checkpoint evaluated with 12 context views: new row n = old row n mod 4.
    official = to_official(paper_state("pixelsplat"))
    rows = torch.arange(4 * 128, dtype=torch.float32).view(4, 128)
    official["encoder.epipolar_transformer.view_embeddings.weight"] = rows
    imported = import_official(official, "pixelsplat", num_context_views=12)
    assert torch.equal(imported["epipolar.view_embeddings.weight"], rows[[n % 4 for n in range(12)]])
    # ... and it then loads strictly into the 12-view encoder.
    with torch.device("meta"):
        encoder = build_encoder("pixelsplat", num_context_views=12)
    assert encoder.load_state_dict(imported, strict=True, assign=True) is not None


def test_import_refuses_what_it_cannot_place() -> None:
    official = to_official(paper_state("zpressor-pixelsplat"))
    with pytest.raises(ValueError, match="has ZPressor weights but method is 'pixelsplat'"):
        import_official(official, "pixelsplat")
    with pytest.raises(ValueError, match="keys outside 'encoder.'"):
        import_official({**official, "decoder.background_color": torch.zeros(3)}, "zpressor-pixelsplat")
    baseline = to_official(paper_state("pixelsplat"))
    with pytest.raises(ValueError, match="an encoder for 2 views has none"):
        import_official(baseline, "pixelsplat", num_context_views=2)
    two_views = to_official(paper_state("pixelsplat", num_context_views=2))
    with pytest.raises(ValueError, match="no view embeddings"):
        import_official(two_views, "pixelsplat")
    with pytest.raises(ValueError, match="have no place"):
        import_official(
            {**baseline, "encoder.epipolar_transformer.unknown.weight": torch.zeros(1)}, "pixelsplat"
        )


@pytest.fixture(scope="module")
def small_encoder():
    torch.manual_seed(0)
    return build_encoder("zpressor-pixelsplat", "small")


def fresh_small():
    torch.manual_seed(1)
    return build_encoder("zpressor-pixelsplat", "small")


def assert_same_parameters(a, b, prefix: str = "") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if key.startswith(prefix):
            assert torch.equal(sa[key], sb[key]), key


def test_official_checkpoint_loads_through_load_pretrained_and_the_command(
    small_encoder, tmp_path, capsys
) -> None:
    official = to_official(small_encoder.state_dict())
    torch.save({"state_dict": official, "global_step": 10}, tmp_path / "official.ckpt")
    target = fresh_small()
    report = load_pretrained(target, tmp_path / "official.ckpt")
    assert report.kind == "official" and not report.unused and not report.missing
    assert_same_parameters(small_encoder, target)

    parser = argparse.ArgumentParser()
    import_checkpoint.add_arguments(parser)
    args = [
        str(tmp_path / "official.ckpt"),
        str(tmp_path / "out.pt"),
        "--method",
        "zpressor-pixelsplat-small",
    ]
    assert import_checkpoint.run(parser.parse_args(args)) == 0
    assert f"used: {len(official)} tensors" in capsys.readouterr().out
    converted = fresh_small()
    converted.load_state_dict(torch.load(tmp_path / "out.pt", weights_only=True), strict=True)
    assert_same_parameters(small_encoder, converted)


def test_dino_initialisation_files(small_encoder, tmp_path) -> None:
    # The original starts from DINO's pretrained ViT and ResNet (torch.hub pretrained=True).
    state = small_encoder.state_dict()
    vit = {k[len("backbone.vit.") :]: v for k, v in state.items() if k.startswith("backbone.vit.")}
    torch.save(vit, tmp_path / "dino_vit.pth")
    target = fresh_small()
    report = load_pretrained(target, tmp_path / "dino_vit.pth")
    assert report.kind == "dino_vit" and len(report.tensors) == len(vit)
    assert_same_parameters(small_encoder, target, "backbone.vit.")
    assert not torch.equal(target.state_dict()["gaussian_head.weight"], state["gaussian_head.weight"])

    resnet = {k[len("backbone.resnet.") :]: v for k, v in state.items() if k.startswith("backbone.resnet.")}
    torch.save({**resnet, "fc.weight": torch.zeros(10, 256)}, tmp_path / "dino_resnet.pth")
    report = load_pretrained(target, tmp_path / "dino_resnet.pth")
    assert report.kind == "dino_resnet" and report.ignored == ["fc.weight"]
    assert_same_parameters(small_encoder, target, "backbone.resnet.")
