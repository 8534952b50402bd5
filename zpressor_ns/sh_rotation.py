"""Rotate real spherical-harmonic coefficients (degrees 0..4) by rotation matrices.

DepthSplat predicts SH colour in each camera's frame and turns it into the world frame with the
Wigner-D matrices of e3nn, i.e. in e3nn's real SH basis: polar axis y, and within degree l the
functions ordered m = -l..l, which is the usual orthonormal real basis evaluated at (X, Y, Z) =
(z, x, y). The coefficients themselves are later read by the rasteriser in the graphics (z-polar)
basis; the trained weights expect exactly this pairing, so it is reproduced here, not "fixed".

The matrices are found without Euler angles: a rotation R maps the basis evaluated at d to the basis
at R d linearly, Y(R d) = D(R) Y(d), so D follows from a least-squares solve over fixed sample
directions. That is exact (the system is consistent) and batches over any number of rotations.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from jaxtyping import Float
from numpy.polynomial import legendre
from torch import Tensor

MAX_DEGREE = 4
_NUM_SAMPLE_DIRECTIONS = 64


def num_coefficients(degree: int) -> int:
    return (degree + 1) ** 2


def degree_of(num: int) -> int:
    degree = math.isqrt(num) - 1
    if num_coefficients(degree) != num:
        raise ValueError(f"{num} is not a number of SH coefficients ((degree + 1) ** 2)")
    return degree


@cache
def _legendre_derivative_coefficients(degree: int, order: int) -> tuple[float, ...]:
    """Power-series coefficients of d^order/dz^order P_degree(z) times the orthonormal constant."""
    series = legendre.leg2poly(legendre.Legendre.basis(degree).deriv(order).coef)
    norm = math.sqrt(
        (2 * degree + 1) / (4 * math.pi) * math.factorial(degree - order) / math.factorial(degree + order)
    )
    if order > 0:
        norm *= math.sqrt(2.0)
    return tuple(float(c) * norm for c in np.atleast_1d(series))


def real_sh_basis(directions: Float[Tensor, "*batch 3"], degree: int) -> Float[Tensor, "*batch n"]:
    """Orthonormal real SH up to ``degree`` in e3nn's layout (polar axis y) at unit ``directions``."""
    if not 0 <= degree <= MAX_DEGREE:
        raise ValueError(f"SH degree must be in 0..{MAX_DEGREE}, got {degree}")
    # e3nn's axes: its polar axis is y and its azimuth starts at z.
    big_x, big_y, big_z = directions[..., 2], directions[..., 0], directions[..., 1]
    # Re/Im of (X + iY)^m for m = 0..degree.
    cos_m, sin_m = [torch.ones_like(big_x)], [torch.zeros_like(big_x)]
    for _ in range(degree):
        c, s = cos_m[-1], sin_m[-1]
        cos_m.append(c * big_x - s * big_y)
        sin_m.append(c * big_y + s * big_x)
    values = []
    for deg in range(degree + 1):
        row: list[Tensor | None] = [None] * (2 * deg + 1)
        for m in range(deg + 1):
            # Horner evaluation of the scaled Legendre derivative in Z.
            radial = torch.zeros_like(big_z)
            for coefficient in reversed(_legendre_derivative_coefficients(deg, m)):
                radial = radial * big_z + coefficient
            row[deg + m] = radial * cos_m[m]
            if m > 0:
                row[deg - m] = radial * sin_m[m]
        values.extend(row)
    return torch.stack(values, dim=-1)


@cache
def _sample_directions() -> np.ndarray:
    """Well-spread unit vectors (Fibonacci sphere); any set spanning every degree would do."""
    i = np.arange(_NUM_SAMPLE_DIRECTIONS) + 0.5
    z = 1 - 2 * i / _NUM_SAMPLE_DIRECTIONS
    phi = math.pi * (1 + math.sqrt(5)) * i
    r = np.sqrt(1 - z**2)
    return np.stack((r * np.cos(phi), r * np.sin(phi), z), axis=-1)


@cache
def _solve_matrix(degree: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Sample directions [N, 3] and the pseudo-inverse of the basis there [n, N] (float64, once per device)."""
    directions = torch.from_numpy(_sample_directions()).to(device)
    basis = real_sh_basis(directions, degree)
    return directions, torch.linalg.pinv(basis)


def wigner_d(rotations: Float[Tensor, "*batch 3 3"], degree: int) -> Float[Tensor, "*batch n n"]:
    """Block-diagonal matrices D with Y(R d) = D(R) Y(d) for the basis of :func:`real_sh_basis`."""
    directions, pinv = _solve_matrix(degree, rotations.device)
    rotated = directions @ rotations.double().transpose(-1, -2)  # [*batch, N, 3]: R d for each sample d
    # Y(R d_i) = D Y(d_i) for all i  =>  D^T = pinv(Y) Y(R d).
    d_transposed = pinv @ real_sh_basis(rotated, degree)
    matrices = d_transposed.transpose(-1, -2)
    # The solve is exact only within each degree; zero the cross-degree round-off.
    block = torch.zeros_like(matrices[..., :1, :1].expand(matrices.shape))
    for deg in range(degree + 1):
        sl = slice(deg * deg, (deg + 1) ** 2)
        block[..., sl, sl] = matrices[..., sl, sl]
    return block.to(rotations.dtype)


def rotate_sh(
    coefficients: Float[Tensor, "*#batch n"], rotations: Float[Tensor, "*#batch 3 3"]
) -> Float[Tensor, "*#batch n"]:
    """Apply D(R) to coefficient vectors; ``rotations`` broadcasts against the coefficients' batch.

    One matrix per rotation: the trailing batch dimensions over which the rotations broadcast (size 1
    there) become rows of a single product ``coefficients @ D^T``, so the matrices are never copied per
    coefficient vector (a broadcast ``D @ c`` would materialise one n x n matrix for every vector: 25x25 per
    Gaussian and colour channel in the Gaussian adapter).
    """
    n = coefficients.shape[-1]
    matrices = wigner_d(rotations, degree_of(n))
    batch = torch.broadcast_shapes(matrices.shape[:-2], coefficients.shape[:-1])
    matrix_batch = (1,) * (len(batch) - (matrices.dim() - 2)) + tuple(matrices.shape[:-2])
    split = len(batch)
    while split > 0 and matrix_batch[split - 1] == 1:
        split -= 1
    rows = coefficients.expand(*batch, n).reshape(*batch[:split], -1, n)
    matrices = matrices.reshape(*matrix_batch[:split], n, n)
    return (rows @ matrices.transpose(-1, -2)).reshape(*batch, n)
