"""The DepthSplat encoder as ZPressor integrated it (Oct-2024 DepthSplat, one scale), with or without ZPressor.

Per view: ImageNet normalisation -> UniMatch CNN (1/2, 1/4, 1/8) -> window sine position code on the
1/8 features -> [ZPressor: V views -> K anchors; its output replaces only the transformer input, every
other consumer takes the anchors' raw features] -> from here on anchors only: multi-view transformer
over the nearest anchors, DINOv2 features, inverse-depth cost volume, depth regressor U-Net, DPT
refinement to full-resolution inverse depth, feature upsampler, Gaussian regressor U-Net and head,
then pixel Gaussians in the world frame (``zpressor_ns.gaussian_adapter``).

Streaming the views (beyond the paper; same numbers as running all views at once). Anchors and clusters
depend on the camera centres alone, so they are chosen first. The per-view stages then run on
``view_chunk`` views at a time, anchors first: the anchors keep all three CNN scales (the cost volume
concat, the DPT head and the feature upsampler read them); every view keeps only its position-coded
1/8 map, ZPressor's input. The original instead holds every view's CNN activations at once (~40 MB per
view at 256x448).

ZPressor's cross-attention reads the ORIGINAL support maps in all of its layers, so they are kept, not
streamed through an online softmax (which would have to run the CNN or the chunk loop once per layer).
The arithmetic at 256x448 (paper widths, C = 128 on a 32x56 grid) says keeping them is cheap:
1792 x 128 x 4 B = 0.92 MB per view in fp32, plus one layer's keys and values at a time in the
attention's dtype (0.92 MB per view in bf16 on CUDA), next to the 1.38 MB of the input image itself:
about 1.6 GB at 500 views, of which the maps, keys and values are freed before the anchor stages run
(the budget is 6 GB; an online softmax would save under 1 GB there, at 6 passes over the supports).
The CNN's working set is that of one chunk (5 half-resolution maps of 64 channels: 0.3 KB per pixel per
view, 0.6 GB for 16 views). What remains is set by the anchors, not the views: ``memory_budget`` models it and picks the number of
anchors that fits a budget (``num_anchors="auto"``).

Module names here are this project's; ``zpressor_ns.checkpoints.import_official`` maps the original
checkpoint keys onto them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn

from zpressor_ns.blocks.cnn import IMAGENET_MEAN, IMAGENET_STD, CNNEncoder
from zpressor_ns.blocks.conv_sequential import FusedConvSequential, conv_gelu_conv
from zpressor_ns.blocks.cost_volume import inverse_depth_candidates, nearest_views, plane_sweep_cost_volume
from zpressor_ns.blocks.dpt import DPT_PRESETS, DPTConfig, DPTHead
from zpressor_ns.blocks.mv_transformer import MultiViewTransformer
from zpressor_ns.blocks.position import add_window_position
from zpressor_ns.blocks.unet import UNET_PRESETS, ConvUNetRegressor, UNetConfig
from zpressor_ns.blocks.vit import VIT_PRESETS, VisionTransformer, ViTConfig
from zpressor_ns.encoders.base import AnchorCount, EncoderConfig, EncoderOutput, FeedForwardEncoder
from zpressor_ns.encoders.memory import MemoryEstimate
from zpressor_ns.gaussian_adapter import PixelGaussians, decode_pixel_gaussians, num_gaussian_channels

# The CNN's coarsest stride; the depth is predicted on this grid and refined x8.
FEATURE_STRIDE = 8
# On CPU the Gaussian head runs on at most this many pixels (whole views) at a time. Its full-resolution maps
# (input, padded copies, hidden layer) are 30+ MB for 6 anchors of 64x128, and glibc maps every block over
# 32 MiB afresh, page faults and zeroing included, on each call; smaller steps reuse the allocator's pages
# (its system time 35 -> 19 ms of about 240) and lower the peak. The CUDA path (what the memory models count) runs
# every anchor at once.
CPU_HEAD_CHUNK_PIXELS = 2**15


@dataclass(frozen=True)
class DepthSplatConfig(EncoderConfig):
    """Architecture of the encoder. The defaults are the paper's (ViT-B, 128 candidates, 6 anchors)."""

    cnn_channels: tuple[int, int, int] = (64, 96, 128)
    # Width of the 1/8 features, the multi-view transformer and ZPressor (they must agree).
    feature_channels: int = 128
    transformer_layers: int = 6
    attention_splits: int = 2
    # Views each view matches against in the transformer and the cost volume, itself included.
    nearest_views: int = 3
    num_depth_candidates: int = 128
    vit: ViTConfig = VIT_PRESETS["vitb"]
    dpt: DPTConfig = DPT_PRESETS["vitb"]
    depth_unet: UNetConfig = UNET_PRESETS["depth_regressor"]
    gaussian_unet: UNetConfig = UNET_PRESETS["gaussian_regressor"]
    feature_upsampler_channels: int = 128
    sh_degree: int = 4
    scale_max: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        cnn_outputs = (*self.cnn_channels[:2], self.feature_channels)
        if tuple(self.dpt.cnn_channels) != cnn_outputs:
            raise ValueError(f"DPT expects CNN widths {self.dpt.cnn_channels}, the CNN gives {cnn_outputs}")
        if self.dpt.mv_channels != self.feature_channels or self.dpt.vit_channels != self.vit.dim:
            raise ValueError(
                f"DPT widths (mv {self.dpt.mv_channels}, ViT {self.dpt.vit_channels}) do not match the "
                f"transformer ({self.feature_channels}) and ViT ({self.vit.dim})"
            )

    @property
    def gaussian_head_hidden(self) -> int:
        """DepthSplat widens the head to twice its output only with 128 upsampled feature channels."""
        channels = num_gaussian_channels(self.sh_degree)
        return 2 * channels if self.feature_upsampler_channels == 128 else channels

    @property
    def required_multiple(self) -> int:
        """Image height and width must be multiples of this (U-Net skips, transformer windows)."""
        depth_unet = FEATURE_STRIDE * self.depth_unet.required_multiple
        windows = FEATURE_STRIDE * self.attention_splits
        return math.lcm(depth_unet, windows, self.gaussian_unet.required_multiple)


PRESETS: dict[str, DepthSplatConfig] = {
    "paper": DepthSplatConfig(),
    # Same code paths at widths that train on 2 CPU cores at 64-128 px.
    "small": DepthSplatConfig(
        num_anchors=3,
        cnn_channels=(32, 48, 64),
        feature_channels=64,
        num_depth_candidates=32,
        vit=VIT_PRESETS["tiny"],
        dpt=DPT_PRESETS["small"],
        depth_unet=UNET_PRESETS["depth_regressor_small"],
        gaussian_unet=UNET_PRESETS["gaussian_regressor_small"],
        feature_upsampler_channels=32,
    ),
}


@dataclass
class DepthPrediction:
    """Depth of the anchors and what the Gaussian branch reuses from the depth branch."""

    depth: Float[Tensor, "batch_anchor 1 height width"]
    # The x8 bilinear low-res inverse depth, before refinement and clamping (training's second render).
    coarse_inverse_depth: Float[Tensor, "batch_anchor 1 height width"]
    match_prob: Float[Tensor, "batch_anchor candidate h8 w8"]
    # 1/8 CNN, multi-view transformer and ViT features, the feature upsampler's input.
    features: tuple[Tensor, Tensor, Tensor]


def _feature_upsampler(in_channels: int, out_channels: int) -> FusedConvSequential:
    """1x1 conv, then three (nearest x2, 3x3 conv) steps halving the width, GELU between them."""
    hidden = 4 * out_channels
    return FusedConvSequential(
        nn.Conv2d(in_channels, hidden, 1),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(hidden, hidden // 2, 3, padding=1, padding_mode="replicate"),
        nn.GELU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(hidden // 2, hidden // 4, 3, padding=1, padding_mode="replicate"),
        nn.GELU(),
        nn.Upsample(scale_factor=2, mode="nearest"),
        nn.Conv2d(hidden // 4, out_channels, 3, padding=1, padding_mode="replicate"),
    )


def _cat_channels_last(maps: tuple[Tensor, ...]) -> Float[Tensor, "batch channel height width"]:
    """Concatenate along channels into a channels-last tensor (``torch.cat`` falls back to NCHW, with a
    transposing copy of every channels-last input, as soon as the inputs' layouts differ)."""
    return torch.cat([x.permute(0, 2, 3, 1) for x in maps], dim=-1).permute(0, 3, 1, 2)


def _upsample_bilinear(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DepthSplatEncoder(FeedForwardEncoder):
    """Context views -> pixel-aligned Gaussians of the K anchors (or of every view without ZPressor)."""

    family = "depthsplat"
    family_name = "DepthSplat"
    min_views = 2  # the cost volume matches across views

    def __init__(self, config: DepthSplatConfig) -> None:
        super().__init__()
        self.config = config
        c = config.feature_channels
        self.cnn = CNNEncoder(config.cnn_channels, c, last_stride=2)
        self.zpressor = config.zpressor.build(c) if config.use_zpressor else None
        self.transformer = MultiViewTransformer(c, config.transformer_layers)
        self.vit = VisionTransformer(config.vit)

        regressor_in = config.num_depth_candidates + c + c + config.vit.dim
        unet_channels = config.depth_unet.channels
        self.depth_regressor = ConvUNetRegressor(regressor_in, config.depth_unet, unet_channels)
        self.depth_regressor_residual = nn.Conv2d(regressor_in, unet_channels, 1)
        self.depth_head = conv_gelu_conv(
            unet_channels, 2 * unet_channels, config.num_depth_candidates, padding_mode="replicate"
        )
        self.dpt = DPTHead(config.dpt)

        latent = config.feature_upsampler_channels
        self.feature_upsampler = _feature_upsampler(c + c + config.vit.dim, latent)
        self.gaussian_regressor = ConvUNetRegressor(
            3 + 1 + 1 + latent, config.gaussian_unet, config.gaussian_unet.channels
        )
        head_in = config.gaussian_unet.channels + 3 + latent + 1
        num_channels = num_gaussian_channels(config.sh_degree)
        self.gaussian_head = conv_gelu_conv(
            head_in, config.gaussian_head_hidden, num_channels, padding_mode="replicate"
        )
        # Scales start at exp(-4) and SH at zero (DC then comes from the pixel colour alone).
        last = self.gaussian_head[-1]
        for rows in (slice(3, 6), slice(10, num_channels)):
            nn.init.zeros_(last.weight[rows])
            nn.init.zeros_(last.bias[rows])
        # The full-resolution decoder (feature upsampler, Gaussian regressor, head) runs channels-last: its
        # weights say so and its activations follow (oneDNN's direct NHWC kernels, 15-30% less CPU time
        # than NCHW, the same fp32 math). The CNN and the 1/8 stages stay NCHW, where NHWC is no faster.
        for decoder in (self.feature_upsampler, self.gaussian_regressor, self.gaussian_head):
            decoder.to(memory_format=torch.channels_last)

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
        takes the most anchors that fit the configured ``memory_budget_gb``. DepthSplat's forward has no
        randomness: ``deterministic`` is accepted for the common encoder interface, and ``generator`` only
        draws ZPressor's first anchor when that is configured to be random.
        """
        self.check_inputs(images, c2w, intrinsics, near, far)
        cfg = self.config
        b, _, _, h, w = images.shape
        # The fused 1/8 maps replace only the transformer's input; every other consumer reads the
        # anchors' raw CNN features (the original's insertion point).
        views = self.compress(self._view_features, images, c2w, num_anchors, generator)
        half, quarter, eighth, _ = views.kept
        transformer_in = views.fused
        anchors, clusters = views.anchors, views.clusters
        images, c2w, intrinsics, near, far = (views.select(x) for x in (images, c2w, intrinsics, near, far))
        k = images.shape[1]
        normalised = (images - self.image_mean) / self.image_std

        depth = self._predict_depth(
            transformer_in,
            normalised,
            half,
            quarter,
            eighth,
            c2w,
            intrinsics,
            near,
            far,
        )

        latent = self.feature_upsampler(torch.cat(depth.features, dim=1))
        confidence = F.interpolate(depth.match_prob.amax(dim=1, keepdim=True), size=(h, w), mode="nearest")
        rgb = images.flatten(0, 1)
        regressed = self.gaussian_regressor(_cat_channels_last((rgb, depth.depth, confidence, latent)), k)
        raw = self._gaussian_head((regressed, rgb, latent, confidence))

        pixels: PixelGaussians = decode_pixel_gaussians(
            raw.unflatten(0, (b, k)), images, c2w, intrinsics, cfg.sh_degree, cfg.scale_max
        )
        depths = depth.depth[:, 0].unflatten(0, (b, k))
        gaussians = pixels.at_depths(depths, anchors)
        intermediate = None
        if self.training:
            intermediate = pixels.at_depths(
                (1.0 / depth.coarse_inverse_depth[:, 0]).unflatten(0, (b, k)), anchors
            )
        return EncoderOutput(
            means=gaussians.means,
            covariances=gaussians.covariances,
            harmonics=gaussians.harmonics,
            opacities=gaussians.opacities,
            anchors=anchors,
            depths=depths,
            latent=latent.unflatten(0, (b, k)),
            intermediate=intermediate,
            clusters=clusters,
        )

    def pretrained_parameters(self) -> list[nn.Parameter]:
        """The monocular ViT (DINOv2 / Depth Anything V2), trained at the original's 100x lower rate."""
        return list(self.vit.parameters())

    def estimate_memory(
        self, batch: int, views: int, height: int, width: int, anchors: int
    ) -> MemoryEstimate:
        from zpressor_ns.encoders.depthsplat.memory_budget import estimate_memory

        return estimate_memory(
            self.config, views, anchors, height, width, weight_bytes=self.weight_bytes(), batch=batch
        )

    def _gaussian_head(self, maps: tuple[Tensor, ...]) -> Float[Tensor, "batch_anchor channel height width"]:
        """The Gaussian head on the channel concatenation of ``maps`` (on CPU, a few views at a time)."""
        n, _, h, w = maps[0].shape
        step = max(1, CPU_HEAD_CHUNK_PIXELS // (h * w)) if maps[0].device.type == "cpu" else n
        if step >= n:
            return self.gaussian_head(_cat_channels_last(maps))
        chunks = [
            self.gaussian_head(_cat_channels_last(tuple(m[start : start + step] for m in maps)))
            for start in range(0, n, step)
        ]
        return torch.cat(chunks)

    def _view_features(
        self, images: Float[Tensor, "batch view 3 height width"]
    ) -> tuple[
        Float[Tensor, "batch view c1 h2 w2"],
        Float[Tensor, "batch view c2 h4 w4"],
        Float[Tensor, "batch view channel h8 w8"],
        Float[Tensor, "batch view channel h8 w8"],
    ]:
        """ImageNet normalisation, CNN and window position code: everything that runs on every view."""
        b, n = images.shape[:2]
        normalised = (images - self.image_mean) / self.image_std
        half, quarter, eighth = (f.unflatten(0, (b, n)) for f in self.cnn(normalised.flatten(0, 1)))
        return half, quarter, eighth, add_window_position(eighth, self.config.attention_splits)

    def _predict_depth(
        self,
        transformer_in: Float[Tensor, "batch anchor channel h8 w8"],
        normalised: Float[Tensor, "batch anchor 3 height width"],
        half: Float[Tensor, "batch anchor c1 h2 w2"],
        quarter: Float[Tensor, "batch anchor c2 h4 w4"],
        eighth: Float[Tensor, "batch anchor channel h8 w8"],
        c2w: Float[Tensor, "batch anchor 4 4"],
        intrinsics: Float[Tensor, "batch anchor 3 3"],
        near: Float[Tensor, "batch anchor"],
        far: Float[Tensor, "batch anchor"],
    ) -> DepthPrediction:
        """Multi-view transformer, ViT, cost volume, depth regressor and DPT refinement (anchors only)."""
        cfg = self.config
        k, h, w = normalised.shape[1], normalised.shape[-2], normalised.shape[-1]
        neighbours = nearest_views(c2w, cfg.nearest_views)
        mv = self.transformer(transformer_in, neighbours, cfg.attention_splits)
        low = (h // FEATURE_STRIDE, w // FEATURE_STRIDE)

        patch = cfg.vit.patch_size
        vit_in = _upsample_bilinear(normalised.flatten(0, 1), (h // patch * patch, w // patch * patch))
        vit_features = [_upsample_bilinear(f, low) for f in self.vit.get_intermediate_layers(vit_in)]
        mono = vit_features[-1]

        # Cost volume on the 1/8 grid: intrinsics in pixels of that grid, candidates in inverse depth.
        pixel_k = intrinsics.clone()
        pixel_k[..., 0, :] = pixel_k[..., 0, :] * w
        pixel_k[..., 1, :] = pixel_k[..., 1, :] * h
        pixel_k[..., :2, :] = pixel_k[..., :2, :] / FEATURE_STRIDE
        candidates = inverse_depth_candidates(near, far, cfg.num_depth_candidates)  # [b, k, d]
        cost = plane_sweep_cost_volume(mv, pixel_k, c2w, neighbours, candidates)

        eighth, mv = eighth.flatten(0, 1), mv.flatten(0, 1)
        regressor_in = torch.cat((cost.flatten(0, 1), eighth, mv, mono), dim=1)
        regressed = self.depth_regressor(regressor_in, k) + self.depth_regressor_residual(regressor_in)
        match_prob = torch.softmax(self.depth_head(regressed), dim=1)  # [bk, d, h8, w8]
        low_inverse_depth = (match_prob * candidates.flatten(0, 1)[:, :, None, None]).sum(1, keepdim=True)

        residual = self.dpt(
            vit_features, (half.flatten(0, 1), quarter.flatten(0, 1), eighth), mv, low_inverse_depth
        )
        coarse = _upsample_bilinear(low_inverse_depth, (h, w))
        inverse_depth = (coarse + residual).clamp(
            min=(1.0 / far).reshape(-1, 1, 1, 1), max=(1.0 / near).reshape(-1, 1, 1, 1)
        )
        return DepthPrediction(1.0 / inverse_depth, coarse, match_prob, (eighth, mv, mono))
