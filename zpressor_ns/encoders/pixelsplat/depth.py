"""pixelSplat's depth distribution: buckets in relative disparity, sampled (or top-1) per pixel.

Each pixel predicts a distribution over ``B`` buckets that split [near, far] evenly in inverse depth (0 is
near, 1 is far) and an offset inside each bucket. Its Gaussians sit at sampled buckets: inverse-CDF
sampling with uniform draws (``deterministic=False``, what the original uses in training AND testing), or
the most likely bucket (``deterministic=True``, one Gaussian per pixel). A Gaussian's opacity is the
probability of its bucket.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int64
from torch import Tensor

# The normalisation pdf / (eps + sum) of the original, which leaves the softmax output almost unchanged.
PDF_EPS = torch.finfo(torch.float32).eps


def sample_buckets(
    pdf: Float[Tensor, "*batch bucket"],
    num_samples: int,
    deterministic: bool,
    generator: torch.Generator | None = None,
) -> tuple[Int64[Tensor, "*batch sample"], Float[Tensor, "*batch sample"]]:
    """(bucket index, its normalised probability) of ``num_samples`` draws, or of the top ``num_samples``
    buckets when ``deterministic``. ``generator`` draws the uniforms (the global RNG when None)."""
    normalised = pdf / (PDF_EPS + pdf.sum(dim=-1, keepdim=True))
    if deterministic:
        index = pdf.topk(k=num_samples, dim=-1).indices
    else:
        uniform = torch.rand(
            (*pdf.shape[:-1], num_samples), generator=generator, device=pdf.device, dtype=pdf.dtype
        )
        index = torch.searchsorted(normalised.cumsum(dim=-1), uniform, right=True).clamp(
            max=pdf.shape[-1] - 1
        )
    return index, normalised.gather(-1, index)


def pdf_to_opacity(density: Float[Tensor, "*batch"]) -> Float[Tensor, "*batch"]:
    """The original's density-to-opacity map 0.5 (1 - (1 - p)^e + p^(1/e)) at the exponent e = 1 that every
    released configuration uses: p itself, up to the rounding this form has in the original."""
    return 0.5 * (1 - (1 - density) + density)
