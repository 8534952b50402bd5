"""A 3x3 conv of a nearest x2 upsampled map, computed on the map itself, against the two steps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zpressor_ns.blocks.upsample import upsample_conv3x3


def two_steps(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return conv(F.interpolate(x, scale_factor=2, mode="nearest"))


@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_equals_upsampling_then_convolving(padding_mode, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(5, 7, 3, padding=1, padding_mode=padding_mode)
    x = torch.randn(2, 5, 3, 4)  # odd sizes: every border phase differs
    if channels_last:
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    out = upsample_conv3x3(x, conv)
    torch.testing.assert_close(out, two_steps(x, conv), atol=1e-5, rtol=1e-5)
    # The layout of the input carries over, as a convolution's would.
    assert out.is_contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def test_gradients_match_for_input_and_weights():
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="replicate")
    x = torch.randn(1, 3, 4, 5, requires_grad=True)
    weights = torch.randn(1, 4, 8, 10)
    ours = torch.autograd.grad((upsample_conv3x3(x, conv) * weights).sum(), (x, *conv.parameters()))
    expected = torch.autograd.grad((two_steps(x, conv) * weights).sum(), (x, *conv.parameters()))
    for a, b in zip(ours, expected, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_refuses_other_convolutions():
    with pytest.raises(ValueError, match="3x3"):
        upsample_conv3x3(torch.randn(1, 2, 3, 3), nn.Conv2d(2, 2, 1))
    with pytest.raises(ValueError, match="reflect"):
        upsample_conv3x3(torch.randn(1, 2, 3, 3), nn.Conv2d(2, 2, 3, padding=1, padding_mode="reflect"))
