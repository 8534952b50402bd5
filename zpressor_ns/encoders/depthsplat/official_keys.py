"""Where the original DepthSplat(+ZPressor) keeps each module in its checkpoints, and the import into ours."""

from __future__ import annotations

from torch import Tensor

from zpressor_ns.checkpoints import import_official_encoder
from zpressor_ns.encoders.depthsplat.encoder import DepthSplatConfig

ZPRESSOR_PREFIX = "depth_predictor.zipmatch."
# Original module path (after ``encoder.``) -> this project's ``DepthSplatEncoder`` path. Inside each
# module the names already agree (CNN, transformer, ViT hub names, U-Net, DPT).
MODULE_PREFIXES = (
    ("depth_predictor.backbone.", "cnn."),
    ("depth_predictor.transformer.", "transformer."),
    ("depth_predictor.pretrained.", "vit."),
    ("depth_predictor.regressor.0.0.", "depth_regressor.proj_in."),
    ("depth_predictor.regressor.0.1.", "depth_regressor.norm."),
    ("depth_predictor.regressor.0.3.", "depth_regressor.unet."),
    ("depth_predictor.regressor.0.4.", "depth_regressor.proj_out."),
    ("depth_predictor.regressor_residual.0.", "depth_regressor_residual."),
    ("depth_predictor.depth_head.0.", "depth_head."),
    ("depth_predictor.upsampler.", "dpt."),
    ("feature_upsampler.upsampler.0.", "feature_upsampler."),
    ("gaussian_regressor.0.", "gaussian_regressor.proj_in."),
    ("gaussian_regressor.1.", "gaussian_regressor.norm."),
    ("gaussian_regressor.3.", "gaussian_regressor.unet."),
    ("gaussian_regressor.4.", "gaussian_regressor.proj_out."),
    ("gaussian_head.", "gaussian_head."),
)


def import_official(state_dict: dict[str, Tensor], config: DepthSplatConfig) -> dict[str, Tensor]:
    """A published DepthSplat/ZPressor Lightning ``state_dict`` renamed for ``DepthSplatEncoder(config)``."""
    return import_official_encoder(
        state_dict,
        family="depthsplat",
        use_zpressor=config.use_zpressor,
        zpressor_prefix=ZPRESSOR_PREFIX,
        module_prefixes=MODULE_PREFIXES,
    )
