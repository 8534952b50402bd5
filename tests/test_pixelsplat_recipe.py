"""pixelSplat's training recipe outside the network: the bounds shim, the ``bounded`` view sampler, the
linear warm-up, LPIPS from a step on, and how the methods select them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from zpressor_ns.data.samplers import BoundedSampler
from zpressor_ns.data.shims import depth_for_disparity, pixelsplat_depth_bounds
from zpressor_ns.encoders.registry import family_of
from zpressor_ns.metrics import LPIPS

FIXTURES = Path(__file__).resolve().parents[1] / ".ref" / "fixtures"


def views(centres: list[list[float]], fx: float = 0.5, size: int = 32) -> dict:
    c2w = torch.eye(4).repeat(len(centres), 1, 1)
    c2w[:, :3, 3] = torch.tensor(centres)
    K = torch.tensor([[fx, 0.0, 0.5], [0.0, fx, 0.5], [0.0, 0.0, 1.0]]).repeat(len(centres), 1, 1)
    n = len(centres)
    return {
        "image": torch.zeros(n, 3, size, size),
        "c2w": c2w,
        "K": K,
        "near": torch.ones(n),
        "far": torch.ones(n),
    }


# ---------------------------------------------------------------------------------------------------
# Bounds shim


def test_bounds_shim_by_hand():
    # The widest baseline is 2 (between the outer cameras). A pixel at depth 1 is 1 / (0.5 * 32) = 1/16
    # wide: near where 2 units span 3 * 32 pixels (1/3), far where they span half a pixel (64).
    example = {
        "context": views([[0, 0, 0], [1, 0, 0], [2, 0, 0]]),
        "target": views([[0.5, 0, 0]] * 4),
        "scene": "s",
    }
    shimmed = pixelsplat_depth_bounds(example)
    for part, count in (("context", 3), ("target", 4)):
        torch.testing.assert_close(shimmed[part]["near"], torch.full((count,), 1 / 3))
        torch.testing.assert_close(shimmed[part]["far"], torch.full((count,), 64.0))
    assert torch.equal(example["context"]["near"], torch.ones(3))  # a pure function: the input is untouched
    # Batched examples and motionless contexts (finite bounds from a tiny floor baseline).
    batched = views([[0, 0, 0], [0, 0, 0]])
    depth = depth_for_disparity(batched["c2w"][None], batched["K"][None], (32, 32), 0.5)
    assert depth.shape == (1,) and torch.isfinite(depth).all() and depth > 0


def test_bounds_shim_reproduces_the_original():
    path = FIXTURES / "pixelsplat_zp_v8k4_32x48.pt"
    if not path.is_file():
        pytest.skip(f"parity fixture {path} not present (it is produced from the original code, not shipped)")
    fixture = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    raw, shimmed = fixture["inputs_raw"], fixture["inputs"]
    context = {
        "image": raw["image"],
        "c2w": raw["extrinsics"],
        "K": raw["intrinsics"],
        "near": raw["near"],
        "far": raw["far"],
    }
    ours = pixelsplat_depth_bounds({"context": context, "target": dict(context), "scene": ["s"]})
    torch.testing.assert_close(ours["context"]["near"], shimmed["near"], rtol=1e-6, atol=0)
    torch.testing.assert_close(ours["context"]["far"], shimmed["far"], rtol=1e-6, atol=0)


# ---------------------------------------------------------------------------------------------------
# The bounded sampler


def walk(frames: int) -> torch.Tensor:
    return torch.stack(
        [torch.arange(frames, dtype=torch.float32), torch.zeros(frames), torch.zeros(frames)], -1
    )


def test_bounded_sampler_settings_are_the_originals():
    sampler = BoundedSampler.preset("pixelsplat", 12, 4)
    assert (sampler.initial_min_gap, sampler.initial_max_gap) == (50, 90)
    assert (sampler.min_gap, sampler.max_gap, sampler.warm_up_steps) == (90, 384, 150_000)
    assert sampler.gap_bounds(0) == (50, 90) and sampler.gap_bounds(75_000) == (70, 237)
    assert sampler.gap_bounds(150_000) == sampler.gap_bounds(10**6) == (90, 384)
    with pytest.raises(ValueError, match="no sampler preset for 'uniform'"):
        BoundedSampler.preset("uniform")


def test_bounded_sampler_draws_as_the_original():
    sampler = BoundedSampler.preset("pixelsplat", 12, 4)
    unsorted = repeated = 0
    for seed in range(40):
        context, targets = sampler.sample(300, walk(300), step=0, rng=torch.Generator().manual_seed(seed))
        left, extras, right = context[0], context[1:-1], context[-1]
        assert 50 <= right - left <= 90 and len(set(context)) == 12
        assert all(left < frame < right for frame in extras)
        assert len(targets) == 4 and all(left <= frame <= right for frame in targets)
        unsorted += extras != sorted(extras)
        repeated += len(set(targets)) < 4
    assert unsorted > 30  # the extra views keep their random order
    assert repeated > 0  # targets are drawn with replacement
    # DepthSplat/MVSplat's boundedv2 keeps the farthest-point order and distinct targets.
    context, targets = BoundedSampler.preset("re10k", 12, 4).sample(
        300, walk(300), 0, torch.Generator().manual_seed(0)
    )
    assert context[1:-1] == sorted(context[1:-1]) and len(set(targets)) == 4


# ---------------------------------------------------------------------------------------------------
# Optimiser, schedule, loss, methods (Nerfstudio face)


def test_linear_warmup_matches_torch_linear_lr():
    pytest.importorskip("nerfstudio", reason="the Nerfstudio face's schedule")
    from zpressor_ns.nerfstudio.optim import LinearWarmupSchedulerConfig, SplitLRAdamWConfig

    param = torch.nn.Parameter(torch.zeros(1))
    reference_optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=1.5e-4)
    reference = torch.optim.lr_scheduler.LinearLR(reference_optimizer, 1 / 50, 1.0, total_iters=50)
    optimizer = SplitLRAdamWConfig(lr=1.5e-4, weight_decay=0.0).setup([{"params": [param], "name": "main"}])
    scheduler = LinearWarmupSchedulerConfig(warmup_steps=50).setup().get_scheduler(optimizer, lr_init=1.5e-4)
    for step in range(80):
        expected = reference_optimizer.param_groups[0]["lr"]
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected, rel=1e-9), step
        optimizer.step()
        scheduler.step()
        reference_optimizer.step()
        reference.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1.5e-4)  # constant after the warm-up


def test_recipes_are_the_originals():
    family, _ = family_of("pixelsplat")
    zp, base = family.recipe(True, "paper"), family.recipe(False, "paper")
    assert (zp.image_shape, zp.num_context_views, base.num_context_views) == ((256, 256), 12, 4)
    assert (zp.max_steps, zp.lr, zp.weight_decay, zp.max_grad_norm) == (300_001, 1.5e-4, 0.0, 0.5)
    assert (zp.schedule, zp.warmup_steps, zp.lpips_weight, zp.lpips_after_step) == (
        "linear_warmup",
        2000,
        0.05,
        150_000,
    )
    assert (zp.view_sampler, zp.depth_bounds, zp.num_target_views, zp.batch_size) == (
        "pixelsplat",
        "pixelsplat_shim",
        4,
        1,
    )
    assert zp.eval_num_context_views == base.eval_num_context_views == 12  # the original's test scripts
    assert family.config(True).num_anchors == 4


def test_methods_select_the_recipe():
    pytest.importorskip("nerfstudio", reason="the Nerfstudio face's method configs")
    from zpressor_ns.method_configs.methods import METHODS

    from zpressor_ns.nerfstudio.optim import LinearWarmupSchedulerConfig

    config = METHODS["zpressor-pixelsplat"].config
    datamanager, model = config.pipeline.datamanager, config.pipeline.model
    assert (datamanager.view_sampler, datamanager.depth_bounds) == ("pixelsplat", "pixelsplat_shim")
    assert (datamanager.image_shape, datamanager.num_context_views, datamanager.num_target_views) == (
        (256, 256),
        12,
        4,
    )
    assert (model.lpips_weight, model.lpips_after_step) == (0.05, 150_000)
    optimizer = config.optimizers["encoder"]
    assert isinstance(optimizer["scheduler"], LinearWarmupSchedulerConfig)
    assert optimizer["scheduler"].warmup_steps == 2000 and optimizer["optimizer"].weight_decay == 0.0
    assert optimizer["optimizer"].lr == optimizer["optimizer"].pretrained_lr == 1.5e-4
    assert config.max_num_iterations == 300_001
    # The original's test scripts score both methods with 12 context views.
    assert METHODS["pixelsplat"].config.pipeline.datamanager.eval_num_context_views == 12
    assert datamanager.eval_num_context_views == 12
    depthsplat = METHODS["zpressor-depthsplat"].config.pipeline
    assert (depthsplat.datamanager.view_sampler, depthsplat.datamanager.depth_bounds) == (None, "dataset")


class ConstantLPIPS(LPIPS):
    """LPIPS = 1 everywhere, without the VGG network."""

    def __init__(self) -> None:
        torch.nn.Module.__init__(self)
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.ones(prediction.shape[0])


def small_model(**options):
    from nerfstudio.data.scene_box import SceneBox

    from zpressor_ns.nerfstudio.model import FeedForwardModelConfig

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    config = FeedForwardModelConfig(method="zpressor-pixelsplat", preset="small", **options)
    return config.setup(scene_box=box, num_train_data=1)


def test_lpips_counts_from_its_step_on():
    pytest.importorskip("nerfstudio", reason="the Nerfstudio face's model")
    model = small_model(lpips_after_step=5)
    model.__dict__["lpips"] = ConstantLPIPS()
    images = torch.rand(1, 2, 3, 16, 16)
    outputs, batch = {"rgb": images, "encoded": None}, {"target": {"image": images}}
    model.step = 4
    assert set(model.get_loss_dict(outputs, batch)) == {"mse"}
    model.step = 5
    loss = model.get_loss_dict(outputs, batch)
    assert set(loss) == {"mse", "lpips"} and loss["lpips"].item() == pytest.approx(0.05)


def test_evaluation_draws_are_seeded_and_training_draws_are_not():
    pytest.importorskip("nerfstudio", reason="the Nerfstudio face's model")
    model = small_model()
    views = 6
    c2w = torch.eye(4).repeat(1, views, 1, 1)
    c2w[0, :, 0, 3] = torch.linspace(0, 1, views)
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]]).repeat(1, views, 1, 1)
    context = {"image": torch.rand(1, views, 3, 16, 16), "c2w": c2w, "K": K}
    context.update(near=torch.full((1, views), 0.5), far=torch.full((1, views), 20.0))
    model.eval()
    with torch.no_grad():
        first, second = model.encode(context), model.encode(context)
    assert torch.equal(first.means, second.means)
    model.train()
    with torch.no_grad():
        first, second = model.encode(context), model.encode(context)
    assert not torch.equal(first.depths, second.depths)
    deterministic = small_model(deterministic=True).eval()
    with torch.no_grad():
        assert deterministic.encode(context).means.shape[1] == 3 * 16 * 16


def test_the_bounds_shim_reaches_the_examples(synthetic_root, method_config, tmp_path):
    pytest.importorskip("nerfstudio", reason="the Nerfstudio face's datamanager")
    config = method_config("zpressor-pixelsplat-small", synthetic_root, tmp_path, steps=1)
    manager = config.pipeline.datamanager.setup(device="cpu", test_mode="inference")
    context = manager.display_context(manager.display_scene, 6)
    height, width = context["image"].shape[-2:]
    near = depth_for_disparity(context["c2w"], context["K"], (height, width), 3.0 * min(height, width))
    far = depth_for_disparity(context["c2w"], context["K"], (height, width), 0.5)
    torch.testing.assert_close(context["near"], near[:, None].expand(1, 6))
    torch.testing.assert_close(context["far"], far[:, None].expand(1, 6))
    assert not torch.allclose(context["near"], torch.tensor(config.pipeline.datamanager.dataparser.near))
