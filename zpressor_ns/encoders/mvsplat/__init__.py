"""MVSplat with and without ZPressor, as the ZPressor paper trained it on RE10K."""

from __future__ import annotations

from zpressor_ns.encoders.mvsplat.encoder import PRESETS, MVSplatConfig, MVSplatEncoder
from zpressor_ns.encoders.mvsplat.official_keys import import_official
from zpressor_ns.encoders.official_indices import ACID_N200_MVSPLAT, RE10K_N200
from zpressor_ns.encoders.registry import EncoderFamily, InitWeights, PaperTable, TrainingRecipe


def recipe(use_zpressor: bool, preset: str) -> TrainingRecipe:
    """The original's RE10K recipe (mvsplat/README.md, config/experiment/re10k.yaml, config/main.yaml).

    Both: 256x256, near 1 / far 100, Adam 2e-4 (AdamW without weight decay) with one-cycle, clip 0.5, MSE +
    0.05 LPIPS from step 0, 300,001 steps, the boundedv2_360 sampler (gaps 45-192, no warm-up); evaluated
    like test_re10k.py, on the 36-view index. With ZPressor: 12 context views (6 anchors) and 8 targets,
    batch 1 (the README's command). The baseline: the configs' own 4 context and 4 target views at batch 14
    (the ZPressor repository's MVSplat defaults; no training command is given for it). ``small`` runs on a
    CPU, on the dataset's depth range and sampler.
    """
    common = dict(lr=2e-4, optimizer="adam", weight_decay=0.0, schedule="one_cycle", lpips_weight=0.05)
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
    views = dict(num_context_views=12, num_target_views=8, batch_size=1)
    if not use_zpressor:
        views = dict(num_context_views=4, num_target_views=4, batch_size=14)
    return TrainingRecipe(
        image_shape=(256, 256),
        max_steps=300_001,
        near=1.0,
        far=100.0,
        view_sampler="mvsplat",
        eval_num_context_views=36,
        **views,
        **common,
    )


# (method, views) -> (PSNR, SSIM, LPIPS), from the paper text (shared/paper).
_TABLE_2 = {
    ("mvsplat", 36): (24.19, 0.851, 0.155),
    ("zpressor-mvsplat", 36): (27.34, 0.893, 0.113),
    ("mvsplat", 24): (25.00, 0.871, 0.137),
    ("zpressor-mvsplat", 24): (27.49, 0.895, 0.111),
    ("mvsplat", 16): (25.86, 0.888, 0.120),
    ("zpressor-mvsplat", 16): (27.60, 0.896, 0.110),
    ("mvsplat", 8): (26.94, 0.902, 0.107),
    ("zpressor-mvsplat", 8): (27.72, 0.897, 0.109),
}
_TABLE_A = {
    ("mvsplat", 36): (24.89, 0.812, 0.179),
    ("zpressor-mvsplat", 36): (28.16, 0.853, 0.145),
    ("mvsplat", 24): (25.46, 0.829, 0.167),
    ("zpressor-mvsplat", 24): (28.33, 0.856, 0.142),
    ("mvsplat", 16): (26.08, 0.844, 0.156),
    ("zpressor-mvsplat", 16): (28.42, 0.858, 0.141),
    ("mvsplat", 8): (27.89, 0.864, 0.140),
    ("zpressor-mvsplat", 8): (28.60, 0.860, 0.140),
}

FAMILY = EncoderFamily(
    name="mvsplat",
    title="MVSplat",
    description="MVSplat: 1/4 CNN + multi-view transformer + cost volume with U-Net refinement, pixel Gaussians.",
    presets=PRESETS,
    encoder_type=MVSplatEncoder,
    import_official=import_official,
    recipe=recipe,
    init_weights=(
        InitWeights(
            kind="gmdepth",
            description="UniMatch GMDepth (gmdepth-scale1-resumeflowthings-scannet-5d9d7964.pth): "
            "initialises the CNN and transformer",
            renames=(("backbone.", "cnn."), ("transformer.", "transformer.")),
            ignored=("upsampler.", "feature_flow_attn."),
            detect=("backbone.", "transformer.", "feature_flow_attn."),
            wrapper_key="model",
        ),
    ),
    paper_tables=(
        PaperTable(
            source="ZPressor paper, Table 2 (RE10K, 256x256)",
            index_pattern=r"re10k_ctx_(\d+)v_tgt_8v_n200\.json",
            image_shape=(256, 256),
            num_scenes=None,
            scores=_TABLE_2,
            index_digests=RE10K_N200,
        ),
        PaperTable(
            source="ZPressor paper, Table A (trained on RE10K, tested on ACID, 256x256; MVSplat's index files)",
            index_pattern=r"acid_ctx_(\d+)v_tgt_8v_n200\.json",
            image_shape=(256, 256),
            num_scenes=None,
            scores=_TABLE_A,
            index_digests=ACID_N200_MVSPLAT,
        ),
    ),
)

__all__ = ["FAMILY", "MVSplatConfig", "MVSplatEncoder"]
