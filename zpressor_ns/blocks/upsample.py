"""A 3x3 convolution of a nearest-neighbour x2 upsampled map, computed on the map itself.

Every output pixel of ``conv3x3(nearest_x2(x))`` sees a 3x3 window of the upsampled map, which covers only
2x2 distinct pixels of ``x``: for output row 2i the window rows are x rows (i-1, i, i), for row 2i+1 they are
(i, i, i+1), and likewise for columns. So each of the four output phases is a 2x2 convolution of ``x`` whose
taps are sums of the 3x3 taps. Zero or replicate padding of the upsampled map is the same padding of ``x``.
The result is the same function with 4/9 of the multiply-adds, and the upsampled map (4x the input) is never
built; only the summation order of the taps differs (fp32 rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn


def _phase_taps(kernel: Float[Tensor, "*lead 3"]) -> tuple[Tensor, Tensor]:
    """Along the last axis: the 2 taps of phase 0 (w0, w1 + w2) and of phase 1 (w0 + w1, w2)."""
    w0, w1, w2 = kernel.unbind(-1)
    return torch.stack((w0, w1 + w2), -1), torch.stack((w0 + w1, w2), -1)


def upsample_conv3x3(
    x: Float[Tensor, "batch in_channel height width"], conv: nn.Conv2d
) -> Float[Tensor, "batch out_channel twice_height twice_width"]:
    """``conv(F.interpolate(x, scale_factor=2, mode="nearest"))`` for a 3x3, stride-1, padding-1 ``conv``."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
        raise ValueError(f"upsample_conv3x3 needs a plain 3x3 convolution with padding 1, got {conv}")
    if conv.padding_mode not in ("zeros", "replicate"):
        raise ValueError(f"upsample_conv3x3 supports zero or replicate padding, got {conv.padding_mode!r}")
    batch, _, height, width = x.shape
    out_channels = conv.out_channels
    rows = [kernel.transpose(-1, -2) for kernel in _phase_taps(conv.weight.transpose(-1, -2))]  # [o, i, 2, 3]
    phases = [taps for row in rows for taps in _phase_taps(row)]  # (a, b) = (0,0), (0,1), (1,0), (1,1)
    kernel = torch.cat(phases, dim=0)  # [4 o, i, 2, 2]
    bias = None if conv.bias is None else conv.bias.repeat(4)
    mode = "constant" if conv.padding_mode == "zeros" else "replicate"
    y = F.conv2d(F.pad(x, (1, 1, 1, 1), mode=mode), kernel, bias)  # [n, 4 o, h + 1, w + 1]
    y = y.view(batch, 2, 2, out_channels, height + 1, width + 1)
    # Phase (a, b) at (i, j) is y[a, b] at (i + a, j + b); it fills rows 2i + a and columns 2j + b of the
    # output, which keeps the input's memory layout (channels-last in, channels-last out).
    channels_last = (
        x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    )
    if channels_last:
        out = y.new_empty(batch, height, 2, width, 2, out_channels)
        for a in (0, 1):
            for b in (0, 1):
                out[:, :, a, :, b] = y[:, a, b, :, a : a + height, b : b + width].permute(0, 2, 3, 1)
        return out.view(batch, 2 * height, 2 * width, out_channels).permute(0, 3, 1, 2)
    out = y.new_empty(batch, out_channels, height, 2, width, 2)
    for a in (0, 1):
        for b in (0, 1):
            out[:, :, :, a, :, b] = y[:, a, b, :, a : a + height, b : b + width]
    return out.view(batch, out_channels, 2 * height, 2 * width)
