"""SH rotation: the Wigner-D matrices must be a faithful representation in e3nn's real SH basis."""

from __future__ import annotations

import math

import pytest
import torch

from zpressor_ns.sh_rotation import degree_of, real_sh_basis, rotate_sh, wigner_d


def random_rotations(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(n, 3, 3, generator=generator, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q * torch.linalg.det(q)[:, None, None]  # proper rotations (det +1)


def random_directions(n: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.nn.functional.normalize(torch.randn(n, 3, generator=generator, dtype=torch.float64), dim=-1)


@pytest.mark.parametrize("degree", [0, 1, 2, 3, 4])
def test_rotated_function_is_the_original_seen_through_the_inverse_rotation(degree: int) -> None:
    rotations = random_rotations(5)
    coefficients = torch.randn(5, (degree + 1) ** 2, dtype=torch.float64)
    directions = random_directions(7)
    rotated = rotate_sh(coefficients, rotations)
    # f_rotated(d) = f(R^T d) for every direction d.
    value_rotated = (real_sh_basis(directions, degree)[None] * rotated[:, None]).sum(-1)
    back = torch.einsum("bji,nj->bni", rotations, directions)  # R^T d
    value_original = (real_sh_basis(back, degree) * coefficients[:, None]).sum(-1)
    torch.testing.assert_close(value_rotated, value_original, atol=1e-10, rtol=1e-10)


def test_matrices_compose_like_rotations_and_are_orthogonal() -> None:
    r1, r2 = random_rotations(2, seed=3)
    d1, d2, d12 = wigner_d(r1, 4), wigner_d(r2, 4), wigner_d(r1 @ r2, 4)
    torch.testing.assert_close(d12, d1 @ d2, atol=1e-10, rtol=0)
    torch.testing.assert_close(d1 @ d1.T, torch.eye(25, dtype=torch.float64), atol=1e-10, rtol=0)
    torch.testing.assert_close(
        wigner_d(torch.eye(3, dtype=torch.float64), 4), torch.eye(25, dtype=torch.float64)
    )


def test_degree_one_block_is_the_rotation_itself_and_dc_is_invariant() -> None:
    # e3nn orders the degree-1 functions as (x, y, z), so its representation is R itself.
    rotation = random_rotations(1, seed=4)[0]
    matrices = wigner_d(rotation, 2)
    torch.testing.assert_close(matrices[1:4, 1:4], rotation, atol=1e-12, rtol=0)
    assert matrices[0, 0] == pytest.approx(1.0)
    assert matrices[0, 1:].abs().max() < 1e-12 and matrices[1:4, 4:].abs().max() < 1e-12


def test_basis_is_orthonormal_with_y_as_polar_axis() -> None:
    # The zonal (m = 0) function of each degree depends on y only, and equals sqrt((2l+1)/4pi) at the pole.
    pole = torch.tensor([[0.0, 1.0, 0.0]], dtype=torch.float64)
    values = real_sh_basis(pole, 4)[0]
    for degree in range(5):
        block = values[degree**2 : (degree + 1) ** 2]
        assert block[degree].item() == pytest.approx(math.sqrt((2 * degree + 1) / (4 * math.pi)))
        assert block.abs().sum().item() == pytest.approx(abs(block[degree].item()))


def test_float32_batched_broadcast_and_bad_sizes() -> None:
    rotations = random_rotations(3).float()[:, None]  # [3, 1, 3, 3] broadcast over 4 colour vectors
    coefficients = torch.randn(3, 4, 25)
    out = rotate_sh(coefficients, rotations)
    assert out.shape == (3, 4, 25) and out.dtype == torch.float32
    expected = rotate_sh(coefficients.double(), rotations.double())
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="not a number of SH coefficients"):
        degree_of(24)
    with pytest.raises(ValueError, match="degree"):
        real_sh_basis(random_directions(2), 5)


def test_one_matrix_per_view_rotates_every_pixel_and_channel_with_its_own_view() -> None:
    # The Gaussian adapter's layout: coefficients [batch, view, pixel, colour, n], one rotation per view.
    rotations = random_rotations(6, seed=6).float().reshape(2, 3, 1, 1, 3, 3)
    coefficients = torch.randn(2, 3, 5, 3, 25, generator=torch.Generator().manual_seed(7))
    out = rotate_sh(coefficients, rotations)
    matrices = wigner_d(rotations[:, :, 0, 0], 4)  # [2, 3, 25, 25]
    expected = torch.einsum("bvij,bvpcj->bvpci", matrices, coefficients)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    # A rotation per vector and a single rotation for all give the same as the explicit product.
    one = rotate_sh(coefficients, rotations[0, 0, 0, 0])
    torch.testing.assert_close(
        one, torch.einsum("ij,...j->...i", matrices[0, 0], coefficients), atol=1e-5, rtol=1e-5
    )
    per_vector = rotations.expand(2, 3, 5, 3, 3, 3)
    torch.testing.assert_close(rotate_sh(coefficients, per_vector), expected, atol=1e-5, rtol=1e-5)


def test_matches_e3nn_when_installed() -> None:
    o3 = pytest.importorskip(
        "e3nn.o3", reason="e3nn is not a dependency; this cross-check runs where it exists"
    )
    rotations = random_rotations(4, seed=5)
    ours = wigner_d(rotations, 4)
    angles = o3.matrix_to_angles(rotations)
    for degree in range(5):
        block = slice(degree**2, (degree + 1) ** 2)
        torch.testing.assert_close(
            ours[:, block, block], o3.wigner_D(degree, *angles).double(), atol=1e-6, rtol=0
        )
