"""Loading checkpoint files safely and mapping the original code's parameter names onto this project's.

Files are read with ``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain metadata
but can never run code while loading.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import torch
from torch import Tensor


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Tensors of a checkpoint file: a Lightning checkpoint (``{"state_dict": ...}``) or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint file not found: {path} (give the path of a downloaded .ckpt/.pth file)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    state_dict = payload.get("state_dict", payload) if isinstance(payload, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise ValueError(
            f"{path} holds no state dict (expected a dict of tensors or a Lightning 'state_dict')"
        )
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise ValueError(f"{path}: state dict entries that are not tensors, e.g. {not_tensors[:3]}")
    return dict(state_dict)


# ---------------------------------------------------------------------------------------------------
# ZPressor


# Original ZPressor names (after the prefix) -> this project's ``ZPressor`` names. ``{l}`` is the layer;
# the original's feature-level index is always 0 (every backbone passes a single embedding size).
_ZPRESSOR_KEY = re.compile(
    r"^(?P<stack>self_attn_layers|cross_attn_layers)\.(?P<level>\d+)\.(?P<layer>\d+)\.(?P<rest>.+)$"
)
_ZPRESSOR_RENAMES = {
    ("cross_attn_layers", "projq"): "cross.to_q",
    ("cross_attn_layers", "proj_kv"): "cross.to_kv",
    ("cross_attn_layers", "proj"): "cross.out",
    ("cross_attn_layers", "norm1"): "cross.norm_query",
    ("cross_attn_layers", "norm2"): "cross.norm_context",
    ("cross_attn_layers", "mlp"): "mlp",  # only in the no-self-attention ablation
    ("self_attn_layers", "to_qkv"): "self_attn.to_qkv",
    ("self_attn_layers", "norm"): "self_attn.norm",
    ("self_attn_layers", "to_out.0"): "self_attn.to_out",  # only with several heads
    ("self_attn_layers", "mlp"): "mlp",
}


def _rename_zpressor_key(key: str) -> str | None:
    match = _ZPRESSOR_KEY.match(key)
    if match is None or match["level"] != "0":
        return None
    module, _, leaf = match["rest"].rpartition(".")
    for (stack, original), ours in _ZPRESSOR_RENAMES.items():
        if stack != match["stack"]:
            continue
        if module == original:
            return f"layers.{match['layer']}.{ours}.{leaf}"
        if module.startswith(original + "."):
            return f"layers.{match['layer']}.{ours}.{module[len(original) + 1 :]}.{leaf}"
    return None


def import_official_zpressor(state_dict: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The original ZPressor's tensors under ``prefix`` (e.g. ``encoder.depth_predictor.zipmatch.``),
    renamed for ``zpressor_ns.zpressor.ZPressor`` (load with ``strict=True``).

    Raises ValueError when nothing lives under the prefix or a key there is not a known ZPressor key.
    """
    if prefix and not prefix.endswith("."):
        prefix += "."
    converted: dict[str, Tensor] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        if not key.startswith(prefix):
            continue
        ours = _rename_zpressor_key(key[len(prefix) :])
        if ours is None:
            unknown.append(key)
        else:
            converted[ours] = tensor
    if unknown:
        raise ValueError(f"keys under {prefix!r} that are not ZPressor parameters: {unknown[:5]}")
    if not converted:
        sample = list(state_dict)[:3]
        raise ValueError(
            f"no ZPressor parameters under the prefix {prefix!r} (the state dict starts with {sample})"
        )
    return converted


# ---------------------------------------------------------------------------------------------------
# The whole DepthSplat(+ZPressor) encoder

_OFFICIAL_ENCODER_PREFIX = "encoder."
_OFFICIAL_ZPRESSOR_PREFIX = "depth_predictor.zipmatch."
# Original module path (after ``encoder.``) -> this project's ``DepthSplatEncoder`` path. Inside each
# module the names already agree (CNN, transformer, ViT hub names, U-Net, DPT).
_OFFICIAL_ENCODER_PREFIXES = (
    ("depth_predictor.backbone.", "cnn."),
    ("depth_predictor.transformer.", "transformer."),
    ("depth_predictor.pretrained.", "vit."),
    ("depth_predictor.regressor.0.0.", "depth_regressor.proj_in."),
    ("depth_predictor.regressor.0.1.", "depth_regressor.norm."),
    ("depth_predictor.regressor.0.3.", "depth_regressor.unet."),
    ("depth_predictor.regressor.0.4.", "depth_regressor.proj_out."),
    ("depth_predictor.regressor_residual.0.", "depth_regressor_residual."),
    ("depth_predictor.depth_head.0.", "depth_head."),
    ("depth_predictor.upsampler.", "dpt."),
    ("feature_upsampler.upsampler.0.", "feature_upsampler."),
    ("gaussian_regressor.0.", "gaussian_regressor.proj_in."),
    ("gaussian_regressor.1.", "gaussian_regressor.norm."),
    ("gaussian_regressor.3.", "gaussian_regressor.unet."),
    ("gaussian_regressor.4.", "gaussian_regressor.proj_out."),
    ("gaussian_head.", "gaussian_head."),
)


def _rename_encoder_key(key: str) -> str | None:
    for original, ours in _OFFICIAL_ENCODER_PREFIXES:
        if key.startswith(original):
            return ours + key[len(original) :]
    return None


def import_official(state_dict: dict[str, Tensor], method: str) -> dict[str, Tensor]:
    """An original DepthSplat/ZPressor Lightning ``state_dict`` (keys ``encoder.*``) renamed for
    ``build_encoder(method)``, loadable with ``strict=True``.

    ``method`` is "zpressor-depthsplat" or "depthsplat" and must agree with the file (ZPressor weights
    present or not). Every key must be understood; anything else raises ValueError naming the keys.
    Shapes are checked by ``load_state_dict``.
    """
    if method not in ("zpressor-depthsplat", "depthsplat"):
        raise ValueError(
            f"import_official: unknown method {method!r}; use 'zpressor-depthsplat' or 'depthsplat'"
        )
    outside = [key for key in state_dict if not key.startswith(_OFFICIAL_ENCODER_PREFIX)]
    if outside:
        raise ValueError(
            f"not an official DepthSplat checkpoint: keys outside 'encoder.', e.g. {outside[:5]} "
            "(Depth Anything V2 and GMFlow initialisation files go through zpressor_ns.pretrained)"
        )
    encoder = {key[len(_OFFICIAL_ENCODER_PREFIX) :]: tensor for key, tensor in state_dict.items()}
    has_zpressor = any(key.startswith(_OFFICIAL_ZPRESSOR_PREFIX) for key in encoder)
    if has_zpressor != (method == "zpressor-depthsplat"):
        found = "has" if has_zpressor else "has no"
        other = "zpressor-depthsplat" if has_zpressor else "depthsplat"
        raise ValueError(f"the checkpoint {found} ZPressor weights but method is {method!r}; use {other!r}")

    converted: dict[str, Tensor] = {}
    if has_zpressor:
        zpressor = import_official_zpressor(encoder, _OFFICIAL_ZPRESSOR_PREFIX)
        converted.update({f"zpressor.{key}": tensor for key, tensor in zpressor.items()})
    unknown = []
    for key, tensor in encoder.items():
        if key.startswith(_OFFICIAL_ZPRESSOR_PREFIX):
            continue
        ours = _rename_encoder_key(key)
        if ours is None:
            unknown.append(_OFFICIAL_ENCODER_PREFIX + key)
        else:
            converted[ours] = tensor
    if unknown:
        hint = (
            " (the pose-free cls-token DINOv2 is not supported)"
            if any(".dinov2." in k for k in unknown)
            else ""
        )
        raise ValueError(f"{len(unknown)} checkpoint keys have no place in the encoder{hint}: {unknown[:5]}")
    return converted
