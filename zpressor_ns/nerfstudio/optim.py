"""The original training recipe's optimizer and schedule as Nerfstudio configs (Nerfstudio face).

DepthSplat+ZPressor trains with AdamW (weight decay 0.01), two parameter groups (the DINOv2 ViT at a
100x lower learning rate), gradient clipping of the GLOBAL norm at 0.5, and PyTorch's OneCycleLR
(cosine, pct_start 0.01, div 25, final div 1e4, total = max_steps + 10). pixelSplat trains with Adam (here
AdamW with weight decay 0, the same update) and PyTorch's LinearLR warm-up from lr / warmup_steps to lr
over warmup_steps steps, then a constant rate (``LinearWarmupSchedulerConfig``).

Nerfstudio makes one optimizer per named group and clips each group on its own, which would not be the
same recipe. So the model returns ONE named group ("encoder") holding both torch parameter groups, the
optimizer clips the norm over all of them before each step, and the schedule is a LambdaLR whose factor
is OneCycleLR's (identical for every group, since OneCycle's shape is relative to each group's maximum).
Factors are Python floats: no numpy scalars end up in checkpoints.

The schedule spans the run: ``max_steps=None`` (the methods' default) is resolved to the trainer's
``--max-num-iterations`` when the run starts (``zpressor_ns.nerfstudio.trainer``), and the factor is a
small object whose settings LambdaLR saves with the scheduler's state, so a resumed run keeps the
schedule it started with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from nerfstudio.engine.optimizers import OptimizerConfig
from nerfstudio.engine.schedulers import Scheduler, SchedulerConfig
from torch.optim.lr_scheduler import LambdaLR, LRScheduler


class ClippedAdamW(torch.optim.AdamW):
    """AdamW that first clips the gradient norm over all of its parameter groups together."""

    def __init__(self, params: Any, max_grad_norm: float | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.max_grad_norm = max_grad_norm

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        if self.max_grad_norm is not None:
            params = [p for group in self.param_groups for p in group["params"] if p.grad is not None]
            if params:
                torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
        return super().step(closure)


@dataclass
class SplitLRAdamWConfig(OptimizerConfig):
    """AdamW over the model's parameter groups: 'main' at ``lr``, 'pretrained' (the ViT) at ``pretrained_lr``."""

    _target: type = field(default_factory=lambda: ClippedAdamW)
    lr: float = 2e-4
    """Learning rate of everything but the pretrained ViT."""
    pretrained_lr: float = 2e-6
    """Learning rate of the pretrained monocular ViT (DINOv2 / Depth Anything V2)."""
    weight_decay: float = 0.01
    eps: float = 1e-8
    max_grad_norm: float | None = 0.5
    """Clip the global gradient norm (all groups together) to this value; None disables clipping."""

    def setup(self, params) -> torch.optim.Optimizer:
        groups = []
        for group in params:
            if not isinstance(group, dict):  # a plain parameter list: one group at ``lr``
                return self._target(
                    params,
                    lr=self.lr,
                    eps=self.eps,
                    weight_decay=self.weight_decay,
                    max_grad_norm=self.max_grad_norm,
                )
            lr = self.pretrained_lr if group.get("name") == "pretrained" else self.lr
            groups.append({**group, "lr": lr})
        return self._target(
            groups, lr=self.lr, eps=self.eps, weight_decay=self.weight_decay, max_grad_norm=self.max_grad_norm
        )


def one_cycle_factor(
    step: int,
    total_steps: int,
    pct_start: float = 0.01,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> float:
    """Learning-rate multiplier of PyTorch's OneCycleLR (cosine, three-phase off) relative to max_lr."""
    initial = 1.0 / div_factor
    minimum = initial / final_div_factor
    warm_end = float(pct_start * total_steps) - 1
    last = float(total_steps - 1)
    step = min(step, total_steps - 1)

    def cosine(start: float, end: float, fraction: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * fraction) + 1)

    if step <= warm_end:
        return cosine(initial, 1.0, step / warm_end if warm_end > 0 else 1.0)
    return cosine(1.0, minimum, (step - warm_end) / (last - warm_end))


class OneCycleFactor:
    """``one_cycle_factor`` with its settings as plain attributes: LambdaLR stores a callable object's
    ``__dict__`` in its state dict (a function's it cannot), so checkpoints keep the schedule."""

    def __init__(
        self, total_steps: int, pct_start: float, div_factor: float, final_div_factor: float
    ) -> None:
        self.total_steps = int(total_steps)
        self.pct_start = float(pct_start)
        self.div_factor = float(div_factor)
        self.final_div_factor = float(final_div_factor)

    def __call__(self, step: int) -> float:
        return one_cycle_factor(
            step, self.total_steps, self.pct_start, self.div_factor, self.final_div_factor
        )


@dataclass
class OneCycleSchedulerConfig(SchedulerConfig):
    """OneCycleLR as the original trains: cosine, warm-up over pct_start of max_steps + 10 steps."""

    _target: type = field(default_factory=lambda: OneCycleScheduler)
    max_steps: int | None = None
    """Training steps the cycle spans (plus 10, as the original's total). None: the run's
    ``--max-num-iterations``."""
    pct_start: float = 0.01
    div_factor: float = 25.0
    final_div_factor: float = 1e4


class OneCycleScheduler(Scheduler):
    config: OneCycleSchedulerConfig

    def get_scheduler(self, optimizer: torch.optim.Optimizer, lr_init: float) -> LRScheduler:
        cfg = self.config
        if cfg.max_steps is None:
            raise ValueError(
                "OneCycleSchedulerConfig.max_steps is None (the run's length), which only the trainer "
                "of zpressor-ns's methods resolves; give max_steps to use the schedule elsewhere"
            )
        factor = OneCycleFactor(cfg.max_steps + 10, cfg.pct_start, cfg.div_factor, cfg.final_div_factor)
        return LambdaLR(optimizer, lr_lambda=factor)


def linear_warmup_factor(step: int, warmup_steps: int) -> float:
    """Learning-rate multiplier of PyTorch's LinearLR(start_factor=1/warmup_steps, end_factor=1,
    total_iters=warmup_steps) in closed form: 1/W at step 0, rising linearly to 1 at step W, then 1."""
    if warmup_steps <= 0:
        return 1.0
    start = 1.0 / warmup_steps
    return start + (1.0 - start) * min(step, warmup_steps) / warmup_steps


@dataclass
class LinearWarmupSchedulerConfig(SchedulerConfig):
    """pixelSplat's schedule: a linear warm-up from 1/warmup_steps of the rate over warmup_steps, then constant."""

    _target: type = field(default_factory=lambda: LinearWarmupScheduler)
    warmup_steps: int = 2_000


class LinearWarmupScheduler(Scheduler):
    config: LinearWarmupSchedulerConfig

    def get_scheduler(self, optimizer: torch.optim.Optimizer, lr_init: float) -> LRScheduler:
        warmup = self.config.warmup_steps
        return LambdaLR(optimizer, lr_lambda=lambda step: linear_warmup_factor(step, warmup))
