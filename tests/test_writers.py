"""The writers must produce exactly the layouts the original code reads (checked with plain torch/json/PIL)."""

from __future__ import annotations

import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from zpressor_ns.data.writers import (
    ChunkScene,
    DatasetWriteError,
    write_dl3dv_scene,
    write_re10k_chunks,
)


def _rotation_z(angle: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _poses(num_frames: int) -> torch.Tensor:
    """OpenCV c2w with distinct rotations and translations."""
    c2w = torch.eye(4).repeat(num_frames, 1, 1)
    for i in range(num_frames):
        c2w[i, :3, :3] = _rotation_z(0.3 * i)
        c2w[i, :3, 3] = torch.tensor([0.5 * i, -0.25 * i, 1.0 + i])
    return c2w


def _intrinsics(num_frames: int) -> torch.Tensor:
    K = torch.tensor([[0.9, 0.0, 0.48], [0.0, 1.6, 0.52], [0.0, 0.0, 1.0]])
    return K.repeat(num_frames, 1, 1)


def _gradient_images(num_frames: int, height: int, width: int) -> torch.Tensor:
    """uint8 [N,H,W,3] smooth images (JPEG keeps them within a few levels)."""
    rows = torch.linspace(0, 1, height)[:, None].expand(height, width)
    cols = torch.linspace(0, 1, width)[None, :].expand(height, width)
    frames = [torch.stack([rows, cols, (rows * cols + 0.1 * i) / 1.3], dim=-1) for i in range(num_frames)]
    return (torch.stack(frames) * 255).round().to(torch.uint8)


def _scene(key: str, num_frames: int = 3, height: int = 18, width: int = 32) -> ChunkScene:
    return ChunkScene(
        key=key,
        images=_gradient_images(num_frames, height, width),
        c2w=_poses(num_frames),
        K=_intrinsics(num_frames),
        timestamps=torch.arange(num_frames, dtype=torch.int64) * 33_333,
        url=f"synthetic://{key}",
    )


def test_chunk_has_the_original_structure_and_values(tmp_path):
    scenes = [_scene("a1"), _scene("b2"), _scene("c3")]
    index = write_re10k_chunks(tmp_path, "train", scenes, scenes_per_chunk=2)

    split_dir = tmp_path / "train"
    assert sorted(p.name for p in split_dir.glob("*.torch")) == ["000000.torch", "000001.torch"]
    on_disk = json.loads((split_dir / "index.json").read_text())
    assert on_disk == index == {"a1": "000000.torch", "b2": "000000.torch", "c3": "000001.torch"}

    chunk = torch.load(split_dir / "000000.torch", weights_only=True)
    assert isinstance(chunk, list) and [entry["key"] for entry in chunk] == ["a1", "b2"]
    entry = chunk[0]
    assert set(entry) == {"key", "url", "timestamps", "cameras", "images"}
    assert entry["url"] == "synthetic://a1"
    assert entry["timestamps"].dtype == torch.int64 and entry["timestamps"].tolist() == [0, 33_333, 66_666]
    assert entry["cameras"].dtype == torch.float32 and entry["cameras"].shape == (3, 18)

    cameras = entry["cameras"].double()
    # Intrinsics: fx/W, fy/H, cx/W, cy/H, then two zeros.
    assert torch.allclose(
        cameras[:, :6], torch.tensor([0.9, 1.6, 0.48, 0.52, 0.0, 0.0]).double().expand(3, 6)
    )
    # Extrinsics: row-major OpenCV world-to-camera, i.e. the inverse of the c2w we passed in.
    w2c = torch.eye(4, dtype=torch.float64).repeat(3, 1, 1)
    w2c[:, :3, :] = cameras[:, 6:].reshape(3, 3, 4)
    assert torch.allclose(
        w2c @ _poses(3).double(), torch.eye(4, dtype=torch.float64).expand(3, 4, 4), atol=1e-6
    )
    # A world point in front of camera 1 maps to camera coordinates by R^T (p - t).
    point = torch.tensor([0.5, -0.25, 5.0, 1.0], dtype=torch.float64)
    assert torch.allclose((w2c[1] @ point)[:3], torch.tensor([0.0, 0.0, 3.0], dtype=torch.float64), atol=1e-6)


def test_chunk_images_are_decodable_jpeg_of_the_right_size(tmp_path):
    scene = _scene("k", num_frames=2, height=18, width=32)
    write_re10k_chunks(tmp_path, "test", [scene])
    entry = torch.load(tmp_path / "test" / "000000.torch", weights_only=True)[0]
    assert len(entry["images"]) == 2
    for stored, original in zip(entry["images"], scene.images, strict=True):
        assert stored.dtype == torch.uint8 and stored.ndim == 1
        image = Image.open(io.BytesIO(stored.numpy().tobytes()))
        assert image.format == "JPEG" and image.size == (32, 18) and image.mode == "RGB"
        decoded = torch.from_numpy(np.array(image)).int()
        assert (decoded - original.int()).abs().float().mean() < 3.0  # quality 95 on a smooth image


def test_float_images_are_written_as_chw_in_unit_range(tmp_path):
    scene = _scene("f", num_frames=1)
    as_float = scene.images.permute(0, 3, 1, 2).float() / 255.0
    write_re10k_chunks(tmp_path, "train", [ChunkScene("f", as_float, scene.c2w, scene.K, scene.timestamps)])
    stored = torch.load(tmp_path / "train" / "000000.torch", weights_only=True)[0]["images"][0]
    assert Image.open(io.BytesIO(stored.numpy().tobytes())).size == (32, 18)


def test_writing_refuses_duplicates_mismatched_shapes_and_a_used_folder(tmp_path, without_shape_checks):
    with pytest.raises(DatasetWriteError, match="twice"):
        write_re10k_chunks(tmp_path / "dup", "train", [_scene("same"), _scene("same")])
    bad = _scene("bad")
    with without_shape_checks(), pytest.raises(DatasetWriteError, match="c2w must be"):
        write_re10k_chunks(
            tmp_path / "shape", "train", [ChunkScene("bad", bad.images, bad.c2w[:2], bad.K, bad.timestamps)]
        )
    write_re10k_chunks(tmp_path / "used", "train", [_scene("x")])
    with pytest.raises(DatasetWriteError, match="empty folder"):
        write_re10k_chunks(tmp_path / "used", "train", [_scene("y")])


def test_dl3dv_scene_layout_and_transforms(tmp_path):
    num_frames, height, width = 3, 18, 32
    images = _gradient_images(num_frames, height, width)
    c2w = _poses(num_frames)
    K = _intrinsics(num_frames)
    scene_dir = write_dl3dv_scene(tmp_path, "abc123", images, c2w, K, image_dir="images_8")

    assert scene_dir == tmp_path / "abc123" / "nerfstudio"
    names = sorted(p.name for p in (scene_dir / "images_8").iterdir())
    assert names == ["frame_00001.png", "frame_00002.png", "frame_00003.png"]
    png = Image.open(scene_dir / "images_8" / "frame_00002.png")
    assert png.format == "PNG" and png.size == (width, height)
    assert torch.equal(torch.from_numpy(np.array(png)), images[1])  # PNG is lossless

    meta = json.loads((scene_dir / "transforms.json").read_text())
    # Full-resolution intrinsics: images_8 frames are 1/8 of the size the pixel intrinsics refer to.
    assert (meta["w"], meta["h"]) == (8 * width, 8 * height)
    assert meta["fl_x"] == pytest.approx(0.9 * 8 * width) and meta["fl_y"] == pytest.approx(1.6 * 8 * height)
    assert meta["cx"] == pytest.approx(0.48 * 8 * width) and meta["cy"] == pytest.approx(0.52 * 8 * height)
    assert [f["file_path"] for f in meta["frames"]] == [f"images/frame_{i:05d}.png" for i in (1, 2, 3)]

    gl = torch.tensor([f["transform_matrix"] for f in meta["frames"]], dtype=torch.float64)
    # OpenGL c2w: same position, camera y and z axes flipped; flipping back gives the OpenCV c2w.
    assert torch.allclose(gl[:, :3, 3], c2w[:, :3, 3].double(), atol=1e-6)
    assert torch.allclose(gl[:, :3, 1], -c2w[:, :3, 1].double(), atol=1e-6)
    assert torch.allclose(gl[:, :3, 2], -c2w[:, :3, 2].double(), atol=1e-6)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    assert torch.allclose(gl @ flip, c2w.double(), atol=1e-6)


def test_dl3dv_images_4_and_explicit_full_size(tmp_path):
    images = _gradient_images(2, 18, 32)
    scene_dir = write_dl3dv_scene(tmp_path, "s", images, _poses(2), _intrinsics(2), image_dir="images_4")
    meta = json.loads((scene_dir / "transforms.json").read_text())
    assert (meta["w"], meta["h"]) == (128, 72) and (scene_dir / "images_4" / "frame_00001.png").exists()

    scene_dir = write_dl3dv_scene(tmp_path, "t", images, _poses(2), _intrinsics(2), full_size=(2160, 3840))
    meta = json.loads((scene_dir / "transforms.json").read_text())
    assert (meta["w"], meta["h"]) == (3840, 2160) and meta["fl_x"] == pytest.approx(0.9 * 3840)


def test_dl3dv_refuses_per_frame_intrinsics_and_bad_folder_names(tmp_path):
    K = _intrinsics(2)
    K[1, 0, 0] = 0.5
    with pytest.raises(DatasetWriteError, match="different intrinsics"):
        write_dl3dv_scene(tmp_path, "s", _gradient_images(2, 18, 32), _poses(2), K)
    with pytest.raises(DatasetWriteError, match="images_N"):
        write_dl3dv_scene(
            tmp_path, "s", _gradient_images(2, 18, 32), _poses(2), _intrinsics(2), image_dir="frames"
        )
