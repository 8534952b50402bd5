"""The pixelSplat encoder as ZPressor integrated it (pixelSplat's RE10K model), with or without ZPressor.

Per view: DINO ResNet + DINO ViT features summed at full resolution (``backbone``) -> ReLU -> linear
projection to ``feature_channels`` -> [ZPressor: V views -> K anchors on these full-resolution features;
the anchors' images, cameras and near/far continue] -> from here on anchors only: epipolar transformer
over the anchors (its view embeddings are sized by the anchor count, or by the context views without
ZPressor) -> plus a 7x7 convolution of the image (high-resolution skip) -> per pixel a depth distribution
(``depth``) from which ``gaussians_per_pixel`` depths are drawn, and the Gaussian channels (offset,
depth-relative scale, quaternion, SH without colour initialisation) -> world-frame Gaussians, G ordered
anchor, pixel (row-major), sample.

The forward is random, as the original's: the depth draws and the shuffle of the view embeddings.
``deterministic=True`` takes the most likely depth bucket instead (one Gaussian per pixel, opacity still
divided by ``gaussians_per_pixel``); the shuffle stays random as in the original. A ``generator`` makes
both repeatable; without it they come from torch's global RNG, which the forward never reseeds. The
original's test step (and hence its published scores) uses ``deterministic=False``.

ZPressor runs on full-resolution tokens here (65,536 per view at 256x256): its attention must use a fused
kernel (the CUDA defaults; the explicit-score ``math`` reference would hold 65,536 x 65,536 scores per
anchor). The per-view stages stream ``view_chunk`` views at a time (``encoders.base``) and the epipolar
cross-attention projects its keys and values in blocks of rays, so neither holds every view's or every
ray's activations at inference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.vit import VIT_PRESETS, ViTConfig
from zpressor_ns.encoders.base import AnchorCount, EncoderConfig, EncoderOutput, FeedForwardEncoder
from zpressor_ns.encoders.memory import MemoryEstimate
from zpressor_ns.encoders.pixelsplat.backbone import DinoBackbone, ResNetConfig
from zpressor_ns.encoders.pixelsplat.depth import pdf_to_opacity, sample_buckets
from zpressor_ns.encoders.pixelsplat.epipolar_transformer import (
    EpipolarConfig,
    EpipolarTransformer,
    depth_from_relative_disparity,
)
from zpressor_ns.gaussian_adapter import decode_depth_scaled_gaussians, num_depth_scaled_channels


@dataclass(frozen=True)
class PixelSplatConfig(EncoderConfig):
    """Architecture of the encoder. The defaults are the paper's (ResNet-50 + ViT-B/8, 4 anchors)."""

    num_anchors: int = 4
    num_context_views: int = 4
    """Context views the encoder is built for without ZPressor: they size its view embeddings, as the
    original's dataset.view_sampler.num_context_views does (the published baseline: 4)."""
    resnet: ResNetConfig = field(default_factory=ResNetConfig)
    vit: ViTConfig = VIT_PRESETS["dino_vitb8"]
    backbone_channels: int = 512
    feature_channels: int = 128
    """Width after the backbone projection: ZPressor's, the epipolar transformer's and the heads' input."""
    epipolar: EpipolarConfig = field(default_factory=EpipolarConfig)
    num_depth_buckets: int = 32
    gaussians_per_pixel: int = 3
    scale_range: tuple[float, float] = (0.5, 15.0)
    """Gaussian scales in pixel footprints x 0.1 at their depth (the original's 0.5..15)."""
    sh_degree: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_context_views < 2:
            raise ValueError(
                f"pixelSplat needs at least 2 context views, got num_context_views={self.num_context_views}"
            )
        if self.gaussians_per_pixel < 1 or self.num_depth_buckets < 1:
            raise ValueError("gaussians_per_pixel and num_depth_buckets must be at least 1")

    @property
    def num_view_embeddings(self) -> int:
        """Rows of the view embeddings: the views that reach the epipolar transformer as configured (the
        anchors with ZPressor); none for two views or fewer."""
        views = self.num_anchors if self.use_zpressor else self.num_context_views
        return views if views > 2 else 0

    @property
    def required_multiple(self) -> int:
        """Image sides must be multiples of this (epipolar downscale x patch, the ViT's patch)."""
        return math.lcm(self.epipolar.required_multiple, self.vit.patch_size)


PRESETS: dict[str, PixelSplatConfig] = {
    "paper": PixelSplatConfig(),
    # Same code paths at widths that train on 2 CPU cores at 64x64: 6 context views -> 3 anchors.
    "small": PixelSplatConfig(
        num_anchors=3,
        num_context_views=3,
        resnet=ResNetConfig(block="basic", layers=(1, 1, 1, 1), keep_layer4=False),
        vit=VIT_PRESETS["dino_tiny"],
        backbone_channels=64,
        feature_channels=32,
        epipolar=EpipolarConfig(
            num_layers=1,
            num_heads=2,
            head_dim=16,
            num_samples=16,
            num_octaves=6,
            image_layers=1,
            image_heads=2,
            image_head_dim=16,
            image_mlp=64,
            image_octaves=6,
        ),
    ),
}


class PixelSplatEncoder(FeedForwardEncoder):
    """Context views -> Gaussians of the K anchors (or of every view without ZPressor), 3 per pixel."""

    family = "pixelsplat"
    family_name = "pixelSplat"
    min_views = 2  # the epipolar transformer matches across views

    def __init__(self, config: PixelSplatConfig) -> None:
        super().__init__()
        self.config = config
        c = config.feature_channels
        self.backbone = DinoBackbone(config.resnet, config.vit, config.backbone_channels)
        self.feature_projection = nn.Linear(config.backbone_channels, c)
        self.zpressor = config.zpressor.build(c) if config.use_zpressor else None
        self.epipolar = EpipolarTransformer(c, config.epipolar, config.num_view_embeddings)
        self.image_skip = nn.Conv2d(3, c, 7, 1, 3)
        # Per bucket: (probability logit, offset logit), interleaved.
        self.depth_head = nn.Linear(c, 2 * config.num_depth_buckets)
        self.gaussian_head = nn.Linear(c, num_depth_scaled_channels(config.sh_degree))

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
        """Gaussians of the anchors, ordered anchor-major (FPS order), then pixels row-major, then samples.

        ``images`` in [0, 1]; ``c2w`` OpenCV camera-to-world; ``intrinsics`` normalised; ``near``/``far``
        the depth range (pixelSplat's bounds shim, ``zpressor_ns.data.shims.pixelsplat_depth_bounds``).
        ``num_anchors`` overrides the configured anchor count; ``"auto"`` takes the most anchors that fit
        the configured ``memory_budget_gb``. ``deterministic`` and ``generator``: see the module docstring.
        """
        self.check_inputs(images, c2w, intrinsics, near, far)
        cfg = self.config
        views = self.compress(self._view_features, images, c2w, num_anchors, generator)
        images, c2w, intrinsics, near, far = (views.select(x) for x in (images, c2w, intrinsics, near, far))
        b, k, _, h, w = images.shape

        features = self.epipolar(views.fused, c2w, intrinsics, near, far, generator)
        tokens = self.pixel_tokens(features, images)
        pdf, offsets = self.depth_distribution(tokens)
        samples = 1 if deterministic else cfg.gaussians_per_pixel
        bucket, density = sample_buckets(pdf, samples, deterministic, generator)
        disparity = (bucket + offsets.gather(-1, bucket)) / cfg.num_depth_buckets
        depths = depth_from_relative_disparity(disparity, near[:, :, None, None], far[:, :, None, None])
        opacities = pdf_to_opacity(density) / cfg.gaussians_per_pixel

        low, high = cfg.scale_range
        gaussians = decode_depth_scaled_gaussians(
            self.gaussian_head(tokens),
            depths,
            opacities,
            c2w,
            intrinsics,
            (h, w),
            sh_degree=cfg.sh_degree,
            scale_min=low,
            scale_max=high,
            anchors=views.anchors,
        )
        return EncoderOutput(
            means=gaussians.means,
            covariances=gaussians.covariances,
            harmonics=gaussians.harmonics,
            opacities=gaussians.opacities,
            anchors=views.anchors,
            depths=depths.unflatten(2, (h, w)),
            clusters=views.clusters,
        )

    def pixel_tokens(
        self,
        features: Float[Tensor, "batch anchor channel height width"],
        images: Float[Tensor, "batch anchor 3 height width"],
    ) -> Float[Tensor, "batch anchor pixel channel"]:
        """The heads' input per pixel: the epipolar features plus the high-resolution skip, after a ReLU."""
        skip = F.relu(self.image_skip(images.flatten(0, 1))).unflatten(0, images.shape[:2])
        return F.relu((features + skip).flatten(3).transpose(2, 3))

    def depth_distribution(
        self, tokens: Float[Tensor, "batch anchor pixel channel"]
    ) -> tuple[Float[Tensor, "batch anchor pixel bucket"], Float[Tensor, "batch anchor pixel bucket"]]:
        """Per pixel: the probability of each depth bucket and the position (0..1) inside each bucket."""
        logits = self.depth_head(tokens).unflatten(-1, (self.config.num_depth_buckets, 2))
        return logits[..., 0].softmax(dim=-1), logits[..., 1].sigmoid()

    def estimate_memory(
        self, batch: int, views: int, height: int, width: int, anchors: int
    ) -> MemoryEstimate:
        from zpressor_ns.encoders.pixelsplat.memory_budget import estimate_memory

        return estimate_memory(
            self.config, views, anchors, height, width, weight_bytes=self.weight_bytes(), batch=batch
        )

    def _view_features(
        self, images: Float[Tensor, "batch view 3 height width"]
    ) -> tuple[Float[Tensor, "batch view channel height width"]]:
        """Backbone and projection: everything that runs on every view (ZPressor's input)."""
        b, n = images.shape[:2]
        features = self.backbone(images.flatten(0, 1))
        features = self.feature_projection(F.relu(features).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return (features.unflatten(0, (b, n)),)
