"""Convolutions with their activation fused into one oneDNN call (CPU inference).

At full resolution one activation map is tens of MB: a separate GELU re-reads and re-writes it (with page
faults for its fresh output), about a tenth of the convolution's own time for DepthSplat's Gaussian head
(16 of 146 ms, 6 views of 64x128, one core). oneDNN applies it in the convolution's epilogue instead. The math is the same
(exact erf GELU, fp32).

The fused kernels run only where they apply: float32 CPU tensors, PyTorch built with oneDNN, and no autograd
graph being recorded (they have no backward). Everywhere else the modules run as written.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

# oneDNN's names for the activations its convolution epilogue applies (attribute, algorithm).
Activation = Literal["gelu", "gelu_tanh", "relu"]
_ONEDNN_ATTRIBUTES: dict[str | None, tuple[str, str]] = {
    None: ("none", ""),
    "gelu": ("gelu", "none"),
    "gelu_tanh": ("gelu", "tanh"),
    "relu": ("relu", ""),
}


def activation_of(module: nn.Module) -> Activation | None:
    """The fusable activation a module computes, or None."""
    if isinstance(module, nn.GELU):
        return "gelu" if module.approximate == "none" else "gelu_tanh"
    if isinstance(module, nn.ReLU):
        return "relu"
    return None


def apply_activation(x: Tensor, activation: Activation | None) -> Tensor:
    """The activation as eager PyTorch computes it (the reference of the fused path)."""
    if activation is None:
        return x
    if activation == "relu":
        return F.relu(x)
    return F.gelu(x, approximate="none" if activation == "gelu" else "tanh")


@functools.cache
def _onednn_convolution_available() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._convolution_pointwise  # noqa: B018 (registered only in oneDNN builds)
    except (AttributeError, RuntimeError):
        return False
    return True


def fusable(x: Tensor, conv: nn.Conv2d) -> bool:
    """Whether the fused oneDNN convolution may run: CPU float32, no autograd graph, oneDNN present."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and conv.weight.dtype == torch.float32
        and torch.backends.mkldnn.enabled
        and not (torch.is_grad_enabled() and (x.requires_grad or conv.weight.requires_grad))
        and _onednn_convolution_available()
    )


def onednn_conv2d(
    x: Float[Tensor, "batch in_channel height width"],
    weight: Float[Tensor, "out_channel in_channel kh kw"],
    bias: Float[Tensor, " out_channel"] | None,
    padding: tuple[int, int],
    activation: Activation | None,
    stride: tuple[int, int] = (1, 1),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> Float[Tensor, "batch out_channel out_h out_w"]:
    """``activation(F.conv2d(x, weight, bias, stride, padding, dilation, groups))`` in one oneDNN call
    (zero padding; the output keeps the input's memory layout)."""
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()
    attribute, algorithm = _ONEDNN_ATTRIBUTES[activation]
    return torch.ops.mkldnn._convolution_pointwise(
        x, weight, bias, list(padding), list(stride), list(dilation), groups, attribute, [], algorithm
    )


def conv2d_activation(
    x: Float[Tensor, "batch in_channel height width"], conv: nn.Conv2d, activation: Activation | None = None
) -> Float[Tensor, "batch out_channel out_h out_w"]:
    """``activation(conv(x))``: one oneDNN call on CPU inference, the module then the activation elsewhere."""
    if (
        activation is None
        or not fusable(x, conv)
        or conv.padding_mode not in ("zeros", "replicate")
        or isinstance(conv.padding, str)
    ):
        return apply_activation(conv(x), activation)
    padding = conv.padding
    if conv.padding_mode == "replicate":
        (pad_h, pad_w), padding = padding, (0, 0)
        x = F.pad(x, (pad_w, pad_w, pad_h, pad_h), mode="replicate")
    return onednn_conv2d(
        x, conv.weight, conv.bias, padding, activation, conv.stride, conv.dilation, conv.groups
    )
