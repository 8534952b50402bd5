"""The encoder/renderer interface: a batch of 3D Gaussians in world space."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float, Int64
from torch import Tensor


@dataclass
class Gaussians:
    """Pixel-aligned Gaussians of B scenes; G is ordered view-major (anchor order), then pixels.

    ``harmonics`` is colour-major like the original code: [B, G, 3, (degree + 1) ** 2].
    """

    means: Float[Tensor, "batch gaussian 3"]
    covariances: Float[Tensor, "batch gaussian 3 3"]
    harmonics: Float[Tensor, "batch gaussian 3 d_sh"]
    opacities: Float[Tensor, "batch gaussian"]
    anchors: Int64[Tensor, "batch anchor"] | None = None

    @property
    def sh_degree(self) -> int:
        return round(self.harmonics.shape[-1] ** 0.5) - 1

    def scene(self, b: int) -> Gaussians:
        """The Gaussians of scene ``b`` as a batch of one."""
        return Gaussians(
            self.means[b : b + 1],
            self.covariances[b : b + 1],
            self.harmonics[b : b + 1],
            self.opacities[b : b + 1],
            None if self.anchors is None else self.anchors[b : b + 1],
        )

    def detach(self) -> Gaussians:
        return Gaussians(
            self.means.detach(),
            self.covariances.detach(),
            self.harmonics.detach(),
            self.opacities.detach(),
            self.anchors,
        )

    def to(self, device: torch.device | str) -> Gaussians:
        return Gaussians(
            self.means.to(device),
            self.covariances.to(device),
            self.harmonics.to(device),
            self.opacities.to(device),
            None if self.anchors is None else self.anchors.to(device),
        )
