"""UniMatch's per-view CNN: a 7x7 stem and three residual stages, giving features at 1/2, 1/4 and 1/8.

MVSplat keeps the last stage at stride 1 (``last_stride=1``), so its finest output is at 1/4, not 1/8.
Instance normalisation (no affine parameters) makes every image's features independent of the batch,
which is what lets the same weights see any number of context views.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxtyping import Float
from torch import Tensor, nn

# The normalisation DepthSplat's and MVSplat's encoders apply to [0, 1] images before their CNN and ViT.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm; a strided 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(out_channels)
        self.norm2 = nn.InstanceNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            # Index 0 holds the convolution, so its parameters keep the original names.
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride), nn.InstanceNorm2d(out_channels)
            )

    def forward(self, x: Float[Tensor, "n c h w"]) -> Float[Tensor, "n c2 h2 w2"]:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(shortcut + y)


class CNNEncoder(nn.Module):
    """Stem (stride 2) + stages of two residual blocks (strides 1, 2, ``last_stride``) + a 1x1 projection.

    ``last_stride`` 2 (DepthSplat) gives the last output at 1/8 of the image, 1 (MVSplat) at 1/4.
    """

    def __init__(
        self, stage_channels: Sequence[int] = (64, 96, 128), out_channels: int = 128, last_stride: int = 2
    ) -> None:
        super().__init__()
        c1, c2, c3 = stage_channels
        self.conv1 = nn.Conv2d(3, c1, 7, stride=2, padding=3, bias=False)
        self.norm1 = nn.InstanceNorm2d(c1)
        self.relu1 = nn.ReLU(inplace=True)
        self.layer1 = self._stage(c1, c1, stride=1)
        self.layer2 = self._stage(c1, c2, stride=2)
        self.layer3 = self._stage(c2, c3, stride=last_stride)
        self.conv2 = nn.Conv2d(c3, out_channels, 1)
        self.channels = (c1, c2, out_channels)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    @staticmethod
    def _stage(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            ResidualBlock(in_channels, out_channels, stride), ResidualBlock(out_channels, out_channels)
        )

    def forward(
        self, images: Float[Tensor, "n 3 height width"]
    ) -> tuple[Float[Tensor, "n c1 h2 w2"], Float[Tensor, "n c2 h4 w4"], Float[Tensor, "n c3 hs ws"]]:
        """Features at 1/2, 1/4 and 1/(4 ``last_stride``) resolution (fine to coarse)."""
        half = self.layer1(self.relu1(self.norm1(self.conv1(images))))
        quarter = self.layer2(half)
        last = self.conv2(self.layer3(quarter))
        return half, quarter, last
