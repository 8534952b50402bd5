"""Peak GPU memory of the pixelSplat encoder at inference, counted from tensor shapes.

Inference frees every activation once its last reader is done, so the peak is the largest set of tensors
alive at one time, in one of two phases (see ``encoders.memory.MemoryEstimate``):

- view phase, the larger of two steps beside the anchors' kept features: the per-view stages (every
  view's 128-channel full-resolution feature map written so far, and one chunk of views inside the
  backbone: at full resolution the ResNet sum, the repeated ViT patch tokens and their sum with the class
  token, three maps of ``backbone_channels``, plus the ResNet's half-resolution stage and the ViT's
  tokens), then ZPressor (every view's map as its supports, one layer's keys and values for all views in
  bf16 on CUDA, and the anchor stream through a layer, whose MLP is 4x wide);
- anchor phase, the larger of two steps: the epipolar transformer (the keys of every anchor's coarse
  pixels, ``(K - 1) x samples`` each: the sampled features and two sums of the same width are alive while
  they are assembled; one block of the keys' and values' projections, ``KEY_VALUE_BLOCK`` values, which
  the attention reads as strided views), then at full resolution the refinement, the heads and the ``gaussians_per_pixel``
  Gaussians of every pixel.

Values are fp32 (4 bytes) except ZPressor's keys and values. The counts are an allowance per pixel, not
a trace; ``benchmarks/cuda_dry_run.py`` compares them with the live tensors of the CUDA path.
"""

from __future__ import annotations

from zpressor_ns.encoders.memory import FP32_BYTES, MemoryEstimate
from zpressor_ns.encoders.pixelsplat.encoder import PixelSplatConfig
from zpressor_ns.encoders.pixelsplat.epipolar_transformer import KEY_VALUE_BLOCK
from zpressor_ns.gaussian_adapter import num_depth_scaled_channels
from zpressor_ns.sh_rotation import num_coefficients


def backbone_values(config: PixelSplatConfig) -> float:
    """Values per pixel of one view inside the backbone and projection."""
    full_resolution = 3 * config.backbone_channels + 2 * config.feature_channels
    resnet = 5 * config.resnet.stage_channels[1] / 4  # a stage-1 block at half resolution
    vit = 12 * config.vit.dim / config.vit.patch_size**2  # a block's tokens, qkv and MLP
    return 3 + full_resolution + resnet + vit


def zpressor_anchor_values(config: PixelSplatConfig) -> float:
    """Values per anchor pixel of ZPressor's anchor stream inside a layer (stream, norms, q, out, MLP)."""
    return 10 * config.feature_channels


def epipolar_key_values(config: PixelSplatConfig, anchors: int) -> float:
    """Values per anchor pixel of the epipolar keys (coarse grid, (K - 1) x samples keys of 3 widths)."""
    epi = config.epipolar
    keys = max(anchors - 1, 1) * epi.num_samples * (3 * config.feature_channels + 2 * epi.num_octaves + 2)
    return keys / epi.downscale**2


def head_values(config: PixelSplatConfig) -> float:
    """Values per anchor pixel after the epipolar layers: the larger of the refinement (upscaled, hidden of
    twice the width, refined, sum) and the heads (features, tokens, depth distribution, raw Gaussian
    channels and their decoding, and the ``gaussians_per_pixel`` Gaussians being assembled)."""
    c, buckets = config.feature_channels, config.num_depth_buckets
    sh = 3 * num_coefficients(config.sh_degree)
    refine = 5 * c
    decoded = 3 + 3 + 9 + 2 * sh  # rays, unit-depth covariance, SH before and after rotation
    gaussians = config.gaussians_per_pixel * (3 + 9 + sh + 1)
    heads = 2 * c + 2 * buckets + 2 * num_depth_scaled_channels(config.sh_degree) + decoded + gaussians
    return max(refine, heads)


def estimate_memory(
    config: PixelSplatConfig,
    views: int,
    anchors: int,
    height: int,
    width: int,
    *,
    weight_bytes: int | float,
    batch: int = 1,
    attention_bytes: int = 2,
) -> MemoryEstimate:
    """Peak-memory model of one inference forward (``anchors`` = ``views`` without ZPressor).

    ``attention_bytes`` is the dtype size of ZPressor's keys and values (2: bf16 on CUDA); the exact fp32
    CPU path pads supports per anchor and is not modelled.
    """
    pixels = batch * height * width
    c = config.feature_channels
    kept = anchors * 2 * c * FP32_BYTES  # the anchors' own and fused features
    per_view = views * c * FP32_BYTES + min(config.view_chunk, views) * backbone_values(config) * FP32_BYTES
    zpressor = 0.0
    if config.use_zpressor:
        zpressor = views * c * (FP32_BYTES + 2 * attention_bytes)
        zpressor += anchors * zpressor_anchor_values(config) * FP32_BYTES
    epi = config.epipolar
    projections = pixels * anchors / epi.downscale**2 * max(anchors - 1, 1) * epi.num_samples
    projections *= 2 * epi.num_heads * epi.head_dim  # keys and values of every ray at once
    key_block = min(projections, KEY_VALUE_BLOCK) * FP32_BYTES  # one block (heads split it as views)
    epipolar = pixels * anchors * (epipolar_key_values(config, anchors) + 2 * c) * FP32_BYTES + key_block
    heads = pixels * anchors * head_values(config) * FP32_BYTES
    return MemoryEstimate(
        weights=float(weight_bytes),
        inputs=views * pixels * 3 * FP32_BYTES,
        view_phase=pixels * (max(per_view, zpressor) + kept),
        anchor_phase=max(epipolar, heads),
    )
