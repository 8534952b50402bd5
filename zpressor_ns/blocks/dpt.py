"""DepthSplat's DPT head: refines the 1/8-resolution inverse depth into a full-resolution residual.

The four ViT feature maps (already resized to the 1/8 grid) are projected and resampled to a pyramid
at 1/2, 1/4, 1/8 and 1/16. The CNN features join at 1/2, 1/4 and 1/8; the multi-view transformer features
and the low-resolution inverse depth join at 1/8. RefineNet fusion blocks then climb back to full
resolution, and a small conv head outputs one channel. Its last conv is zero-initialised, so a fresh head
adds nothing to the bilinearly upsampled inverse depth.

Parameter names match the original checkpoints (``projects``, ``resize_layers.{0,1,3}``, ``concat_projects``,
``scratch.layer{1..4}_rn``, ``scratch.refinenet{1..4}``, ``scratch.output_conv.{0,2,4}``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.conv_sequential import FusedConvSequential


@dataclass(frozen=True)
class DPTConfig:
    """Widths of the DPT head; ``out_channels`` are the pyramid widths at 1/2, 1/4, 1/8, 1/16."""

    vit_channels: int
    features: int
    out_channels: tuple[int, int, int, int]
    # CNN feature widths at 1/2, 1/4 and 1/8 resolution.
    cnn_channels: tuple[int, int, int] = (64, 96, 128)
    mv_channels: int = 128
    head_hidden: int = 16


DPT_PRESETS: dict[str, DPTConfig] = {
    "vits": DPTConfig(vit_channels=384, features=32, out_channels=(48, 96, 192, 384)),
    "vitb": DPTConfig(vit_channels=768, features=48, out_channels=(96, 192, 384, 768)),
    "vitl": DPTConfig(vit_channels=1024, features=64, out_channels=(128, 256, 512, 1024)),
    # For the tiny ViT and the narrow CNN of the CPU presets.
    "small": DPTConfig(
        vit_channels=64, features=16, out_channels=(16, 32, 64, 64), cnn_channels=(32, 48, 64), mv_channels=64
    ),
}


class ResidualConvUnit(nn.Module):
    """x + conv(relu(conv(relu(x))))."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(
        self, x: Float[Tensor, "batch channel height width"]
    ) -> Float[Tensor, "batch channel height width"]:
        return x + self.conv2(F.relu(self.conv1(F.relu(x))))


class FusionBlock(nn.Module):
    """RefineNet step: add a refined skip (if any), refine, resize bilinearly, mix with a 1x1 conv."""

    def __init__(self, features: int, with_skip: bool) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        # The coarsest block has no skip input and, in the original checkpoints, no resConfUnit1.
        if with_skip:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(
        self,
        x: Float[Tensor, "batch channel height width"],
        skip: Float[Tensor, "batch channel height width"] | None,
        size: tuple[int, int],
    ) -> Float[Tensor, "batch channel out_h out_w"]:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class FusionScratch(nn.Module):
    """Per-level 3x3 projections to a common width, the fusion blocks and the output head."""

    def __init__(self, config: DPTConfig) -> None:
        super().__init__()
        features = config.features
        widths = config.out_channels
        self.layer1_rn = nn.Conv2d(widths[0], features, 3, padding=1, bias=False)
        self.layer2_rn = nn.Conv2d(widths[1], features, 3, padding=1, bias=False)
        self.layer3_rn = nn.Conv2d(widths[2], features, 3, padding=1, bias=False)
        self.layer4_rn = nn.Conv2d(widths[3], features, 3, padding=1, bias=False)
        self.refinenet1 = FusionBlock(features, with_skip=True)
        self.refinenet2 = FusionBlock(features, with_skip=True)
        self.refinenet3 = FusionBlock(features, with_skip=True)
        self.refinenet4 = FusionBlock(features, with_skip=False)
        last = nn.Conv2d(config.head_hidden, 1, 1)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.output_conv = FusedConvSequential(
            nn.Conv2d(features, features // 2, 3, padding=1, padding_mode="replicate"),
            nn.GELU(),
            nn.Conv2d(features // 2, config.head_hidden, 3, padding=1, padding_mode="replicate"),
            nn.GELU(),
            last,
        )


class DPTHead(nn.Module):
    """Full-resolution residual inverse depth from mono, CNN and multi-view features (upsampling x8)."""

    def __init__(self, config: DPTConfig) -> None:
        super().__init__()
        self.config = config
        widths = config.out_channels
        cnn = config.cnn_channels
        self.projects = nn.ModuleList([nn.Conv2d(config.vit_channels, width, 1) for width in widths])
        # From the 1/8 grid to 1/2, 1/4, 1/8 and 1/16.
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(widths[0], widths[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(widths[1], widths[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(widths[3], widths[3], 3, stride=2, padding=1),
            ]
        )
        # 1/2: (cnn, mono); 1/4: (cnn, mono); 1/8: (cnn, mono, multi-view, inverse depth).
        self.concat_projects = nn.ModuleList(
            [
                nn.Conv2d(cnn[0] + widths[0], widths[0], 1),
                nn.Conv2d(cnn[1] + widths[1], widths[1], 1),
                nn.Conv2d(cnn[2] + widths[2] + config.mv_channels + 1, widths[2], 1),
            ]
        )
        self.scratch = FusionScratch(config)

    def forward(
        self,
        vit_features: Sequence[Float[Tensor, "batch vit_channel h8 w8"]],
        cnn_features: Sequence[Tensor],
        mv_features: Float[Tensor, "batch mv_channel h8 w8"],
        inverse_depth: Float[Tensor, "batch 1 h8 w8"],
    ) -> Float[Tensor, "batch 1 height width"]:
        """``vit_features``: the 4 intermediate ViT maps on the 1/8 grid; ``cnn_features``: CNN maps at
        1/2, 1/4 and 1/8 (finest first). Returns the residual inverse depth at 8x the 1/8 grid."""
        if len(vit_features) != 4 or len(cnn_features) != 3:
            raise ValueError(
                f"DPT head needs 4 ViT feature maps and 3 CNN feature maps (1/2, 1/4, 1/8), "
                f"got {len(vit_features)} and {len(cnn_features)}"
            )
        h8, w8 = inverse_depth.shape[-2:]
        for factor, feature in zip((4, 2, 1), cnn_features, strict=True):
            if tuple(feature.shape[-2:]) != (h8 * factor, w8 * factor):
                raise ValueError(
                    f"CNN feature of size {tuple(feature.shape[-2:])} does not match the 1/8 grid "
                    f"{(h8, w8)} upsampled x{factor}"
                )
        pyramid = [
            resize(project(feature))
            for project, resize, feature in zip(self.projects, self.resize_layers, vit_features, strict=True)
        ]
        layer1 = self.concat_projects[0](torch.cat((cnn_features[0], pyramid[0]), dim=1))
        layer2 = self.concat_projects[1](torch.cat((cnn_features[1], pyramid[1]), dim=1))
        layer3 = self.concat_projects[2](
            torch.cat((cnn_features[2], pyramid[2], mv_features, inverse_depth), dim=1)
        )
        scratch = self.scratch
        layer1 = scratch.layer1_rn(layer1)
        layer2 = scratch.layer2_rn(layer2)
        layer3 = scratch.layer3_rn(layer3)
        layer4 = scratch.layer4_rn(pyramid[3])
        path = scratch.refinenet4(layer4, None, size=tuple(layer3.shape[-2:]))
        path = scratch.refinenet3(path, layer3, size=tuple(layer2.shape[-2:]))
        path = scratch.refinenet2(path, layer2, size=tuple(layer1.shape[-2:]))
        path = scratch.refinenet1(path, layer1, size=(2 * layer1.shape[-2], 2 * layer1.shape[-1]))
        return scratch.output_conv(path)
