"""pixelSplat (the RE10K model of the ZPressor paper) with and without ZPressor."""

from __future__ import annotations

from zpressor_ns.encoders.official_indices import ACID_N200_MVSPLAT, RE10K_N200
from zpressor_ns.encoders.pixelsplat.encoder import PRESETS, PixelSplatConfig, PixelSplatEncoder
from zpressor_ns.encoders.pixelsplat.official_keys import import_official
from zpressor_ns.encoders.registry import EncoderFamily, InitWeights, PaperTable, TrainingRecipe


def recipe(use_zpressor: bool, preset: str) -> TrainingRecipe:
    """The original's RE10K recipe (pixelsplat/config: experiment re10k_12_4_view / re10k_4_view, main.yaml).

    Adam at 1.5e-4 (AdamW with weight decay 0) after a linear warm-up from 1/2000 of it over 2000 steps,
    gradient clipping at 0.5, MSE + 0.05 LPIPS from step 150,000 on, 300,001 steps of batch 1 at 256x256;
    the ``bounded`` view sampler (4 targets), near/far from the bounds shim of all context cameras.
    With ZPressor 12 context views are compressed to 4 anchors; the baseline trains on 4 context views.
    Both are evaluated with 12 context views, as the original's test scripts do.
    ``small`` runs the same recipe on a CPU: 64x64, 6 context views -> 3 anchors (baseline: 3 views), with
    the dataset's sampler, whose initial gaps (RE10K: 15-50 frames) fit short synthetic scenes where
    pixelSplat's (50-90 frames) would skip them all.
    """
    common = dict(
        lr=1.5e-4,
        optimizer="adam",
        weight_decay=0.0,
        schedule="linear_warmup",
        max_grad_norm=0.5,
        lpips_weight=0.05,
        num_target_views=4,
        depth_bounds="pixelsplat_shim",
    )
    if preset == "small":
        return TrainingRecipe(
            image_shape=(64, 64),
            num_context_views=6 if use_zpressor else 3,
            max_steps=3_000,
            warmup_steps=100,
            lpips_after_step=1_500,
            steps_per_save=500,
            steps_per_eval_image=250,
            **common,
        )
    return TrainingRecipe(
        view_sampler="pixelsplat",
        image_shape=(256, 256),
        num_context_views=12 if use_zpressor else 4,
        eval_num_context_views=12,  # test_re10k.py / test_re10k_base.py: both methods at 12 views
        max_steps=300_001,
        warmup_steps=2_000,
        lpips_after_step=150_000,
        **common,
    )


def config_overrides(num_context_views: int | None = None, **overrides) -> dict:
    """``build_encoder("pixelsplat", num_context_views=V)`` sizes the view embeddings for V views, as the
    original does (with ZPressor they follow ``num_anchors`` instead)."""
    if num_context_views is not None:
        overrides["num_context_views"] = num_context_views
    return overrides


_TABLE_2 = "ZPressor paper, Table 2 (RE10K, 256x256)"
_TABLE_A = "ZPressor paper, Table A (trained on RE10K, tested on ACID, 256x256; pixelSplat's index files)"

FAMILY = EncoderFamily(
    name="pixelsplat",
    title="pixelSplat",
    description=(
        "pixelSplat (RE10K): DINO ResNet-50 + ViT-B/8 backbone, epipolar transformer, 3 Gaussians per pixel "
        "sampled from a depth distribution."
    ),
    presets=PRESETS,
    encoder_type=PixelSplatEncoder,
    import_official=import_official,
    recipe=recipe,
    config_overrides=config_overrides,
    init_weights=(
        InitWeights(
            kind="dino_vit",
            description="DINO ViT-B/8 (dino_vitbase8_pretrain.pth): initialises the backbone's ViT",
            renames=(("", "backbone.vit."),),
            detect=("cls_token", "blocks.0.attn.qkv"),
        ),
        InitWeights(
            kind="dino_resnet",
            description="DINO ResNet-50 (dino_resnet50_pretrain.pth): initialises the backbone's ResNet",
            renames=(("", "backbone.resnet."),),
            ignored=("fc.",),
            detect=("conv1.weight", "layer1.0.conv1.weight"),
        ),
    ),
    paper_tables=(
        PaperTable(
            source=_TABLE_2,
            index_pattern=r"re10k_ctx_(\d+)v_tgt_8v_n200\.json",
            image_shape=(256, 256),
            num_scenes=None,
            scores={
                ("zpressor-pixelsplat", 36): (26.59, 0.849, 0.225),
                ("zpressor-pixelsplat", 24): (26.72, 0.851, 0.223),
                ("zpressor-pixelsplat", 16): (26.81, 0.853, 0.221),
                ("pixelsplat", 8): (26.19, 0.852, 0.215),
                ("zpressor-pixelsplat", 8): (26.86, 0.854, 0.219),
            },
            index_digests=RE10K_N200,
        ),
        PaperTable(
            source=_TABLE_A,
            index_pattern=r"acid_ctx_(\d+)v_tgt_8v_n200\.json",
            image_shape=(256, 256),
            num_scenes=None,
            scores={
                ("zpressor-pixelsplat", 36): (27.78, 0.823, 0.238),
                ("zpressor-pixelsplat", 24): (27.91, 0.825, 0.235),
                ("zpressor-pixelsplat", 16): (27.97, 0.826, 0.234),
                ("pixelsplat", 8): (26.69, 0.807, 0.260),
                ("zpressor-pixelsplat", 8): (28.05, 0.828, 0.234),
            },
            index_digests=ACID_N200_MVSPLAT,
        ),
    ),
)

__all__ = ["FAMILY", "PixelSplatConfig", "PixelSplatEncoder"]
