"""A 3x3 convolution of a nearest-neighbour x2 upsampled map, computed on the map itself.

Every output pixel of ``conv3x3(nearest_x2(x))`` sees a 3x3 window of the upsampled map, which covers only
2x2 distinct pixels of ``x``: for output row 2i the window rows are x rows (i-1, i, i), for row 2i+1 they are
(i, i, i+1), and likewise for columns. So each of the four output phases is a 2x2 convolution of ``x`` whose
taps are sums of the 3x3 taps. Zero or replicate padding of the upsampled map is the same padding of ``x``.
The result is the same function with 4/9 of the multiply-adds, and the upsampled map (4x the input) is never
built; only the summation order of the taps differs (fp32 rounding). An activation after the conv is
applied per phase, before the phases are interleaved (fused into the convolution on CPU inference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.fused_conv import Activation, apply_activation, fusable, onednn_conv2d


def is_nearest_x2(module: nn.Module) -> bool:
    """Whether ``module`` is a nearest-neighbour x2 ``nn.Upsample`` (what :func:`upsample_conv3x3` folds)."""
    return (
        isinstance(module, nn.Upsample)
        and module.mode == "nearest"
        and module.size is None
        and module.scale_factor in (2, 2.0, (2, 2), (2.0, 2.0))
    )


def _phase_taps(kernel: Float[Tensor, "*lead 3"]) -> tuple[Tensor, Tensor]:
    """Along the last axis: the 2 taps of phase 0 (w0, w1 + w2) and of phase 1 (w0 + w1, w2)."""
    w0, w1, w2 = kernel.unbind(-1)
    return torch.stack((w0, w1 + w2), -1), torch.stack((w0 + w1, w2), -1)


def _phase_kernel_of(
    weight: Float[Tensor, "out_channel in_channel 3 3"], bias: Float[Tensor, " out_channel"] | None
) -> tuple[Float[Tensor, "4*out_channel in_channel 2 2"], Float[Tensor, " 4*out_channel"] | None]:
    """The four phases' 2x2 kernels, stacked phase-major: (a, b) = (0,0), (0,1), (1,0), (1,1)."""
    rows = [kernel.transpose(-1, -2) for kernel in _phase_taps(weight.transpose(-1, -2))]  # [o, i, 2, 3]
    kernel = torch.cat([taps for row in rows for taps in _phase_taps(row)], dim=0)
    return kernel, None if bias is None else bias.repeat(4)


def _phase_kernel(conv: nn.Conv2d) -> tuple[Tensor, Tensor | None]:
    """:func:`_phase_kernel_of` the conv's parameters, cached on the conv for calls without autograd.

    Rebuilding it is a copy of the weights (19 MB for DepthSplat's feature upsampler) on every call. The
    cache (CPU parameters) is keyed on the parameters' storage and version counters, which every in-place
    update (optimiser steps, ``load_state_dict``) and every move to another device changes.
    """
    parameters = [p for p in (conv.weight, conv.bias) if p is not None]
    # Inference tensors have no version counter; on CUDA the rebuild is a few microseconds.
    if torch.is_grad_enabled() or any(p.is_inference() or p.device.type != "cpu" for p in parameters):
        return _phase_kernel_of(conv.weight, conv.bias)
    key = tuple((p.data_ptr(), p._version, p.dtype) for p in parameters)
    cached = conv.__dict__.get("_phase_kernel_cache")
    if cached is None or cached[0] != key:
        cached = (key, _phase_kernel_of(conv.weight, conv.bias))
        conv.__dict__["_phase_kernel_cache"] = cached
    return cached[1]


def upsample_conv3x3(
    x: Float[Tensor, "batch in_channel height width"], conv: nn.Conv2d, activation: Activation | None = None
) -> Float[Tensor, "batch out_channel twice_height twice_width"]:
    """``activation(conv(F.interpolate(x, scale_factor=2, mode="nearest")))`` for a 3x3, stride-1,
    padding-1 ``conv``."""
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
        raise ValueError(f"upsample_conv3x3 needs a plain 3x3 convolution with padding 1, got {conv}")
    if conv.padding_mode not in ("zeros", "replicate"):
        raise ValueError(f"upsample_conv3x3 supports zero or replicate padding, got {conv.padding_mode!r}")
    batch, _, height, width = x.shape
    out_channels = conv.out_channels
    kernel, bias = _phase_kernel(conv)
    mode = "constant" if conv.padding_mode == "zeros" else "replicate"
    padded = F.pad(x, (1, 1, 1, 1), mode=mode)
    if fusable(x, conv):
        y = onednn_conv2d(padded, kernel, bias, (0, 0), activation)  # [n, 4 o, h + 1, w + 1]
    else:
        y = apply_activation(F.conv2d(padded, kernel, bias), activation)
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
