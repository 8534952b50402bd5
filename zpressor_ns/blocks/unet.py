"""The UNet with cross-view attention of DepthSplat's regressors and MVSplat's cost-volume and depth refiners.

A diffusion-style UNet without timestep conditioning: residual blocks (GroupNorm, SiLU, 3x3 conv),
strided-conv downsampling, nearest+conv upsampling, skip concatenation, and at chosen downsampling factors
an attention block whose tokens are the pixels of *all views of a scene jointly*, which is how information
flows between views.

Two normalisation layouts (``UNetConfig.post_norm``), both from the original code:
- pre-norm (DepthSplat): norm -> SiLU -> conv in every block; each residual branch ends in a
  zero-initialised conv, so a fresh UNet outputs zero and each of its blocks starts as the identity;
- post-norm (MVSplat): conv -> norm -> SiLU; each residual branch ends in a zero-initialised GroupNorm
  (attention: qkv -> attention -> proj_out -> norm), and the output is conv -> norm -> SiLU.

Parameter names (``input_blocks.{i}.{j}.in_layers.2``, ``out_layers.3``, ``skip_connection``, ``op``, ``conv``,
``qkv``, ``proj_out``, ``middle_block.{0,2}``, ``out.{0,2}``, ...; post-norm: ``in_layers.{0,1}``,
``out_layers.{0,1}``, ``out.{0,1}``) and shapes (1-d convs in attention) match the original checkpoints, so
importing official weights needs no renaming inside the UNet.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.upsample import upsample_conv3x3


@dataclass(frozen=True)
class UNetConfig:
    """Widths and layout of a UNet; input and output have ``channels`` channels."""

    channels: int
    channel_mult: tuple[int, ...]
    # Downsampling factors (1, 2, 4, ...) at which blocks are followed by cross-view attention.
    attention_resolutions: tuple[int, ...]
    num_res_blocks: int = 1
    head_channels: int = 32
    post_norm: bool = False
    """MVSplat's layout: normalise after each conv (see the module docstring); DepthSplat's is pre-norm."""

    def __post_init__(self) -> None:
        for width in self.attention_widths():
            if width % self.head_channels:
                raise ValueError(
                    f"attention width {width} is not divisible by head_channels {self.head_channels}"
                )

    def attention_widths(self) -> set[int]:
        """Widths of the levels that carry attention blocks."""
        return {
            self.channels * mult
            for level, mult in enumerate(self.channel_mult)
            if 2**level in self.attention_resolutions
        }

    @property
    def required_multiple(self) -> int:
        """Input height and width must be multiples of this, or skip connections do not line up."""
        return 2 ** (len(self.channel_mult) - 1)


UNET_PRESETS: dict[str, UNetConfig] = {
    # DepthSplat's depth regressor at 1/8 resolution and its Gaussian regressor at full resolution.
    "depth_regressor": UNetConfig(channels=128, channel_mult=(1, 1, 1), attention_resolutions=(4,)),
    "gaussian_regressor": UNetConfig(channels=32, channel_mult=(1, 2, 4, 4, 4), attention_resolutions=(16,)),
    # The same layouts at widths that train on a CPU. DepthSplat uses 16-channel heads below 32 channels.
    "depth_regressor_small": UNetConfig(channels=32, channel_mult=(1, 1, 1), attention_resolutions=(4,)),
    "gaussian_regressor_small": UNetConfig(
        channels=16, channel_mult=(1, 2, 4, 4, 4), attention_resolutions=(16,), head_channels=16
    ),
    # MVSplat's cost-volume refiner at 1/4 resolution and its depth refiner at full resolution (post-norm).
    "cost_volume_refiner": UNetConfig(
        channels=128, channel_mult=(1, 1, 1), attention_resolutions=(4,), post_norm=True
    ),
    "depth_refiner": UNetConfig(
        channels=32, channel_mult=(1, 1, 1, 1, 1), attention_resolutions=(16,), post_norm=True
    ),
    "cost_volume_refiner_small": UNetConfig(
        channels=32, channel_mult=(1, 1, 1), attention_resolutions=(4,), post_norm=True
    ),
    "depth_refiner_small": UNetConfig(
        channels=16,
        channel_mult=(1, 1, 1, 1, 1),
        attention_resolutions=(16,),
        head_channels=16,
        post_norm=True,
    ),
}


def group_norm(channels: int) -> nn.GroupNorm:
    """DepthSplat's UNet normalisation: 8 groups, or 4 when the width is not a multiple of 8."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 4, channels)


class NormSiLU(nn.SiLU):
    """The SiLU after a GroupNorm, applied in place when no autograd graph is recorded: the norm's output
    feeds nothing else, and at inference this saves a full map per block (18 MB at the Gaussian regressor's
    widest full-resolution block for 6 views of 64x128)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.silu(x, inplace=not (torch.is_grad_enabled() and x.requires_grad))


def zero_init(module: nn.Module) -> nn.Module:
    """Zero a layer's parameters so the residual branch it closes starts as a no-op."""
    for parameter in module.parameters():
        nn.init.zeros_(parameter)
    return module


def _indexed(layers: dict[int, nn.Module]) -> OrderedDict[str, nn.Module]:
    """Name layers by explicit indices: the official layouts hold parameter-free placeholders
    (a zero-rate dropout, an identity) at the missing positions, and the names must line up."""
    return OrderedDict((str(index), layer) for index, layer in layers.items())


class ResidualBlock(nn.Module):
    """Residual block (pre- or post-norm); a 1x1 conv adapts the skip path when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, post_norm: bool = False) -> None:
        super().__init__()
        conv_in = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        conv_out = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if post_norm:
            self.in_layers = nn.Sequential(conv_in, group_norm(out_channels), NormSiLU())
            self.out_layers = nn.Sequential(conv_out, zero_init(group_norm(out_channels)), NormSiLU())
        else:
            self.in_layers = nn.Sequential(group_norm(in_channels), NormSiLU(), conv_in)
            self.out_layers = nn.Sequential(
                _indexed({0: group_norm(out_channels), 1: NormSiLU(), 3: zero_init(conv_out)})
            )
        self.skip_connection = (
            nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)
        )

    def forward(
        self, x: Float[Tensor, "batch in_channel height width"]
    ) -> Float[Tensor, "batch out_channel height width"]:
        return self.skip_connection(x) + self.out_layers(self.in_layers(x))


class Downsample(nn.Module):
    """Halve the resolution with a strided 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(
        self, x: Float[Tensor, "batch channel height width"]
    ) -> Float[Tensor, "batch channel half_h half_w"]:
        return self.op(x)


class Upsample(nn.Module):
    """Double the resolution (nearest) and smooth with a 3x3 conv."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(
        self, x: Float[Tensor, "batch channel height width"]
    ) -> Float[Tensor, "batch channel twice_h twice_w"]:
        return upsample_conv3x3(x, self.conv)  # = self.conv(nearest x2 of x), without the x2 map


class CrossViewAttention(nn.Module):
    """Multi-head self-attention over the pixels of all views of a scene at once (pre- or post-norm).

    The batch holds ``num_views`` consecutive views per scene, (scene, view) order. Quadratic in
    views x pixels, so it runs through SDPA (fused kernels on GPU, exact math on CPU).
    """

    def __init__(self, channels: int, head_channels: int, post_norm: bool = False) -> None:
        super().__init__()
        self.num_heads = channels // head_channels
        self.post_norm = post_norm
        if post_norm:
            self.qkv = nn.Conv1d(channels, 3 * channels, 1)
            self.proj_out = nn.Conv1d(channels, channels, 1)
            self.norm = zero_init(group_norm(channels))
        else:
            self.norm = group_norm(channels)
            self.qkv = nn.Conv1d(channels, 3 * channels, 1)
            self.proj_out = zero_init(nn.Conv1d(channels, channels, 1))

    def forward(
        self, x: Float[Tensor, "batch_view channel height width"], num_views: int
    ) -> Float[Tensor, "batch_view channel height width"]:
        batch_view, channels, height, width = x.shape
        batch, heads, tokens = batch_view // num_views, self.num_heads, height * width
        head_dim = channels // heads
        # The official qkv output channels are grouped per head: (head, q|k|v, head_dim).
        normed = x if self.post_norm else self.norm(x)
        qkv = self.qkv(normed.reshape(batch_view, channels, tokens))
        qkv = qkv.view(batch, num_views, heads, 3, head_dim, tokens)
        qkv = qkv.permute(3, 0, 2, 1, 5, 4).reshape(3, batch, heads, num_views * tokens, head_dim)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.view(batch, heads, num_views, tokens, head_dim).permute(0, 2, 1, 4, 3)
        out = self.proj_out(out.reshape(batch_view, channels, tokens))
        if self.post_norm:
            out = self.norm(out)
        return x + out.view(batch_view, channels, height, width)


class UNetStage(nn.Sequential):
    """Layers applied in order; only the attention layers need to know how many views a scene has."""

    def forward(
        self, x: Float[Tensor, "batch_view channel height width"], num_views: int
    ) -> Float[Tensor, "batch_view out_channel out_h out_w"]:
        for layer in self:
            x = layer(x, num_views) if isinstance(layer, CrossViewAttention) else layer(x)
        return x


class UNet(nn.Module):
    """Encoder-decoder with skip connections whose attention mixes the views of each scene."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        base = config.channels
        last_level = len(config.channel_mult) - 1

        def maybe_attention(width: int, factor: int) -> list[nn.Module]:
            if factor in config.attention_resolutions:
                return [CrossViewAttention(width, config.head_channels, config.post_norm)]
            return []

        self.input_blocks = nn.ModuleList([UNetStage(nn.Conv2d(base, base, 3, padding=1))])
        skip_widths = [base]
        width, factor = base, 1
        for level, mult in enumerate(config.channel_mult):
            for _ in range(config.num_res_blocks):
                block = [ResidualBlock(width, base * mult, config.post_norm)]
                width = base * mult
                block += maybe_attention(width, factor)
                self.input_blocks.append(UNetStage(*block))
                skip_widths.append(width)
            if level < last_level:
                self.input_blocks.append(UNetStage(Downsample(width)))
                skip_widths.append(width)
                factor *= 2

        self.middle_block = UNetStage(
            _indexed(
                {
                    0: ResidualBlock(width, width, config.post_norm),
                    2: ResidualBlock(width, width, config.post_norm),
                }
            )
        )

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(config.channel_mult))):
            for i in range(config.num_res_blocks + 1):
                block = [ResidualBlock(width + skip_widths.pop(), base * mult, config.post_norm)]
                width = base * mult
                block += maybe_attention(width, factor)
                if level > 0 and i == config.num_res_blocks:
                    block.append(Upsample(width))
                    factor //= 2
                self.output_blocks.append(UNetStage(*block))

        if config.post_norm:
            self.out = nn.Sequential(nn.Conv2d(width, base, 3, padding=1), group_norm(base), NormSiLU())
        else:
            self.out = nn.Sequential(
                group_norm(width), NormSiLU(), zero_init(nn.Conv2d(width, base, 3, padding=1))
            )

    def forward(
        self, x: Float[Tensor, "batch_view channel height width"], num_views: int
    ) -> Float[Tensor, "batch_view channel height width"]:
        """``x`` stacks ``num_views`` consecutive views per scene; attention runs across them jointly."""
        batch_view, _, height, width = x.shape
        if num_views < 1 or batch_view % num_views:
            raise ValueError(
                f"UNet batch of {batch_view} images is not a whole number of {num_views}-view scenes"
            )
        multiple = self.config.required_multiple
        if height % multiple or width % multiple:
            raise ValueError(
                f"UNet input {height}x{width} must be a multiple of {multiple} in both sides "
                f"({len(self.config.channel_mult)} resolution levels); crop the images accordingly"
            )
        skips = []
        h = x
        for stage in self.input_blocks:
            h = stage(h, num_views)
            skips.append(h)
        h = self.middle_block(h, num_views)
        for stage in self.output_blocks:
            h = stage(torch.cat((h, skips.pop()), dim=1), num_views)
        return self.out(h)


class ConvUNetRegressor(nn.Module):
    """Conv3x3 -> GroupNorm -> GELU -> cross-view UNet [-> Conv3x3]: how DepthSplat and MVSplat wrap a UNet.

    ``out_channels`` None leaves out the last conv (MVSplat's depth refiner); ``norm_groups`` is 8 in
    DepthSplat's regressors and MVSplat's cost-volume refiner, 4 in MVSplat's depth refiner.
    """

    def __init__(
        self, in_channels: int, unet: UNetConfig, out_channels: int | None, norm_groups: int = 8
    ) -> None:
        super().__init__()
        channels = unet.channels
        self.proj_in = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.norm = nn.GroupNorm(norm_groups, channels)
        self.unet = UNet(unet)
        self.proj_out = None if out_channels is None else nn.Conv2d(channels, out_channels, 3, padding=1)

    def forward(
        self, x: Float[Tensor, "batch_view in_channel height width"], num_views: int
    ) -> Float[Tensor, "batch_view out_channel height width"]:
        x = self.unet(F.gelu(self.norm(self.proj_in(x))), num_views)
        return x if self.proj_out is None else self.proj_out(x)
