"""Real spherical harmonics up to degree 4, in the convention of 3D Gaussian Splatting.

Coefficients are ordered by degree l, then by order m = -l..l, and the basis includes the
Condon-Shortley phase (odd positive and negative orders carry a minus sign). This is the convention of
the INRIA rasterizer and of gsplat, so coefficients predicted by the original encoder, written to a 3DGS
.ply, or passed to gsplat mean the same colour everywhere. The constants are the closed-form
normalisations sqrt((2l+1)/(4 pi) (l-|m|)!/(l+|m|)!) (times sqrt(2) for m != 0) folded into the
Cartesian polynomials of a unit direction.
"""

from __future__ import annotations

import math

import torch
from jaxtyping import Float
from torch import Tensor

MAX_SH_DEGREE = 4

# Degree 0: 1 / (2 sqrt(pi)). Also the factor between an RGB offset and the DC coefficient.
SH_C0 = 0.5 / math.sqrt(math.pi)

_C1 = math.sqrt(3 / (4 * math.pi))
_C2_XY = math.sqrt(15 / (4 * math.pi))
_C2_ZZ = math.sqrt(5 / (16 * math.pi))
_C2_XX_YY = math.sqrt(15 / (16 * math.pi))
_C3_3 = math.sqrt(35 / (32 * math.pi))
_C3_2 = math.sqrt(105 / (4 * math.pi))
_C3_1 = math.sqrt(21 / (32 * math.pi))
_C3_0 = math.sqrt(7 / (16 * math.pi))
_C3_2C = math.sqrt(105 / (16 * math.pi))
_C4_4 = 0.75 * math.sqrt(35 / math.pi)
_C4_3 = 0.75 * math.sqrt(35 / (2 * math.pi))
_C4_2 = 0.75 * math.sqrt(5 / math.pi)
_C4_1 = 0.75 * math.sqrt(5 / (2 * math.pi))
_C4_0 = (3 / 16) * math.sqrt(1 / math.pi)
_C4_2C = (3 / 8) * math.sqrt(5 / math.pi)
_C4_4C = (3 / 16) * math.sqrt(35 / math.pi)


def sh_degree_from_coefficients(num_coefficients: int) -> int:
    """The degree l with (l + 1)^2 == num_coefficients; refuses counts that are not such a square."""
    degree = math.isqrt(num_coefficients) - 1
    if degree < 0 or (degree + 1) ** 2 != num_coefficients or degree > MAX_SH_DEGREE:
        raise ValueError(
            f"{num_coefficients} spherical-harmonic coefficients per channel is not (degree + 1)^2 for a "
            f"degree in 0..{MAX_SH_DEGREE}"
        )
    return degree


def sh_basis(degree: int, directions: Float[Tensor, "*batch 3"]) -> Float[Tensor, "*batch d_sh"]:
    """The (degree + 1)^2 basis functions at ``directions`` (normalised here; length does not matter).

    A zero direction gives a finite (meaningless) value instead of NaN, so that masked-out entries cannot
    poison gradients of the entries that are used.
    """
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f"spherical-harmonic degree must be in 0..{MAX_SH_DEGREE}, got {degree}")
    constant = torch.full_like(directions[..., 0], SH_C0)
    if degree == 0:
        return constant[..., None]
    length = directions.norm(dim=-1, keepdim=True).clamp_min(torch.finfo(directions.dtype).tiny)
    x, y, z = (directions / length).unbind(-1)
    basis = [constant, -_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        basis += [
            _C2_XY * x * y,
            -_C2_XY * y * z,
            _C2_ZZ * (3 * zz - 1),
            -_C2_XY * x * z,
            _C2_XX_YY * (xx - yy),
        ]
    if degree >= 3:
        basis += [
            -_C3_3 * y * (3 * xx - yy),
            _C3_2 * x * y * z,
            -_C3_1 * y * (5 * zz - 1),
            _C3_0 * z * (5 * zz - 3),
            -_C3_1 * x * (5 * zz - 1),
            _C3_2C * z * (xx - yy),
            -_C3_3 * x * (xx - 3 * yy),
        ]
    if degree >= 4:
        basis += [
            _C4_4 * x * y * (xx - yy),
            -_C4_3 * y * z * (3 * xx - yy),
            _C4_2 * x * y * (7 * zz - 1),
            -_C4_1 * y * z * (7 * zz - 3),
            _C4_0 * (35 * zz * zz - 30 * zz + 3),
            -_C4_1 * x * z * (7 * zz - 3),
            _C4_2C * (xx - yy) * (7 * zz - 1),
            -_C4_3 * x * z * (xx - 3 * yy),
            _C4_4C * (xx * (xx - 3 * yy) - yy * (3 * xx - yy)),
        ]
    return torch.stack(basis, dim=-1)


def evaluate_sh(
    harmonics: Float[Tensor, "*#batch 3 d_sh"], directions: Float[Tensor, "*#batch 3"]
) -> Float[Tensor, "*#batch 3"]:
    """Colour-major coefficients (our layout, [..., channel, coefficient]) evaluated along ``directions``.

    Returns the raw SH value; renderers add 0.5 and clamp at 0 (the 3DGS colour convention).
    """
    degree = sh_degree_from_coefficients(harmonics.shape[-1])
    basis = sh_basis(degree, directions)
    return torch.einsum("...cd,...d->...c", harmonics, basis)  # broadcasts without materialising
