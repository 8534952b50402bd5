"""Peak GPU memory of the streamed MVSplat encoder at inference, counted from tensor shapes.

Same two phases as every family (``zpressor_ns.encoders.memory``):

- view phase: every view's 1/4 map (ZPressor's supports) and one ZPressor layer's keys and values (attention
  dtype: bf16 on CUDA), one chunk of views inside the CNN, and the anchors' kept 1/4 maps;
- anchor phase: the largest of three moments of the anchor stages, per anchor pixel:
  * the cost volume, which warps one neighbour at a time into a [C, D] volume per 1/4 pixel and multiplies
    it with the reference (two such volumes alive: 2 C D / 16 values per image pixel, 8 KB at the paper's
    widths, the peak up to about 40 anchors);
  * the multi-view transformer, whose cross-attention gathers every view's K - 1 others and projects them
    to keys and values (quadratic in the anchors overall; the peak beyond about 40 anchors);
  * the Gaussian head's first convolution and GELU at full resolution (the peak of the small preset).

Values per image pixel from the configuration's widths, 4 bytes each (fp32 activations). Checked against
the live tensors of the CUDA path on fake tensors (``benchmarks/cuda_dry_run.py``: within 2% at 2-36
views of 256x256, both presets) and of the CPU forward (``tests/test_mvsplat_encoder.py``).
"""

from __future__ import annotations

from zpressor_ns.encoders.memory import FP32_BYTES, MemoryEstimate
from zpressor_ns.encoders.mvsplat.encoder import FEATURE_STRIDE, MVSplatConfig
from zpressor_ns.gaussian_adapter import num_depth_scaled_channels


def _per_grid_pixel(channels: int | float) -> float:
    """Values per image pixel of a map with ``channels`` channels on the 1/4 grid."""
    return channels / FEATURE_STRIDE**2


def cnn_chunk_values(config: MVSplatConfig) -> float:
    """Values per pixel of one view inside the per-view stage: the gathered and normalised image, and at most
    five half-resolution maps of the stem's width at once (a residual block's input, convolutions, norms)."""
    return 6 + 5 * config.cnn_channels[0] / 4


def support_bytes(config: MVSplatConfig, attention_bytes: int) -> float:
    """Bytes per pixel of every view while ZPressor runs: its fp32 1/4 map, one layer's keys and values."""
    quarter = _per_grid_pixel(config.feature_channels)
    return quarter * FP32_BYTES + 2 * quarter * attention_bytes


def cost_volume_values(config: MVSplatConfig) -> float:
    """Values per anchor pixel while the cost volume is built: the anchor's image, fused and transformer
    features, one neighbour's features, sampling grid, warped volume and its product with the reference,
    and the running sum."""
    c, d = config.feature_channels, config.num_depth_candidates
    return 3 + _per_grid_pixel(3 * c + 2 * d + 2 * c * d + d)


def transformer_values(config: MVSplatConfig, anchors: int) -> float:
    """Values per anchor pixel inside the multi-view transformer: 14 maps of its width per view (stream,
    projections, attention) and 6 per other view (gathered context, keys, values and their copies in the
    window layout), counted on the CUDA path."""
    return _per_grid_pixel((14 + 6 * (anchors - 1)) * config.feature_channels)


def head_values(config: MVSplatConfig) -> float:
    """Values per anchor pixel at the Gaussian head's hidden layer (its convolution and GELU both alive)."""
    c, d = config.feature_channels, config.num_depth_candidates
    refined = config.depth_unet.channels
    hidden = 2 * num_depth_scaled_channels(config.sh_degree)
    held = 3 + _per_grid_pixel(2 * c + d) + 2 + c + refined  # image, 1/4 maps, coarse depth, upsampled
    return held + (refined + 3 + c) + 2 * hidden


def anchor_phase_values(config: MVSplatConfig, anchors: int) -> float:
    return max(cost_volume_values(config), transformer_values(config, anchors), head_values(config))


def estimate_memory(
    config: MVSplatConfig,
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

    ``attention_bytes`` is the dtype size of ZPressor's keys and values (2: bf16 on CUDA).
    """
    pixels = batch * height * width
    supports = views * support_bytes(config, attention_bytes) if config.use_zpressor else 0.0
    chunk = min(config.view_chunk, views) * cnn_chunk_values(config) * FP32_BYTES
    kept = anchors * _per_grid_pixel(config.feature_channels) * FP32_BYTES
    return MemoryEstimate(
        weights=float(weight_bytes),
        inputs=views * pixels * 3 * FP32_BYTES,
        view_phase=pixels * (supports + chunk + kept),
        anchor_phase=pixels * anchors * anchor_phase_values(config, anchors) * FP32_BYTES,
    )
