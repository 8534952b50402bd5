"""Feed-forward splatting encoders, one folder per family, all calling ZPressor through one stage.

``build_encoder(method, preset="paper", **overrides)`` builds any registered method ("zpressor-depthsplat",
"depthsplat", ...); ``import_official(state_dict, method, **overrides)`` converts a published checkpoint for
it. ``registry`` lists the families; ``base`` holds what they share (configuration fields, output, the
ZPressor stage).
"""

from zpressor_ns.encoders.base import EncoderConfig, EncoderOutput, FeedForwardEncoder, ZPressorOptions
from zpressor_ns.encoders.registry import (
    build_encoder,
    encoder_config,
    families,
    family_of,
    import_official,
    method_names,
    registered_method_names,
    required_multiple,
    resolve_method,
)

__all__ = [
    "EncoderConfig",
    "EncoderOutput",
    "FeedForwardEncoder",
    "ZPressorOptions",
    "build_encoder",
    "encoder_config",
    "families",
    "family_of",
    "import_official",
    "method_names",
    "registered_method_names",
    "required_multiple",
    "resolve_method",
]
