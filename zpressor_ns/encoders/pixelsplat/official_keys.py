"""Where the original pixelSplat(+ZPressor) keeps each module in its checkpoints, and the import into ours.

The original sizes its view embeddings by the views it is configured for; its test script evaluates a
checkpoint at another view count by tiling the rows (new row n = old row n mod old rows, ``src/main.py``).
The import does the same when the checkpoint's rows differ from the encoder's.
"""

from __future__ import annotations

from torch import Tensor

from zpressor_ns.checkpoints import OFFICIAL_ENCODER_PREFIX, import_official_encoder
from zpressor_ns.encoders.pixelsplat.encoder import PixelSplatConfig

ZPRESSOR_PREFIX = "zipmatch."
VIEW_EMBEDDINGS = "epipolar_transformer.view_embeddings.weight"

_FIXED_PREFIXES = (
    ("backbone.dino.", "backbone.vit."),
    ("backbone.resnet_backbone.model.", "backbone.resnet."),
    ("backbone.global_token_mlp.", "backbone.global_token_mlp."),
    ("backbone.local_token_mlp.", "backbone.local_token_mlp."),
    ("backbone_projection.1.", "feature_projection."),
    ("epipolar_transformer.downscaler.", "epipolar.downscale."),
    ("epipolar_transformer.depth_encoding.1.", "epipolar.depth_encoding."),
    ("epipolar_transformer.upscaler.", "epipolar.upscale."),
    ("epipolar_transformer.upscale_refinement.", "epipolar.refine."),
    ("epipolar_transformer.view_embeddings.", "epipolar.view_embeddings."),
    ("high_resolution_skip.0.", "image_skip."),
    ("depth_predictor.projection.1.", "depth_head."),
    ("to_gaussians.1.", "gaussian_head."),
)


def module_prefixes(config: PixelSplatConfig) -> tuple[tuple[str, str], ...]:
    """Original module path (after ``encoder.``) -> this project's ``PixelSplatEncoder`` path, in order."""
    pairs = list(_FIXED_PREFIXES)
    for stage in range(4):
        pairs.append(
            (f"backbone.resnet_backbone.projections.layer{stage}.", f"backbone.resnet_projections.{stage}.")
        )
    for layer in range(config.epipolar.num_layers):
        theirs = f"epipolar_transformer.transformer.layers.{layer}."
        ours = f"epipolar.layers.{layer}."
        image_theirs = f"{theirs}1.fn.self_attention."
        image_ours = f"{ours}image_attention."
        pairs += [
            (f"{theirs}0.norm.", f"{ours}cross_norm."),
            (f"{theirs}0.fn.to_q.", f"{ours}cross.to_q."),
            (f"{theirs}0.fn.to_kv.", f"{ours}cross.to_kv."),
            (f"{theirs}0.fn.to_out.0.", f"{ours}cross.to_out."),
            (f"{theirs}1.norm.", f"{ours}image_norm."),
            (f"{image_theirs}positional_encoding.1.", f"{image_ours}position."),
            (f"{image_theirs}patch_embedder.0.", f"{image_ours}patch_embed."),
            (f"{image_theirs}resampler.", f"{image_ours}unpatch."),
        ]
        for block in range(config.epipolar.image_layers):
            block_theirs = f"{image_theirs}transformer.layers.{block}."
            block_ours = f"{image_ours}layers.{block}."
            pairs += [
                (f"{block_theirs}0.norm.", f"{block_ours}attention_norm."),
                (f"{block_theirs}0.fn.to_qkv.", f"{block_ours}attention.to_qkv."),
                (f"{block_theirs}0.fn.to_out.0.", f"{block_ours}attention.to_out."),
                (f"{block_theirs}1.norm.", f"{block_ours}mlp_norm."),
                (f"{block_theirs}1.fn.net.0.", f"{block_ours}mlp.0."),
                (f"{block_theirs}1.fn.net.3.", f"{block_ours}mlp.2."),
            ]
    return tuple(pairs)


def tile_view_embeddings(weight: Tensor, rows: int) -> Tensor:
    """The original's test-time resize of the view embeddings: new row n = old row n mod old rows."""
    return weight[[n % weight.shape[0] for n in range(rows)]]


def import_official(state_dict: dict[str, Tensor], config: PixelSplatConfig) -> dict[str, Tensor]:
    """A published pixelSplat/ZPressor Lightning ``state_dict`` renamed for ``PixelSplatEncoder(config)``.

    View embeddings with another row count than the encoder's are tiled as the original's test script
    does (e.g. the 4-view baseline evaluated with 12 context views).
    """
    state_dict = dict(state_dict)
    key = OFFICIAL_ENCODER_PREFIX + VIEW_EMBEDDINGS
    rows = config.num_view_embeddings
    if key in state_dict and rows == 0:
        views = config.num_anchors if config.use_zpressor else config.num_context_views
        raise ValueError(
            f"the checkpoint has view embeddings ({state_dict[key].shape[0]} rows) but an encoder for {views} "
            "views has none (the original builds them only for more than 2 views); build it for more views"
        )
    if key not in state_dict and rows > 0:
        raise ValueError(
            f"the checkpoint has no view embeddings (a 2-view model) but the encoder needs {rows} rows; build "
            "it with num_context_views=2 (baseline) to load it"
        )
    if key in state_dict and state_dict[key].shape[0] != rows:
        state_dict[key] = tile_view_embeddings(state_dict[key], rows)
    return import_official_encoder(
        state_dict,
        family="pixelsplat",
        use_zpressor=config.use_zpressor,
        zpressor_prefix=ZPRESSOR_PREFIX,
        module_prefixes=module_prefixes(config),
    )
