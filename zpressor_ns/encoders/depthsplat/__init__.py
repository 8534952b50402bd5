"""DepthSplat (the Oct-2024 release, one scale) with and without ZPressor, as the ZPressor paper trained it."""

from __future__ import annotations

from zpressor_ns.encoders.depthsplat.encoder import PRESETS, DepthSplatConfig, DepthSplatEncoder
from zpressor_ns.encoders.depthsplat.official_keys import import_official
from zpressor_ns.encoders.registry import EncoderFamily, InitWeights, PaperTable, TrainingRecipe


def recipe(use_zpressor: bool, preset: str) -> TrainingRecipe:
    """The original's DL3DV/RE10K recipe (depthsplat/train.sh): AdamW 2e-4 (ViT 2e-6), one-cycle, clip 0.5,
    MSE + 0.05 LPIPS + 1e-5 IB + 0.9 x the intermediate-depth render, 12 context (6 anchors) and 8 targets
    at 256x448, batch 1, 100k steps. The baseline trains the same way. ``small`` runs on a CPU."""
    common = dict(
        lr=2e-4,
        optimizer="adamw",
        pretrained_lr=2e-6,
        weight_decay=0.01,
        schedule="one_cycle",
        lpips_weight=0.05,
        ib_weight=1e-5,
        intermediate_weight=0.9,
    )
    if preset == "small":
        return TrainingRecipe(
            image_shape=(64, 128),
            num_context_views=6,
            num_target_views=4,
            max_steps=3_000,
            steps_per_save=500,
            steps_per_eval_image=250,
            **common,
        )
    return TrainingRecipe(
        image_shape=(256, 448), num_context_views=12, num_target_views=8, max_steps=100_000, **common
    )


_TABLE_1 = "ZPressor paper, Table 1 (DL3DV, 256x448, 140 scenes)"

FAMILY = EncoderFamily(
    name="depthsplat",
    title="DepthSplat",
    description="DepthSplat (Oct 2024, one scale): CNN + multi-view transformer + DINOv2 depth, pixel Gaussians.",
    presets=PRESETS,
    encoder_type=DepthSplatEncoder,
    import_official=import_official,
    recipe=recipe,
    init_weights=(
        InitWeights(
            kind="depth_anything",
            description="Depth Anything V2 ViT-B (depth_anything_v2_vitb.pth): initialises the ViT",
            renames=(("pretrained.", "vit."),),
            ignored=("depth_head.", "pretrained.mask_token"),
            detect=("pretrained.", "depth_head."),
        ),
        InitWeights(
            kind="gmflow",
            description="UniMatch GMFlow (gmflow-scale1-things-e9887eda.pth): initialises the CNN and transformer",
            renames=(("backbone.", "cnn."), ("transformer.", "transformer.")),
            ignored=("upsampler.", "feature_flow_attn."),
            detect=("backbone.", "transformer.", "feature_flow_attn."),
            wrapper_key="model",
        ),
    ),
    paper_tables=(
        PaperTable(
            source=_TABLE_1,
            index_pattern=r"dl3dv_ctx_(\d+)v_tgt_8v_n50\.json",
            image_shape=(256, 448),
            num_scenes=140,
            scores={
                ("depthsplat", 36): (19.23, 0.666, 0.286),
                ("zpressor-depthsplat", 36): (23.88, 0.815, 0.150),
                ("depthsplat", 24): (20.38, 0.711, 0.253),
                ("zpressor-depthsplat", 24): (24.26, 0.820, 0.147),
                ("depthsplat", 16): (22.07, 0.773, 0.195),
                ("zpressor-depthsplat", 16): (24.25, 0.819, 0.147),
                ("depthsplat", 12): (23.32, 0.807, 0.162),
                ("zpressor-depthsplat", 12): (24.30, 0.821, 0.146),
            },
            # The ZPressor repository's depthsplat/assets/dl3dv_evaluation/dl3dv_ctx_<N>v_tgt_8v_n50.json.
            index_digests={
                12: "ee0de76a5920fd3ebee59bfd5fa8469deb8633c22585f95910d6bee8d70b81ed",
                16: "8c81860c7d5a0880712bf12d6e020fb16e6bbaabdd82b3286e88bc4ea7b17a1c",
                24: "abedc44816bf555de17f8d1f95615ad4e54f86a7e71fa6311e0bc46a2e191ddf",
                36: "7d03d6f08218f8ee7ec40b3b901dd986334c7559229e54ea46f4b8e18ea34c88",
            },
        ),
    ),
)

__all__ = ["FAMILY", "DepthSplatConfig", "DepthSplatEncoder"]
