"""Write scenes to disk in the layouts the original code reads, so our readers meet real formats.

RE10K/ACID chunks (pixelSplat's layout, read by pixelSplat, MVSplat, DepthSplat and ZPressor)::

    root/<split>/000000.torch   torch.save(list of scene dicts)
    root/<split>/index.json     {scene key: "000000.torch"}   (file names relative to the split folder)

    scene dict = {
        "key": str, "url": str,
        "timestamps": int64 [N],
        "cameras": float32 [N, 18] = fx/W, fy/H, cx/W, cy/H, 0, 0, then the OpenCV world-to-camera
                   matrix's first three rows, row-major,
        "images": list of N uint8 1-D tensors, each the bytes of one JPEG file,
    }

Raw DL3DV (the DL3DV-Benchmark layout that ``convert_dl3dv_test.py`` reads)::

    root/<key>/nerfstudio/transforms.json
    root/<key>/nerfstudio/images_8/frame_00001.png, frame_00002.png, ...   (or images_4/)

``transforms.json`` follows Nerfstudio/Blender conventions as DL3DV ships it:

- ``w, h, fl_x, fl_y, cx, cy``: pixel intrinsics of the FULL-resolution frames, which DL3DV does not
  ship in the folders we write: ``images_N`` holds frames N times smaller, so ``w = N * width`` of the
  written PNGs. Readers normalise by ``w`` and ``h`` (the aspect ratio is the same), which is what the
  original converter does.
- ``camera_model``: ``"PINHOLE"`` (no distortion coefficients are written).
- ``frames[i].file_path`` = ``"images/frame_{i+1:05d}.png"``: like DL3DV, the path names the
  full-resolution folder. The frame in ``images_N`` has the same file name; the original converter
  matches frames to files by the integer suffix of the name (which is also the timestamp) and
  Nerfstudio's dataparser swaps ``images`` for ``images_N`` when downscaling, so both find it.
- ``frames[i].transform_matrix``: OpenGL camera-to-world (x right, y up, z backward) =
  OpenCV c2w @ diag(1, -1, -1, 1).
- Frames are listed in capture order, numbered from 1.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from jaxtyping import Float, Int64, UInt8
from PIL import Image
from torch import Tensor

from zpressor_ns.cameras import check_intrinsics, invert_rigid, normalised_to_pixel_K, opencv_to_opengl_c2w

JPEG_QUALITY = 95  # with 4:4:4 chroma; see encode_image
DEFAULT_SCENES_PER_CHUNK = 4  # small on purpose: synthetic datasets then span several chunks, as real ones do


class DatasetWriteError(ValueError):
    """Scene data that cannot be written in the requested layout."""


@dataclass(frozen=True)
class ChunkScene:
    """One scene to write into RE10K-style chunks.

    ``images`` is either uint8 [frame, height, width, 3] (the PIL/numpy layout) or floating point
    [frame, 3, height, width] in [0, 1] (the project's layout); the dtype tells which.
    """

    key: str
    images: UInt8[Tensor, "frame height width 3"] | Float[Tensor, "frame 3 height width"]
    c2w: Float[Tensor, "frame 4 4"]  # OpenCV camera-to-world
    K: Float[Tensor, "frame 3 3"]  # normalised intrinsics
    timestamps: Int64[Tensor, " frame"]
    url: str = ""


def images_to_uint8_hwc(images: Tensor, where: str) -> UInt8[Tensor, "frame height width 3"]:
    """Bring images to uint8 [frame, height, width, 3], rounding floats in [0, 1] to the nearest level."""
    if images.dtype == torch.uint8:
        if images.ndim != 4 or images.shape[-1] != 3:
            raise DatasetWriteError(
                f"{where}: uint8 images must be [frame, height, width, 3], got {tuple(images.shape)}"
            )
        return images.contiguous()
    if not images.is_floating_point():
        raise DatasetWriteError(f"{where}: images must be uint8 or floating point, got {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise DatasetWriteError(
            f"{where}: floating-point images must be [frame, 3, height, width] in [0, 1], got {tuple(images.shape)}"
        )
    levels = (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return levels.permute(0, 2, 3, 1).contiguous()


def encode_image(image: UInt8[Tensor, "height width 3"], image_format: str) -> UInt8[Tensor, " nbytes"]:
    """Encode one image (``"JPEG"`` at quality 95, or ``"PNG"``) into a 1-D uint8 tensor of file bytes."""
    buffer = io.BytesIO()
    # Full-resolution chroma (4:4:4) keeps the fine colour texture that matching relies on.
    options = {"quality": JPEG_QUALITY, "subsampling": 0} if image_format == "JPEG" else {}
    Image.fromarray(image.cpu().numpy()).save(buffer, format=image_format, **options)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def camera_rows(c2w: Float[Tensor, "frame 4 4"], K: Float[Tensor, "frame 3 3"]) -> Float[Tensor, "frame 18"]:
    """The chunk format's 18 floats per frame: normalised fx fy cx cy, two zeros, OpenCV w2c rows 0-2."""
    w2c = invert_rigid(c2w.double())
    K = K.double()
    rows = torch.cat(
        [
            torch.stack([K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]], dim=-1),
            torch.zeros(len(K), 2, dtype=torch.float64),
            w2c[:, :3, :4].reshape(-1, 12),
        ],
        dim=-1,
    )
    return rows.float()


def _check_scene_arrays(key: str, num_frames: int, c2w: Tensor, K: Tensor, where: str) -> None:
    if not key:
        raise DatasetWriteError(f"{where}: scene key is empty")
    if c2w.shape != (num_frames, 4, 4):
        raise DatasetWriteError(
            f"{where}: c2w must be [{num_frames}, 4, 4] (one per image), got {tuple(c2w.shape)}"
        )
    if K.shape != (num_frames, 3, 3):
        raise DatasetWriteError(
            f"{where}: K must be [{num_frames}, 3, 3] (one per image), got {tuple(K.shape)}"
        )
    if not torch.isfinite(c2w).all():
        raise DatasetWriteError(f"{where}: c2w has NaN or infinite entries")
    check_intrinsics(K, where)


def _chunk_entry(scene: ChunkScene) -> dict:
    where = f"scene {scene.key!r}"
    images = images_to_uint8_hwc(scene.images, where)
    num_frames = len(images)
    _check_scene_arrays(scene.key, num_frames, scene.c2w, scene.K, where)
    if scene.timestamps.shape != (num_frames,):
        raise DatasetWriteError(
            f"{where}: timestamps must be [{num_frames}] (one per image), got {tuple(scene.timestamps.shape)}"
        )
    return {
        "key": scene.key,
        "url": scene.url,
        "timestamps": scene.timestamps.to(torch.int64).cpu().clone(),
        "cameras": camera_rows(scene.c2w.cpu(), scene.K.cpu()),
        "images": [encode_image(image, "JPEG") for image in images],
    }


def write_re10k_chunks(
    root: Path, split: str, scenes: Iterable[ChunkScene], scenes_per_chunk: int = DEFAULT_SCENES_PER_CHUNK
) -> dict[str, str]:
    """Write ``scenes`` as ``root/split/NNNNNN.torch`` chunks plus ``index.json``; returns the index.

    Scenes are consumed one at a time and a chunk is saved as soon as it is full, so memory holds at
    most one chunk. The split folder must not already hold a dataset (stale chunks would mix in).
    """
    if scenes_per_chunk < 1:
        raise DatasetWriteError(f"scenes_per_chunk must be at least 1, got {scenes_per_chunk}")
    split_dir = Path(root) / split
    if (split_dir / "index.json").exists() or any(split_dir.glob("*.torch")):
        raise DatasetWriteError(
            f"{split_dir} already holds chunks or an index.json; write into an empty folder"
        )
    split_dir.mkdir(parents=True, exist_ok=True)

    index: dict[str, str] = {}
    chunk: list[dict] = []
    chunk_number = 0

    def save_chunk() -> None:
        nonlocal chunk, chunk_number
        name = f"{chunk_number:06d}.torch"
        torch.save(chunk, split_dir / name)
        index.update({entry["key"]: name for entry in chunk})
        chunk, chunk_number = [], chunk_number + 1

    for scene in scenes:
        if scene.key in index or any(entry["key"] == scene.key for entry in chunk):
            raise DatasetWriteError(f"scene key {scene.key!r} appears twice in split {split!r}")
        chunk.append(_chunk_entry(scene))
        if len(chunk) == scenes_per_chunk:
            save_chunk()
    if chunk:
        save_chunk()
    (split_dir / "index.json").write_text(json.dumps(index, indent=1))
    return index


def image_dir_downscale(image_dir: str) -> int:
    """The downscale factor DL3DV/Nerfstudio encode in an image folder name (``images_8`` -> 8)."""
    match = re.fullmatch(r"images(?:_(\d+))?", image_dir)
    if match is None:
        raise DatasetWriteError(
            f"image folder must be named 'images' or 'images_N' (e.g. images_8), got {image_dir!r}"
        )
    return int(match.group(1) or 1)


def write_dl3dv_scene(
    root: Path,
    key: str,
    images: UInt8[Tensor, "frame height width 3"] | Float[Tensor, "frame 3 height width"],
    c2w_opencv: Float[Tensor, "frame 4 4"],
    K_normalised: Float[Tensor, "frame 3 3"],
    image_dir: str = "images_8",
    full_size: tuple[int, int] | None = None,
) -> Path:
    """Write one scene in the raw DL3DV layout (see the module docstring); returns its ``nerfstudio`` folder.

    ``full_size`` = (height, width) of the full-resolution frames the intrinsics refer to; by default the
    written size times the factor in ``image_dir`` (8 for ``images_8``). DL3DV stores one camera for all
    frames, so every frame must share the same normalised intrinsics.
    """
    where = f"DL3DV scene {key!r}"
    frames = images_to_uint8_hwc(images, where)
    num_frames, height, width, _ = frames.shape
    _check_scene_arrays(key, num_frames, c2w_opencv, K_normalised, where)
    if not torch.allclose(K_normalised, K_normalised[:1].expand_as(K_normalised), atol=1e-6):
        raise DatasetWriteError(
            f"{where}: frames have different intrinsics; DL3DV's transforms.json holds one camera"
        )
    factor = image_dir_downscale(image_dir)
    full_height, full_width = full_size if full_size is not None else (height * factor, width * factor)

    scene_dir = Path(root) / key / "nerfstudio"
    frame_dir = scene_dir / image_dir
    if (scene_dir / "transforms.json").exists():
        raise DatasetWriteError(f"{scene_dir} already holds a transforms.json; write into an empty folder")
    frame_dir.mkdir(parents=True, exist_ok=True)

    K_pixels = normalised_to_pixel_K(K_normalised[0].double(), full_width, full_height)
    c2w_opengl = opencv_to_opengl_c2w(c2w_opencv.double().cpu())
    frame_entries = []
    for number, (frame, pose) in enumerate(zip(frames, c2w_opengl, strict=True), start=1):
        name = f"frame_{number:05d}.png"
        (frame_dir / name).write_bytes(encode_image(frame, "PNG").numpy().tobytes())
        frame_entries.append({"file_path": f"images/{name}", "transform_matrix": pose.tolist()})
    transforms = {
        "w": int(full_width),
        "h": int(full_height),
        "fl_x": float(K_pixels[0, 0]),
        "fl_y": float(K_pixels[1, 1]),
        "cx": float(K_pixels[0, 2]),
        "cy": float(K_pixels[1, 2]),
        "camera_model": "PINHOLE",
        "frames": frame_entries,
    }
    (scene_dir / "transforms.json").write_text(json.dumps(transforms, indent=1))
    return scene_dir
