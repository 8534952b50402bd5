"""Peak GPU memory of the streamed encoder at inference, counted from tensor shapes; anchors for a budget.

Inference frees every activation once its last reader is done, so the peak is the largest set of
tensors alive at one time. With the views streamed (see ``depthsplat``) that set is one of two phases:

- view phase: every view's position-coded 1/8 map (ZPressor's supports), one ZPressor layer's keys and
  values for all views (attention dtype: bf16 on CUDA), one chunk of views inside the CNN, and the
  anchors' kept CNN features;
- anchor phase: the Gaussian head at full resolution (input, two hidden maps, output) beside everything
  the anchors still hold (images, CNN scales, depth maps, 1/8 features, latent, regressed features).
  A live-tensor count on CPU puts the peak of the anchor stages there for both presets (paper widths:
  3243 B per anchor pixel measured, 3208 B counted here).

Everything is counted as tensor values per image pixel from the configuration's widths, 4 bytes each
(fp32 activations). The weights and the context images are alive throughout; ``MemoryEstimate.peak`` adds
the allowance ``ACTIVATION_SLACK`` (``zpressor_ns.encoders.memory``). The count itself is checked against
the live tensors of the CUDA path on fake tensors (``benchmarks/cuda_dry_run.py``): within 0.3% where the
anchors set the peak, and about 0.5 GB high (conservative) in the view phase at 1000 views.
"""

from __future__ import annotations

from zpressor_ns.encoders.depthsplat.encoder import FEATURE_STRIDE, DepthSplatConfig
from zpressor_ns.encoders.memory import FP32_BYTES, MemoryEstimate, most_anchors_within
from zpressor_ns.gaussian_adapter import num_gaussian_channels


def _per_eighth_pixel(channels: int | float) -> float:
    """Values per image pixel of a map with ``channels`` channels on the 1/8 grid."""
    return channels / FEATURE_STRIDE**2


def cnn_chunk_values(config: DepthSplatConfig) -> float:
    """Values per pixel of one view inside the per-view stages: the gathered and normalised image, and at
    most five half-resolution maps of the stem's width at once (a residual block's input, convolutions,
    norms and sum)."""
    return 6 + 5 * config.cnn_channels[0] / 4


def kept_cnn_values(config: DepthSplatConfig) -> float:
    """Values per pixel that an anchor keeps from the per-view stages: 1/2, 1/4 and two 1/8 maps."""
    half, quarter, _ = config.cnn_channels
    return half / 4 + quarter / 16 + 2 * _per_eighth_pixel(config.feature_channels)


def support_bytes(config: DepthSplatConfig, attention_bytes: int) -> float:
    """Bytes per pixel of every view while ZPressor runs: its fp32 1/8 map, and one layer's keys and values."""
    eighth = _per_eighth_pixel(config.feature_channels)
    return eighth * FP32_BYTES + 2 * eighth * attention_bytes


def anchor_phase_values(config: DepthSplatConfig) -> float:
    """Values per anchor pixel at the Gaussian head's second convolution, the anchor stages' peak."""
    c = config.feature_channels
    latent = config.feature_upsampler_channels
    regressed = config.gaussian_unet.channels
    held = (
        6  # image and its normalised copy
        + kept_cnn_values(config)
        + 3  # depth, coarse inverse depth, confidence
        + _per_eighth_pixel(config.num_depth_candidates)  # matching probabilities
        + _per_eighth_pixel(2 * c + config.vit.dim)  # fused, multi-view and monocular 1/8 features
        + latent
        + regressed
    )
    head_input = regressed + 3 + latent + 1
    head = head_input + 2 * config.gaussian_head_hidden + num_gaussian_channels(config.sh_degree)
    return held + head


def estimate_memory(
    config: DepthSplatConfig,
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

    ``attention_bytes`` is the dtype size of ZPressor's keys and values (2: bf16 on CUDA); the fp32 CPU path
    (one cluster's keys and values at a time) is not modelled.
    """
    pixels = batch * height * width
    supports = views * support_bytes(config, attention_bytes) if config.use_zpressor else 0.0
    chunk = min(config.view_chunk, views) * cnn_chunk_values(config) * FP32_BYTES
    kept = anchors * kept_cnn_values(config) * FP32_BYTES
    return MemoryEstimate(
        weights=float(weight_bytes),
        inputs=float(views * pixels * 3 * FP32_BYTES),
        view_phase=float(pixels * (supports + chunk + kept)),
        anchor_phase=float(pixels * anchors * anchor_phase_values(config) * FP32_BYTES),
    )


def anchors_for_budget(
    config: DepthSplatConfig,
    views: int,
    height: int,
    width: int,
    memory_budget_gb: int | float,
    *,
    weight_bytes: int | float,
    batch: int = 1,
) -> int:
    """The most anchors (at least 2, at most ``views``) whose modelled peak fits ``memory_budget_gb`` (1e9 B).

    Non-increasing in resolution and views, non-decreasing in the budget (the model grows with each).
    """
    if not config.use_zpressor:
        raise ValueError("only the ZPressor encoder has anchors; without it every view is kept")

    def peak(anchors: int) -> float:
        return estimate_memory(
            config, views, anchors, height, width, weight_bytes=weight_bytes, batch=batch
        ).peak

    return most_anchors_within(
        peak, views, memory_budget_gb, setting=f" for {views} views of {height}x{width} (batch {batch})"
    )
