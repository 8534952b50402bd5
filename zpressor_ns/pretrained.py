"""Weights for any family's encoder from local files: published checkpoints and the original's init files.

Three kinds of file are understood for every family (``kind="auto"`` tells them apart by their keys):
- ``official``: a published ZPressor checkpoint of the family (Lightning, ``encoder.*`` keys), the whole model;
- ``converted``: a file written by ``zpressor-ns import-checkpoint`` (this project's names);
- the family's initialisation files (``EncoderFamily.init_weights``), e.g. Depth Anything V2 and GMFlow for
  DepthSplat, which the original loads into part of the encoder before training.

Keys that the original also leaves unused are reported as ignored; any other key that finds no place is an
error, so a wrong file never loads silently. Files are read with ``weights_only=True`` (no code runs).
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from zpressor_ns.checkpoints import OFFICIAL_ENCODER_PREFIX, load_state_dict_file
from zpressor_ns.encoders.base import EncoderConfig, FeedForwardEncoder
from zpressor_ns.encoders.registry import EncoderFamily, family_of

WHOLE_MODEL_KINDS = ("official", "converted")


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

    @property
    def whole_model(self) -> bool:
        return self.kind in WHOLE_MODEL_KINDS

    def coverage(self) -> str:
        """One line: what the file provided of the encoder, and what of the file was not used."""
        total = len(self.tensors) + len(self.missing)
        line = f"{self.kind} file, {len(self.tensors)}/{total} encoder tensors loaded"
        if self.missing:
            line += f", {len(self.missing)} left as initialised"
        if self.ignored:
            line += f"; {len(self.ignored)} tensors of the file ignored (unused by the original too)"
        return line

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


def kinds(family: EncoderFamily) -> tuple[str, ...]:
    """The kinds of weights file a family understands."""
    return (*WHOLE_MODEL_KINDS, *(init.kind for init in family.init_weights))


def read_weights_file(path: str | Path, family: EncoderFamily | None = None) -> dict[str, Tensor]:
    """The tensors of a checkpoint; also unwraps init files stored as ``{wrapper_key: state_dict}``."""
    try:
        return load_state_dict_file(path)
    except ValueError as error:
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError):
            raise error from None
        wrappers = {init.wrapper_key for init in (family.init_weights if family else ()) if init.wrapper_key}
        for key in sorted(wrappers) or ["model"]:
            inner = payload.get(key) if isinstance(payload, dict) else None
            if isinstance(inner, dict) and inner and all(isinstance(v, Tensor) for v in inner.values()):
                return dict(inner)
        raise


def detect_kind(
    state_dict: dict[str, Tensor], family: EncoderFamily, encoder_state: dict[str, Tensor]
) -> str:
    """Which of :func:`kinds` a state dict is, from its key names."""
    keys = list(state_dict)
    if any(key.startswith(OFFICIAL_ENCODER_PREFIX) for key in keys):
        return "official"
    if all(key in encoder_state for key in keys):
        return "converted"
    for init in family.init_weights:
        if any(key.startswith(init.detect) for key in keys):
            return init.kind
    expected = ", ".join(
        [f"an official {family.title} ZPressor checkpoint", "a converted file"]
        + [init.description for init in family.init_weights]
    )
    raise ValueError(
        f"cannot tell what kind of weights file this is (keys start with {keys[:3]}); expected {expected}"
    )


def convert_weights(
    state_dict: dict[str, Tensor],
    encoder_state: dict[str, Tensor],
    method: str,
    kind: str = "auto",
    config: EncoderConfig | None = None,
) -> Conversion:
    """Rename ``state_dict`` for ``method``'s encoder whose own state dict is ``encoder_state`` (shapes checked).

    ``config`` is the encoder's configuration (default: the paper preset's), which sizes an official import.
    """
    family, use_zpressor = family_of(method)
    kind = detect_kind(state_dict, family, encoder_state) if kind == "auto" else kind
    if kind not in kinds(family):
        raise ValueError(
            f"unknown weights kind {kind!r} for {family.title}; choose one of {list(kinds(family))} or 'auto'"
        )
    ignored: list[str] = []
    unused: list[str] = []
    if kind == "official":
        renamed = family.import_official(state_dict, config or family.config(use_zpressor))
    elif kind == "converted":
        renamed = dict(state_dict)
    else:
        init = next(init for init in family.init_weights if init.kind == kind)
        renamed = {}
        for key, tensor in state_dict.items():
            target = next(
                (ours + key[len(theirs) :] for theirs, ours in init.renames if key.startswith(theirs)), None
            )
            if init.ignored and key.startswith(init.ignored):
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


def load_pretrained(encoder: FeedForwardEncoder, path: str | Path, kind: str = "auto") -> Conversion:
    """Load a weights file into an encoder of any family; returns the coverage report.

    A whole model (official or converted) must cover every parameter; initialisation files cover their part
    and leave the rest as initialised. Raises ValueError (naming the file) when any key of the file finds no
    place, so a wrong or mismatched file never loads partially.
    """
    method = encoder.method
    family, _ = family_of(method)
    state_dict = read_weights_file(path, family)
    try:
        conversion = convert_weights(state_dict, encoder.state_dict(), method, kind, encoder.config)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from error
    if not conversion.complete or (conversion.whole_model and conversion.missing):
        raise ValueError(f"{path} does not fit the {method} encoder:\n{conversion.summary()}")
    encoder.load_state_dict(conversion.tensors, strict=conversion.whole_model)
    return conversion
