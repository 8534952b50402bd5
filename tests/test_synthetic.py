"""Synthetic scenes: the ray caster against closed-form answers, cross-view consistency of what is written
(cameras, intrinsics, depth and images must agree), determinism, depth bounds and the command."""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from zpressor_ns.cli import main as cli_main
from zpressor_ns.data.eval_index import build_evaluation_index
from zpressor_ns.data.raycast import Materials, SceneGeometry, cast_rays, render_views
from zpressor_ns.data.readers import open_dataset
from zpressor_ns.data.synthetic import (
    SYNTHETIC_FAR,
    SYNTHETIC_NEAR,
    SyntheticConfig,
    make_synthetic,
    render_scene,
    render_spec,
    scene_specs,
)

TINY = SyntheticConfig(
    seed=3,
    num_train_scenes=1,
    num_test_scenes=2,
    re10k_frames=24,
    dl3dv_frames=24,
    re10k_size=(72, 128),
    dl3dv_size=(72, 128),
    eval_context_views=(4, 8),
)


# ----------------------------------------------------------------------------------------------------
# Helpers that do NOT use the project's camera code, so a shared misunderstanding cannot pass.


def _flat_materials(count: int) -> Materials:
    return Materials(
        base=torch.full((count, 3), 0.5),
        wave_direction=torch.zeros(count, 1, 3),
        wave_phase=torch.zeros(count, 1),
        wave_sharpness=torch.ones(count, 1),
        wave_colour=torch.zeros(count, 1, 3),
    )


def _geometry(spheres=(), boxes=(), room=((-3.0, -2.0, 0.0), (3.0, 2.0, 2.5))) -> SceneGeometry:
    """spheres: (centre, radius); boxes: (centre, yaw about z, half sizes)."""
    rotations = []
    for _, yaw, _ in boxes:
        c, s = math.cos(yaw), math.sin(yaw)
        rotations.append(torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]))
    return SceneGeometry(
        room_min=torch.tensor(room[0], dtype=torch.float32),
        room_max=torch.tensor(room[1], dtype=torch.float32),
        sphere_centre=torch.tensor([c for c, _ in spheres]).reshape(-1, 3),
        sphere_radius=torch.tensor([r for _, r in spheres]).reshape(-1),
        box_centre=torch.tensor([c for c, _, _ in boxes]).reshape(-1, 3),
        box_rotation=torch.stack(rotations) if rotations else torch.zeros(0, 3, 3),
        box_half_size=torch.tensor([h for _, _, h in boxes]).reshape(-1, 3),
        light_position=torch.tensor([0.0, 0.0, 2.4]),
        ambient=0.5,
        materials=_flat_materials(6 + len(spheres) + len(boxes)),
    )


def _c2w_looking_along_x(position) -> torch.Tensor:
    """OpenCV camera at ``position`` looking along world +x with world +z up: x_cam = -y, y_cam = -z."""
    c2w = torch.eye(4)
    c2w[:3, 0] = torch.tensor([0.0, -1.0, 0.0])
    c2w[:3, 1] = torch.tensor([0.0, 0.0, -1.0])
    c2w[:3, 2] = torch.tensor([1.0, 0.0, 0.0])
    c2w[:3, 3] = torch.tensor(position)
    return c2w[None]


def _K(fx: float, fy: float) -> torch.Tensor:
    return torch.tensor([[[fx, 0.0, 0.5], [0.0, fy, 0.5], [0.0, 0.0, 1.0]]])


def _reproject(depth_a, c2w_a, c2w_b, K, height, width):
    """Pixels of view A lifted with their depth and projected into view B (normalised coordinates)."""
    v, u = torch.meshgrid(
        (torch.arange(height) + 0.5) / height, (torch.arange(width) + 0.5) / width, indexing="ij"
    )
    x_cam = (u - K[0, 2]) / K[0, 0] * depth_a
    y_cam = (v - K[1, 2]) / K[1, 1] * depth_a
    points_a = torch.stack([x_cam, y_cam, depth_a, torch.ones_like(depth_a)], dim=-1).double()
    world = points_a @ c2w_a.double().T
    in_b = world @ torch.linalg.inv(c2w_b.double()).T
    z_b = in_b[..., 2]
    u_b = K[0, 0] * in_b[..., 0] / z_b + K[0, 2]
    v_b = K[1, 1] * in_b[..., 1] / z_b + K[1, 2]
    return u_b.float(), v_b.float(), z_b.float()


def _sample(image, u, v):
    """Bilinear sample of [C,H,W] at normalised coordinates (pixel centres at (i + 0.5) / W)."""
    grid = torch.stack([2 * u - 1, 2 * v - 1], dim=-1)[None]
    return F.grid_sample(image[None], grid, mode="bilinear", align_corners=False)[0]


def _consistency(image_a, depth_a, image_b, depth_b, c2w_a, c2w_b, K):
    """Median colour error over pixels of A that B sees (depth test), and the fraction of such pixels.

    The median ignores silhouettes, where bilinear sampling mixes surfaces. Textures are detailed, so
    finite resolution leaves about 0.01 even with exact cameras (0 with untextured surfaces)."""
    _, height, width = image_a.shape
    u_b, v_b, z_b = _reproject(depth_a, c2w_a, c2w_b, K, height, width)
    margin_u, margin_v = 1.0 / width, 1.0 / height
    inside = (u_b > margin_u) & (u_b < 1 - margin_u) & (v_b > margin_v) & (v_b < 1 - margin_v) & (z_b > 0)
    seen_depth = _sample(depth_b[None], u_b, v_b)[0]
    visible = inside & ((seen_depth - z_b).abs() < 0.01 * z_b)
    colour_b = _sample(image_b, u_b, v_b)
    error = (colour_b - image_a).abs().mean(0)
    return float(error[visible].median()), float(visible.float().mean())


# ----------------------------------------------------------------------------------------------------
# Ray caster against closed-form answers.


def test_wall_facing_camera_has_constant_z_depth():
    geometry = _geometry()
    # Narrow view from the room centre: every ray ends on the +x wall, 3 units ahead.
    images, depth = render_views(geometry, _c2w_looking_along_x([0.0, 0.0, 1.25]), _K(2.0, 2.0), 21, 21)
    assert torch.allclose(depth, torch.full_like(depth, 3.0), atol=1e-5)
    assert images.shape == (1, 3, 21, 21)

    # Looking straight down from height 1.25: the floor's z-depth is the height everywhere.
    down = torch.eye(4)[None]
    down[0, :3, 0] = torch.tensor([-1.0, 0.0, 0.0])  # image right = -x, so right x down = forward
    down[0, :3, 1] = torch.tensor([0.0, 1.0, 0.0])  # image down = +y
    down[0, :3, 2] = torch.tensor([0.0, 0.0, -1.0])  # forward = -z
    down[0, :3, 3] = torch.tensor([0.5, -0.3, 1.25])
    _, depth = render_views(geometry, down, _K(1.5, 1.5), 15, 15)
    assert torch.allclose(depth, torch.full_like(depth, 1.25), atol=1e-5)


def test_wall_hits_report_face_material_and_inward_normal():
    geometry = _geometry()
    origins = torch.tensor([[0.0, 0.0, 1.0]]).repeat(6, 1)
    directions = torch.tensor(
        [[-1.0, 0, 0], [1.0, 0, 0], [0, -1.0, 0], [0, 1.0, 0], [0, 0, -1.0], [0, 0, 1.0]]
    )
    hits = cast_rays(geometry, origins, directions)
    assert hits.material.tolist() == [0, 1, 2, 3, 4, 5]
    assert torch.allclose(hits.distance, torch.tensor([3.0, 3.0, 2.0, 2.0, 1.0, 1.5]))
    assert torch.allclose(hits.normal, -directions)


def test_sphere_silhouette_matches_pinhole_projection():
    distance, radius, size, focal = 6.0, 1.0, 101, 1.0
    geometry = _geometry(spheres=[((distance, 0.0, 1.25), radius)], room=((-1, -9, -8), (20, 9, 10)))
    _, depth = render_views(geometry, _c2w_looking_along_x([0.0, 0.0, 1.25]), _K(focal, focal), size, size)
    on_sphere = depth[0] < distance  # the far wall is 20 units away
    # The silhouette of a sphere on the optical axis is a circle of radius f * tan(asin(r / d)) pixels.
    expected_radius = focal * size * math.tan(math.asin(radius / distance))
    middle_row = int(on_sphere[size // 2].sum())
    assert abs(middle_row - 2 * expected_radius) <= 1.0
    assert int(on_sphere.sum()) == pytest.approx(math.pi * expected_radius**2, rel=0.03)
    # The centre pixel's ray is the optical axis: it meets the sphere at z = d - r.
    assert float(depth[0, size // 2, size // 2]) == pytest.approx(distance - radius, abs=1e-4)


def test_rotated_box_edge_depth():
    # A cube rotated 45 degrees about z shows its vertical edge to a camera on the axis.
    half = 0.5
    geometry = _geometry(
        boxes=[((4.0, 0.0, 1.25), math.pi / 4, (half, half, half))], room=((-1, -5, -3), (12, 5, 5))
    )
    _, depth = render_views(geometry, _c2w_looking_along_x([0.0, 0.0, 1.25]), _K(1.0, 1.0), 41, 41)
    assert float(depth[0, 20, 20]) == pytest.approx(4.0 - half * math.sqrt(2), abs=1e-4)
    # An axis-aligned box at the same place shows its face at 4 - half.
    geometry = _geometry(boxes=[((4.0, 0.0, 1.25), 0.0, (half, half, half))], room=((-1, -5, -3), (12, 5, 5)))
    _, depth = render_views(geometry, _c2w_looking_along_x([0.0, 0.0, 1.25]), _K(1.0, 1.0), 41, 41)
    assert float(depth[0, 20, 20]) == pytest.approx(4.0 - half, abs=1e-4)


# ----------------------------------------------------------------------------------------------------
# Whole scenes.


@pytest.mark.parametrize("layout", ["re10k", "dl3dv"])
def test_views_agree_where_they_overlap(layout):
    """Lift view A's pixels with its depth, project them into view B: colours must agree. Turning B by
    one degree must make it clearly worse, so the check can tell right from slightly wrong cameras."""
    spec = next(s for s in scene_specs(TINY) if s.layout == layout)
    scene = render_spec(TINY, spec)
    a, b = 8, 12
    error, visible = _consistency(
        scene.images[a],
        scene.depths[a],
        scene.images[b],
        scene.depths[b],
        scene.c2w[a],
        scene.c2w[b],
        scene.K[0],
    )
    assert visible > 0.3
    assert error < 0.025

    c, s = math.cos(math.radians(1.0)), math.sin(math.radians(1.0))
    wrong_b = scene.c2w[b].clone()
    wrong_b[:3, :3] = wrong_b[:3, :3] @ torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    wrong_error, _ = _consistency(
        scene.images[a], scene.depths[a], scene.images[b], scene.depths[b], scene.c2w[a], wrong_b, scene.K[0]
    )
    assert wrong_error > 2.5 * error


def _decode(data: bytes) -> torch.Tensor:
    return (
        torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1).float() / 255
    )


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("synthetic")
    return out, make_synthetic(out, TINY)


def test_written_re10k_files_are_consistent_with_depth(written):
    """Cameras decoded from the chunk the way the original loader does (18 floats -> K and inverse of
    w2c) plus the decoded JPEGs must be cross-view consistent with the rendered depth."""
    out, _ = written
    index = json.loads((out / "re10k" / "test" / "index.json").read_text())
    key = sorted(index)[0]
    entry = next(
        e for e in torch.load(out / "re10k" / "test" / index[key], weights_only=True) if e["key"] == key
    )
    cameras = entry["cameras"]
    K = torch.eye(3)
    K[0, 0], K[1, 1], K[0, 2], K[1, 2] = cameras[0, :4]
    w2c = torch.eye(4).repeat(len(cameras), 1, 1)
    w2c[:, :3] = cameras[:, 6:].reshape(-1, 3, 4)
    c2w = torch.linalg.inv(w2c)
    images = [_decode(image.numpy().tobytes()) for image in entry["images"]]
    assert images[0].shape == (3, *TINY.re10k_size)

    depths = render_scene(TINY, key).depths
    error, visible = _consistency(images[6], depths[6], images[10], depths[10], c2w[6], c2w[10], K)
    assert visible > 0.3 and error < 0.03  # JPEG adds a little


def test_written_dl3dv_files_are_consistent_with_depth(written):
    """transforms.json read the Nerfstudio way (OpenGL c2w @ diag(1,-1,-1,1), pixel intrinsics / w,h) with
    the images_8 PNGs must be cross-view consistent with the rendered depth."""
    out, _ = written
    scene_dir = sorted((out / "dl3dv" / "test").iterdir())[0]
    meta = json.loads((scene_dir / "nerfstudio" / "transforms.json").read_text())
    K = torch.tensor(
        [
            [meta["fl_x"] / meta["w"], 0.0, meta["cx"] / meta["w"]],
            [0.0, meta["fl_y"] / meta["h"], meta["cy"] / meta["h"]],
            [0, 0, 1],
        ]
    )
    gl = torch.tensor([frame["transform_matrix"] for frame in meta["frames"]])
    c2w = gl @ torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))
    names = [frame["file_path"].split("/")[-1] for frame in meta["frames"]]
    images = [_decode((scene_dir / "nerfstudio" / "images_8" / name).read_bytes()) for name in names]
    assert images[0].shape == (3, *TINY.dl3dv_size) and (meta["w"], meta["h"]) == (8 * 128, 8 * 72)

    depths = render_scene(TINY, scene_dir.name).depths
    error, visible = _consistency(images[6], depths[6], images[10], depths[10], c2w[6], c2w[10], K)
    assert visible > 0.3 and error < 0.02


def test_written_layout_and_evaluation_index(written):
    out, summary = written
    assert summary.scenes == {"re10k": {"train": 1, "test": 2}, "dl3dv": {"train": 1, "test": 2}}
    test_keys = {s.key for s in scene_specs(TINY) if s.split == "test"}
    re10k_keys = set(json.loads((out / "re10k" / "test" / "index.json").read_text()))
    dl3dv_keys = {p.name for p in (out / "dl3dv" / "test").iterdir()}
    assert re10k_keys | dl3dv_keys == test_keys
    assert all(len(k) == 16 for k in re10k_keys) and all(len(k) == 64 for k in dl3dv_keys)
    assert all(
        (out / "dl3dv" / "train" / k / "nerfstudio" / "transforms.json").exists()
        for k in {s.key for s in scene_specs(TINY) if s.split == "train" and s.layout == "dl3dv"}
    )

    for layout, keys in (("re10k", re10k_keys), ("dl3dv", dl3dv_keys)):
        for num_context in TINY.eval_context_views:
            path = out / layout / "evaluation" / f"{layout}_ctx_{num_context}v_tgt_8v_n24.json"
            index = json.loads(path.read_text())
            assert set(index) == keys
            for entry in index.values():
                context, target = entry["context"], entry["target"]
                assert context == sorted(set(context)) and len(context) == num_context
                assert len(target) == 8 and not set(target) & set(context)
                assert max(context + target) < 24
    record = json.loads((out / "synthetic.json").read_text())
    assert (record["near"], record["far"]) == (SYNTHETIC_NEAR, SYNTHETIC_FAR)


@pytest.mark.parametrize("layout", ["re10k", "dl3dv"])
def test_project_readers_recover_what_was_rendered(written, layout):
    """The project's readers (auto-detecting the layout) see the rendered cameras, sizes and pixels, and
    the official index rule applied through them reproduces the index files we wrote."""
    out, _ = written
    reader = open_dataset(out / layout, "test")
    keys = sorted(s.key for s in scene_specs(TINY) if s.layout == layout and s.split == "test")
    assert sorted(reader.keys()) == keys
    for key in keys:
        scene, truth = reader.scene(key), render_scene(TINY, key)
        assert torch.allclose(scene.c2w, truth.c2w, atol=1e-5)
        assert torch.allclose(scene.K, truth.K, atol=1e-6)
        assert torch.equal(scene.timestamps, truth.timestamps)
        assert (scene.height, scene.width) == TINY.size(layout)
        images = scene.load_images([0, 5])
        tolerance = 0.02 if layout == "re10k" else 0.5 / 255  # JPEG vs lossless PNG (rounding only)
        assert (images - truth.images[[0, 5]]).abs().mean() < tolerance
    for num_context in TINY.eval_context_views:
        path = out / layout / "evaluation" / f"{layout}_ctx_{num_context}v_tgt_8v_n24.json"
        assert json.loads(path.read_text()) == build_evaluation_index(reader, num_context, 8, window=24)


def test_same_seed_same_scene_other_seed_other_scene():
    spec = scene_specs(TINY)[0]
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        first = render_spec(TINY, spec)
        torch.set_num_threads(1)
        second = render_spec(TINY, spec)
    finally:
        torch.set_num_threads(previous)
    for field in ("images", "depths", "c2w", "K", "timestamps"):
        assert torch.equal(getattr(first, field), getattr(second, field)), field

    other_seed = dataclasses.replace(TINY, seed=4)
    other = render_spec(other_seed, scene_specs(other_seed)[0])
    assert other.key != first.key and not torch.allclose(other.c2w, first.c2w)
    with pytest.raises(KeyError, match="no synthetic scene"):
        render_scene(TINY, "0123456789abcdef")


def test_cameras_stay_inside_bounds_and_see_content():
    """Over many scenes (rendered small), depth stays inside the recommended near/far, poses are
    rotations, and no frame is a single flat colour."""
    config = dataclasses.replace(
        TINY, seed=11, num_train_scenes=6, num_test_scenes=0, re10k_size=(9, 16), dl3dv_size=(9, 16)
    )
    for spec in scene_specs(config):
        scene = render_spec(config, spec)
        assert float(scene.depths.min()) > SYNTHETIC_NEAR and float(scene.depths.max()) < SYNTHETIC_FAR, spec
        rotation = scene.c2w[:, :3, :3]
        assert torch.allclose(
            rotation @ rotation.transpose(1, 2), torch.eye(3).expand_as(rotation), atol=1e-5
        )
        assert torch.allclose(torch.linalg.det(rotation), torch.ones(len(rotation)), atol=1e-5)
        assert float(scene.images.flatten(1).std(dim=1).min()) > 0.02, spec


def test_make_synthetic_command(tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["make-synthetic", str(out), "--scenes-train", "1", "--scenes-test", "1", "--frames", "20"]
    argv += ["--height", "18", "--width", "32", "--layouts", "dl3dv", "--seed", "5"]
    assert cli_main(argv) == 0
    assert "1 train, 1 test scenes" in capsys.readouterr().out
    assert not (out / "re10k").exists()
    (scene,) = list((out / "dl3dv" / "test").iterdir())
    assert len(list((scene / "nerfstudio" / "images_8").iterdir())) == 20
    record = json.loads((out / "synthetic.json").read_text())
    assert record["config"]["seed"] == 5 and record["config"]["dl3dv_size"] == [18, 32]
    # A second run into the same folder is refused without touching it.
    assert cli_main(argv) == 2
    assert "not empty" in capsys.readouterr().out
