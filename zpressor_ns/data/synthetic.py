"""Synthetic datasets: procedurally textured rooms rendered by the analytic ray caster, written in the
RE10K chunk layout and the raw DL3DV layout, deterministic by seed.

What ``make_synthetic(out, config)`` writes::

    out/synthetic.json                          the config and the recommended near/far
    out/re10k/{train,test}/000000.torch ...     RE10K chunks + index.json (forward walks)
    out/re10k/evaluation/re10k_ctx_{N}v_tgt_8v_n{W}.json
    out/dl3dv/{train,test}/<hash>/nerfstudio/transforms.json, images_8/frame_00001.png ... (free paths)
    out/dl3dv/evaluation/dl3dv_ctx_{N}v_tgt_8v_n{W}.json

Each ``out/dl3dv/<split>`` folder is a raw DL3DV root (``<hash>/nerfstudio/...``, as in the benchmark),
so a reader opens it like the real test set. Evaluation indices follow the official rule
(``eval_index.evaluation_views``) over the test split, with the window ``W`` = min(official window,
frames per scene).

Scenes are independent: each one draws from its own generator seeded by (seed, layout, split, index),
so ``render_scene`` can rebuild any one of them (with its z-depth, which is not written) for tests.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from jaxtyping import Float, Int64
from torch import Tensor

from zpressor_ns.cameras import camera_centres, intrinsics_from_values
from zpressor_ns.data.eval_index import evaluation_views
from zpressor_ns.data.raycast import render_views
from zpressor_ns.data.synthetic_scene import (
    WALL_MARGIN,
    forward_walk,
    free_path,
    sample_geometry,
    sample_room,
)
from zpressor_ns.data.writers import ChunkScene, write_dl3dv_scene, write_re10k_chunks

# Depth bounds that cover every synthetic view: the nearest surface is >= ~0.7 units away and the
# largest room's diagonal is about 21 units. Use them as the near/far of synthetic datasets.
SYNTHETIC_NEAR = 0.5
SYNTHETIC_FAR = 30.0

LAYOUTS = ("re10k", "dl3dv")
SPLITS = ("train", "test")
# Official evaluation windows (facts §5): RE10K/ACID use the first 200 frames, DL3DV the first 50.
OFFICIAL_WINDOW = {"re10k": 200, "dl3dv": 50}
# Horizontal focal length / width: about 61 degrees for RE10K-like walks, 71 for DL3DV-like loops.
FOCAL_OVER_WIDTH = {"re10k": 0.85, "dl3dv": 0.7}
RE10K_FRAME_INTERVAL_US = 33_333  # RE10K timestamps are microseconds of a 30 fps video


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate. The defaults take seconds on two CPU cores."""

    seed: int = 0
    num_train_scenes: int = 6
    num_test_scenes: int = 3
    re10k_frames: int = 80
    dl3dv_frames: int = 60
    re10k_size: tuple[int, int] = (90, 160)  # (height, width), 16:9 like RE10K's 360x640
    dl3dv_size: tuple[int, int] = (54, 96)  # images_8 frames of a 432x768 "full-resolution" capture
    layouts: tuple[str, ...] = LAYOUTS
    eval_context_views: tuple[int, ...] = (8, 12, 16, 24, 36)
    eval_target_views: int = 8

    def __post_init__(self) -> None:
        unknown = set(self.layouts) - set(LAYOUTS)
        if unknown or not self.layouts:
            raise ValueError(f"layouts must be a non-empty subset of {LAYOUTS}, got {self.layouts}")
        if min(self.re10k_frames, self.dl3dv_frames) < 2:
            raise ValueError("scenes need at least 2 frames")
        if min(self.num_train_scenes, self.num_test_scenes) < 0:
            raise ValueError("scene counts cannot be negative")
        if min(*self.re10k_size, *self.dl3dv_size) < 4:
            raise ValueError(f"image sizes must be at least 4x4, got {self.re10k_size} and {self.dl3dv_size}")

    def frames(self, layout: str) -> int:
        return self.re10k_frames if layout == "re10k" else self.dl3dv_frames

    def size(self, layout: str) -> tuple[int, int]:
        return self.re10k_size if layout == "re10k" else self.dl3dv_size

    def num_scenes(self, split: str) -> int:
        return self.num_train_scenes if split == "train" else self.num_test_scenes


@dataclass(frozen=True)
class SceneSpec:
    """Where a scene belongs; together with the config it fixes every random draw."""

    key: str
    layout: str
    split: str
    index: int


@dataclass(frozen=True)
class SyntheticScene:
    key: str
    layout: str
    split: str
    images: Float[Tensor, "frame 3 height width"]  # in [0, 1], before any file encoding
    depths: Float[Tensor, "frame height width"]  # OpenCV z-depth at pixel centres
    c2w: Float[Tensor, "frame 4 4"]  # OpenCV camera-to-world
    K: Float[Tensor, "frame 3 3"]  # normalised intrinsics
    timestamps: Int64[Tensor, " frame"]


@dataclass
class SyntheticSummary:
    out: Path
    scenes: dict[str, dict[str, int]] = field(default_factory=dict)  # layout -> split -> count
    frames: int = 0
    index_files: list[Path] = field(default_factory=list)
    skipped_indices: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def describe(self) -> str:
        lines = [f"wrote {self.frames} frames to {self.out} in {self.seconds:.1f} s"]
        for layout, splits in self.scenes.items():
            counts = ", ".join(f"{count} {split}" for split, count in splits.items())
            lines.append(f"  {layout}: {counts} scenes in {self.out / layout}")
        lines += [f"  evaluation index: {path}" for path in self.index_files]
        lines += [f"  skipped index: {reason}" for reason in self.skipped_indices]
        lines.append(f"  recommended near/far: {SYNTHETIC_NEAR} / {SYNTHETIC_FAR}")
        return "\n".join(lines)


def _digest(seed: int, layout: str, split: str, index: int) -> str:
    return hashlib.sha256(f"zpressor-ns-synthetic/{seed}/{layout}/{split}/{index}".encode()).hexdigest()


def scene_specs(config: SyntheticConfig) -> list[SceneSpec]:
    """Every scene of the config, in writing order. Keys look like the real ones: 16 hex digits for
    RE10K, a 64-hex-digit hash for DL3DV."""
    specs = []
    for layout in config.layouts:
        for split in SPLITS:
            for index in range(config.num_scenes(split)):
                digest = _digest(config.seed, layout, split, index)
                specs.append(SceneSpec(digest[:16] if layout == "re10k" else digest, layout, split, index))
    return specs


def _scene_generator(config: SyntheticConfig, spec: SceneSpec) -> torch.Generator:
    seed = int(_digest(config.seed, spec.layout, spec.split, spec.index)[:15], 16)
    return torch.Generator().manual_seed(seed)


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch single-threaded for a while: the ray caster's many small tensor operations gain little
    from two threads and lose up to 10x to thread synchronisation when the cores are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def render_spec(config: SyntheticConfig, spec: SceneSpec) -> SyntheticScene:
    """Build and render one scene (its own random stream, so independent of every other scene)."""
    generator = _scene_generator(config, spec)
    room_min, room_max = sample_room(generator)
    num_frames = config.frames(spec.layout)
    if spec.layout == "re10k":
        c2w = forward_walk(room_min, room_max, num_frames, generator)
        object_region = room_max[:2] - 0.2
        timestamps = torch.arange(num_frames, dtype=torch.int64) * RE10K_FRAME_INTERVAL_US
    else:
        c2w = free_path(room_min, room_max, num_frames, generator)
        object_region = (room_max[:2] - WALL_MARGIN) * 0.6
        timestamps = torch.arange(1, num_frames + 1, dtype=torch.int64)  # DL3DV frame numbers
    geometry = sample_geometry(room_min, room_max, camera_centres(c2w), object_region, generator)

    height, width = config.size(spec.layout)
    fx = FOCAL_OVER_WIDTH[spec.layout]
    K = intrinsics_from_values(
        torch.tensor(fx), torch.tensor(fx * width / height), torch.tensor(0.5), torch.tensor(0.5)
    ).expand(num_frames, 3, 3)
    c2w = c2w.float()
    with _one_thread():
        images, depths = render_views(geometry, c2w, K, height, width)
    return SyntheticScene(spec.key, spec.layout, spec.split, images, depths, c2w, K.contiguous(), timestamps)


def render_scene(config: SyntheticConfig, key: str) -> SyntheticScene:
    """The scene with this key (as written by ``make_synthetic`` with the same config), depth included."""
    for spec in scene_specs(config):
        if spec.key == key:
            return render_spec(config, spec)
    raise KeyError(f"no synthetic scene {key!r} for seed {config.seed}; keys come from scene_specs(config)")


def _write_evaluation_indices(
    out: Path,
    layout: str,
    config: SyntheticConfig,
    test_centres: dict[str, Tensor],
    summary: SyntheticSummary,
) -> None:
    if not test_centres:
        return
    window = min(OFFICIAL_WINDOW[layout], config.frames(layout))
    folder = out / layout / "evaluation"
    too_short = []
    for num_context in config.eval_context_views:
        name = f"{layout}_ctx_{num_context}v_tgt_{config.eval_target_views}v_n{window}.json"
        entries = {}
        for key, centres in test_centres.items():
            views = evaluation_views(centres, num_context, config.eval_target_views, window)
            if views is not None:
                entries[key] = {"context": views[0], "target": views[1]}
        if not entries:
            too_short.append(num_context)
            continue
        folder.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(json.dumps(entries))
        summary.index_files.append(folder / name)
    if too_short:
        summary.skipped_indices.append(
            f"{layout} with {too_short} context views: no test scene has {window} frames for "
            f"that many context views plus {config.eval_target_views} targets"
        )


def check_output_folder(out: Path, config: SyntheticConfig) -> None:
    """Refuse to write into a dataset folder that already holds files (stale scenes would mix in)."""
    for layout in config.layouts:
        folder = Path(out) / layout
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(f"{folder} is not empty; choose a new output folder or remove it first")


def make_synthetic(
    out: Path, config: SyntheticConfig, on_scene_written: Callable[[SceneSpec], None] | None = None
) -> SyntheticSummary:
    """Render every scene of ``config`` and write the datasets under ``out`` (see the module docstring).

    ``out/<layout>`` must not exist yet or be empty, so stale scenes never mix in.
    """
    out = Path(out)
    check_output_folder(out, config)
    started = time.perf_counter()
    summary = SyntheticSummary(out=out)
    specs = scene_specs(config)

    def rendered(layout: str, split: str, centres: dict[str, Tensor]) -> Iterator[SyntheticScene]:
        """Scenes one at a time; bookkeeping happens once the consumer has written the previous one."""
        for spec in specs:
            if spec.layout == layout and spec.split == split:
                scene = render_spec(config, spec)
                centres[scene.key] = camera_centres(scene.c2w)
                yield scene
                summary.frames += len(scene.images)
                summary.scenes[layout][split] += 1
                if on_scene_written is not None:
                    on_scene_written(spec)

    for layout in config.layouts:
        summary.scenes[layout] = dict.fromkeys(SPLITS, 0)
        centres_by_split: dict[str, dict[str, Tensor]] = {split: {} for split in SPLITS}
        for split in SPLITS:
            scenes = rendered(layout, split, centres_by_split[split])
            if layout == "re10k":
                chunk_scenes = (
                    ChunkScene(s.key, s.images, s.c2w, s.K, s.timestamps, url=f"synthetic:{s.key}")
                    for s in scenes
                )
                write_re10k_chunks(out / "re10k", split, chunk_scenes)
            else:
                for scene in scenes:
                    write_dl3dv_scene(out / "dl3dv" / split, scene.key, scene.images, scene.c2w, scene.K)
        _write_evaluation_indices(out, layout, config, centres_by_split["test"], summary)

    record = {"config": asdict(config), "near": SYNTHETIC_NEAR, "far": SYNTHETIC_FAR}
    (out / "synthetic.json").write_text(json.dumps(record, indent=1))
    summary.seconds = time.perf_counter() - started
    return summary
