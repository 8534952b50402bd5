"""Every family's peak-memory model has the same shape; choosing the anchor count for a memory budget.

A family counts the tensor bytes of one inference forward in two phases (the views streaming through
ZPressor, then the anchor stages); the larger one plus the weights and inputs is the peak.
``ACTIVATION_SLACK`` covers what shapes do not show on a GPU (allocator rounding and fragmentation,
cuDNN/cuBLAS workspaces); it is an allowance, not a measurement, until a GPU benchmark checks it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

BYTES_PER_GB = 1e9
ACTIVATION_SLACK = 1.2
FP32_BYTES = 4


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes: always-alive parts, and the two activation phases (the larger one sets the peak)."""

    weights: float
    inputs: float
    view_phase: float
    anchor_phase: float

    @property
    def peak(self) -> float:
        return self.weights + self.inputs + ACTIVATION_SLACK * max(self.view_phase, self.anchor_phase)


def most_anchors_within(
    peak_bytes: Callable[[int], float],
    views: int,
    budget_gb: int | float,
    min_anchors: int = 2,
    setting: str = "",
) -> int:
    """The most anchors in [min_anchors, views] whose ``peak_bytes(anchors)`` fits ``budget_gb`` (1e9 B).

    ``peak_bytes`` must not decrease with the anchor count (every family's model grows with it), so a
    bisection finds the answer. ``setting`` describes the call (views, size, batch) for the error message.
    """
    if views < min_anchors:
        raise ValueError(
            f"need at least {min_anchors} context views to choose {min_anchors} anchors, got {views}"
        )
    budget = budget_gb * BYTES_PER_GB
    smallest = peak_bytes(min_anchors)
    if smallest > budget:
        raise ValueError(
            f"even {min_anchors} anchors need about {smallest / BYTES_PER_GB:.2f} GB{setting}, over the "
            f"{budget_gb:g} GB budget: raise memory_budget_gb, or lower the resolution, the number of views "
            "or view_chunk"
        )
    fits, too_many = min_anchors, views + 1  # peak(fits) <= budget < peak(too_many)
    while too_many - fits > 1:
        middle = (fits + too_many) // 2
        fits, too_many = (middle, too_many) if peak_bytes(middle) <= budget else (fits, middle)
    return fits
