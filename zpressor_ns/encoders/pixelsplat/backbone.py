"""pixelSplat's per-view backbone: a DINO ResNet and a DINO ViT, summed at full image resolution.

The ResNet's stem and its first three stages (no max-pool, so strides 2, 2, 4, 8) are each projected to
``out_channels`` by a 1x1 convolution, upsampled bilinearly (align_corners=True) to the image size and
summed. The ViT's normed last-block tokens add two more terms: every patch token through an MLP, repeated
over its patch's pixels, and the class token through another MLP, broadcast over the image. Images go in
as they are, in [0, 1] (no ImageNet normalisation), as in the original.

The ResNet is torchvision's (the DINO ResNet-50 is torchvision's ``resnet50`` with ``fc`` removed), so
DINO's and torchvision's weight files load under their own names; its ``layer4`` is never run but kept
in the paper preset, because the original's checkpoints hold it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.vit import VisionTransformer, ViTConfig

# Bottleneck/basic-block widths of torchvision's four ResNet stages, and each block type's output factor.
RESNET_STAGE_WIDTHS = (64, 128, 256, 512)
BLOCK_EXPANSION = {"bottleneck": 4, "basic": 1}


@dataclass(frozen=True)
class ResNetConfig:
    """A torchvision ResNet: block type and blocks per stage (ResNet-50 by default)."""

    block: Literal["bottleneck", "basic"] = "bottleneck"
    layers: tuple[int, int, int, int] = (3, 4, 6, 3)
    keep_layer4: bool = True
    """Keep the never-run last stage (the original's checkpoints hold it; the small preset drops it)."""

    @property
    def stage_channels(self) -> tuple[int, int, int, int]:
        """Output widths of the stem and stages 1-3."""
        expansion = BLOCK_EXPANSION[self.block]
        return (64, *(expansion * width for width in RESNET_STAGE_WIDTHS[:3]))


def build_resnet(config: ResNetConfig) -> nn.Module:
    """torchvision's ResNet with BatchNorm, without its classifier (and without ``layer4`` if not kept).

    torchvision is imported here, so the other families build without it.
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

    block = Bottleneck if config.block == "bottleneck" else BasicBlock
    resnet = ResNet(block, list(config.layers))
    resnet.fc = nn.Identity()
    if not config.keep_layer4:
        del resnet.layer4
    return resnet


class DinoBackbone(nn.Module):
    """Images [N, 3, H, W] in [0, 1] -> features [N, out_channels, H, W] (see the module docstring)."""

    def __init__(self, resnet: ResNetConfig, vit: ViTConfig, out_channels: int) -> None:
        super().__init__()
        self.resnet = build_resnet(resnet)
        self.resnet_projections = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in resnet.stage_channels)
        self.vit = VisionTransformer(vit)
        self.global_token_mlp = nn.Sequential(
            nn.Linear(vit.dim, vit.dim), nn.ReLU(), nn.Linear(vit.dim, out_channels)
        )
        self.local_token_mlp = nn.Sequential(
            nn.Linear(vit.dim, vit.dim), nn.ReLU(), nn.Linear(vit.dim, out_channels)
        )

    def resnet_features(
        self, images: Float[Tensor, "n 3 height width"]
    ) -> Float[Tensor, "n channel height width"]:
        """Sum of the projected stem and stage 1-3 outputs, upsampled to the image size."""
        net = self.resnet
        x = net.relu(net.bn1(net.conv1(images)))
        total = None
        for projection, stage in zip(self.resnet_projections, (None, net.layer1, net.layer2, net.layer3)):
            if stage is not None:
                x = stage(x)
            term = F.interpolate(projection(x), images.shape[-2:], mode="bilinear", align_corners=True)
            total = term if total is None else total + term
        return total

    def forward(self, images: Float[Tensor, "n 3 height width"]) -> Float[Tensor, "n channel height width"]:
        n, _, h, w = images.shape
        grid_h, grid_w = self.vit.patch_grid(h, w)
        patch = self.vit.config.patch_size
        tokens = self.vit.intermediate_tokens(images)[-1]  # normed last block, class token first
        global_token = self.global_token_mlp(tokens[:, 0])
        local = self.local_token_mlp(tokens[:, 1:]).transpose(1, 2).reshape(n, -1, grid_h, 1, grid_w, 1)
        local = local.expand(-1, -1, -1, patch, -1, patch).reshape(n, -1, h, w)
        return self.resnet_features(images) + local + global_token[:, :, None, None]
