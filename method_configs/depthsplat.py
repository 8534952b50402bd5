"""Nerfstudio methods: DepthSplat with and without ZPressor, at the paper's size and a small CPU size.

``ns-train zpressor-depthsplat re10k --data PATH`` trains the paper's model (ViT-B, 256x448, 12 context
views compressed to 6 anchors, 8 targets, batch 1, 100k steps) with the original recipe; ``depthsplat``
is the same network without ZPressor. The ``-small`` variants keep the architecture at widths that train
on a laptop CPU (64x128 images, 6 context views, 3 anchors).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from zpressor_ns.datamanager import FeedForwardDataManagerConfig
from zpressor_ns.model import FeedForwardModelConfig
from zpressor_ns.optim import OneCycleSchedulerConfig, SplitLRAdamWConfig
from zpressor_ns.pipeline import FeedForwardPipelineConfig


def _method(name: str, encoder: str, preset: str, description: str) -> MethodSpecification:
    paper = preset == "paper"
    max_steps = 100_000 if paper else 3_000
    return MethodSpecification(
        config=TrainerConfig(
            method_name=name,
            max_num_iterations=max_steps,
            steps_per_save=2_000 if paper else 500,
            steps_per_eval_batch=0,
            steps_per_eval_image=1_000 if paper else 250,
            steps_per_eval_all_images=max_steps,
            save_only_latest_checkpoint=True,
            mixed_precision=False,  # as the original: fp32 (TF32 on CUDA) with ZPressor attention in bf16
            pipeline=FeedForwardPipelineConfig(
                datamanager=FeedForwardDataManagerConfig(
                    image_shape=(256, 448) if paper else (64, 128),
                    num_context_views=12 if paper else 6,
                    num_target_views=8 if paper else 4,
                    num_workers=4 if paper else 0,
                ),
                model=FeedForwardModelConfig(method=encoder, preset=preset),
                display_refresh_every=1_000 if paper else 250,
            ),
            optimizers={
                "encoder": {
                    "optimizer": SplitLRAdamWConfig(
                        lr=2e-4, pretrained_lr=2e-6, weight_decay=0.01, max_grad_norm=0.5
                    ),
                    "scheduler": OneCycleSchedulerConfig(max_steps=max_steps),
                }
            },
            viewer=ViewerConfig(websocket_host="127.0.0.1", num_rays_per_chunk=1 << 15),
            vis="viewer+tensorboard",
        ),
        description=description,
    )


zpressor_depthsplat = _method(
    "zpressor-depthsplat",
    "zpressor-depthsplat",
    "paper",
    "DepthSplat + ZPressor (NeurIPS 2025): N context views compressed into 6 anchors, feed-forward 3DGS.",
)
depthsplat = _method(
    "depthsplat", "depthsplat", "paper", "DepthSplat (Oct 2024, one scale): the baseline without ZPressor."
)
zpressor_depthsplat_small = _method(
    "zpressor-depthsplat-small",
    "zpressor-depthsplat",
    "small",
    "Small DepthSplat + ZPressor (same architecture, CPU-sized widths and 64x128 images).",
)
depthsplat_small = _method(
    "depthsplat-small",
    "depthsplat",
    "small",
    "Small DepthSplat without ZPressor (CPU-sized widths and 64x128 images).",
)
