"""The data contract between readers, samplers, the DataManager and the models.

An *example* is one scene's training or evaluation sample; a *batch* stacks B examples:

    example = {
        "context": ViewSet,   # the views the encoder sees
        "target": ViewSet,    # the views rendered and scored
        "scene": str,         # scene key (list[str] in a batch)
    }
    ViewSet = {
        "image": [V, 3, H, W] float32 in [0, 1],
        "c2w":   [V, 4, 4]    camera-to-world, OpenCV axes,
        "K":     [V, 3, 3]    normalised intrinsics (row 0 / W, row 1 / H),
        "near":  [V], "far": [V]  depth bounds in world units,
        "index": [V] int64    frame indices in the scene,
    }

Plain dicts of tensors keep ``torch.utils.data.default_collate`` and ``.to(device)`` trivial; these
TypedDicts only document the keys.
"""

from __future__ import annotations

from typing import TypedDict

import torch
from torch import Tensor


class ViewSet(TypedDict):
    image: Tensor
    c2w: Tensor
    K: Tensor
    near: Tensor
    far: Tensor
    index: Tensor


class Example(TypedDict):
    context: ViewSet
    target: ViewSet
    scene: str


def batch_to(batch: dict, device: torch.device | str) -> dict:
    """Move every tensor of a (nested) batch to ``device``; other values pass through."""
    out = {}
    for key, value in batch.items():
        if isinstance(value, Tensor):
            out[key] = value.to(device, non_blocking=True)
        elif isinstance(value, dict):
            out[key] = batch_to(value, device)
        else:
            out[key] = value
    return out
