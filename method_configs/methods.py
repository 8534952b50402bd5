"""Nerfstudio methods of every registered encoder family, with and without ZPressor, at two sizes.

``ns-train zpressor-depthsplat re10k --data PATH`` trains the paper's model with the original recipe;
``depthsplat`` is the same network without ZPressor; likewise ``zpressor-mvsplat``/``mvsplat`` and
``zpressor-pixelsplat``/``pixelsplat`` where registered. The ``-small`` variants keep each architecture at
widths that train on a laptop CPU. Everything is derived from the family registry
(``zpressor_ns.encoders.registry``): its training recipes give the resolution, view counts, steps,
optimiser, schedule and loss weights. Entry points in pyproject.toml name the attributes of this module
(the method name with ``_`` for ``-``).
"""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from zpressor_ns.encoders.registry import family_of, registered_method_names, resolve_method
from zpressor_ns.nerfstudio.datamanager import FeedForwardDataManagerConfig
from zpressor_ns.nerfstudio.model import FeedForwardModelConfig
from zpressor_ns.nerfstudio.optim import OneCycleSchedulerConfig, SplitLRAdamWConfig
from zpressor_ns.nerfstudio.pipeline import FeedForwardPipelineConfig


def method_specification(name: str) -> MethodSpecification:
    """The Nerfstudio method ``name`` (e.g. "zpressor-depthsplat-small") from its family's recipe."""
    method, preset = resolve_method(name)
    family, use_zpressor = family_of(method)
    recipe = family.recipe(use_zpressor, preset)
    if recipe.schedule != "one_cycle":
        raise NotImplementedError(f"{name}: the {recipe.schedule!r} schedule has no Nerfstudio config yet")
    return MethodSpecification(
        config=TrainerConfig(
            method_name=name,
            max_num_iterations=recipe.max_steps,
            steps_per_save=recipe.steps_per_save,
            steps_per_eval_batch=0,
            steps_per_eval_image=recipe.steps_per_eval_image,
            steps_per_eval_all_images=recipe.max_steps,
            save_only_latest_checkpoint=True,
            mixed_precision=False,  # as the original: fp32 (TF32 on CUDA) with ZPressor attention in bf16
            pipeline=FeedForwardPipelineConfig(
                datamanager=FeedForwardDataManagerConfig(
                    image_shape=recipe.image_shape,
                    num_context_views=recipe.num_context_views,
                    num_target_views=recipe.num_target_views,
                    batch_size=recipe.batch_size,
                    num_workers=0 if preset == "small" else 4,
                    near=recipe.near,
                    far=recipe.far,
                    view_sampler=recipe.view_sampler,
                    eval_num_context_views=recipe.eval_num_context_views,
                ),
                model=FeedForwardModelConfig(
                    method=method,
                    preset=preset,
                    lpips_weight=recipe.lpips_weight,
                    ib_weight=recipe.ib_weight,
                    intermediate_weight=recipe.intermediate_weight,
                ),
                display_refresh_every=recipe.steps_per_eval_image,
            ),
            optimizers={
                "encoder": {
                    "optimizer": SplitLRAdamWConfig(
                        lr=recipe.lr,
                        pretrained_lr=recipe.lr if recipe.pretrained_lr is None else recipe.pretrained_lr,
                        weight_decay=recipe.weight_decay,
                        max_grad_norm=recipe.max_grad_norm,
                    ),
                    "scheduler": OneCycleSchedulerConfig(max_steps=recipe.max_steps),
                }
            },
            viewer=ViewerConfig(websocket_host="127.0.0.1", num_rays_per_chunk=1 << 15),
            vis="viewer+tensorboard",
        ),
        description=_description(method, preset),
    )


def _description(method: str, preset: str) -> str:
    family, use_zpressor = family_of(method)
    what = f"{family.title} + ZPressor (NeurIPS 2025)" if use_zpressor else f"{family.title} without ZPressor"
    if preset == "small":
        return f"Small {what}: the same architecture at CPU-sized widths and images."
    return f"{what}: {family.description}"


METHODS: dict[str, MethodSpecification] = {
    name: method_specification(name) for name in registered_method_names()
}


def __getattr__(attribute: str) -> MethodSpecification:
    """``zpressor_depthsplat_small`` -> the "zpressor-depthsplat-small" method (the entry points' names)."""
    name = attribute.replace("_", "-")
    if name in METHODS:
        return METHODS[name]
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")
