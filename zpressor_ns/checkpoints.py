"""Loading checkpoint files safely and mapping the original code's parameter names onto this project's.

Files are read with ``torch.load(weights_only=True)``: a checkpoint can hold tensors and plain metadata
but can never run code while loading.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Sequence
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
# A whole encoder

OFFICIAL_ENCODER_PREFIX = "encoder."


def import_official_encoder(
    state_dict: dict[str, Tensor],
    *,
    family: str,
    use_zpressor: bool,
    zpressor_prefix: str,
    module_prefixes: Sequence[tuple[str, str]],
) -> dict[str, Tensor]:
    """An original Lightning ``state_dict`` (keys ``encoder.*``) renamed for one of this project's encoders.

    ``zpressor_prefix`` is where the family's original keeps ZPressor (after ``encoder.``);
    ``module_prefixes`` maps the original's module paths (after ``encoder.``) onto this project's, in order
    (the first match wins). The file must agree with ``use_zpressor``, and every key must find a place:
    anything else raises ValueError naming the keys. Shapes are checked by ``load_state_dict``.
    """
    method = f"zpressor-{family}" if use_zpressor else family
    outside = [key for key in state_dict if not key.startswith(OFFICIAL_ENCODER_PREFIX)]
    if outside:
        raise ValueError(
            f"not an official {family} checkpoint: keys outside 'encoder.', e.g. {outside[:5]} "
            "(initialisation files such as Depth Anything V2, GMFlow or DINO go through zpressor_ns.pretrained)"
        )
    encoder = {key[len(OFFICIAL_ENCODER_PREFIX) :]: tensor for key, tensor in state_dict.items()}
    has_zpressor = any(key.startswith(zpressor_prefix) for key in encoder)
    if has_zpressor != use_zpressor:
        found = "has" if has_zpressor else "has no"
        other = f"zpressor-{family}" if has_zpressor else family
        raise ValueError(f"the checkpoint {found} ZPressor weights but method is {method!r}; use {other!r}")

    converted: dict[str, Tensor] = {}
    if has_zpressor:
        zpressor = import_official_zpressor(encoder, zpressor_prefix)
        converted.update({f"zpressor.{key}": tensor for key, tensor in zpressor.items()})
    unknown = []
    for key, tensor in encoder.items():
        if key.startswith(zpressor_prefix):
            continue
        ours = next(
            (mine + key[len(theirs) :] for theirs, mine in module_prefixes if key.startswith(theirs)), None
        )
        if ours is None:
            unknown.append(OFFICIAL_ENCODER_PREFIX + key)
        else:
            converted[ours] = tensor
    if unknown:
        hint = (
            " (the pose-free cls-token DINOv2 is not supported)"
            if any(".dinov2." in k for k in unknown)
            else ""
        )
        raise ValueError(
            f"{len(unknown)} checkpoint keys have no place in the {method} encoder{hint}: {unknown[:5]}"
        )
    return converted
