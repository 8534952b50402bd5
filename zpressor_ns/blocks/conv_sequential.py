"""``nn.Sequential`` of convolutions, activations and upsamplings, run in fused steps on CPU inference."""

from __future__ import annotations

from torch import Tensor, nn

from zpressor_ns.blocks.fused_conv import activation_of, conv2d_activation
from zpressor_ns.blocks.upsample import is_nearest_x2, upsample_conv3x3


class FusedConvSequential(nn.Sequential):
    """Runs (conv, activation) as one step (:func:`~zpressor_ns.blocks.fused_conv.conv2d_activation`) and
    (nearest x2 upsample, 3x3 conv[, activation]) as one convolution on the low-resolution map
    (:func:`~zpressor_ns.blocks.upsample.upsample_conv3x3`); any other layer runs as is.

    Same children as the ``nn.Sequential`` it replaces, so the same parameter names and state dict.
    """

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer = layers[i]
            upsample = is_nearest_x2(layer) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.Conv2d)
            if not (upsample or isinstance(layer, nn.Conv2d)):
                x = layer(x)
                i += 1
                continue
            if upsample:
                i += 1
            conv = layers[i]
            activation = activation_of(layers[i + 1]) if i + 1 < len(layers) else None
            if activation is not None:
                i += 1
            x = upsample_conv3x3(x, conv, activation) if upsample else conv2d_activation(x, conv, activation)
            i += 1
        return x


def conv_gelu_conv(
    in_channels: int, hidden: int, out_channels: int, padding_mode: str = "zeros"
) -> FusedConvSequential:
    """Two 3x3 convs with a GELU between them: the prediction heads of DepthSplat (replicate padding, no
    zero border in the predicted maps) and MVSplat (zero padding). Children ``0`` and ``2`` hold the weights."""
    return FusedConvSequential(
        nn.Conv2d(in_channels, hidden, 3, padding=1, padding_mode=padding_mode),
        nn.GELU(),
        nn.Conv2d(hidden, out_channels, 3, padding=1, padding_mode=padding_mode),
    )
