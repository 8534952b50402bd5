"""Open a dataset folder in any supported layout and get a :class:`SceneReader` for it.

Layouts:

- ``re10k``: RE10K/ACID chunks, ``root/{train,test}/*.torch`` + ``index.json`` (or a folder that
  directly holds ``index.json``); ``split`` picks the folder, ``None`` reads both.
- ``dl3dv-chunks``: DL3DV converted to chunks; same format, keys lose their ``dl3dv_`` prefix; the
  DL3DV-ALL subsets ``root/<N>K/<split>/`` are merged.
- ``dl3dv``: raw DL3DV, ``root/<hash>/[nerfstudio/]transforms.json`` + ``images_8``/``images_4``,
  also nested as ``root/<N>K/<hash>/...`` (DL3DV-ALL-480P) or ``root/{train,test}/<hash>/...``.
- ``nerfstudio``: one folder with ``transforms.json`` (one scene, e.g. a user's capture), a folder
  of such folders, or ``root/{train,test}/<scene>/transforms.json`` (``split`` picks the folder).
"""

from __future__ import annotations

import re
from pathlib import Path

from zpressor_ns.data.chunks import DL3DV_KEY_PREFIX, ChunkReader, chunk_split_dirs
from zpressor_ns.data.scene import Scene, SceneError, SceneReader, read_json_file
from zpressor_ns.data.transforms_json import TransformsJsonReader

__all__ = ["LAYOUTS", "LayoutError", "Scene", "SceneError", "SceneReader", "detect_layout", "open_dataset"]

LAYOUTS = ("re10k", "dl3dv-chunks", "dl3dv", "nerfstudio")
DL3DV_DEFAULT_IMAGE_DIR = "images_8"
_DL3DV_SUBSET = re.compile(r"\d+K")
_SPLITS = ("train", "test")

_LOOKED_FOR = """\
  re10k / dl3dv-chunks: index.json or *.torch chunks in PATH, PATH/train, PATH/test or PATH/<subset>/<split>
  dl3dv: PATH/<scene>/nerfstudio/transforms.json, PATH/<N>K/<scene>/..., or scene folders holding
         transforms.json and only downscaled images (images_4/images_8)
  nerfstudio: PATH/transforms.json, PATH/<scene>/transforms.json or PATH/<split>/<scene>/transforms.json"""


class LayoutError(SceneError):
    """No supported dataset layout was recognised at a path."""


def open_dataset(
    path: Path | str, split: str | None = None, *, layout: str = "auto", image_dir: str | None = None
) -> SceneReader:
    """A reader for the dataset at ``path``.

    ``image_dir`` picks the image folder of transforms.json layouts: DL3DV defaults to ``images_8``
    (270x480), Nerfstudio scenes to the paths written in the file.
    """
    path = Path(path)
    if not path.exists():
        raise LayoutError(f"{path} does not exist")
    if layout == "auto":
        layout = detect_layout(path, split)
    if layout in ("re10k", "dl3dv-chunks"):
        split_dirs = chunk_split_dirs(path, split)
        if not split_dirs:
            where = f"split {split!r} of {path}" if split else str(path)
            raise LayoutError(
                f"no chunk folders (index.json or *.torch) in {where}; looked for:\n{_LOOKED_FOR}"
            )
        return ChunkReader(split_dirs, strip_prefix=layout == "dl3dv-chunks", layout=layout)
    if layout == "dl3dv":
        return TransformsJsonReader(
            _require(find_dl3dv_scenes(path, split), path, layout, split),
            image_dir or DL3DV_DEFAULT_IMAGE_DIR,
            layout=layout,
        )
    if layout == "nerfstudio":
        return TransformsJsonReader(
            _require(find_nerfstudio_scenes(path, split), path, layout, split), image_dir, layout=layout
        )
    raise LayoutError(f"unknown layout {layout!r}; choose one of auto, {', '.join(LAYOUTS)}")


def _require(scenes: dict[str, Path], path: Path, layout: str, split: str | None = None) -> dict[str, Path]:
    if not scenes:
        where = f"split {split!r} of {path}" if split and (path / split).is_dir() else str(path)
        raise LayoutError(f"no {layout} scenes found in {where}; looked for:\n{_LOOKED_FOR}")
    return scenes


def detect_layout(path: Path, split: str | None = None) -> str:
    """The layout of ``path``; :class:`LayoutError` listing what was looked for when none fits."""
    if path.is_file():
        if path.name == "transforms.json":
            return "nerfstudio"
        raise LayoutError(
            f"{path} is a file; pass a dataset folder (or a transforms.json). Looked for:\n{_LOOKED_FOR}"
        )
    split_dirs = chunk_split_dirs(path, split)
    if split_dirs:
        return "dl3dv-chunks" if _looks_like_dl3dv_chunks(path, split_dirs) else "re10k"
    if find_dl3dv_scenes(path, split):
        return "dl3dv"
    if find_nerfstudio_scenes(path, split):
        return "nerfstudio"
    if split is not None:
        try:
            other = detect_layout(path)
        except LayoutError:
            pass
        else:
            raise LayoutError(
                f"split {split!r} of {path} holds no scenes, though the data is in the {other} layout "
                f"otherwise; put the {split} scenes in {path / split}"
            )
    raise LayoutError(f"no dataset layout recognised in {path}; looked for:\n{_LOOKED_FOR}")


def _looks_like_dl3dv_chunks(root: Path, split_dirs: list[Path]) -> bool:
    if any(_DL3DV_SUBSET.fullmatch(d.parent.name) and d.parent.parent == root for d in split_dirs):
        return True
    index_file = split_dirs[0] / "index.json"
    if not index_file.is_file():
        return False
    index = read_json_file(index_file)
    return isinstance(index, dict) and any(str(k).startswith(DL3DV_KEY_PREFIX) for k in index)


def _dl3dv_scene_json(folder: Path, strict: bool) -> Path | None:
    """The transforms.json of a DL3DV scene folder; ``strict`` demands DL3DV's marks (nerfstudio/ or
    downscaled-only images), which tell it apart from a Nerfstudio capture."""
    nested = folder / "nerfstudio" / "transforms.json"
    if nested.is_file():
        return nested
    direct = folder / "transforms.json"
    if not direct.is_file():
        return None
    downscaled_only = (
        any((folder / f"images_{n}").is_dir() for n in (4, 8)) and not (folder / "images").is_dir()
    )
    return direct if (downscaled_only or not strict) else None


def find_dl3dv_scenes(root: Path, split: str | None = None) -> dict[str, Path]:
    """{scene key (folder name): transforms.json} of a raw DL3DV tree; {} when there is none.

    Scene folders may sit in ``<N>K`` subset folders or in ``train``/``test`` split folders
    (``split`` picks one; None merges both).
    """
    if split is not None and (root / split).is_dir():
        root = root / split
    if not root.is_dir():
        return {}
    single = _dl3dv_scene_json(root, strict=True)
    if single is not None:
        return {root.name: single}
    scenes: dict[str, Path] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        subset = _DL3DV_SUBSET.fullmatch(folder.name) is not None
        grouping = subset or folder.name in _SPLITS
        candidates = sorted(p for p in folder.iterdir() if p.is_dir()) if grouping else [folder]
        for scene_dir in candidates:
            # Only the DL3DV-ALL subsets hold bare scene folders; elsewhere (train/ and test/ too,
            # where Nerfstudio captures live) a scene must carry DL3DV's marks.
            json_path = _dl3dv_scene_json(scene_dir, strict=not subset)
            if json_path is None:
                continue
            if scene_dir.name in scenes:
                raise LayoutError(
                    f"DL3DV scene {scene_dir.name!r} appears twice ({scenes[scene_dir.name]} and {json_path}); "
                    "keep one copy"
                )
            scenes[scene_dir.name] = json_path
    return scenes


def find_nerfstudio_scenes(root: Path, split: str | None = None) -> dict[str, Path]:
    """{scene key (folder name): transforms.json}: the folder itself, or its sub-folders.

    When ``root`` has ``train``/``test`` folders, scenes are looked for in them (``split`` picks one;
    None merges both) and a split that is asked for but absent finds nothing.
    """
    if root.is_file():
        return {root.resolve().parent.name: root} if root.name == "transforms.json" else {}
    if (root / "transforms.json").is_file():
        return {root.resolve().name: root / "transforms.json"}
    if not root.is_dir():
        return {}
    if any((root / name).is_dir() for name in _SPLITS):
        scenes: dict[str, Path] = {}
        for name in [split] if split else _SPLITS:
            for key, json_path in find_nerfstudio_scenes(root / name).items():
                if key in scenes:
                    raise LayoutError(
                        f"scene {key!r} appears in both {scenes[key].parent.parent} and "
                        f"{json_path.parent.parent}; read one split at a time"
                    )
                scenes[key] = json_path
        return scenes
    return {
        folder.name: folder / "transforms.json"
        for folder in sorted(p for p in root.iterdir() if p.is_dir())
        if (folder / "transforms.json").is_file()
    }
