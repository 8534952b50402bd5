"""Reader for scenes described by a Nerfstudio-style ``transforms.json`` (raw DL3DV, user captures).

The file holds OpenGL camera-to-world matrices (``frames[i].transform_matrix``) and pixel intrinsics
(``fl_x, fl_y, cx, cy, w, h``), global or per frame. The intrinsics refer to the frames at size
``w x h``; they are normalised by that size, so a downscaled image folder (``images_4``,
``images_8``) needs no change as long as it keeps the aspect ratio. Blender-style files that give
only ``camera_angle_x`` are accepted too (square pixels, centred principal point).

Frames keep the order of the file; frames whose image file is missing are left out with one
warning per scene, as Nerfstudio's instant-ngp parser does. A frame's timestamp is the integer at
the end of its file name (``frame_00012.png`` -> 12), as DL3DV's converter does, or its position
when names carry no number.
"""

from __future__ import annotations

import logging
import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch

from zpressor_ns.cameras import (
    CameraError,
    intrinsics_from_values,
    opengl_to_opencv_c2w,
    sanitise_c2w,
    to_homogeneous,
)
from zpressor_ns.data.scene import Scene, SceneError, read_image_size, read_json_file

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}
DISTORTION_KEYS = ("k1", "k2", "k3", "k4", "p1", "p2")
PINHOLE_MODELS = {"PINHOLE", "SIMPLE_PINHOLE", "OPENCV", "SIMPLE_RADIAL", "RADIAL"}
_TRAILING_NUMBER = re.compile(r"(\d+)$")
ASPECT_TOLERANCE = 0.01  # relative difference of w/h ratios still taken as the same aspect


class _FolderListing:
    """File names of image folders, listed once per folder instead of one stat per frame."""

    def __init__(self) -> None:
        self._by_folder: dict[Path, tuple[dict[str, Path], dict[str, Path]]] = {}

    def find(self, wanted: Path) -> Path | None:
        folder = wanted.parent
        if folder not in self._by_folder:
            files = [p for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
            by_name = {p.name: p for p in files}
            by_stem = {p.stem: p for p in sorted(files) if p.suffix.lower() in IMAGE_SUFFIXES}
            self._by_folder[folder] = (by_name, by_stem)
        by_name, by_stem = self._by_folder[folder]
        # Same name, else same stem with another image extension (Blender paths carry none).
        return by_name.get(wanted.name) or by_stem.get(wanted.name) or by_stem.get(wanted.stem)


def _image_path(json_dir: Path, file_path: str, image_dir: str | None) -> Path:
    relative = Path(file_path)
    if image_dir is None:
        return json_dir / relative
    # "images/frame_00001.png" -> "<image_dir>/frame_00001.png": DL3DV and Nerfstudio name the
    # full-resolution folder; downscaled folders hold the same file names.
    tail = relative.parts[1:] if len(relative.parts) > 1 else relative.parts
    return json_dir.joinpath(image_dir, *tail)


def _number(value: object, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SceneError(f"{where}: '{name}' must be a finite number, got {value!r}; fix transforms.json")
    return float(value)


def _frame_intrinsics(
    meta: dict, frame: dict, image_hw: tuple[int, int], where: str
) -> tuple[float, float, float, float]:
    """Normalised (fx, fy, cx, cy) of one frame; frame entries override the file's global ones.

    Normalised intrinsics survive a resize only if it keeps the aspect ratio of the frame's w x h,
    so a w/h (global or the frame's own) of another aspect than the images is refused.
    """

    def get(name: str) -> object:
        return frame.get(name, meta.get(name))

    width = _number(get("w"), "w", where) if get("w") is not None else float(image_hw[1])
    height = _number(get("h"), "h", where) if get("h") is not None else float(image_hw[0])
    if width <= 0 or height <= 0:
        raise SceneError(
            f"{where}: image size w={width:g}, h={height:g} is not positive; fix transforms.json"
        )
    disk_aspect = image_hw[1] / image_hw[0]
    if abs(disk_aspect / (width / height) - 1) > ASPECT_TOLERANCE:
        own = "this frame's" if "w" in frame or "h" in frame else "the file's"
        raise SceneError(
            f"{where}: images are {image_hw[1]}x{image_hw[0]} but {own} w x h in transforms.json is "
            f"{width:g}x{height:g} (a different aspect ratio), so its intrinsics do not fit them; "
            "use the matching image folder or fix w/h"
        )
    if get("fl_x") is None and get("camera_angle_x") is not None:
        fx = 0.5 / math.tan(0.5 * _number(get("camera_angle_x"), "camera_angle_x", where))
        angle_y = get("camera_angle_y")
        fy = (
            0.5 / math.tan(0.5 * _number(angle_y, "camera_angle_y", where))
            if angle_y is not None
            else fx * width / height
        )
        return fx, fy, 0.5, 0.5
    if get("fl_x") is None:
        raise SceneError(
            f"{where}: no focal length (fl_x or camera_angle_x); add the intrinsics to transforms.json"
        )
    fl_x = _number(get("fl_x"), "fl_x", where)
    fl_y = _number(get("fl_y"), "fl_y", where) if get("fl_y") is not None else fl_x
    cx = _number(get("cx"), "cx", where) if get("cx") is not None else width / 2
    cy = _number(get("cy"), "cy", where) if get("cy") is not None else height / 2
    return fl_x / width, fl_y / height, cx / width, cy / height


@dataclass(frozen=True)
class TransformsJsonScene:
    """A scene read from transforms.json, and what the reader should warn about."""

    scene: Scene
    distorted: bool  # the file declares lens distortion (which the model ignores)
    missing_images: list[Path]  # frames skipped because their image file does not exist


def scene_from_transforms_json(json_path: Path, key: str, image_dir: str | None) -> Scene:
    """Read one scene; ``image_dir`` swaps the first folder of every ``file_path`` (None: as written)."""
    return read_transforms_json(json_path, key, image_dir).scene


def read_transforms_json(json_path: Path, key: str, image_dir: str | None) -> TransformsJsonScene:
    """The scene of one transforms.json; frames whose image is missing are left out (as Nerfstudio's
    instant-ngp parser does), and the scene is refused only when none is left."""
    where = f"scene {key!r} ({json_path})"
    if not json_path.is_file():
        raise SceneError(f"{where}: transforms.json is missing; restore it or drop the scene")
    meta = read_json_file(json_path)
    frames = meta.get("frames") if isinstance(meta, dict) else None
    if not isinstance(frames, list) or not frames:
        raise SceneError(f"{where}: no 'frames' list; not a Nerfstudio/DL3DV transforms.json")

    model = str(meta.get("camera_model", "PINHOLE")).upper()
    if model not in PINHOLE_MODELS:
        raise SceneError(
            f"{where}: camera_model {model} is not a pinhole model; undistort the images first "
            "(e.g. ns-process-data) and write a PINHOLE transforms.json"
        )
    json_dir = json_path.parent
    if image_dir is not None and not (json_dir / image_dir).is_dir():
        raise SceneError(
            f"{where}: image folder {json_dir / image_dir} does not exist; "
            "choose the image folder that exists (e.g. images_4 or images_8)"
        )

    listing = _FolderListing()
    present: list[tuple[int, dict, Path]] = []
    missing: list[Path] = []
    for number, frame in enumerate(frames):
        if not isinstance(frame, dict) or not isinstance(frame.get("file_path"), str):
            raise SceneError(f"{where}: frame {number} has no 'file_path'; fix transforms.json")
        wanted = _image_path(json_dir, frame["file_path"], image_dir)
        found = listing.find(wanted)
        if found is None:
            missing.append(wanted)
        else:
            present.append((number, frame, found))
    if not present:
        raise SceneError(
            f"{where}: none of the {len(frames)} frame images exists (e.g. {missing[0]}); "
            "re-download the scene or choose another image folder"
        )
    first_number, _, first_path = present[0]
    image_hw = read_image_size(first_path, f"{where} frame {first_number} ({first_path})")

    poses, intrinsics = [], []
    for number, frame, _ in present:
        frame_where = f"{where} frame {number}"
        matrix = frame.get("transform_matrix")
        try:
            pose = torch.tensor(matrix, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError) as error:
            raise SceneError(f"{frame_where}: 'transform_matrix' is not a 4x4 matrix ({error})") from error
        if tuple(pose.shape) not in ((4, 4), (3, 4)):
            raise SceneError(f"{frame_where}: 'transform_matrix' has shape {tuple(pose.shape)}, expected 4x4")
        poses.append(to_homogeneous(pose))
        intrinsics.append(_frame_intrinsics(meta, frame, image_hw, frame_where))

    try:
        c2w = sanitise_c2w(opengl_to_opencv_c2w(torch.stack(poses)), where)
    except CameraError as error:
        raise SceneError(str(error)) from error
    fx, fy, cx, cy = torch.tensor(intrinsics, dtype=torch.float64).unbind(-1)
    names = [path.stem for _, _, path in present]
    numbers = [_TRAILING_NUMBER.search(name) for name in names]
    timestamps = [int(m.group(1)) for m in numbers] if all(numbers) else list(range(len(names)))
    distorted = any(abs(_number(meta.get(k, 0) or 0, k, where)) > 0 for k in DISTORTION_KEYS)
    scene = Scene(
        key=key,
        c2w=c2w.float(),
        K=intrinsics_from_values(fx, fy, cx, cy).float(),
        timestamps=torch.tensor(timestamps, dtype=torch.int64),
        height=image_hw[0],
        width=image_hw[1],
        source=str(json_path),
        frames=[path for _, _, path in present],
    )
    return TransformsJsonScene(scene, distorted, missing)


# Scenes whose distortion was reported: the notice is given once per process, where one dataset is opened by
# several readers (display, training, evaluation).
_DISTORTION_REPORTED: set[str] = set()


def _report_distortion_once(source: str) -> None:
    if _DISTORTION_REPORTED:
        return
    _DISTORTION_REPORTED.add(source)
    logger.warning(
        "%s: lens distortion coefficients are ignored (the model assumes pinhole images); undistort the "
        "images for best results (e.g. ns-process-data). Said once; other scenes may have them too.",
        source,
    )


class TransformsJsonReader:
    """Scenes given as ``{key: path of transforms.json}`` (DL3DV raw and Nerfstudio layouts)."""

    def __init__(
        self, scenes: dict[str, Path], image_dir: str | None, *, layout: str, cache_size: int = 4
    ) -> None:
        if not scenes:
            raise SceneError("no scenes given")
        self.layout = layout
        self.image_dir = image_dir
        self.cache_size = cache_size
        self._json_paths = dict(scenes)
        self._keys = sorted(scenes)
        self._warned_missing: set[str] = set()
        self._cache: OrderedDict[str, Scene] = OrderedDict()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}

    def keys(self) -> list[str]:
        """Keys sorted by name."""
        return list(self._keys)

    def source_of(self, key: str) -> Path:
        if key not in self._json_paths:
            raise SceneError(f"scene {key!r} is not in this dataset")
        return self._json_paths[key]

    def scene(self, key: str) -> Scene:
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        json_path = self.source_of(key)
        try:
            reading = read_transforms_json(json_path, key, self.image_dir)
        except SceneError:
            raise
        except Exception as error:  # content no check foresaw: still this scene's fault
            raise SceneError(
                f"scene {key!r} ({json_path}) is malformed ({type(error).__name__}: {error}); "
                "fix its transforms.json or drop the scene"
            ) from error
        scene = reading.scene
        if reading.distorted:
            _report_distortion_once(scene.source)
        if reading.missing_images and key not in self._warned_missing:
            logger.warning(
                "scene %r (%s): %d of %d frame images are missing (e.g. %s); using the other %d frames",
                key,
                scene.source,
                len(reading.missing_images),
                len(reading.missing_images) + scene.num_frames,
                reading.missing_images[0],
                scene.num_frames,
            )
            self._warned_missing.add(key)
        self._cache[key] = scene
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return scene
