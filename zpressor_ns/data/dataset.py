"""A map-style torch Dataset of examples drawn from many scenes, for training and evaluation.

Item ``i`` is an example (see :mod:`zpressor_ns.types`) of scene ``keys()[i]``:

- training (a :class:`BoundedSampler`): views drawn at the current training step, optionally
  flipped, resized and cropped. A scene that cannot be used (unreadable, bad poses, too short for
  the sampler) is skipped with one warning per scene and worker process, and another scene is drawn
  from the item's generator; when no usable scene is left a :class:`SceneError` says so.
- evaluation (an :class:`EvaluationIndex`): the index's views of every scene present in both the
  data and the index, in the reader's order; errors are raised, naming the scene.

The training step reaches DataLoader worker processes through :class:`SharedStep`, a 64-bit integer
in shared memory: create it before the DataLoader starts its workers, pass it to the dataset, and
set ``step.value`` from the training loop. Worker processes read the current value per item, so the
gap warm-up follows training without restarting workers. Each item's randomness is seeded from
(seed, step, item index), so an item is reproducible for a given step.

Chunk readers load a whole chunk per scene; walking ``keys()`` in order (evaluation) opens each chunk
once, and sharding gives each rank a contiguous block of keys for the same reason. For training,
:class:`SourceGroupedShuffle` shuffles while keeping scenes of one chunk together.
"""

from __future__ import annotations

import copy
import logging
import multiprocessing
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from zpressor_ns.cameras import camera_centres
from zpressor_ns.data.eval_index import EvaluationIndex, evaluation_views
from zpressor_ns.data.samplers import BoundedSampler, SceneTooShort
from zpressor_ns.data.scene import Scene, SceneError, SceneReader, field_of_view_deg
from zpressor_ns.data.shims import (
    DECODE_HEADROOM,
    ResizeMode,
    decode_reduction,
    random_flip,
    rescale_example,
)
from zpressor_ns.types import Example, ViewSet

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DepthRange:
    near: float
    far: float


# Near/far of the original configurations (DepthSplat trains RE10K and DL3DV with 1/200; MVSplat
# uses 1/100 on RE10K and ACID).
DEPTH_RANGES: dict[str, DepthRange] = {
    "re10k": DepthRange(1.0, 200.0),
    "dl3dv": DepthRange(1.0, 200.0),
    "acid": DepthRange(1.0, 100.0),
    "re10k-mvsplat": DepthRange(1.0, 100.0),
}


@dataclass(frozen=True)
class ExampleOptions:
    """How examples are shaped: resolution, depth range, augmentation."""

    image_shape: tuple[int, int] = (256, 448)
    near: float = 1.0
    far: float = 200.0
    augment: bool = False  # random horizontal flip, training only
    resize_mode: ResizeMode = "bicubic"  # "pil_lanczos" reproduces the original's resampling
    max_fov_deg: float | None = None  # training skips scenes wider than this (the original uses 100)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # transparent pixels become this colour


class SharedStep:
    """The training step, shared with DataLoader worker processes (see the module docstring)."""

    def __init__(self, value: int = 0) -> None:
        self._shared = multiprocessing.Value("q", value, lock=False)

    @property
    def value(self) -> int:
        return int(self._shared.value)

    @value.setter
    def value(self, step: int) -> None:
        self._shared.value = step


class MultiSceneDataset(Dataset):
    """Examples from the scenes of a :class:`SceneReader` (see the module docstring)."""

    def __init__(
        self,
        reader: SceneReader,
        views: BoundedSampler | EvaluationIndex,
        options: ExampleOptions,
        *,
        scene_keys: list[str] | None = None,
        seed: int = 0,
        step: SharedStep | None = None,
    ) -> None:
        self.reader = reader
        self.views = views
        self.options = options
        self.seed = seed
        self.step = step if step is not None else SharedStep()
        keys = views.report_missing(reader.keys()) if isinstance(views, EvaluationIndex) else reader.keys()
        if scene_keys is not None:
            unknown = sorted(set(scene_keys) - set(keys))
            if unknown:
                raise SceneError(f"scene keys {unknown[:5]} are not available ({len(unknown)} in all)")
            wanted = set(scene_keys)
            keys = [key for key in keys if key in wanted]
        if not keys:
            raise SceneError("no scenes to draw examples from (empty dataset, or no scene is in the index)")
        self._keys = keys
        self._bad_keys: set[str] = set()
        self._warned_large: set[str] = set()

    @property
    def training(self) -> bool:
        return isinstance(self.views, BoundedSampler)

    @property
    def num_context(self) -> int:
        if isinstance(self.views, BoundedSampler):
            return self.views.num_context
        return len(next(iter(self.views.values())).context)

    @property
    def num_target(self) -> int:
        if isinstance(self.views, BoundedSampler):
            return self.views.num_target
        return len(next(iter(self.views.values())).target)

    def keys(self) -> list[str]:
        return list(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def shard(self, rank: int, world_size: int) -> MultiSceneDataset:
        """This rank's contiguous block of scenes (deterministic; blocks differ in size by at most 1)."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside a world of size {world_size}")
        start, stop = len(self._keys) * rank // world_size, len(self._keys) * (rank + 1) // world_size
        if self.training and start == stop:
            raise SceneError(
                f"rank {rank} of {world_size} gets no training scene: only {len(self._keys)} scenes"
            )
        shard = copy.copy(self)
        shard._keys = self._keys[start:stop]
        shard._bad_keys = set()
        return shard

    def source_groups(self) -> list[list[int]]:
        """Item indices grouped by the file they are stored in (one group per scene when unknown)."""
        source_of = getattr(self.reader, "source_of", None)
        groups: dict[str, list[int]] = {}
        for index, key in enumerate(self._keys):
            groups.setdefault(str(source_of(key)) if source_of else key, []).append(index)
        return list(groups.values())

    def __getitem__(self, index: int) -> Example:
        if not self.training:
            key = self._keys[index]
            scene = self.reader.scene(key)
            return self._assemble(scene, *self.views.views(key, scene.num_frames), flip_rng=None)
        rng = torch.Generator().manual_seed(self._item_seed(index))
        key = self._keys[index]
        for _ in range(len(self._keys) + 1):
            if key not in self._bad_keys:
                try:
                    return self._training_example(key, rng)
                except SceneError as error:
                    self._bad_keys.add(key)
                    logger.warning("skipping scene %r in training: %s", key, error)
            usable = [k for k in self._keys if k not in self._bad_keys]
            if not usable:
                break
            key = usable[int(torch.randint(len(usable), (), generator=rng))]
        raise SceneError(f"none of the {len(self._keys)} training scenes is usable (see the warnings above)")

    def first_usable_scene(self) -> str:
        """The first training scene (in key order) that gives an example at the current step.

        Run at start-up, so options no scene can satisfy (more context views than any scene has
        frames) are one error before training instead of a failure in a worker. Scenes that fail
        are skipped with a warning, as in training.
        """
        if not self.training:
            raise ValueError("first_usable_scene applies to training datasets")
        rng = torch.Generator().manual_seed(self._item_seed(0))
        reasons = []
        for key in self._keys:
            if key in self._bad_keys:
                continue
            try:
                self._training_example(key, rng)
                return key
            except SceneError as error:
                self._bad_keys.add(key)
                reasons.append(str(error))
                logger.warning("skipping scene %r in training: %s", key, error)
        raise SceneError(
            f"none of the {len(self._keys)} training scenes gives a training example with "
            f"{self.num_context} context and {self.num_target} target views, e.g.:\n  "
            + "\n  ".join(reasons[:3])
            + "\nLower the view counts or fix the data"
        )

    def _item_seed(self, index: int) -> int:
        state = np.random.SeedSequence([self.seed, self.step.value, index]).generate_state(1, np.uint64)
        return int(state[0]) >> 1  # torch seeds are signed 64-bit

    def _training_example(self, key: str, rng: torch.Generator) -> Example:
        scene = self.reader.scene(key)
        if self.options.max_fov_deg is not None:
            widest = float(field_of_view_deg(scene.K).max())
            if widest > self.options.max_fov_deg:
                raise SceneError(
                    f"scene {key!r} has a {widest:.0f} degree field of view (limit {self.options.max_fov_deg})"
                )
        context, target = self.views.sample(
            scene.num_frames, camera_centres(scene.c2w), self.step.value, rng, scene=key
        )
        return self._assemble(scene, context, target, flip_rng=rng if self.options.augment else None)

    def display_example(self, key: str | None = None, num_context: int | None = None) -> Example:
        """A deterministic example of one scene (default: the first) for the viewer.

        Without ``num_context``: the index's views in evaluation, the sampler's test mode in training.
        With it: the official index rule applied to the whole scene.
        """
        key = self._keys[0] if key is None else key
        scene = self.reader.scene(key)
        if num_context is None and isinstance(self.views, EvaluationIndex) and key in self.views:
            views = self.views.views(key, scene.num_frames)
        elif num_context is None and isinstance(self.views, BoundedSampler):
            views = self.views.sample(
                scene.num_frames,
                camera_centres(scene.c2w),
                0,
                torch.Generator().manual_seed(self.seed),
                scene=key,
                test=True,
            )
        else:
            count = num_context or self.num_context
            views = evaluation_views(camera_centres(scene.c2w), count, self.num_target, window=0)
            if views is None:
                raise SceneTooShort(
                    f"scene {key!r} has {scene.num_frames} frames, too few for {count} context and "
                    f"{self.num_target} target views"
                )
        return self._assemble(scene, *views, flip_rng=None)

    def _assemble(
        self, scene: Scene, context: list[int], target: list[int], flip_rng: torch.Generator | None
    ) -> Example:
        frames = sorted(set(context) | set(target))
        reduce = decode_reduction((scene.height, scene.width), self.options.image_shape)
        if reduce > 1 and scene.key not in self._warned_large:
            logger.warning(
                "scene %r: frames are %dx%d, over %d times the %dx%d used; decoding them %d times smaller "
                "(store downscaled frames to save decoding time)",
                scene.key,
                scene.width,
                scene.height,
                2 * DECODE_HEADROOM,
                self.options.image_shape[1],
                self.options.image_shape[0],
                reduce,
            )
            self._warned_large.add(scene.key)
        images = scene.load_images(frames, reduce=reduce, background=self.options.background)
        position = {frame: i for i, frame in enumerate(frames)}

        def view_set(indices: list[int]) -> ViewSet:
            index = torch.tensor(indices, dtype=torch.int64)
            return {
                "image": images[[position[i] for i in indices]],
                "c2w": scene.c2w[index],
                "K": scene.K[index],
                "near": torch.full((len(indices),), self.options.near, dtype=torch.float32),
                "far": torch.full((len(indices),), self.options.far, dtype=torch.float32),
                "index": index,
            }

        example: Example = {"context": view_set(context), "target": view_set(target), "scene": scene.key}
        if flip_rng is not None:
            example = random_flip(example, flip_rng)
        return rescale_example(example, self.options.image_shape, self.options.resize_mode)


class SourceGroupedShuffle(Sampler[int]):
    """A shuffled training order that visits scenes file by file.

    Files (chunks) come in random order and the scenes of each file in random order, so a worker
    loads each chunk once per pass instead of once per scene. Each pass draws a new order from the
    generator seeded here, as ``RandomSampler(generator=...)`` does.
    """

    def __init__(self, dataset: MultiSceneDataset, seed: int = 0) -> None:
        self.groups = dataset.source_groups()
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return sum(len(group) for group in self.groups)

    def __iter__(self):
        for group_index in torch.randperm(len(self.groups), generator=self.generator).tolist():
            group = self.groups[group_index]
            yield from (group[i] for i in torch.randperm(len(group), generator=self.generator).tolist())
