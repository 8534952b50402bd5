"""Training view sampler: which frames of a scene become context and target views.

:class:`BoundedSampler` follows the "boundedv2" sampler that DepthSplat and MVSplat train with:

1. The context gap (frames between the outermost context views) is drawn uniformly from
   [min_gap, max_gap], both growing linearly from their initial values over ``warm_up_steps``:
   ``min(initial + int((final - initial) * step / warm_up_steps), final)``, and never below
   ``views - 1``. ``max_gap`` is capped at ``num_frames - 1``.
2. The span starts at ``left ~ U[0, num_frames - gap)`` and ends at ``right = left + gap``.
3. Targets are drawn without replacement from [left, right]; they may coincide with context views.
4. Context views are picked by farthest-point sampling over the camera centres of the frames in
   [left, right], starting from the one farthest from their barycenter. The first pick comes first,
   the last pick last, the picks between are sorted by frame index. (DL3DV's loader sorts both lists.)

All randomness comes from the ``torch.Generator`` passed in, so a sample is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor

from zpressor_ns.data.scene import SceneError


class SceneTooShort(SceneError):
    """A scene has fewer frames than the sampler needs."""


def farthest_point_order(points: Float[Tensor, "point 3"], count: int) -> list[int]:
    """Indices of ``count`` points in farthest-point-sampling order (squared distances).

    The first pick is the point farthest from the barycenter; each next pick is the point farthest from
    all picks so far; ties go to the lowest index. A point is never picked twice, which only differs
    from the original sampler when several cameras share one position.
    """
    num_points = len(points)
    if not 0 < count <= num_points:
        raise ValueError(f"cannot pick {count} of {num_points} points")
    points = points.float()
    barycenter = points.sum(0) / num_points
    latest = int(((points - barycenter) ** 2).sum(-1).argmax())
    order = [latest]
    nearest_pick = torch.full((num_points,), float("inf"))
    taken = torch.zeros(num_points, dtype=torch.bool)
    for _ in range(count - 1):
        taken[latest] = True
        nearest_pick = torch.minimum(nearest_pick, ((points - points[latest]) ** 2).sum(-1))
        latest = int(nearest_pick.masked_fill(taken, -1.0).argmax())
        order.append(latest)
    return order


# Datasets' presets are DepthSplat's training settings (train.sh); ACID follows MVSplat's boundedv2_360.
# A method's own preset ("mvsplat": boundedv2_360, no warm-up, since its dataset-specific override file
# is never picked up by Hydra) replaces the dataset's.
_MVSPLAT = {"min_gap": 45, "max_gap": 192, "initial_min_gap": 25, "initial_max_gap": 45, "warm_up_steps": 0}
_PRESETS: dict[str, dict] = {
    "re10k": {
        "min_gap": 50,
        "max_gap": 200,
        "initial_min_gap": 15,
        "initial_max_gap": 50,
        "warm_up_steps": 10_000,
    },
    "dl3dv": {
        "min_gap": 20,
        "max_gap": 50,
        "initial_min_gap": 15,
        "initial_max_gap": 30,
        "warm_up_steps": 10_000,
        "sort": True,
    },
    "acid": _MVSPLAT,
    "mvsplat": _MVSPLAT,
}


@dataclass(frozen=True)
class BoundedSampler:
    """The "boundedv2" training sampler (see the module docstring)."""

    num_context: int
    num_target: int
    min_gap: int
    max_gap: int
    initial_min_gap: int
    initial_max_gap: int
    warm_up_steps: int
    extra_views: Literal["farthest_point", "random"] = "farthest_point"
    sort: bool = False  # sort context and target indices (the original DL3DV loader does)

    def __post_init__(self) -> None:
        if self.num_context < 2 or self.num_target < 1:
            raise ValueError(
                f"need at least 2 context and 1 target view, got {self.num_context} and {self.num_target}"
            )
        for low, high in ((self.min_gap, self.max_gap), (self.initial_min_gap, self.initial_max_gap)):
            if not 0 < low <= high:
                raise ValueError(f"context gaps must satisfy 0 < min <= max, got min {low}, max {high}")
        if self.warm_up_steps < 0:
            raise ValueError(f"warm_up_steps must be >= 0, got {self.warm_up_steps}")
        if self.extra_views not in ("farthest_point", "random"):
            raise ValueError(f"extra_views must be 'farthest_point' or 'random', got {self.extra_views!r}")

    @classmethod
    def preset(cls, dataset: str, num_context: int = 12, num_target: int = 8) -> BoundedSampler:
        """The original training settings of a dataset (``"re10k"``, ``"dl3dv"``, ``"acid"``) or a method
        (``"mvsplat"``)."""
        if dataset not in _PRESETS:
            raise ValueError(f"no sampler preset for {dataset!r}; choose one of {sorted(_PRESETS)}")
        return cls(num_context=num_context, num_target=num_target, **_PRESETS[dataset])

    def gap_bounds(self, step: int) -> tuple[int, int]:
        """(min, max) context gap at a training step, before capping by the scene length.

        Both are raised to at least ``views - 1`` so the span holds distinct context and target
        views (the original would repeat views there, e.g. 24 views in RE10K's initial 15-frame gap).
        """
        if self.warm_up_steps == 0:
            low, high = self.min_gap, self.max_gap
        else:

            def ramp(initial: int, final: int) -> int:
                return min(initial + int((final - initial) * step / self.warm_up_steps), final)

            low, high = ramp(self.initial_min_gap, self.min_gap), ramp(self.initial_max_gap, self.max_gap)
        floor = max(self.num_context, self.num_target) - 1
        return max(low, floor), max(high, floor)

    def sample(
        self,
        num_frames: int,
        centres: Float[Tensor, "frame 3"],
        step: int,
        rng: torch.Generator,
        *,
        scene: str = "?",
        test: bool = False,
    ) -> tuple[list[int], list[int]]:
        """(context indices, target indices) for a scene of ``num_frames`` frames.

        ``test=True`` is the deterministic mode: the span starts at frame 0 with the largest gap the
        scene allows (at most ``max_gap``, at least ``min_gap``) and targets are spread evenly over it.
        """
        low, high = self.gap_bounds(self.warm_up_steps if test else step)
        high = min(high, num_frames - 1)
        if high < low:
            raise SceneTooShort(
                f"scene {scene!r} has {num_frames} frames but the sampler needs at least {low + 1} "
                f"(context gap >= {low}"
                + ("" if test else f" at step {step}")
                + "); it is skipped in training"
            )
        if test:
            gap, left = high, 0
            targets = [left + i * gap // max(self.num_target - 1, 1) for i in range(self.num_target)]
        else:
            gap = int(torch.randint(low, high + 1, (), generator=rng))
            left = int(torch.randint(0, num_frames - gap, (), generator=rng))
            targets = (torch.randperm(gap + 1, generator=rng)[: self.num_target] + left).tolist()
        right = left + gap

        if self.num_context == 2:
            context = [left, right]
        elif self.extra_views == "farthest_point":
            if len(centres) != num_frames:
                raise SceneError(f"scene {scene!r}: {len(centres)} camera centres for {num_frames} frames")
            picks = [left + i for i in farthest_point_order(centres[left : right + 1], self.num_context)]
            context = [picks[0], *sorted(picks[1:-1]), picks[-1]]
        else:
            extra = torch.randperm(gap - 1, generator=rng)[: self.num_context - 2] + left + 1
            context = [left, *sorted(extra.tolist()), right]

        if self.sort:
            return sorted(context), sorted(targets)
        return context, targets
