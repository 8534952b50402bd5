"""Scene readers: files written by hand in the ORIGINAL layouts read back exactly, and bad input.

The chunk and transforms.json files here are built directly (torch.save of a list of dicts, JPEG
bytes from PIL, numpy matrix inverses), not with our writers, so a misunderstanding shared by our
writer and reader cannot pass. One round trip through the writers is checked at the end.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zpressor_ns.data import transforms_json
from zpressor_ns.data.readers import LayoutError, detect_layout, open_dataset
from zpressor_ns.data.scene import SceneError

# ../shared beside the checkout (as CI has it), or $ZPRESSOR_SHARED_DIR.
SHARED = Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
FIXTURE = SHARED / "fixtures" / "re10k_layout"
needs_fixture = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"shared fixture {FIXTURE} not present")
GL_TO_CV = np.diag([1.0, -1.0, -1.0, 1.0])


def rotation_y(degrees: float) -> np.ndarray:
    c, s = np.cos(np.radians(degrees)), np.sin(np.radians(degrees))
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def trajectory(num_frames: int, offset: float = 0.0) -> np.ndarray:
    """OpenCV c2w [N, 4, 4]: cameras walking along x and turning slowly."""
    poses = np.tile(np.eye(4), (num_frames, 1, 1))
    for i in range(num_frames):
        poses[i, :3, :3] = rotation_y(3.0 * i + offset)
        poses[i, :3, 3] = [0.25 * i + offset, 0.01 * i, 0.5 * i]
    return poses


def frame_pixels(index: int, height: int, width: int) -> np.ndarray:
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack(
        [(rows * 7 + index * 20) % 256, (cols * 5) % 256, (rows + cols + index) % 256], -1
    ).astype(np.uint8)


def encoded(pixels: np.ndarray, image_format: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decoded(data: bytes) -> torch.Tensor:
    return (
        torch.from_numpy(np.array(Image.open(io.BytesIO(data)).convert("RGB"))).permute(2, 0, 1).float() / 255
    )


def chunk_scene(key: str, c2w: np.ndarray, intrinsics=(0.8, 1.4, 0.5, 0.5), size=(18, 32)) -> dict:
    """One scene dict exactly as pixelSplat's chunks store it."""
    w2c = np.linalg.inv(c2w)
    rows = [[*intrinsics, 0.0, 0.0, *w2c[i, :3, :4].reshape(-1)] for i in range(len(c2w))]
    return {
        "key": key,
        "url": f"https://example.invalid/{key}",
        "timestamps": torch.arange(len(c2w), dtype=torch.int64) * 1000 + 7,
        "cameras": torch.tensor(rows, dtype=torch.float32),
        "images": [byte_tensor(encoded(frame_pixels(i, *size))) for i in range(len(c2w))],
    }


def write_split(split_dir: Path, chunks: dict[str, list[dict]]) -> None:
    split_dir.mkdir(parents=True, exist_ok=True)
    index = {}
    for name, scenes in chunks.items():
        torch.save(scenes, split_dir / name)
        index.update({scene["key"]: name for scene in scenes})
    (split_dir / "index.json").write_text(json.dumps(index))


# --- RE10K chunks -------------------------------------------------------------------------------


def test_chunk_written_by_hand_reads_back_exactly(tmp_path):
    c2w = trajectory(6)
    scene_dict = chunk_scene("aa11", c2w)
    write_split(tmp_path / "test", {"000000.torch": [scene_dict, chunk_scene("bb22", trajectory(4, 1.0))]})

    reader = open_dataset(tmp_path, "test")
    assert reader.layout == "re10k"
    assert reader.keys() == ["aa11", "bb22"]
    scene = reader.scene("aa11")
    assert (scene.num_frames, scene.height, scene.width) == (6, 18, 32)
    assert scene.c2w.dtype == torch.float32
    # float32 storage of w2c limits the round trip to ~1e-6.
    assert np.allclose(scene.c2w.numpy(), c2w, atol=2e-6)
    assert torch.allclose(scene.K[0], torch.tensor([[0.8, 0.0, 0.5], [0.0, 1.4, 0.5], [0.0, 0.0, 1.0]]))
    assert torch.equal(scene.timestamps, torch.arange(6) * 1000 + 7)
    images = scene.load_images([4, 1])
    assert images.shape == (2, 3, 18, 32)
    assert torch.equal(images[0], decoded(scene_dict["images"][4].numpy().tobytes()))
    assert torch.equal(images[1], decoded(scene_dict["images"][1].numpy().tobytes()))


@needs_fixture
def test_official_fixture_matches_truth():
    truth = json.loads((FIXTURE / "truth.json").read_text())
    reader = open_dataset(FIXTURE)
    assert sorted(reader.keys()) == sorted(truth)
    for key, expected in truth.items():
        scene = reader.scene(key)
        assert (scene.num_frames, scene.height, scene.width) == (
            expected["num_frames"],
            expected["height"],
            expected["width"],
        )
        assert np.allclose(scene.c2w.numpy(), np.array(expected["c2w_opencv"]), atol=1e-5)
        assert np.allclose(
            scene.K.numpy(),
            np.broadcast_to(np.array(expected["K_normalised"]), (scene.num_frames, 3, 3)),
            atol=1e-5,
        )
        assert scene.load_images([0]).shape == (1, 3, expected["height"], expected["width"])


@needs_fixture
def test_split_selects_the_folder_and_index_folder_works_directly():
    truth = json.loads((FIXTURE / "truth.json").read_text())
    for split in ("train", "test"):
        expected = sorted(key for key, scene in truth.items() if scene["split"] == split)
        assert open_dataset(FIXTURE, split).keys() == expected
        assert open_dataset(FIXTURE / split).keys() == expected


def test_legacy_torch_format_chunk_and_missing_index_json(tmp_path):
    # Older chunks use torch's pre-zip format (no memory mapping); a folder without index.json is
    # indexed by scanning its chunks.
    split_dir = tmp_path / "train"
    split_dir.mkdir()
    torch.save(
        [chunk_scene("old", trajectory(3))], split_dir / "000000.torch", _use_new_zipfile_serialization=False
    )
    reader = open_dataset(tmp_path, "train")
    assert reader.keys() == ["old"]
    assert reader.scene("old").load_images([2]).shape == (1, 3, 18, 32)


def test_scanning_chunks_leaves_out_a_damaged_one_and_an_empty_split_is_refused(tmp_path, caplog):
    split_dir = tmp_path / "train"
    split_dir.mkdir()
    torch.save([chunk_scene("kept", trajectory(3))], split_dir / "000000.torch")
    (split_dir / "000001.torch").write_bytes(b"PK\x03\x04 truncated download")
    with caplog.at_level(logging.WARNING):
        reader = open_dataset(tmp_path, "train")
    assert reader.keys() == ["kept"] and "000001.torch" in caplog.text

    (split_dir / "000000.torch").unlink()
    with pytest.raises(
        SceneError, match=r"no scenes in .*train: index\.json is empty or no chunk could be read"
    ):
        open_dataset(tmp_path, "train")
    (split_dir / "index.json").write_text("{}")
    with pytest.raises(SceneError, match="no scenes in"):
        open_dataset(tmp_path, "train")


def test_dl3dv_chunks_strip_prefix_and_merge_subsets(tmp_path):
    write_split(tmp_path / "1K" / "train", {"000000.torch": [chunk_scene("dl3dv_abc", trajectory(5))]})
    write_split(tmp_path / "2K" / "train", {"000000.torch": [chunk_scene("dl3dv_def", trajectory(5))]})
    assert detect_layout(tmp_path) == "dl3dv-chunks"
    reader = open_dataset(tmp_path, "train")
    assert reader.keys() == ["abc", "def"]
    assert reader.scene("def").key == "def"


def test_reader_keeps_at_most_two_chunks_and_pickles_small(tmp_path):
    chunks = {f"{i:06d}.torch": [chunk_scene(f"s{i}", trajectory(3))] for i in range(3)}
    write_split(tmp_path / "train", chunks)
    reader = open_dataset(tmp_path, "train")
    for key in ("s0", "s1", "s2"):
        reader.scene(key)
    # s2's chunk is cached, s0's was evicted: deleting both files only breaks s0.
    (tmp_path / "train" / "000000.torch").unlink()
    (tmp_path / "train" / "000002.torch").unlink()
    assert reader.scene("s2").num_frames == 3
    with pytest.raises(SceneError, match="000000.torch"):
        reader.scene("s0")
    assert len(pickle.dumps(reader)) < 5_000  # the copy sent to a worker carries no chunk data


def test_index_pointing_at_missing_chunk_names_index_and_chunk(tmp_path):
    write_split(tmp_path / "test", {"000000.torch": [chunk_scene("aa", trajectory(3))]})
    (tmp_path / "test" / "index.json").write_text(json.dumps({"aa": "000000.torch", "zz": "000009.torch"}))
    reader = open_dataset(tmp_path, "test")
    with pytest.raises(SceneError, match=r"index\.json names chunk 000009\.torch.*does not exist") as info:
        reader.scene("zz")
    assert "'zz'" in str(info.value) and "regenerate index.json" in str(info.value)


def test_corrupt_chunk_file_is_named(tmp_path):
    write_split(tmp_path / "test", {"000000.torch": [chunk_scene("aa", trajectory(3))]})
    (tmp_path / "test" / "000000.torch").write_bytes(b"not a torch file at all")
    with pytest.raises(SceneError, match=r"000000\.torch cannot be read.*re-download"):
        open_dataset(tmp_path, "test").scene("aa")


def test_nan_pose_message_names_scene(tmp_path):
    scene_dict = chunk_scene("nanscene", trajectory(4))
    scene_dict["cameras"][2, 9] = float("nan")
    write_split(tmp_path / "test", {"000000.torch": [scene_dict]})
    with pytest.raises(SceneError, match=r"'nanscene'.*frames \[2\].*NaN"):
        open_dataset(tmp_path, "test").scene("nanscene")


def test_corrupt_jpeg_names_scene_and_frame(tmp_path):
    scene_dict = chunk_scene("jpgscene", trajectory(4))
    good = scene_dict["images"][3].numpy().tobytes()
    scene_dict["images"][3] = byte_tensor(good[: len(good) // 3])  # truncated download
    write_split(tmp_path / "test", {"000000.torch": [scene_dict]})
    scene = open_dataset(tmp_path, "test").scene("jpgscene")
    assert scene.load_images([0, 1]).shape[0] == 2  # the intact frames still load
    with pytest.raises(SceneError, match=r"'jpgscene' frame 3.*(corrupt|not a readable)"):
        scene.load_images([3])


def test_empty_image_bytes_are_reported(tmp_path):
    scene_dict = chunk_scene("empty", trajectory(3))
    scene_dict["images"][0] = torch.zeros(0, dtype=torch.uint8)
    write_split(tmp_path / "test", {"000000.torch": [scene_dict]})
    with pytest.raises(SceneError, match=r"'empty'.*frame 0.*0 bytes"):
        open_dataset(tmp_path, "test").scene("empty")


def test_scene_with_no_frames_is_refused(tmp_path):
    scene_dict = chunk_scene("none", trajectory(2))
    scene_dict.update(cameras=torch.zeros(0, 18), images=[], timestamps=torch.zeros(0, dtype=torch.int64))
    write_split(tmp_path / "test", {"000000.torch": [scene_dict]})
    with pytest.raises(SceneError, match="'none'.*no frames"):
        open_dataset(tmp_path, "test").scene("none")


GARBAGE_SCENE_ENTRIES = {
    "cameras missing": lambda s: s.pop("cameras"),
    "cameras as a list": lambda s: s.update(cameras=s["cameras"].tolist()),
    "camera rows of 17": lambda s: s.update(cameras=s["cameras"][:, :17]),
    "camera rows as integers": lambda s: s.update(cameras=s["cameras"].long()),
    "camera rows as booleans": lambda s: s.update(cameras=s["cameras"] > 0),
    "images missing": lambda s: s.pop("images"),
    "images as a string": lambda s: s.update(images="abc"),
    "images as numbers": lambda s: s.update(images=list(range(len(s["images"])))),
    "images as None": lambda s: s.update(images=[None] * len(s["images"])),
    "decoded pixels": lambda s: s.update(images=[torch.zeros(18, 32, 3, dtype=torch.uint8)] * 4),
    "timestamps as a string": lambda s: s.update(timestamps="0123"),
    "timestamps as booleans": lambda s: s.update(timestamps=torch.ones(4, dtype=torch.bool)),
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE_SCENE_ENTRIES))
def test_garbage_scene_entries_are_scene_errors_naming_the_scene(tmp_path, garbage):
    scene_dict = chunk_scene("junk", trajectory(4))
    GARBAGE_SCENE_ENTRIES[garbage](scene_dict)
    write_split(tmp_path / "test", {"000000.torch": [scene_dict, chunk_scene("fine", trajectory(4))]})
    reader = open_dataset(tmp_path, "test")
    with pytest.raises(SceneError, match=r"'junk'.*000000\.torch"):
        reader.scene("junk").load_images([0, 1, 2, 3])
    assert reader.scene("fine").load_images([0]).shape == (1, 3, 18, 32)


def test_damaged_chunk_files_only_ever_raise_scene_errors(tmp_path):
    # Fuzzing: random byte flips and truncations of a chunk (torch's unpickler raised KeyError,
    # IndexError and TypeError on some of them). Every outcome is a readable scene or a SceneError.
    write_split(tmp_path / "test", {"000000.torch": [chunk_scene("s", trajectory(3), size=(6, 8))]})
    path = tmp_path / "test" / "000000.torch"
    intact = path.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = {"read": 0, "refused": 0}
    for trial in range(240):
        damaged = bytearray(
            intact[: len(intact) - int(rng.integers(1, len(intact)))] if trial % 8 == 0 else intact
        )
        for position in rng.integers(0, len(damaged), size=int(rng.integers(1, 20))):
            damaged[position] = int(rng.integers(256))
        path.write_bytes(bytes(damaged))
        try:
            scene = open_dataset(tmp_path, "test").scene("s")
            scene.load_images(range(scene.num_frames))
            outcomes["read"] += 1
        except SceneError as error:
            assert "000000.torch" in str(error) or "'s'" in str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 100 and outcomes["read"] > 10


# --- DL3DV raw and Nerfstudio transforms.json ---------------------------------------------------


def write_transforms_scene(
    scene_dir: Path,
    c2w_cv: np.ndarray,
    *,
    image_dir: str = "images_8",
    numbers: list[int] | None = None,
    full_size=(72, 128),
    stored_size=(9, 16),
    extra: dict | None = None,
    frame_extra: list[dict] | None = None,
) -> Path:
    """A DL3DV/Nerfstudio scene written by hand: OpenGL c2w, pixel intrinsics of the full-size frames."""
    numbers = numbers or list(range(1, len(c2w_cv) + 1))
    (scene_dir / image_dir).mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (number, pose_cv) in enumerate(zip(numbers, c2w_cv, strict=True)):
        name = f"frame_{number:05d}.png"
        (scene_dir / image_dir / name).write_bytes(encoded(frame_pixels(i, *stored_size), "PNG"))
        frame = {"file_path": f"images/{name}", "transform_matrix": (pose_cv @ GL_TO_CV).tolist()}
        frame.update((frame_extra or [{}] * len(numbers))[i])
        frames.append(frame)
    h, w = full_size
    meta = {
        "w": w,
        "h": h,
        "fl_x": 0.9 * w,
        "fl_y": 0.95 * w,
        "cx": 0.48 * w,
        "cy": 0.52 * h,
        "frames": frames,
    }
    meta.update(extra or {})
    (scene_dir / "transforms.json").write_text(json.dumps(meta))
    return scene_dir / "transforms.json"


def test_dl3dv_raw_scene_reads_opencv_cameras_and_normalised_intrinsics(tmp_path):
    c2w = trajectory(4)
    # Frames listed out of numeric order: json order is kept, timestamps come from the names.
    write_transforms_scene(tmp_path / "hash1" / "nerfstudio", c2w, numbers=[5, 2, 9, 3])
    assert detect_layout(tmp_path) == "dl3dv"
    reader = open_dataset(tmp_path)
    scene = reader.scene("hash1")
    assert np.allclose(scene.c2w.numpy(), c2w, atol=1e-6)
    # fl_x / w, fl_y / h with the json's full-resolution w, h (not the 16x9 images on disk).
    expected_K = np.array([[0.9, 0.0, 0.48], [0.0, 0.95 * 128 / 72, 0.52], [0.0, 0.0, 1.0]])
    assert np.allclose(scene.K[0].numpy(), expected_K, atol=1e-6)
    assert scene.timestamps.tolist() == [5, 2, 9, 3]
    assert (scene.height, scene.width) == (9, 16)
    png = (tmp_path / "hash1" / "nerfstudio" / "images_8" / "frame_00009.png").read_bytes()
    assert torch.equal(scene.load_images([2])[0], decoded(png))


def test_dl3dv_all_480p_nesting_and_images_4(tmp_path):
    write_transforms_scene(tmp_path / "1K" / "aaa", trajectory(3), image_dir="images_4")
    write_transforms_scene(tmp_path / "2K" / "bbb", trajectory(3), image_dir="images_4")
    reader = open_dataset(tmp_path, image_dir="images_4")
    assert reader.layout == "dl3dv" and reader.keys() == ["aaa", "bbb"]
    assert reader.scene("bbb").num_frames == 3
    with pytest.raises(SceneError, match="images_8 does not exist"):
        open_dataset(tmp_path).scene("aaa")


def test_dl3dv_split_folders(tmp_path):
    write_transforms_scene(tmp_path / "train" / "t1" / "nerfstudio", trajectory(3))
    write_transforms_scene(tmp_path / "test" / "e1" / "nerfstudio", trajectory(3))
    assert open_dataset(tmp_path).keys() == ["e1", "t1"]
    assert open_dataset(tmp_path, "test").keys() == ["e1"]


def test_nerfstudio_single_scene_per_frame_intrinsics_and_distortion_warning(tmp_path, caplog):
    scene_dir = tmp_path / "my_capture"
    write_transforms_scene(
        scene_dir,
        trajectory(3),
        image_dir="images",
        stored_size=(72, 128),
        extra={"camera_model": "OPENCV", "k1": 0.01},
        frame_extra=[{}, {"fl_x": 64.0}, {}],
    )
    assert detect_layout(scene_dir) == "nerfstudio"
    reader = open_dataset(scene_dir)
    assert reader.keys() == ["my_capture"]
    transforms_json._DISTORTION_REPORTED.clear()
    with caplog.at_level(logging.WARNING):
        scene = reader.scene("my_capture")
        reader.scene("my_capture")
        # A run opens one dataset with several readers (display, training, evaluation): still said once.
        open_dataset(scene_dir).scene("my_capture")
    assert scene.K[1, 0, 0].item() == pytest.approx(0.5) and scene.K[0, 0, 0].item() == pytest.approx(0.9)
    assert sum("distortion" in r.message for r in caplog.records) == 1


def test_nerfstudio_folder_of_scenes_and_transforms_file_path(tmp_path):
    for name in ("b", "a"):
        write_transforms_scene(tmp_path / name, trajectory(2), image_dir="images", stored_size=(72, 128))
    assert open_dataset(tmp_path).keys() == ["a", "b"]
    assert open_dataset(tmp_path / "a" / "transforms.json").scene("a").num_frames == 2


def test_scaled_rotation_repaired_and_shear_refused_in_transforms(tmp_path):
    scaled = trajectory(3)
    scaled[:, :3, :3] *= 0.21
    write_transforms_scene(tmp_path / "scaled" / "nerfstudio", scaled)
    scene = open_dataset(tmp_path).scene("scaled")
    assert np.allclose(scene.c2w.numpy(), trajectory(3), atol=1e-6)

    sheared = trajectory(3)
    sheared[1, 0, 1] += 0.4
    write_transforms_scene(tmp_path / "sheared" / "nerfstudio", sheared)
    with pytest.raises(SceneError, match="'sheared'.*shear"):
        open_dataset(tmp_path).scene("sheared")


def test_missing_transforms_json_is_refused(tmp_path):
    json_path = write_transforms_scene(tmp_path / "gone" / "nerfstudio", trajectory(3))
    reader = open_dataset(tmp_path)
    json_path.unlink()
    with pytest.raises(SceneError, match=r"'gone'.*transforms\.json is missing"):
        reader.scene("gone")


def test_frames_with_missing_images_are_skipped_with_one_warning(tmp_path, caplog):
    # The instant-ngp fox capture lists 67 frames and ships 50 images: Nerfstudio skips the rest.
    c2w = trajectory(4)
    write_transforms_scene(tmp_path / "holes" / "nerfstudio", c2w)
    images = tmp_path / "holes" / "nerfstudio" / "images_8"
    kept_png = (images / "frame_00003.png").read_bytes()
    (images / "frame_00002.png").unlink()
    reader = open_dataset(tmp_path)
    with caplog.at_level(logging.WARNING):
        scene = reader.scene("holes")
        reader._cache.clear()
        reader.scene("holes")
    assert scene.num_frames == 3 and scene.timestamps.tolist() == [1, 3, 4]
    assert np.allclose(scene.c2w.numpy(), c2w[[0, 2, 3]], atol=1e-6)
    assert torch.equal(scene.load_images([1])[0], decoded(kept_png))
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        len(warnings) == 1 and "'holes'" in warnings[0] and "1 of 4 frame images are missing" in warnings[0]
    )
    assert "frame_00002" in warnings[0]

    for png in images.iterdir():
        png.unlink()
    with pytest.raises(SceneError, match=r"'holes'.*none of the 4 frame images exists"):
        open_dataset(tmp_path).scene("holes")


def test_zero_byte_image_and_wrong_aspect(tmp_path):
    write_transforms_scene(tmp_path / "zero" / "nerfstudio", trajectory(2))
    (tmp_path / "zero" / "nerfstudio" / "images_8" / "frame_00001.png").write_bytes(b"")
    with pytest.raises(SceneError, match=r"'zero'.*0 bytes"):
        open_dataset(tmp_path).scene("zero")

    write_transforms_scene(tmp_path / "aspect" / "nerfstudio", trajectory(2), stored_size=(16, 16))
    with pytest.raises(SceneError, match=r"'aspect'.*aspect ratio"):
        open_dataset(tmp_path).scene("aspect")


def test_per_frame_size_of_another_aspect_is_refused_naming_the_frame(tmp_path):
    # 9x16 images; frame 1 claims to be a square 128x128 frame, so its normalised intrinsics are wrong.
    write_transforms_scene(
        tmp_path / "mixed" / "nerfstudio", trajectory(3), frame_extra=[{}, {"w": 128, "h": 128}, {}]
    )
    with pytest.raises(SceneError, match=r"'mixed'.*frame 1.*this frame's w x h.*128x128.*aspect ratio"):
        open_dataset(tmp_path).scene("mixed")

    # The same aspect at another size is fine, and normalises that frame's intrinsics by its own w, h.
    write_transforms_scene(
        tmp_path / "scaled" / "nerfstudio",
        trajectory(3),
        frame_extra=[{}, {"w": 64, "h": 36, "fl_x": 32.0, "fl_y": 32.0, "cx": 32.0, "cy": 18.0}, {}],
    )
    K = open_dataset(tmp_path).scene("scaled").K
    assert torch.allclose(K[1], torch.tensor([[0.5, 0.0, 0.5], [0.0, 32 / 36, 0.5], [0.0, 0.0, 1.0]]))


GARBAGE_TRANSFORMS = {
    "top level is a list": lambda meta: [meta],
    "frames is a dict": lambda meta: {**meta, "frames": {"0": meta["frames"][0]}},
    "frame is a string": lambda meta: {**meta, "frames": ["images/frame_00001.png", *meta["frames"][1:]]},
    "file_path is a number": lambda meta: {**meta, "frames": [{**meta["frames"][0], "file_path": 7}]},
    "matrix of strings": lambda meta: {
        **meta,
        "frames": [{**meta["frames"][0], "transform_matrix": [["a"] * 4] * 4}, *meta["frames"][1:]],
    },
    "ragged matrix": lambda meta: {
        **meta,
        "frames": [{**meta["frames"][0], "transform_matrix": [[1, 0, 0], [0, 1], [0, 0, 1, 0]]}],
    },
    "matrix missing": lambda meta: {**meta, "frames": [{"file_path": meta["frames"][0]["file_path"]}]},
    "w as a string": lambda meta: {**meta, "w": "128"},
    "focal length as a list": lambda meta: {**meta, "fl_x": [100.0]},
    "NaN focal length": lambda meta: {**meta, "fl_x": float("nan")},
    "distortion as a string": lambda meta: {**meta, "k1": "0.1"},
    "zero height": lambda meta: {**meta, "h": 0},
}


@pytest.mark.parametrize("garbage", sorted(GARBAGE_TRANSFORMS))
def test_garbage_transforms_json_is_a_scene_error_naming_the_file(tmp_path, garbage):
    json_path = write_transforms_scene(tmp_path / "junk" / "nerfstudio", trajectory(3))
    json_path.write_text(json.dumps(GARBAGE_TRANSFORMS[garbage](json.loads(json_path.read_text()))))
    with pytest.raises(SceneError, match=r"'junk'.*transforms\.json"):
        open_dataset(tmp_path, layout="dl3dv").scene("junk")


def test_nerfstudio_captures_in_train_and_test_folders(tmp_path):
    # docs/DATA.md: a folder of captures split into train/ and test/ (ns-process-data output: images/).
    for split, names in (("train", ["kitchen", "garden"]), ("test", ["hall"])):
        for name in names:
            write_transforms_scene(
                tmp_path / split / name, trajectory(3), image_dir="images", stored_size=(72, 128)
            )
    assert detect_layout(tmp_path) == "nerfstudio"
    assert detect_layout(tmp_path, "train") == "nerfstudio"
    assert open_dataset(tmp_path, "train", layout="nerfstudio").keys() == ["garden", "kitchen"]
    assert open_dataset(tmp_path, "test").keys() == ["hall"]
    assert open_dataset(tmp_path, layout="nerfstudio").keys() == ["garden", "hall", "kitchen"]
    assert open_dataset(tmp_path, "test", layout="nerfstudio").scene("hall").num_frames == 3
    (tmp_path / "test" / "hall" / "transforms.json").unlink()
    with pytest.raises(LayoutError, match=r"no nerfstudio scenes found in split 'test'"):
        open_dataset(tmp_path, "test", layout="nerfstudio")


def test_fisheye_is_refused(tmp_path):
    write_transforms_scene(
        tmp_path / "fish" / "nerfstudio", trajectory(2), extra={"camera_model": "OPENCV_FISHEYE"}
    )
    with pytest.raises(SceneError, match="'fish'.*not a pinhole"):
        open_dataset(tmp_path).scene("fish")


def test_an_empty_split_is_named(tmp_path):
    write_split(tmp_path / "test", {"000000.torch": [chunk_scene("t", trajectory(3))]})
    (tmp_path / "train").mkdir()
    with pytest.raises(LayoutError, match=r"split 'train' of .* holds no scenes.*re10k layout otherwise"):
        open_dataset(tmp_path, "train")


def test_unrecognised_folder_lists_what_was_looked_for(tmp_path):
    (tmp_path / "random").mkdir()
    with pytest.raises(
        LayoutError, match=r"no dataset layout recognised(.|\n)*index\.json(.|\n)*transforms\.json"
    ):
        open_dataset(tmp_path)


# --- Round trip through our writers --------------------------------------------------------------


def test_round_trip_through_writers(tmp_path):
    writers = pytest.importorskip("zpressor_ns.data.writers")
    c2w = torch.from_numpy(trajectory(5)).float()
    K = torch.tensor([[0.9, 0.0, 0.5], [0.0, 1.6, 0.5], [0.0, 0.0, 1.0]]).expand(5, 3, 3)
    images = torch.stack([torch.from_numpy(frame_pixels(i, 9, 16)) for i in range(5)])
    writers.write_re10k_chunks(
        tmp_path / "chunks", "test", [writers.ChunkScene("k1", images, c2w, K, torch.arange(5))]
    )
    scene = open_dataset(tmp_path / "chunks", "test").scene("k1")
    assert torch.allclose(scene.c2w, c2w, atol=2e-6) and torch.allclose(scene.K, K)

    writers.write_dl3dv_scene(tmp_path / "dl3dv", "k2", images, c2w, K)
    scene = open_dataset(tmp_path / "dl3dv").scene("k2")
    assert torch.allclose(scene.c2w, c2w, atol=2e-6) and torch.allclose(scene.K, K, atol=1e-6)
    assert torch.equal((scene.load_images([3])[0] * 255).round().byte().permute(1, 2, 0), images[3])
