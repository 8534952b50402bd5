"""Encoder backbones. ``build_encoder(method, preset)`` returns the DepthSplat encoder with or without ZPressor."""

from zpressor_ns.backbones.depthsplat import (
    DepthSplatConfig,
    DepthSplatEncoder,
    EncoderOutput,
    build_encoder,
    encoder_config,
    required_multiple,
)

__all__ = [
    "DepthSplatConfig",
    "DepthSplatEncoder",
    "EncoderOutput",
    "build_encoder",
    "encoder_config",
    "required_multiple",
]
