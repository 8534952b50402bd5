"""Weights for the DepthSplat encoder from local files: published checkpoints and DepthSplat's initialisation.

Four kinds of file are understood (``kind="auto"`` tells them apart by their keys):
- ``official``: a published ZPressor/DepthSplat Lightning checkpoint (``encoder.*`` keys), the whole model;
- ``depth_anything``: Depth Anything V2 (``pretrained.*`` = its fine-tuned DINOv2, ``depth_head.*``), which
  DepthSplat uses to initialise its ViT;
- ``gmflow``: UniMatch's GMFlow weights (``{"model": ...}`` with ``backbone.*``, ``transformer.*``), which
  initialise the CNN and the multi-view transformer;
- ``converted``: a file written by ``zpressor-ns import-checkpoint`` (this project's names).

Keys that the original also leaves unused (Depth Anything's own DPT head and mask token, GMFlow's flow
upsampler and propagation layers) are reported as ignored; any other key that finds no place is an error,
so a wrong file never loads silently. Files are read with ``weights_only=True`` (no code runs).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from zpressor_ns.checkpoints import import_official, load_state_dict_file

Kind = Literal["auto", "official", "depth_anything", "gmflow", "converted"]
KINDS: tuple[str, ...] = ("official", "depth_anything", "gmflow", "converted")

# kind -> (file prefix -> our prefix) for the initialisation files.
_INIT_PREFIXES = {
    "depth_anything": (("pretrained.", "vit."),),
    "gmflow": (("backbone.", "cnn."), ("transformer.", "transformer.")),
}
# Keys the original DepthSplat does not load either (no counterpart in its encoder).
_IGNORED_PREFIXES = {
    "depth_anything": ("depth_head.", "pretrained.mask_token"),
    "gmflow": ("upsampler.", "feature_flow_attn."),
}
_CONVERTED_MODULES = (
    "cnn.",
    "zpressor.",
    "transformer.",
    "vit.",
    "depth_regressor.",
    "depth_regressor_residual.",
    "depth_head.",
    "dpt.",
    "feature_upsampler.",
    "gaussian_regressor.",
    "gaussian_head.",
)


@dataclass
class Conversion:
    """A weights file in this project's names, and what of the file was not used."""

    kind: str
    tensors: dict[str, Tensor]
    ignored: list[str] = field(default_factory=list)  # known to have no counterpart (as in the original)
    unused: list[str] = field(default_factory=list)  # not understood, or the shape does not fit
    missing: list[str] = field(default_factory=list)  # encoder parameters the file does not provide

    @property
    def complete(self) -> bool:
        """Every key of the file was used or knowingly ignored."""
        return not self.unused

    def summary(self) -> str:
        lines = [
            f"kind: {self.kind}",
            f"used: {len(self.tensors)} tensors",
            f"ignored (unused by the original too): {len(self.ignored)}",
            f"unused: {len(self.unused)}" + (f" e.g. {self.unused[:5]}" if self.unused else ""),
            f"encoder parameters not in the file: {len(self.missing)}"
            + (f" e.g. {self.missing[:3]}" if self.missing else ""),
        ]
        return "\n".join(lines)


def read_weights_file(path: str | Path) -> dict[str, Tensor]:
    """The tensors of a checkpoint; also unwraps UniMatch/GMFlow's ``{"model": state_dict}`` files."""
    try:
        return load_state_dict_file(path)
    except ValueError as error:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError):
            raise error from None
        model = payload.get("model") if isinstance(payload, dict) else None
        if isinstance(model, dict) and model and all(isinstance(v, Tensor) for v in model.values()):
            return dict(model)
        raise


def detect_kind(state_dict: dict[str, Tensor]) -> str:
    """Which of :data:`KINDS` a state dict is, from its key names."""
    keys = list(state_dict)
    if any(key.startswith("encoder.") for key in keys):
        return "official"
    if all(key.startswith(_CONVERTED_MODULES) for key in keys) and any(
        key.startswith(("depth_regressor.", "gaussian_head.", "dpt.")) for key in keys
    ):
        return "converted"
    if any(key.startswith(("pretrained.", "depth_head.")) for key in keys):
        return "depth_anything"
    if any(key.startswith(("backbone.", "transformer.", "feature_flow_attn.")) for key in keys):
        return "gmflow"
    raise ValueError(
        f"cannot tell what kind of weights file this is (keys start with {keys[:3]}); expected an official "
        "ZPressor/DepthSplat checkpoint, Depth Anything V2 weights, GMFlow weights or a converted file"
    )


def convert_weights(
    state_dict: dict[str, Tensor], encoder_state: dict[str, Tensor], method: str, kind: str = "auto"
) -> Conversion:
    """Rename ``state_dict`` for an encoder whose own state dict is ``encoder_state`` (shapes are checked)."""
    kind = detect_kind(state_dict) if kind == "auto" else kind
    if kind not in KINDS:
        raise ValueError(f"unknown weights kind {kind!r}; choose one of {list(KINDS)} or 'auto'")
    ignored: list[str] = []
    unused: list[str] = []
    if kind == "official":
        renamed = import_official(state_dict, method)
    elif kind == "converted":
        renamed = dict(state_dict)
    else:
        renamed = {}
        for key, tensor in state_dict.items():
            target = next(
                (
                    ours + key[len(theirs) :]
                    for theirs, ours in _INIT_PREFIXES[kind]
                    if key.startswith(theirs)
                ),
                None,
            )
            if key.startswith(_IGNORED_PREFIXES[kind]):
                ignored.append(key)
            elif target is None:
                unused.append(key)
            else:
                renamed[target] = tensor
    fitting = {}
    for key, tensor in renamed.items():
        if key in encoder_state and encoder_state[key].shape == tensor.shape:
            fitting[key] = tensor
        else:
            shape = tuple(encoder_state[key].shape) if key in encoder_state else "no such parameter"
            unused.append(f"{key} {tuple(tensor.shape)} -> {shape}")
    missing = [key for key in encoder_state if key not in fitting]
    return Conversion(kind, fitting, ignored, unused, missing)


def load_pretrained(encoder: nn.Module, path: str | Path, kind: Kind = "auto") -> Conversion:
    """Load a weights file of any :data:`KINDS` into a ``DepthSplatEncoder``; returns the coverage report.

    A whole model (official or converted) must cover every parameter; initialisation files cover their
    part and leave the rest as initialised. Raises ValueError (naming the file) when any key of the file
    finds no place, so a wrong or mismatched file never loads partially.
    """
    method = "zpressor-depthsplat" if getattr(encoder, "zpressor", None) is not None else "depthsplat"
    state_dict = read_weights_file(path)
    try:
        conversion = convert_weights(state_dict, encoder.state_dict(), method, kind)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    whole_model = conversion.kind in ("official", "converted")
    if not conversion.complete or (whole_model and conversion.missing):
        raise ValueError(f"{path} does not fit the {method} encoder:\n{conversion.summary()}")
    encoder.load_state_dict(conversion.tensors, strict=whole_model)
    return conversion
