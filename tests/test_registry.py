"""The family registry is the one place methods come from: entry points, choices, options and builders."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import zpressor_ns
from zpressor_ns.encoders import ZPressorOptions, build_encoder, method_names, registered_method_names
from zpressor_ns.encoders.registry import families, resolve_method

REPO = Path(__file__).resolve().parents[1]


def test_nerfstudio_entry_points_are_the_registered_methods():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    entry_points = project["entry-points"]["nerfstudio.method_configs"]
    assert set(entry_points) == set(registered_method_names())
    for name, target in entry_points.items():
        assert target == f"zpressor_ns.method_configs.methods:{name.replace('-', '_')}"


def test_every_family_gives_a_zpressor_method_and_its_baseline_at_two_presets():
    for family in families().values():
        zpressor, baseline = family.methods
        assert zpressor == f"zpressor-{family.name}" and baseline == family.name
        assert set(family.presets) == {"paper", "small"}
        for preset in ("paper", "small"):
            assert resolve_method(f"{zpressor}-small" if preset == "small" else zpressor) == (
                zpressor,
                preset,
            )
            with torch.device("meta"):
                assert build_encoder(zpressor, preset).zpressor is not None
                assert build_encoder(baseline, preset).zpressor is None


def test_public_api_is_reachable_from_the_package():
    assert zpressor_ns.build_encoder is build_encoder
    with torch.device("meta"):
        encoder = zpressor_ns.build_encoder("zpressor-depthsplat", "small")
    assert encoder.method == "zpressor-depthsplat"
    with pytest.raises(AttributeError):
        zpressor_ns.not_a_function  # noqa: B018


@pytest.mark.parametrize("method", method_names()[::2])
def test_zpressor_options_reach_the_module(method):
    options = ZPressorOptions(num_layers=2, num_heads=2, self_attention=False, first_anchor="random")
    with torch.device("meta"):
        zpressor = build_encoder(method, "small", zpressor=options).zpressor
    assert len(zpressor.layers) == 2
    assert zpressor.config.num_heads == 2 and zpressor.config.first_anchor == "random"
    assert all(layer.self_attn is None for layer in zpressor.layers)


def test_unknown_method_names_the_choices():
    with pytest.raises(ValueError, match=r"unknown method 'splatter'; choose one of \[") as error:
        build_encoder("splatter")
    for method in method_names():
        assert method in str(error.value)


def test_model_config_checks_the_method_against_the_registry():
    pytest.importorskip("nerfstudio")
    from zpressor_ns.nerfstudio.model import FeedForwardModelConfig

    assert FeedForwardModelConfig(method="depthsplat").method == "depthsplat"
    with pytest.raises(ValueError, match="choose one of"):
        FeedForwardModelConfig(method="splatter")
