"""3DGS .ply export: the standard layout, exact parameters back from the file, drops and their counts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from zpressor_ns.export import read_ply, write_ply

STANDARD_NAMES = (
    ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    + [f"f_rest_{i}" for i in range(45)]
    + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
)


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices of (w, x, y, z) quaternions, the way 3DGS loaders build them."""
    w, x, y, z = (q / np.linalg.norm(q, axis=-1, keepdims=True)).T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
        ],
        axis=1,
    )


def rebuilt_covariances(ply: dict[str, np.ndarray]) -> np.ndarray:
    rotation = quaternion_to_matrix(np.stack([ply[f"rot_{i}"] for i in range(4)], -1).astype(np.float64))
    variances = np.exp(2 * np.stack([ply[f"scale_{i}"] for i in range(3)], -1).astype(np.float64))
    return rotation @ (variances[:, :, None] * np.swapaxes(rotation, -1, -2))


def random_covariances(rng: np.random.Generator, count: int) -> np.ndarray:
    axes = np.linalg.qr(rng.normal(size=(count, 3, 3)))[0]
    stds = rng.uniform(0.01, 0.5, size=(count, 3))
    return axes @ (stds[:, :, None] ** 2 * np.swapaxes(axes, -1, -2))


def test_standard_header_and_binary_layout(tmp_path):
    rng = np.random.default_rng(0)
    report = write_ply(
        tmp_path / "scene.ply", rng.normal(size=(5, 3)), random_covariances(rng, 5), rng.normal(size=(5, 3, 16)),
        np.full(5, 0.5),
    )  # fmt: skip
    raw = (tmp_path / "scene.ply").read_bytes()
    header, body = raw.split(b"end_header\n", 1)
    lines = header.decode("ascii").splitlines()
    assert lines[:3] == ["ply", "format binary_little_endian 1.0", "element vertex 5"]
    assert lines[3:] == [f"property float {name}" for name in STANDARD_NAMES]
    assert len(body) == 5 * len(STANDARD_NAMES) * 4
    assert report.written == 5 and report.dropped_transparent == report.dropped_non_finite == 0


def test_round_trip_recovers_positions_covariances_and_opacities(tmp_path):
    rng = np.random.default_rng(1)
    count = 200
    covariances = random_covariances(rng, count)
    covariances[0] = np.eye(3) * 0.04  # isotropic: any eigenbasis is right
    covariances[1] = np.diag([0.09, 0.01, 0.0])  # flat: one zero eigenvalue
    covariances[2] = np.diag([0.09, 0.04, 0.01])[[2, 0, 1]][:, [2, 0, 1]]  # axis-aligned, permuted axes
    means = rng.normal(size=(count, 3)) * 5
    opacities = rng.uniform(0.01, 1.0, size=count)
    opacities[3] = 1.0  # fully opaque must stay finite
    write_ply(tmp_path / "scene.ply", means, covariances, rng.normal(size=(count, 3, 25)), opacities)
    ply = read_ply(tmp_path / "scene.ply")

    np.testing.assert_allclose(np.stack([ply["x"], ply["y"], ply["z"]], -1), means, rtol=1e-6, atol=1e-6)
    quaternions = np.stack([ply[f"rot_{i}"] for i in range(4)], -1)
    np.testing.assert_allclose(np.linalg.norm(quaternions, axis=-1), 1.0, atol=1e-6)
    scale_of_each = np.abs(covariances).max(axis=(1, 2))[:, None, None]
    np.testing.assert_allclose(
        rebuilt_covariances(ply) / scale_of_each, covariances / scale_of_each, atol=2e-6
    )
    assert np.isfinite(ply["scale_2"]).all() and np.isfinite(ply["opacity"]).all()
    np.testing.assert_allclose(1 / (1 + np.exp(-ply["opacity"].astype(np.float64))), opacities, atol=1e-6)
    assert (ply["nx"] == 0).all()


def test_sh_dc_and_rest_go_to_their_standard_slots(tmp_path):
    count = 4
    channel, coefficient = np.meshgrid(np.arange(3), np.arange(25), indexing="ij")
    harmonics = (
        np.broadcast_to(100.0 * channel + coefficient, (count, 3, 25))
        + np.arange(count)[:, None, None] * 1000
    )
    covariances = np.broadcast_to(np.eye(3) * 0.01, (count, 3, 3))
    write_ply(tmp_path / "sh.ply", np.zeros((count, 3)), covariances, harmonics, np.full(count, 0.5))
    ply = read_ply(tmp_path / "sh.ply")
    assert sorted(name for name in ply if name.startswith("f_rest")) == sorted(
        f"f_rest_{i}" for i in range(45)
    )
    for c in range(3):
        np.testing.assert_array_equal(ply[f"f_dc_{c}"], harmonics[:, c, 0])
        for k in range(1, 16):  # degree 4 input truncated to degree 3: coefficients 1..15 per channel
            np.testing.assert_array_equal(ply[f"f_rest_{c * 15 + k - 1}"], harmonics[:, c, k])


def test_lower_degree_is_zero_padded_and_degree_0_has_no_rest(tmp_path):
    rng = np.random.default_rng(2)
    harmonics = rng.normal(size=(3, 3, 4))
    covariances = random_covariances(rng, 3)
    write_ply(tmp_path / "d1.ply", np.zeros((3, 3)), covariances, harmonics, np.full(3, 0.5))
    ply = read_ply(tmp_path / "d1.ply")
    np.testing.assert_allclose(ply["f_rest_15"], harmonics[:, 1, 1], rtol=1e-6)  # green, first rest term
    assert all((ply[f"f_rest_{c * 15 + k}"] == 0).all() for c in range(3) for k in range(3, 15))

    write_ply(tmp_path / "d0.ply", np.zeros((3, 3)), covariances, harmonics, np.full(3, 0.5), sh_degree_out=0)
    assert not any(name.startswith("f_rest") for name in read_ply(tmp_path / "d0.ply"))


def test_invisible_and_non_finite_gaussians_are_dropped_and_counted(tmp_path):
    rng = np.random.default_rng(3)
    means = torch.tensor(rng.normal(size=(6, 3)))
    covariances = torch.tensor(random_covariances(rng, 6))
    harmonics = torch.tensor(rng.normal(size=(6, 3, 16)))
    opacities = torch.tensor([0.5, 0.001, 0.9, 0.5, 0.5, 1 / 255])
    means[3, 1] = float("nan")
    harmonics[4, 2, 7] = float("inf")
    report = write_ply(tmp_path / "s.ply", means, covariances, harmonics, opacities)
    assert (report.written, report.dropped_transparent, report.dropped_non_finite) == (3, 1, 2)
    np.testing.assert_allclose(read_ply(tmp_path / "s.ply")["x"], means[[0, 2, 5], 0].numpy(), rtol=1e-6)


def test_bad_shapes_get_a_clear_error(tmp_path, without_shape_checks):
    with without_shape_checks(), pytest.raises(ValueError, match="harmonics"):
        write_ply(tmp_path / "x.ply", np.zeros((2, 3)), np.zeros((2, 3, 3)), np.zeros((2, 16, 3)), np.ones(2))
    with without_shape_checks(), pytest.raises(ValueError, match="covariances"):
        write_ply(tmp_path / "x.ply", np.zeros((2, 3)), np.zeros((2, 6)), np.zeros((2, 3, 16)), np.ones(2))
