"""Sine position encodings.

``add_window_position``: DepthSplat's code for the 1/8 feature maps, computed on one attention window
and tiled. The multi-view transformer attends inside a grid of ``splits x splits`` windows, so DepthSplat
encodes positions relative to the window, not the image: every window gets the same code. Features are
DETR-style: per axis ``channels // 2`` values, positions normalised to (0, 2*pi], frequencies
``temperature ** (2 * (i // 2) / (channels // 2))``, (sin, cos) interleaved, y channels before x.

``octave_encoding``: pixelSplat's code of values in [0, 1] (image coordinates, relative disparities):
sin and cos at frequencies 2*pi * 2^k, k < octaves.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor


def sine_position_encoding(
    height: int,
    width: int,
    channels: int,
    device: torch.device | str | None = None,
    temperature: float = 10000.0,
) -> Float[Tensor, "channel height width"]:
    """Position code of a ``height x width`` grid: ``channels // 2`` y features, then as many x features."""
    if channels % 4 != 0:
        raise ValueError(f"sine position encoding needs channels divisible by 4, got {channels}")
    per_axis = channels // 2
    eps = 1e-6
    # Positions 1..n, scaled so the last row/column sits at 2*pi (the eps keeps the original rounding).
    rows = torch.arange(1, height + 1, dtype=torch.float32, device=device)
    cols = torch.arange(1, width + 1, dtype=torch.float32, device=device)
    rows = rows / (rows[-1:] + eps) * (2 * math.pi)
    cols = cols / (cols[-1:] + eps) * (2 * math.pi)

    index = torch.arange(per_axis, dtype=torch.float32, device=device)
    frequencies = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / per_axis)

    def encode(positions: Tensor) -> Tensor:  # [n] -> [n, per_axis], (sin, cos) interleaved
        angles = positions[:, None] / frequencies
        return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=-1).flatten(1)

    code_y = encode(rows)[:, None, :].expand(height, width, per_axis)
    code_x = encode(cols)[None, :, :].expand(height, width, per_axis)
    return torch.cat((code_y, code_x), dim=-1).permute(2, 0, 1)


def add_window_position(
    features: Float[Tensor, "*batch channel height width"], splits: int
) -> Float[Tensor, "*batch channel height width"]:
    """Add the position code of one ``(height / splits) x (width / splits)`` window to every window."""
    *_, channels, height, width = features.shape
    if height % splits or width % splits:
        raise ValueError(
            f"feature map {height}x{width} cannot be split into {splits}x{splits} attention windows"
        )
    window = sine_position_encoding(height // splits, width // splits, channels, features.device)
    return features + window.to(features.dtype).repeat(1, splits, splits)


def octave_encoding(values: Float[Tensor, "*batch dim"], num_octaves: int) -> Float[Tensor, "*batch code"]:
    """sin(2 pi 2^k x) and cos(2 pi 2^k x) of every value x for k < ``num_octaves``, ordered (value, k, sin|cos).

    The lowest frequency has period 1. Cosines are computed as sin(angle + pi/2), as the original does,
    so the codes agree to the last bit.
    """
    octaves = torch.arange(num_octaves, dtype=values.dtype, device=values.device)
    frequencies = 2 * math.pi * 2**octaves
    phases = torch.tensor((0.0, 0.5 * math.pi), dtype=values.dtype, device=values.device)
    angles = values[..., None, None] * frequencies[:, None] + phases
    return torch.sin(angles).flatten(-3)
