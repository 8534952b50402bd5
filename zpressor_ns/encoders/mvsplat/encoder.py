"""The MVSplat encoder as ZPressor integrated it, with or without ZPressor.

Per view: ImageNet normalisation -> UniMatch CNN with its last stage at stride 1 (features at 1/4) ->
[ZPressor on the raw 1/4 features, no position code: V views -> K anchors; its output replaces the CNN
features everywhere downstream] -> from here on anchors only: window sine position code, multi-view
transformer (each anchor attends to all other anchors), plane-sweep cost volume averaged over the K - 1
other anchors and concatenated with the anchor's own transformer features, cost-volume refiner U-Net,
coarse inverse depth from a softmax over the candidates, x4 feature upsampler over (transformer, fused
CNN) features, depth refiner U-Net at full resolution, then per pixel an inverse-depth correction and an
opacity (``disparity_head``) and the Gaussian channels (``gaussian_head``), decoded with the
depth-proportional scale of ``zpressor_ns.gaussian_adapter.decode_depth_scaled_gaussians``.

Differences from DepthSplat that are named options of the shared blocks: the CNN's ``last_stride=1``,
the transformer's and cost volume's neighbours (``all_other_views``), the post-norm U-Nets
(``UNetConfig.post_norm``). Every view keeps only its 1/4 map (ZPressor's input) while the views stream
through the CNN; the anchors need nothing else of the per-view stage, since ZPressor's output replaces it.

Module names are this project's; ``official_keys.import_official`` maps the original checkpoint keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.cnn import IMAGENET_MEAN, IMAGENET_STD, CNNEncoder
from zpressor_ns.blocks.conv_sequential import conv_gelu_conv
from zpressor_ns.blocks.cost_volume import all_other_views, inverse_depth_candidates, plane_sweep_cost_volume
from zpressor_ns.blocks.mv_transformer import MultiViewTransformer
from zpressor_ns.blocks.position import add_window_position
from zpressor_ns.blocks.unet import UNET_PRESETS, ConvUNetRegressor, UNetConfig
from zpressor_ns.encoders.base import AnchorCount, EncoderConfig, EncoderOutput, FeedForwardEncoder
from zpressor_ns.encoders.memory import MemoryEstimate
from zpressor_ns.gaussian_adapter import decode_depth_scaled_gaussians, num_depth_scaled_channels

# The CNN's output stride: depth is predicted on this grid and refined to full resolution.
FEATURE_STRIDE = 4


@dataclass(frozen=True)
class MVSplatConfig(EncoderConfig):
    """Architecture of the encoder. The defaults are the paper's (RE10K experiment of the original)."""

    cnn_channels: tuple[int, int, int] = (64, 96, 128)
    # Width of the 1/4 features, ZPressor, the multi-view transformer and the upsampled features.
    feature_channels: int = 128
    transformer_layers: int = 6
    attention_splits: int = 2
    num_depth_candidates: int = 128
    cost_volume_unet: UNetConfig = UNET_PRESETS["cost_volume_refiner"]
    depth_unet: UNetConfig = UNET_PRESETS["depth_refiner"]
    sh_degree: int = 4
    scale_min: float = 0.5
    scale_max: float = 15.0
    unet_group_size: int | None = None
    """None: the U-Nets' attention spans all kept views of a scene (training; every ZPressor run). An int F
    reproduces the original's fixed ``num_frames=F`` with V views: view v attends with v + V/F, v + 2V/F,
    ... only. The original's baseline test script (test_re10k_base.py) leaves F at 2 for its 36-view
    evaluation, which the paper's baseline scores come from."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.unet_group_size is not None and self.unet_group_size < 1:
            raise ValueError(f"unet_group_size must be at least 1, got {self.unet_group_size}")

    @property
    def required_multiple(self) -> int:
        """Image height and width must be multiples of this (U-Net skips, transformer windows)."""
        cost_unet = FEATURE_STRIDE * self.cost_volume_unet.required_multiple
        windows = FEATURE_STRIDE * self.attention_splits
        return math.lcm(cost_unet, windows, self.depth_unet.required_multiple)


PRESETS: dict[str, MVSplatConfig] = {
    "paper": MVSplatConfig(),
    # Same code paths at widths that train on 2 CPU cores at 64-128 px.
    "small": MVSplatConfig(
        num_anchors=3,
        cnn_channels=(32, 48, 64),
        feature_channels=64,
        num_depth_candidates=32,
        cost_volume_unet=UNET_PRESETS["cost_volume_refiner_small"],
        depth_unet=UNET_PRESETS["depth_refiner_small"],
    ),
}


class MVSplatEncoder(FeedForwardEncoder):
    """Context views -> pixel-aligned Gaussians of the K anchors (or of every view without ZPressor)."""

    family = "mvsplat"
    family_name = "MVSplat"
    min_views = 2  # the cost volume matches across views

    def __init__(self, config: MVSplatConfig) -> None:
        super().__init__()
        self.config = config
        c, d = config.feature_channels, config.num_depth_candidates
        self.cnn = CNNEncoder(config.cnn_channels, c, last_stride=1)
        self.zpressor = config.zpressor.build(c) if config.use_zpressor else None
        self.transformer = MultiViewTransformer(c, config.transformer_layers)

        # Cost volume (d) + the anchor's transformer features (c) -> refined matching logits.
        self.cost_refiner = ConvUNetRegressor(d + c, config.cost_volume_unet, d)
        self.cost_residual = nn.Conv2d(d + c, d, 1)
        self.depth_head = conv_gelu_conv(d, 2 * d, d)

        refined = config.depth_unet.channels
        self.feature_upsampler = nn.Sequential(
            nn.Conv2d(2 * c, c, 3, padding=1),
            nn.Upsample(scale_factor=FEATURE_STRIDE, mode="bilinear", align_corners=True),
            nn.GELU(),
        )
        self.feature_projection = nn.Conv2d(c, refined, 3, padding=1)
        # RGB, projected features, coarse inverse depth, matching confidence.
        self.depth_refiner = ConvUNetRegressor(3 + refined + 1 + 1, config.depth_unet, None, norm_groups=4)
        # Per pixel: an inverse-depth correction and a density (the opacity logit).
        self.disparity_head = conv_gelu_conv(refined, 2 * refined, 2)
        channels = num_depth_scaled_channels(config.sh_degree)
        self.gaussian_head = conv_gelu_conv(refined + 3 + c, 2 * channels, channels)

        self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def forward(
        self,
        images: Float[Tensor, "batch view 3 height width"],
        c2w: Float[Tensor, "batch view 4 4"],
        intrinsics: Float[Tensor, "batch view 3 3"],
        near: Float[Tensor, "batch view"],
        far: Float[Tensor, "batch view"],
        num_anchors: AnchorCount = None,
        deterministic: bool = False,
        generator: torch.Generator | None = None,
    ) -> EncoderOutput:
        """Gaussians of the anchors, ordered anchor-major (FPS order), then pixels row-major.

        ``images`` in [0, 1]; ``c2w`` OpenCV camera-to-world; ``intrinsics`` normalised; ``near``/``far``
        the depth range in world units. ``num_anchors`` overrides the configured anchor count; ``"auto"``
        takes the most that fit the configured ``memory_budget_gb``. MVSplat's forward has no randomness
        of its own: ``deterministic`` is accepted for the common encoder interface, and ``generator`` only
        draws ZPressor's random first anchor when that option is chosen.
        """
        self.check_inputs(images, c2w, intrinsics, near, far)
        cfg = self.config
        b, _, _, h, w = images.shape
        views = self.compress(self._view_features, images, c2w, num_anchors, generator)
        features = views.fused  # ZPressor's output (the raw CNN features without it), [b, k, c, h4, w4]
        images, c2w, intrinsics, near, far = (views.select(x) for x in (images, c2w, intrinsics, near, far))
        k = images.shape[1]

        mv = self.transformer(
            add_window_position(features, cfg.attention_splits),
            all_other_views(b, k, device=images.device),
            cfg.attention_splits,
        )
        # Cost volume on the 1/4 grid over the K - 1 rotations of the anchors, in inverse depth.
        grid_h, grid_w = features.shape[-2:]
        pixel_k = intrinsics.clone()
        pixel_k[..., 0, :] = pixel_k[..., 0, :] * grid_w
        pixel_k[..., 1, :] = pixel_k[..., 1, :] * grid_h
        candidates = inverse_depth_candidates(near, far, cfg.num_depth_candidates)  # [b, k, d]
        cost = plane_sweep_cost_volume(
            mv, pixel_k, c2w, all_other_views(b, k, cyclic=True, device=images.device), candidates
        )

        mv, features = mv.flatten(0, 1), features.flatten(0, 1)
        matching_in = torch.cat((cost.flatten(0, 1), mv), dim=1)
        matching = self._across_views(self.cost_refiner, matching_in, b, k) + self.cost_residual(matching_in)
        probabilities = torch.softmax(self.depth_head(matching), dim=1)  # [bk, d, h4, w4]
        coarse = (candidates.flatten(0, 1)[:, :, None, None] * probabilities).sum(dim=1, keepdim=True)
        confidence = F.interpolate(probabilities.amax(dim=1, keepdim=True), scale_factor=FEATURE_STRIDE)
        coarse = F.interpolate(coarse, scale_factor=FEATURE_STRIDE, mode="bilinear", align_corners=True)

        upsampled = self.feature_upsampler(torch.cat((mv, features), dim=1))  # [bk, c, h, w]
        rgb = images.flatten(0, 1)
        refined = self._across_views(
            self.depth_refiner,
            torch.cat((rgb, self.feature_projection(upsampled), coarse, confidence), dim=1),
            b,
            k,
        )
        raw = self.gaussian_head(torch.cat((refined, rgb, upsampled), dim=1))
        correction, density = self.disparity_head(refined).split(1, dim=1)
        inverse_depth = (coarse + correction).clamp(
            min=(1.0 / far).reshape(-1, 1, 1, 1), max=(1.0 / near).reshape(-1, 1, 1, 1)
        )
        depths = (1.0 / inverse_depth).reshape(b, k, h, w)

        gaussians = decode_depth_scaled_gaussians(
            raw.reshape(b, k, -1, h * w).transpose(2, 3),
            depths.reshape(b, k, h * w, 1),
            density.sigmoid().reshape(b, k, h * w, 1),
            c2w,
            intrinsics,
            (h, w),
            sh_degree=cfg.sh_degree,
            scale_min=cfg.scale_min,
            scale_max=cfg.scale_max,
            anchors=views.anchors,
        )
        return EncoderOutput(
            means=gaussians.means,
            covariances=gaussians.covariances,
            harmonics=gaussians.harmonics,
            opacities=gaussians.opacities,
            anchors=views.anchors,
            depths=depths,
            clusters=views.clusters,
        )

    def estimate_memory(
        self, batch: int, views: int, height: int, width: int, anchors: int
    ) -> MemoryEstimate:
        from zpressor_ns.encoders.mvsplat.memory_budget import estimate_memory

        return estimate_memory(
            self.config, views, anchors, height, width, weight_bytes=self.weight_bytes(), batch=batch
        )

    def _across_views(
        self,
        unet: ConvUNetRegressor,
        x: Float[Tensor, "batch_view channel height width"],
        batch: int,
        views: int,
    ) -> Float[Tensor, "batch_view out_channel height width"]:
        """A U-Net over each scene's views, in attention groups of ``unet_group_size`` (default: all)."""
        size = self.config.unet_group_size
        if size is None or size == views:
            return unet(x, views)
        if views % size:
            raise ValueError(
                f"unet_group_size={size} needs a multiple of {size} kept views, got {views} (the original "
                "cannot run this setting either)"
            )
        # The original's (view, batch) layout split into rows of ``size``: view v joins v + V/F, v + 2V/F, ...
        stride = views // size
        order = torch.arange(views, device=x.device).view(size, stride).T.flatten()
        grouped = x.unflatten(0, (batch, views))[:, order].flatten(0, 1)
        out = unet(grouped, size).unflatten(0, (batch, views))
        return out[:, torch.argsort(order)].flatten(0, 1)

    def _view_features(
        self, images: Float[Tensor, "batch view 3 height width"]
    ) -> tuple[Float[Tensor, "batch view channel h4 w4"]]:
        """ImageNet normalisation and the CNN's 1/4 features: everything that runs on every view."""
        b, n = images.shape[:2]
        normalised = (images - self.image_mean) / self.image_std
        _, _, quarter = self.cnn(normalised.flatten(0, 1))
        return (quarter.unflatten(0, (b, n)),)
