"""Official checkpoint import: every official tensor has exactly one place in our encoder, and back.

Without any downloaded file, the official state dict is reconstructed from our encoder with a map
written here from the documented official module paths; its names must follow the documented key
patterns, and ``import_official`` must invert it. Where the official key manifest (dumped from the
original code into the git-ignored ``.ref/``) exists, names and shapes are compared with it exactly.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import pytest
import torch

from zpressor_ns.commands import describe, import_checkpoint
from zpressor_ns.encoders import build_encoder, import_official
from zpressor_ns.pretrained import load_pretrained

REF = Path(__file__).resolve().parents[1] / ".ref"

# Our module path -> official module path (facts sheet §6, "Other DepthSplat keys").
DEPTHSPLAT_TO_OFFICIAL = (
    ("cnn.", "depth_predictor.backbone."),
    ("transformer.", "depth_predictor.transformer."),
    ("vit.", "depth_predictor.pretrained."),
    ("depth_regressor.proj_in.", "depth_predictor.regressor.0.0."),
    ("depth_regressor.norm.", "depth_predictor.regressor.0.1."),
    ("depth_regressor.unet.", "depth_predictor.regressor.0.3."),
    ("depth_regressor.proj_out.", "depth_predictor.regressor.0.4."),
    ("depth_regressor_residual.", "depth_predictor.regressor_residual.0."),
    ("depth_head.", "depth_predictor.depth_head.0."),
    ("dpt.", "depth_predictor.upsampler."),
    ("feature_upsampler.", "feature_upsampler.upsampler.0."),
    ("gaussian_regressor.proj_in.", "gaussian_regressor.0."),
    ("gaussian_regressor.norm.", "gaussian_regressor.1."),
    ("gaussian_regressor.unet.", "gaussian_regressor.3."),
    ("gaussian_regressor.proj_out.", "gaussian_regressor.4."),
    ("gaussian_head.", "gaussian_head."),
)
# facts sheet §6, "MVSplat keys".
MVSPLAT_TO_OFFICIAL = (
    ("cnn.", "backbone.backbone."),
    ("transformer.", "backbone.transformer."),
    ("cost_refiner.proj_in.", "depth_predictor.corr_refine_net.0."),
    ("cost_refiner.norm.", "depth_predictor.corr_refine_net.1."),
    ("cost_refiner.unet.", "depth_predictor.corr_refine_net.3."),
    ("cost_refiner.proj_out.", "depth_predictor.corr_refine_net.4."),
    ("cost_residual.", "depth_predictor.regressor_residual."),
    ("depth_head.", "depth_predictor.depth_head_lowres."),
    ("feature_upsampler.", "depth_predictor.upsampler."),
    ("feature_projection.", "depth_predictor.proj_feature."),
    ("depth_refiner.proj_in.", "depth_predictor.refine_unet.0."),
    ("depth_refiner.norm.", "depth_predictor.refine_unet.1."),
    ("depth_refiner.unet.", "depth_predictor.refine_unet.3."),
    ("disparity_head.", "depth_predictor.to_disparity."),
    ("gaussian_head.", "depth_predictor.to_gaussians."),
)
# family -> (our module paths -> official ones, where the original keeps ZPressor).
TO_OFFICIAL = {
    "depthsplat": (DEPTHSPLAT_TO_OFFICIAL, "depth_predictor.zipmatch."),
    "mvsplat": (MVSPLAT_TO_OFFICIAL, "backbone.zipmatch."),
}
# ZPressor: our layer names -> the original's (facts sheet §6, "ZPressor keys").
ZPRESSOR_TO_OFFICIAL = {
    "cross.to_q": "cross_attn_layers.0.{l}.projq",
    "cross.to_kv": "cross_attn_layers.0.{l}.proj_kv",
    "cross.out": "cross_attn_layers.0.{l}.proj",
    "cross.norm_query": "cross_attn_layers.0.{l}.norm1",
    "cross.norm_context": "cross_attn_layers.0.{l}.norm2",
    "self_attn.to_qkv": "self_attn_layers.0.{l}.to_qkv",
    "self_attn.norm": "self_attn_layers.0.{l}.norm",
    "mlp": "self_attn_layers.0.{l}.mlp",
}
# The documented official key patterns (after "encoder.").
OFFICIAL_PATTERNS = [
    r"depth_predictor\.backbone\.(conv[12]|layer[123]\.[01]\.conv[12]|layer[23]\.0\.downsample\.0)\.(weight|bias)",
    r"depth_predictor\.zipmatch\.(self_attn_layers\.0\.[0-5]\.(to_qkv|norm|mlp\.(fc1|fc2|norm))"
    r"|cross_attn_layers\.0\.[0-5]\.(projq|proj_kv|proj|norm1|norm2))\.(weight|bias)",
    r"depth_predictor\.transformer\.layers\.[0-5]\.((self_attn|cross_attn_ffn)\.(q_proj|k_proj|v_proj|merge)\.weight"
    r"|(self_attn|cross_attn_ffn)\.norm1\.(weight|bias)|cross_attn_ffn\.mlp\.[02]\.weight|cross_attn_ffn\.norm2\.(weight|bias))",
    r"depth_predictor\.pretrained\.(cls_token|pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
    r"|blocks\.([0-9]|1[01])\.((norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)|ls[12]\.gamma))",
    r"depth_predictor\.regressor\.0\.([014]\.(weight|bias)|3\.(input_blocks|middle_block|output_blocks|out)\..+)",
    r"depth_predictor\.regressor_residual\.0\.(weight|bias)",
    r"depth_predictor\.depth_head\.0\.[02]\.(weight|bias)",
    r"depth_predictor\.upsampler\.(projects\.[0-3]|resize_layers\.[013]|concat_projects\.[0-2]|scratch\.layer[1-4]_rn"
    r"|scratch\.refinenet[1-3]\.(out_conv|resConfUnit[12]\.conv[12])|scratch\.refinenet4\.(out_conv|resConfUnit2\.conv[12])"
    r"|scratch\.output_conv\.[024])\.(weight|bias)",
    r"feature_upsampler\.upsampler\.0\.[0258]\.(weight|bias)",
    r"gaussian_regressor\.([014]\.(weight|bias)|3\.(input_blocks|middle_block|output_blocks|out)\..+)",
    r"gaussian_head\.[02]\.(weight|bias)",
]


def to_official(state: dict[str, torch.Tensor], family: str = "depthsplat") -> dict[str, torch.Tensor]:
    modules, zpressor_prefix = TO_OFFICIAL[family]
    official = {}
    for key, tensor in state.items():
        if key.startswith("zpressor.layers."):
            layer, rest = key[len("zpressor.layers.") :].split(".", 1)
            module, leaf = rest.rsplit(".", 1)
            prefix = next(
                p for p in sorted(ZPRESSOR_TO_OFFICIAL, key=len, reverse=True) if module.startswith(p)
            )
            name = ZPRESSOR_TO_OFFICIAL[prefix].format(l=layer) + module[len(prefix) :] + "." + leaf
            official["encoder." + zpressor_prefix + name] = tensor
            continue
        ours, theirs = next((o, t) for o, t in modules if key.startswith(o))
        official["encoder." + theirs + key[len(ours) :]] = tensor
    return official


def _parser(module) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return parser


def paper_state(method: str) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return build_encoder(method).state_dict()


@pytest.mark.parametrize(("method", "count"), [("zpressor-depthsplat", 819), ("depthsplat", 717)])
def test_official_names_follow_the_documented_layout_and_round_trip(method: str, count: int) -> None:
    ours = paper_state(method)
    official = to_official(ours)
    # 819 tensors in the published ZPressor checkpoints; ZPressor itself holds 102 of them.
    assert len(official) == count
    pattern = re.compile("encoder\\.(" + "|".join(OFFICIAL_PATTERNS) + ")$")
    assert [key for key in official if not pattern.match(key)] == []
    back = import_official(official, method)
    assert back.keys() == ours.keys()
    assert all(
        back[key] is official_tensor for key, official_tensor in zip(ours, official.values(), strict=True)
    )


@pytest.mark.parametrize(("method", "manifest"), [("zpressor-depthsplat", "zp"), ("depthsplat", "base")])
def test_names_and_shapes_equal_the_original_manifest(method: str, manifest: str) -> None:
    path = REF / f"official_keys_depthsplat_{manifest}.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (dumped from the original code, not shipped)")
    expected = json.loads(path.read_text())["keys"]
    official = {key: list(tensor.shape) for key, tensor in to_official(paper_state(method)).items()}
    assert official == expected


# Official MVSplat names and shapes read off the original code's state dict (harness dump), one or more per
# module and every layout difference from DepthSplat: 1/4 CNN, post-norm U-Nets, 84 Gaussian channels.
MVSPLAT_OFFICIAL_SAMPLE = {
    "encoder.backbone.backbone.layer3.0.downsample.0.weight": [128, 96, 1, 1],
    "encoder.backbone.backbone.conv2.bias": [128],
    "encoder.backbone.zipmatch.cross_attn_layers.0.5.proj_kv.weight": [256, 128],
    "encoder.backbone.zipmatch.self_attn_layers.0.0.mlp.fc1.weight": [512, 128],
    "encoder.backbone.transformer.layers.5.cross_attn_ffn.mlp.0.weight": [1024, 256],
    "encoder.depth_predictor.corr_refine_net.0.weight": [128, 256, 3, 3],
    "encoder.depth_predictor.corr_refine_net.1.bias": [128],
    "encoder.depth_predictor.corr_refine_net.3.input_blocks.1.0.in_layers.1.weight": [128],
    "encoder.depth_predictor.corr_refine_net.3.input_blocks.5.1.qkv.weight": [384, 128, 1],
    "encoder.depth_predictor.corr_refine_net.3.output_blocks.1.2.conv.weight": [128, 128, 3, 3],
    "encoder.depth_predictor.corr_refine_net.3.out.1.weight": [128],
    "encoder.depth_predictor.corr_refine_net.4.weight": [128, 128, 3, 3],
    "encoder.depth_predictor.regressor_residual.weight": [128, 256, 1, 1],
    "encoder.depth_predictor.depth_head_lowres.2.weight": [128, 256, 3, 3],
    "encoder.depth_predictor.upsampler.0.weight": [128, 256, 3, 3],
    "encoder.depth_predictor.proj_feature.weight": [32, 128, 3, 3],
    "encoder.depth_predictor.refine_unet.0.weight": [32, 37, 3, 3],
    "encoder.depth_predictor.refine_unet.1.weight": [32],
    "encoder.depth_predictor.refine_unet.3.input_blocks.9.1.qkv.weight": [96, 32, 1],
    "encoder.depth_predictor.refine_unet.3.output_blocks.9.0.skip_connection.weight": [32, 64, 1, 1],
    "encoder.depth_predictor.refine_unet.3.out.0.weight": [32, 32, 3, 3],
    "encoder.depth_predictor.to_disparity.2.weight": [2, 64, 3, 3],
    "encoder.depth_predictor.to_gaussians.0.weight": [168, 163, 3, 3],
    "encoder.depth_predictor.to_gaussians.2.bias": [84],
}


@pytest.mark.parametrize(("method", "count"), [("zpressor-mvsplat", 573), ("mvsplat", 471)])
def test_mvsplat_official_names_and_shapes_round_trip(method: str, count: int) -> None:
    ours = paper_state(method)
    official = {key: list(tensor.shape) for key, tensor in to_official(ours, "mvsplat").items()}
    assert len(official) == count  # the tensors of the original's state dict (harness dump)
    sample = {
        k: v
        for k, v in MVSPLAT_OFFICIAL_SAMPLE.items()
        if method.startswith("zpressor") or "zipmatch" not in k
    }
    assert {key: official.get(key) for key in sample} == sample
    back = import_official(to_official(ours, "mvsplat"), method)
    assert {key: tuple(t.shape) for key, t in back.items()} == {
        key: tuple(t.shape) for key, t in ours.items()
    }


@pytest.mark.parametrize("method", ["zpressor-mvsplat", "mvsplat"])
def test_mvsplat_names_and_shapes_equal_the_original_manifest(method: str) -> None:
    path = REF / "fixtures" / "mvsplat_official_keys.json"
    if not path.is_file():
        pytest.skip(f"{path} not present (dumped from the original code's state dict, not shipped)")
    expected = json.loads(path.read_text())[method]
    official = {key: list(t.shape) for key, t in to_official(paper_state(method), "mvsplat").items()}
    assert official == expected
    assert (
        import_official(to_official(paper_state(method), "mvsplat"), method).keys()
        == paper_state(method).keys()
    )


def test_import_refuses_what_it_cannot_place() -> None:
    official = to_official(paper_state("zpressor-depthsplat"))
    with pytest.raises(ValueError, match="has ZPressor weights but method is 'depthsplat'"):
        import_official(official, "depthsplat")
    with pytest.raises(ValueError, match="cls-token DINOv2"):
        import_official(
            {**official, "encoder.depth_predictor.dinov2.cls_token": torch.zeros(1)}, "zpressor-depthsplat"
        )
    with pytest.raises(ValueError, match="keys outside 'encoder.'"):
        import_official({**official, "decoder.background_color": torch.zeros(3)}, "zpressor-depthsplat")


@pytest.fixture(scope="module")
def small_encoder():
    torch.manual_seed(0)
    return build_encoder("zpressor-depthsplat", "small")


def fresh_small() -> torch.nn.Module:
    torch.manual_seed(1)
    return build_encoder("zpressor-depthsplat", "small")


def assert_same_parameters(a: torch.nn.Module, b: torch.nn.Module, prefix: str = "") -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for key in sa:
        if key.startswith(prefix):
            assert torch.equal(sa[key], sb[key]), key


def test_load_pretrained_reads_an_official_lightning_checkpoint(small_encoder, tmp_path: Path) -> None:
    path = tmp_path / "official.ckpt"
    torch.save({"state_dict": to_official(small_encoder.state_dict()), "epoch": 3}, path)
    target = fresh_small()
    report = load_pretrained(target, path)
    assert report.kind == "official" and not report.unused and not report.missing
    assert_same_parameters(small_encoder, target)
    # A ZPressor checkpoint does not fit the baseline encoder.
    with pytest.raises(ValueError, match=str(path)):
        load_pretrained(build_encoder("depthsplat", "small"), path)


def test_load_pretrained_reads_official_mvsplat_files(tmp_path: Path) -> None:
    """A published MVSplat ZPressor checkpoint loads whole; UniMatch GMDepth initialises CNN + transformer."""
    torch.manual_seed(0)
    source = build_encoder("zpressor-mvsplat", "small")
    path = tmp_path / "mvsplat.ckpt"
    torch.save({"state_dict": to_official(source.state_dict(), "mvsplat"), "global_step": 9}, path)
    torch.manual_seed(1)
    target = build_encoder("zpressor-mvsplat", "small")
    report = load_pretrained(target, path)
    assert report.kind == "official" and not report.unused and not report.missing
    assert_same_parameters(source, target)
    with pytest.raises(ValueError, match="has ZPressor weights but method is 'mvsplat'"):
        load_pretrained(build_encoder("mvsplat", "small"), path)

    state = source.state_dict()
    gmdepth = {
        **{"backbone." + k[4:]: v for k, v in state.items() if k.startswith("cnn.")},
        **{k: v for k, v in state.items() if k.startswith("transformer.")},
        "upsampler.0.weight": torch.zeros(256, 129, 3, 3),
        "feature_flow_attn.q_proj.weight": torch.zeros(64, 64),
    }
    torch.save({"model": gmdepth}, tmp_path / "gmdepth.pth")
    torch.manual_seed(2)
    fresh = build_encoder("mvsplat", "small")
    report = load_pretrained(fresh, tmp_path / "gmdepth.pth")
    assert report.kind == "gmdepth" and len(report.ignored) == 2
    assert_same_parameters(source, fresh, "cnn.")
    assert_same_parameters(source, fresh, "transformer.")
    assert not torch.equal(fresh.state_dict()["gaussian_head.0.weight"], state["gaussian_head.0.weight"])


def test_load_pretrained_initialisation_files(small_encoder, tmp_path: Path) -> None:
    state = small_encoder.state_dict()
    vit = {"pretrained." + k[4:]: v for k, v in state.items() if k.startswith("vit.")}
    depth_anything = {
        **vit,
        "pretrained.mask_token": torch.zeros(1, 64),
        "depth_head.projects.0.weight": torch.zeros(4, 64, 1, 1),
    }
    torch.save(depth_anything, tmp_path / "depth_anything_v2.pth")
    target = fresh_small()
    report = load_pretrained(target, tmp_path / "depth_anything_v2.pth")
    assert report.kind == "depth_anything" and len(report.tensors) == len(vit) and len(report.ignored) == 2
    assert_same_parameters(small_encoder, target, "vit.")
    assert not torch.equal(target.state_dict()["cnn.conv1.weight"], state["cnn.conv1.weight"])

    gmflow = {
        **{"backbone." + k[4:]: v for k, v in state.items() if k.startswith("cnn.")},
        **{k: v for k, v in state.items() if k.startswith("transformer.")},
        "upsampler.0.weight": torch.zeros(256, 66, 3, 3),
        "feature_flow_attn.q_proj.weight": torch.zeros(64, 64),
    }
    torch.save({"model": gmflow}, tmp_path / "gmflow.pth")
    report = load_pretrained(target, tmp_path / "gmflow.pth")
    assert report.kind == "gmflow" and len(report.ignored) == 2
    assert_same_parameters(small_encoder, target, "cnn.")
    assert_same_parameters(small_encoder, target, "transformer.")

    torch.save({**depth_anything, "pretrained.extra_token": torch.zeros(3)}, tmp_path / "odd.pth")
    with pytest.raises(ValueError, match="extra_token"):
        load_pretrained(target, tmp_path / "odd.pth")
    paper_vit = {"pretrained.cls_token": torch.zeros(1, 1, 768)}
    torch.save(paper_vit, tmp_path / "vitb.pth")
    with pytest.raises(ValueError, match=r"vit.cls_token \(1, 1, 768\) -> \(1, 1, 64\)"):
        load_pretrained(target, tmp_path / "vitb.pth")


def test_import_checkpoint_command(small_encoder, tmp_path: Path, capsys) -> None:
    source = tmp_path / "official.ckpt"
    official = to_official(small_encoder.state_dict())
    torch.save({"state_dict": official}, source)
    args = [str(source), str(tmp_path / "out.pt"), "--method", "zpressor-depthsplat-small"]
    parser = _parser(import_checkpoint)
    assert import_checkpoint.run(parser.parse_args(args)) == 0
    assert f"used: {len(official)} tensors" in capsys.readouterr().out
    converted = torch.load(tmp_path / "out.pt", weights_only=True)
    target = fresh_small()
    target.load_state_dict(converted, strict=True)
    assert_same_parameters(small_encoder, target)
    assert load_pretrained(fresh_small(), tmp_path / "out.pt").kind == "converted"

    torch.save({"state_dict": {**official, "encoder.unknown.weight": torch.zeros(1)}}, source)
    args[1] = str(tmp_path / "never.pt")
    assert import_checkpoint.run(parser.parse_args(args)) == 1
    assert not (tmp_path / "never.pt").exists()


@pytest.mark.parametrize(
    ("method", "total"),
    [
        ("zpressor-depthsplat", 116_072_834),
        ("depthsplat", 114_587_522),
        ("zpressor-mvsplat", 13_441_046),
        ("mvsplat", 11_955_734),
    ],
)
def test_describe_prints_the_paper_counts(method: str, total: int, capsys) -> None:
    """The original code's exact parameter counts (measured by the harnesses in shared/parity)."""
    assert describe.run(_parser(describe).parse_args([method, "--json"])) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts["total_params"] == total and sum(counts["modules"].values()) == total
    assert counts["modules"].get("zpressor", 0) == (1_485_312 if method.startswith("zpressor-") else 0)
