"""Where the original MVSplat(+ZPressor) keeps each module in its checkpoints, and the import into ours."""

from __future__ import annotations

from torch import Tensor

from zpressor_ns.checkpoints import import_official_encoder
from zpressor_ns.encoders.mvsplat.encoder import MVSplatConfig

ZPRESSOR_PREFIX = "backbone.zipmatch."
# Original module path (after ``encoder.``) -> this project's ``MVSplatEncoder`` path. Inside each module
# the names already agree (CNN, transformer, U-Net).
MODULE_PREFIXES = (
    ("backbone.backbone.", "cnn."),
    ("backbone.transformer.", "transformer."),
    ("depth_predictor.corr_refine_net.0.", "cost_refiner.proj_in."),
    ("depth_predictor.corr_refine_net.1.", "cost_refiner.norm."),
    ("depth_predictor.corr_refine_net.3.", "cost_refiner.unet."),
    ("depth_predictor.corr_refine_net.4.", "cost_refiner.proj_out."),
    ("depth_predictor.regressor_residual.", "cost_residual."),
    ("depth_predictor.depth_head_lowres.", "depth_head."),
    ("depth_predictor.upsampler.", "feature_upsampler."),
    ("depth_predictor.proj_feature.", "feature_projection."),
    ("depth_predictor.refine_unet.0.", "depth_refiner.proj_in."),
    ("depth_predictor.refine_unet.1.", "depth_refiner.norm."),
    ("depth_predictor.refine_unet.3.", "depth_refiner.unet."),
    ("depth_predictor.to_disparity.", "disparity_head."),
    ("depth_predictor.to_gaussians.", "gaussian_head."),
)


def import_official(state_dict: dict[str, Tensor], config: MVSplatConfig) -> dict[str, Tensor]:
    """A published MVSplat/ZPressor Lightning ``state_dict`` renamed for ``MVSplatEncoder(config)``."""
    return import_official_encoder(
        state_dict,
        family="mvsplat",
        use_zpressor=config.use_zpressor,
        zpressor_prefix=ZPRESSOR_PREFIX,
        module_prefixes=MODULE_PREFIXES,
    )
