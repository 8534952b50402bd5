"""Camera conventions against values worked out by hand (zpressor_ns/cameras.py)."""

from __future__ import annotations

import math

import pytest
import torch

from zpressor_ns.cameras import (
    CameraError,
    camera_centres,
    check_intrinsics,
    intrinsics_from_values,
    invert_rigid,
    normalised_to_pixel_K,
    opencv_to_opengl_c2w,
    opengl_to_opencv_c2w,
    pixel_to_normalised_K,
    sanitise_c2w,
    to_homogeneous,
)


def rotation_z(degrees: float) -> torch.Tensor:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def pose(rotation: torch.Tensor, translation: list[float]) -> torch.Tensor:
    out = torch.eye(4, dtype=torch.float64)
    out[:3, :3] = rotation
    out[:3, 3] = torch.tensor(translation, dtype=torch.float64)
    return out


def test_opengl_identity_camera_becomes_y_and_z_flipped_opencv_camera():
    # An OpenGL camera at the origin looks down -z with y up; the same camera in OpenCV axes has its
    # y axis pointing down (world -y) and its z axis forward (world -z).
    expected = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    assert torch.equal(opengl_to_opencv_c2w(torch.eye(4, dtype=torch.float64)), expected)


def test_opengl_to_opencv_keeps_position_and_sees_the_same_point_in_front():
    c2w_gl = pose(rotation_z(90.0), [1.0, 2.0, 3.0])
    c2w_cv = opengl_to_opencv_c2w(c2w_gl)
    # Columns 1 and 2 (camera y and z axes) change sign; the camera centre stays where it is.
    assert torch.equal(c2w_cv[:3, 0], c2w_gl[:3, 0])
    assert torch.equal(c2w_cv[:3, 1:3], -c2w_gl[:3, 1:3])
    assert torch.equal(camera_centres(c2w_cv), torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    # A point 5 units in front of the camera: (0, 0, -5) in OpenGL camera axes, (0, 0, +5) in OpenCV.
    point_world = c2w_gl @ torch.tensor([0.0, 0.0, -5.0, 1.0], dtype=torch.float64)
    point_cv_camera = invert_rigid(c2w_cv) @ point_world
    assert torch.allclose(point_cv_camera, torch.tensor([0.0, 0.0, 5.0, 1.0], dtype=torch.float64))
    # The map is its own inverse.
    assert torch.equal(opencv_to_opengl_c2w(c2w_cv), c2w_gl)


def test_pixel_and_normalised_intrinsics_by_hand():
    K_pixels = torch.tensor([[500.0, 0.0, 320.0], [0.0, 400.0, 180.0], [0.0, 0.0, 1.0]])
    K_norm = pixel_to_normalised_K(K_pixels, 640, 360)
    expected = torch.tensor([[500 / 640, 0.0, 0.5], [0.0, 400 / 360, 0.5], [0.0, 0.0, 1.0]])
    assert torch.allclose(K_norm, expected)
    assert torch.allclose(normalised_to_pixel_K(K_norm, 640, 360), K_pixels)


def test_intrinsics_per_frame_sizes_broadcast():
    K_pixels = intrinsics_from_values(
        torch.tensor([100.0, 200.0]),
        torch.tensor([100.0, 200.0]),
        torch.tensor([50.0, 100.0]),
        torch.tensor([25.0, 50.0]),
    )
    K_norm = pixel_to_normalised_K(K_pixels, torch.tensor([100.0, 200.0]), torch.tensor([50.0, 100.0]))
    assert torch.allclose(K_norm[:, 0, 0], torch.tensor([1.0, 1.0]))
    assert torch.allclose(K_norm[:, :2, 2], torch.full((2, 2), 0.5))


def test_world_to_camera_and_back_by_hand():
    # w2c = [R_z(90) | (1, 2, 3)]  =>  c2w = [R^T | -R^T t] with R^T t = (2, -1, 3).
    w2c = pose(rotation_z(90.0), [1.0, 2.0, 3.0])
    c2w = invert_rigid(w2c)
    expected = torch.tensor(
        [[0.0, 1.0, 0.0, -2.0], [-1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, -3.0], [0.0, 0.0, 0.0, 1.0]],
        dtype=torch.float64,
    )
    assert torch.allclose(c2w, expected, atol=1e-12)
    assert torch.allclose(c2w @ w2c, torch.eye(4, dtype=torch.float64), atol=1e-12)
    # The camera centre maps to the camera-space origin.
    centre = torch.cat([camera_centres(c2w), torch.ones(1, dtype=torch.float64)])
    assert torch.allclose(w2c @ centre, torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=torch.float64), atol=1e-12)


def test_to_homogeneous_appends_the_bottom_row(without_shape_checks):
    out = to_homogeneous(torch.arange(12.0).reshape(3, 4))
    assert torch.equal(out[3], torch.tensor([0.0, 0.0, 0.0, 1.0]))
    with without_shape_checks(), pytest.raises(CameraError):
        to_homogeneous(torch.zeros(2, 4))


def test_scaled_rotation_is_repaired_and_position_kept():
    good = pose(rotation_z(30.0), [4.0, 5.0, 6.0])
    scaled = good.clone()
    scaled[:3, :3] *= 0.21  # columns of norm 0.21, as seen in real captures
    repaired = sanitise_c2w(scaled[None], "test scene")[0]
    assert torch.allclose(repaired, good, atol=1e-9)
    assert torch.allclose(torch.linalg.norm(repaired[:3, :3], dim=0), torch.ones(3, dtype=torch.float64))


def test_orthonormal_pose_passes_unchanged():
    good = pose(rotation_z(30.0), [4.0, 5.0, 6.0])[None]
    assert torch.equal(sanitise_c2w(good, "scene"), good)


def test_sheared_rotation_is_refused_with_the_scene_named():
    sheared = torch.eye(4, dtype=torch.float64)
    sheared[0, 1] = 0.5
    with pytest.raises(CameraError, match="my-scene.*shear"):
        sanitise_c2w(sheared[None], "my-scene")


def test_nan_pose_and_reflection_are_refused():
    bad = torch.eye(4)[None].repeat(3, 1, 1)
    bad[2, 0, 3] = float("nan")
    with pytest.raises(CameraError, match=r"scene-x.*NaN.*\[2\]"):
        sanitise_c2w(bad, "scene-x")
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))[None]
    with pytest.raises(CameraError, match="determinant"):
        sanitise_c2w(mirror, "scene-y")


def test_intrinsics_check_refuses_nonpositive_focal():
    with pytest.raises(CameraError, match="focal"):
        check_intrinsics(intrinsics_from_values(torch.tensor(0.0), torch.tensor(1.0), 0.5, 0.5), "s")
