"""Reader for the ``.torch`` chunk layout of RE10K/ACID and of DL3DV after conversion.

Layout (pixelSplat's, used by every ZPressor backbone)::

    <split dir>/index.json      {scene key: "000123.torch"}, file names relative to the split dir
    <split dir>/000123.torch    torch.save(list of {"key", "url", "timestamps" int64 [N],
                                "cameras" float32 [N, 18], "images": N uint8 tensors of JPEG bytes})

Each camera row is normalised fx, fy, cx, cy, two zeros, then the first three rows of the OpenCV
world-to-camera matrix. Converted DL3DV training chunks prefix keys with ``dl3dv_``, which the
original loader strips; so does this reader when ``strip_prefix`` is set.

Chunks hold a few hundred MB of images, so the reader keeps only the index in memory and the last
``cache_size`` chunks it opened; chunks are memory-mapped where the file format allows, so only the
frames that are decoded are read from disk.
"""

from __future__ import annotations

import logging
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from zpressor_ns.cameras import CameraError, intrinsics_from_values, sanitise_c2w, to_homogeneous
from zpressor_ns.data.scene import (
    Scene,
    SceneError,
    encoded_frame_problem,
    read_image_size,
    read_json_file,
)

logger = logging.getLogger(__name__)

DL3DV_KEY_PREFIX = "dl3dv_"


@dataclass(frozen=True)
class ChunkEntry:
    """Where one scene is stored: its chunk file and the key as written inside the chunk."""

    chunk: Path
    stored_key: str
    index_file: Path | None  # the index.json that named the chunk, None when chunks were scanned


def load_chunk(path: Path) -> list[dict]:
    """Load one chunk safely (tensors, strings, lists and dicts only), memory-mapped when possible."""
    if not path.is_file():
        raise SceneError(f"chunk {path} does not exist; re-download it or regenerate index.json")
    try:
        try:
            chunk = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as error:
            if "mmap" not in str(error):
                raise
            # Files written in torch's legacy (pre-zip) format cannot be memory-mapped.
            chunk = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged pickle raises almost any type (KeyError, IndexError, ...)
        # torch's unpickling messages run to many lines and suggest weights_only=False: say it plainly.
        if isinstance(error, pickle.UnpicklingError):
            reason = "not a torch.save file holding only tensors, lists, dicts and strings"
        else:
            reason = (str(error).strip().splitlines() or [""])[0][:160]
        raise SceneError(
            f"chunk {path} cannot be read ({type(error).__name__}: {reason}); the file is truncated, "
            "corrupt or not a chunk of tensors, lists, dicts and strings: re-download it, or remove its "
            "scenes from index.json"
        ) from error
    if not isinstance(chunk, list) or not all(isinstance(item, dict) for item in chunk):
        raise SceneError(
            f"chunk {path} is not a list of scene dicts (got {type(chunk).__name__}); "
            "it was not written in the RE10K chunk layout"
        )
    return chunk


def _index_from_json(split_dir: Path) -> dict[str, ChunkEntry]:
    index_file = split_dir / "index.json"
    raw = read_json_file(index_file)
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise SceneError(f"{index_file}: expected an object {{scene key: chunk file name}}; regenerate it")
    return {key: ChunkEntry(split_dir / name, key, index_file) for key, name in raw.items()}


def _index_by_scanning(split_dir: Path) -> dict[str, ChunkEntry]:
    logger.warning(
        "%s has no index.json: indexing by loading every chunk once (slow for large datasets; "
        "write an index.json {scene key: chunk file} to skip this)",
        split_dir,
    )
    index = {}
    for chunk_path in sorted(split_dir.glob("*.torch")):
        try:
            items = load_chunk(chunk_path)
        except SceneError as error:  # one damaged chunk loses its own scenes, not the dataset
            logger.warning("leaving out the scenes of a chunk that cannot be indexed: %s", error)
            continue
        for item in items:
            key = item.get("key")
            if not isinstance(key, str):
                logger.warning("chunk %s holds a scene without a string 'key'; it is left out", chunk_path)
                continue
            index[key] = ChunkEntry(chunk_path, key, None)
    return index


def chunk_split_dirs(root: Path, split: str | None) -> list[Path]:
    """Folders that hold chunks under ``root``: root itself, root/<split>, or root/<subset>/<split>.

    ``split=None`` takes both ``train`` and ``test``. The ``<subset>`` level is DL3DV-ALL's 1K..11K.
    """
    if _holds_chunks(root):
        return [root]
    splits = [split] if split else ["train", "test"]
    found = [root / s for s in splits if _holds_chunks(root / s)]
    if root.is_dir():
        for subset in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in splits):
            found += [subset / s for s in splits if _holds_chunks(subset / s)]
    return found


def _holds_chunks(folder: Path) -> bool:
    return (folder / "index.json").is_file() or (folder.is_dir() and any(folder.glob("*.torch")))


class ChunkReader:
    """Scenes from one or more chunk folders; see the module docstring."""

    def __init__(
        self,
        split_dirs: list[Path],
        *,
        strip_prefix: bool = False,
        layout: str = "re10k",
        cache_size: int = 2,
    ) -> None:
        if not split_dirs:
            raise SceneError("no chunk folders given")
        self.layout = layout
        self.cache_size = cache_size
        self._entries: dict[str, ChunkEntry] = {}
        for split_dir in split_dirs:
            index = (
                _index_from_json(split_dir)
                if (split_dir / "index.json").is_file()
                else _index_by_scanning(split_dir)
            )
            for stored_key, entry in index.items():
                key = stored_key.removeprefix(DL3DV_KEY_PREFIX) if strip_prefix else stored_key
                if key in self._entries:
                    raise SceneError(
                        f"scene key {key!r} appears in both {self._entries[key].chunk.parent} and "
                        f"{entry.chunk.parent}; read one split at a time (pass split=...)"
                    )
                self._entries[key] = entry
        if not self._entries:
            raise SceneError(
                f"no scenes in {', '.join(str(d) for d in split_dirs)}: index.json is empty or no chunk "
                "could be read; re-download the chunks or regenerate index.json"
            )
        # Grouped by chunk file, so walking the keys in order opens every chunk once.
        self._keys = sorted(self._entries, key=lambda k: (str(self._entries[k].chunk), k))
        self._cache: OrderedDict[Path, dict[str, dict]] = OrderedDict()

    def __getstate__(self) -> dict:
        # Worker processes start with an empty cache instead of copies of loaded chunks.
        return {**self.__dict__, "_cache": OrderedDict()}

    def keys(self) -> list[str]:
        """Keys grouped by chunk file (chunks in path order), then sorted within a chunk."""
        return list(self._keys)

    def source_of(self, key: str) -> Path:
        return self._entry(key).chunk

    def _entry(self, key: str) -> ChunkEntry:
        if key not in self._entries:
            raise SceneError(f"scene {key!r} is not in this dataset's index.json")
        return self._entries[key]

    def _chunk_scenes(self, entry: ChunkEntry) -> dict[str, dict]:
        if entry.chunk in self._cache:
            self._cache.move_to_end(entry.chunk)
            return self._cache[entry.chunk]
        if not entry.chunk.is_file():
            named_by = (
                f"{entry.index_file} names chunk {entry.chunk.name}, which" if entry.index_file else "chunk"
            )
            raise SceneError(
                f"scene {entry.stored_key!r}: {named_by} does not exist in {entry.chunk.parent}; "
                "re-download the chunk or regenerate index.json"
            )
        scenes = {item.get("key"): item for item in load_chunk(entry.chunk)}
        self._cache[entry.chunk] = scenes
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return scenes

    def scene(self, key: str) -> Scene:
        entry = self._entry(key)
        item = self._chunk_scenes(entry).get(entry.stored_key)
        if item is None:
            raise SceneError(
                f"scene {entry.stored_key!r} is listed in {entry.index_file} but chunk {entry.chunk} "
                "does not contain it; regenerate index.json"
            )
        try:
            return scene_from_chunk_item(key, item, entry.chunk)
        except SceneError:
            raise
        except Exception as error:  # content no check above foresaw: still this scene's fault
            raise SceneError(
                f"scene {key!r} in chunk {entry.chunk} is malformed ({type(error).__name__}: {error}); "
                "re-convert the scene or remove it from index.json"
            ) from error


def scene_from_chunk_item(key: str, item: dict, chunk: Path) -> Scene:
    """Turn one stored scene dict into a :class:`Scene` (OpenCV c2w, normalised K), checking everything."""
    where = f"scene {key!r} in chunk {chunk}"
    cameras, images = item.get("cameras"), item.get("images")
    if (
        not isinstance(cameras, Tensor)
        or cameras.ndim != 2
        or cameras.shape[-1] != 18
        or not cameras.is_floating_point()
    ):
        shape = (
            f"{cameras.dtype} {tuple(cameras.shape)}"
            if isinstance(cameras, Tensor)
            else type(cameras).__name__
        )
        raise SceneError(
            f"{where}: 'cameras' must be a floating-point [frames, 18] tensor, got {shape}; re-convert the scene"
        )
    if not isinstance(images, list | tuple):
        raise SceneError(f"{where}: 'images' must be a list of encoded images; re-convert the scene")
    timestamps = item.get("timestamps")
    if timestamps is None:
        timestamps = torch.arange(len(cameras))
    if (
        not isinstance(timestamps, Tensor)
        or timestamps.ndim != 1
        or timestamps.dtype == torch.bool
        or timestamps.is_complex()
    ):
        raise SceneError(f"{where}: 'timestamps' must be a 1-D tensor of numbers; re-convert the scene")

    num_frames = min(len(cameras), len(images), len(timestamps))
    if num_frames != len(cameras) or num_frames != len(images) or num_frames != len(timestamps):
        logger.warning(
            "%s: %d cameras, %d images and %d timestamps; using the first %d frames",
            where,
            len(cameras),
            len(images),
            len(timestamps),
            num_frames,
        )
    if num_frames == 0:
        raise SceneError(f"{where}: the scene has no frames; drop it from index.json")
    cameras = cameras[:num_frames].double()
    if not torch.isfinite(cameras).all():
        bad = (~torch.isfinite(cameras)).any(-1).nonzero().flatten().tolist()
        raise SceneError(
            f"{where}: camera parameters of frames {bad[:10]} are NaN or infinite; "
            "drop the scene or fix its poses"
        )
    K = intrinsics_from_values(cameras[:, 0], cameras[:, 1], cameras[:, 2], cameras[:, 3])
    if (K[:, 0, 0] <= 0).any() or (K[:, 1, 1] <= 0).any():
        raise SceneError(f"{where}: non-positive focal lengths in the camera rows; re-convert the scene")
    w2c = to_homogeneous(cameras[:, 6:].reshape(-1, 3, 4))
    c2w, info = torch.linalg.inv_ex(w2c)
    if (info != 0).any():
        bad = (info != 0).nonzero().flatten().tolist()
        raise SceneError(
            f"{where}: world-to-camera matrices of frames {bad[:10]} are singular; fix the poses"
        )
    try:
        c2w = sanitise_c2w(c2w, where)
    except CameraError as error:
        raise SceneError(str(error)) from error
    frames = list(images[:num_frames])
    bad_frames = [(i, problem) for i, frame in enumerate(frames) if (problem := encoded_frame_problem(frame))]
    if bad_frames:
        first, problem = bad_frames[0]
        raise SceneError(
            f"{where}: {len(bad_frames)} of {num_frames} frames are not encoded images (frame {first}: "
            f"{problem}); re-convert the scene"
        )
    height, width = read_image_size(frames[0], f"{where}, frame 0")
    return Scene(
        key=key,
        c2w=c2w.float(),
        K=K.float(),
        timestamps=timestamps[:num_frames].to(torch.int64),
        height=height,
        width=width,
        source=str(chunk),
        frames=frames,
    )
