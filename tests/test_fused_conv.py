"""Fused convolution + activation steps against the modules they replace, and the cached upsampling kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from zpressor_ns.blocks.conv_sequential import FusedConvSequential, conv_gelu_conv
from zpressor_ns.blocks.fused_conv import _onednn_convolution_available, conv2d_activation
from zpressor_ns.blocks.upsample import upsample_conv3x3

needs_onednn = pytest.mark.skipif(not _onednn_convolution_available(), reason="PyTorch built without oneDNN")


class OpNames(TorchDispatchMode):
    """Names of the ATen operators a block of code calls."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


ACTIVATIONS = {
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
    "relu": nn.ReLU(),
    None: nn.Identity(),
}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("padding_mode", ["zeros", "replicate"])
@pytest.mark.parametrize("channels_last", [False, True])
def test_fused_step_equals_the_convolution_then_the_activation(activation, padding_mode, channels_last):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 5, 3, padding=1, padding_mode=padding_mode)
    x = torch.randn(2, 6, 5, 7) * 3
    if channels_last:
        conv.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected = ACTIVATIONS[activation](conv(x))
        ours = conv2d_activation(x, conv, activation)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=1e-5)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    assert ours.is_contiguous(memory_format=layout)


@needs_onednn
def test_inference_runs_one_fused_kernel_and_training_the_modules():
    conv = nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate")
    x = torch.randn(1, 4, 6, 6)
    with torch.inference_mode(), OpNames() as ops:
        conv2d_activation(x, conv, "gelu")
    assert "_convolution_pointwise" in ops.names and "gelu" not in ops.names
    # With autograd recording, the modules run (the fused kernel has no backward) and gradients flow.
    x.requires_grad_(True)
    with OpNames() as ops:
        out = conv2d_activation(x, conv, "gelu")
    assert "_convolution_pointwise" not in ops.names and "gelu" in ops.names
    grads = torch.autograd.grad(out.square().sum(), (x, conv.weight))
    expected = torch.autograd.grad(F.gelu(conv(x)).square().sum(), (x, conv.weight))
    for a, b in zip(grads, expected, strict=True):
        torch.testing.assert_close(a, b)


def test_other_dtypes_take_the_modules():
    conv = nn.Conv2d(3, 2, 3, padding=1).double()
    x = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    with torch.inference_mode():
        out = conv2d_activation(x, conv, "gelu")
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, F.gelu(conv(x)))


def test_fused_sequential_is_the_sequential_it_replaces():
    torch.manual_seed(1)
    layers = [
        nn.Conv2d(8, 16, 1),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(16, 8, 3, padding=1, padding_mode="replicate"),
        nn.GELU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(8, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1, padding_mode="replicate"),
        nn.Sigmoid(),
    ]
    fused, plain = FusedConvSequential(*layers), nn.Sequential(*layers)
    assert list(fused.state_dict()) == list(plain.state_dict())
    x = torch.randn(2, 8, 3, 5)
    with torch.inference_mode():
        torch.testing.assert_close(fused(x), plain(x), atol=1e-5, rtol=1e-5)
    head = conv_gelu_conv(8, 12, 3, padding_mode="replicate")
    assert list(head.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with torch.inference_mode():
        torch.testing.assert_close(head(x), nn.Sequential.forward(head, x), atol=1e-5, rtol=1e-5)


def test_upsampling_kernel_follows_the_weights():
    """The phase kernel is cached between no-grad calls; updates of the weights must reach the output."""
    torch.manual_seed(2)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 4, 5)

    def reference() -> torch.Tensor:
        return conv(F.interpolate(x, scale_factor=2, mode="nearest"))

    with torch.no_grad():
        torch.testing.assert_close(upsample_conv3x3(x, conv), reference(), atol=1e-5, rtol=1e-5)
    optimiser = torch.optim.SGD(conv.parameters(), lr=0.5)
    upsample_conv3x3(x, conv).sum().backward()
    optimiser.step()
    with torch.no_grad():
        torch.testing.assert_close(upsample_conv3x3(x, conv), reference(), atol=1e-5, rtol=1e-5)
    conv.load_state_dict({"weight": torch.randn(4, 3, 3, 3), "bias": torch.randn(4)})
    with torch.inference_mode():
        torch.testing.assert_close(upsample_conv3x3(x, conv), reference(), atol=1e-5, rtol=1e-5)
