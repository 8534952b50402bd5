"""The multi-scene DataManager (Nerfstudio face).

Nerfstudio's DataManagers serve rays or images of one scene. This one serves batches of examples
``{context, target, scene}`` drawn from many scenes (``zpressor_ns.data.dataset``), with worker
processes, per-rank shards under DDP, the training step shared with the workers for the view
sampler's warm-up, a deterministic benchmark loader for ``ns-eval``, and one *display scene* whose
context views Nerfstudio's viewer draws and ``ns-render`` flies through.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import tyro
from nerfstudio.data.datamanagers.base_datamanager import DataManager, DataManagerConfig
from nerfstudio.data.datasets.base_dataset import InputDataset
from nerfstudio.utils.rich_utils import CONSOLE
from torch.utils.data import DataLoader

from zpressor_ns.data.dataset import ExampleOptions, MultiSceneDataset, SharedStep, SourceGroupedShuffle
from zpressor_ns.data.eval_index import EvaluationIndex, IndexEntry, build_evaluation_index, checked_keys
from zpressor_ns.data.samplers import BoundedSampler
from zpressor_ns.data.scene import SceneError
from zpressor_ns.data.shims import oriented_shape
from zpressor_ns.dataparsers import MULTISCENE_DATAPARSERS
from zpressor_ns.dataparsers.multiscene import MultiSceneDataParser, example_outputs
from zpressor_ns.types import Example, batch_to

LOGGER = logging.getLogger(__name__)
MAX_DISPLAY_TRIES = 20  # test scenes tried in turn when the default display scene cannot be shown


class UserError(SystemExit):
    """A mistake in the data or options, reported as one message without a traceback.

    Python prints a SystemExit's message to stderr and exits with status 1, which is how Nerfstudio's
    own scripts report such problems (``sys.exit``); ns-train and ns-eval let it through untouched.
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"zpressor-ns: {message}")


def scene_error_message(error: SceneError) -> str:
    """The message of a SceneError, also when a DataLoader worker re-raised it with its traceback."""
    last_line = str(error).strip().splitlines()[-1]
    return last_line.split("SceneError: ", 1)[-1] if "Original Traceback" in str(error) else str(error)


# Only multi-scene parsers make sense here: offer exactly those as the subcommand after the method.
MultiSceneParserUnion = tyro.conf.OmitSubcommandPrefixes[
    tyro.extras.subcommand_type_from_defaults(MULTISCENE_DATAPARSERS, prefix_names=False)
]


@dataclass
class FeedForwardDataManagerConfig(DataManagerConfig):
    _target: type = field(default_factory=lambda: FeedForwardDataManager)
    dataparser: MultiSceneParserUnion = field(
        default_factory=lambda: copy.deepcopy(MULTISCENE_DATAPARSERS["re10k"])
    )
    """The dataset (re10k, acid or dl3dv)."""
    image_shape: tuple[int, int] = (256, 448)
    """Height and width the images are rescaled and centre-cropped to (see match_orientation)."""
    match_orientation: bool = True
    """Turn image_shape to the data's orientation (judged on the display scene): portrait captures are then
    seen whole at (width, height) instead of as a centre strip of a landscape crop."""
    num_context_views: int = 12
    """Context views per training example."""
    num_target_views: int = 8
    """Target views per training example."""
    batch_size: int = 1
    """Scenes per step and process."""
    near: float | None = None
    """Near depth bound given to the model, set by methods whose original has its own (MVSplat: 1);
    None: the dataparser's (the dataset's default)."""
    far: float | None = None
    """Far depth bound, likewise (MVSplat: 100); None: the dataparser's."""
    view_sampler: str | None = None
    """Training view-sampler preset (``zpressor_ns.data.samplers``), set by methods whose original samples
    views its own way (MVSplat: "mvsplat"); None: the dataset's (the dataparser's ``dataset``)."""
    num_workers: int = 4
    """DataLoader worker processes (0: load in the training process)."""
    augment: bool = True
    """Random horizontal flips of training examples (the original's augmentation)."""
    resize_mode: Literal["bicubic", "pil_lanczos"] = "bicubic"
    """Image resampling; pil_lanczos reproduces the original's exactly (slower)."""
    max_fov_deg: float | None = 100.0
    """Training skips scenes wider than this field of view (the original's RE10K filter)."""
    eval_index: Path | None = None
    """Evaluation index JSON ({scene: {context, target}}). Default: the dataset's index file for
    eval_num_context_views (<dataset>_ctx_<N>v_tgt_*.json) in $ZPRESSOR_EVAL_INDEX_DIR, DATA/evaluation,
    DATA/<dataset>_evaluation, DATA or beside DATA, else one built from the test split."""
    eval_num_context_views: int | None = None
    """Context views of the default evaluation index (default: num_context_views)."""
    max_eval_scenes: int | None = None
    """Score only the first N index scenes (quick checks; None: all)."""
    display_scene: str | None = None
    """Scene shown in the viewer and flown through by ns-render (default: the first test scene)."""
    display_split: Literal["train", "test"] = "test"
    """Split the display scene comes from."""
    display_num_context_views: int | None = None
    """Context views of the display scene (default: num_context_views)."""
    seed: int = 111123
    """Seed of the view sampling (each rank adds its rank)."""


class DisplayViewsDataset(InputDataset):
    """The display scene's context views as a Nerfstudio dataset (images held in memory)."""

    def __init__(self, example: Example) -> None:
        super().__init__(example_outputs(example))
        images = example["context"]["image"].permute(0, 2, 3, 1)
        self._images = (images.clamp(0, 1) * 255).round().to(torch.uint8).numpy()

    def get_numpy_image(self, image_idx: int) -> np.ndarray:
        return self._images[image_idx]


class FeedForwardDataManager(DataManager):
    config: FeedForwardDataManagerConfig

    def __init__(
        self,
        config: FeedForwardDataManagerConfig,
        device: torch.device | str = "cpu",
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        background_color: tuple[float, float, float] = (0.0, 0.0, 0.0),
        **kwargs,
    ) -> None:
        """``background_color``: what transparent pixels of RGBA frames become (the model's background)."""
        self.config = config
        self.device = device
        self.test_mode = test_mode
        self.world_size = world_size
        self.local_rank = local_rank
        parser_config = config.dataparser
        if config.data is not None:  # the --data alias of ns-train
            parser_config = dataclasses.replace(parser_config, data=config.data)
        self.dataparser: MultiSceneDataParser = parser_config.setup()
        self.options = ExampleOptions(
            image_shape=tuple(config.image_shape),
            near=parser_config.near if config.near is None else config.near,
            far=parser_config.far if config.far is None else config.far,
            augment=False,
            resize_mode=config.resize_mode,
            background=tuple(background_color),
        )
        self.step = SharedStep()
        self._train_loader: Iterator | None = None
        self._eval_position = 0
        self._train_data: MultiSceneDataset | None = None
        self._eval_data: MultiSceneDataset | None = None
        self._default_index: EvaluationIndex | None = None

        self.display_num_context = config.display_num_context_views or config.num_context_views
        try:
            sampler = self._training_sampler()
        except ValueError as error:  # e.g. fewer than 2 context views
            raise UserError(f"invalid view counts: {error}") from None
        try:
            self.display_reader = self.dataparser.reader(self.dataparser.split_name(config.display_split))
            self.options = dataclasses.replace(self.options, image_shape=self._oriented_image_shape())
            self._display_dataset = MultiSceneDataset(self.display_reader, sampler, self.options)
            self.display_scene, display = self._choose_display_scene()
            if test_mode == "val":  # training: find now what would stop it steps later
                self.train_data.first_usable_scene()
                self._eval_data = self.evaluation_dataset()
        except SceneError as error:
            raise UserError(str(error)) from None
        self.train_dataset = DisplayViewsDataset(display)
        self.eval_dataset = self.train_dataset
        super().__init__()

    def _choose_display_scene(self) -> tuple[str, Example]:
        """The configured display scene, else the first test scene that can be shown (saying so when
        earlier ones cannot: a broken or short first scene must not stop a run whose data is fine)."""
        keys = self.display_reader.keys()
        split = self.config.display_split
        if self.config.display_scene is not None:
            if self.config.display_scene not in keys:
                raise SceneError(
                    f"display scene {self.config.display_scene!r} is not in the {split} split of "
                    f"{self.dataparser.config.data} ({len(keys)} scenes, e.g. {keys[:3]})"
                )
            return self.config.display_scene, self.display_example(
                self.config.display_scene, self.display_num_context
            )
        reasons = []
        for key in keys[:MAX_DISPLAY_TRIES]:
            try:
                example = self.display_example(key, self.display_num_context)
            except SceneError as error:
                reasons.append(str(error))
                continue
            if reasons:
                LOGGER.warning(
                    "showing scene %r in the viewer: the %d %s scene(s) before it cannot be shown (%s)",
                    key,
                    len(reasons),
                    split,
                    "; ".join(reasons),
                )
            return key, example
        raise SceneError(
            f"none of the first {len(reasons)} {split} scenes can be shown with {self.display_num_context} "
            "context views, e.g.:\n  "
            + "\n  ".join(reasons[:3])
            + "\nLower --pipeline.datamanager.num-context-views (or display-num-context-views), choose a "
            "scene with --pipeline.datamanager.display-scene, or fix the data"
        )

    @property
    def image_shape(self) -> tuple[int, int]:
        """(height, width) of the examples: the configured shape, turned to the data's orientation."""
        return self.options.image_shape

    def _oriented_image_shape(self) -> tuple[int, int]:
        configured = tuple(self.config.image_shape)
        keys = self.display_reader.keys()
        key = self.config.display_scene or (keys[0] if keys else None)
        if not self.config.match_orientation or key is None:
            return configured
        try:
            scene = self.display_reader.scene(key)
        except SceneError:  # the display scene's own checks report it
            return configured
        shape = oriented_shape(configured, (scene.height, scene.width))
        if shape != configured:
            CONSOLE.print(
                f"{self.dataparser.config.data}: frames are {scene.height}x{scene.width} (height x width), "
                f"image_shape {configured[0]}x{configured[1]} would keep a centre strip of them: using "
                f"{shape[0]}x{shape[1]} (--pipeline.datamanager.match-orientation False keeps the configured "
                "shape)",
                markup=False,
            )
        return shape

    # ---- datasets (built on first use: ns-eval never touches the training split) -------------
    def _training_sampler(self) -> BoundedSampler:
        """The original configuration's bounded sampler (the method's, else the dataset's) at the configured
        view counts."""
        return BoundedSampler.preset(
            self.config.view_sampler or self.dataparser.config.dataset,
            self.config.num_context_views,
            self.config.num_target_views,
        )

    @property
    def train_data(self) -> MultiSceneDataset:
        if self._train_data is None:
            reader = self.dataparser.reader(self.dataparser.split_name("train"))
            options = dataclasses.replace(
                self.options, augment=self.config.augment, max_fov_deg=self.config.max_fov_deg
            )
            dataset = MultiSceneDataset(
                reader,
                self._training_sampler(),
                options,
                seed=self.config.seed + self.local_rank,
                step=self.step,
            )
            self._train_data = (
                dataset.shard(self.local_rank, self.world_size) if self.world_size > 1 else dataset
            )
        return self._train_data

    @property
    def eval_data(self) -> MultiSceneDataset:
        if self._eval_data is None:
            try:
                self._eval_data = self.evaluation_dataset()
            except SceneError as error:  # ns-eval: before any scene is scored or anything written
                raise UserError(str(error)) from None
        return self._eval_data

    def evaluation_dataset(self, index: EvaluationIndex | None = None) -> MultiSceneDataset:
        """The test split's scenes of an evaluation index (default: the configured one), in index order."""
        reader = self.dataparser.reader(self.dataparser.split_name("test"))
        index = self.evaluation_index(reader) if index is None else index
        keys = index.report_missing(reader.keys())
        if self.config.max_eval_scenes is not None:
            keys = keys[: self.config.max_eval_scenes]
        # Checked before any scene is scored; a benchmark (test mode: ns-eval) must fit everywhere.
        keys = checked_keys(index, reader, keys, strict=self.test_mode == "test")
        return MultiSceneDataset(reader, index, self.options, scene_keys=keys)

    def evaluation_index(self, reader) -> EvaluationIndex:
        """The configured index, else the dataset's own index file, else one built by the original rule
        (once per data manager: the notice that it is built is given once)."""
        if self.config.eval_index is not None:
            return EvaluationIndex.load(self.config.eval_index)
        if self._default_index is None:
            self._default_index = self._find_or_build_index(reader)
        return self._default_index

    def _find_or_build_index(self, reader) -> EvaluationIndex:
        views = self.config.eval_num_context_views or self.config.num_context_views
        parser = self.dataparser.config
        found = find_dataset_index(parser.data, parser.standard_index_name, views)
        if found is not None:
            LOGGER.info("evaluating on the dataset's index %s", found)
            return EvaluationIndex.load(found)
        targets, window = self.config.num_target_views, parser.evaluation_window
        name = f"{dataset_prefix(parser.standard_index_name)}_ctx_{views}v_tgt_{targets}v_n{window}"
        built = build_evaluation_index(reader, views, targets, window)
        LOGGER.warning(
            "no evaluation index for %d context views found (%s in %s): evaluating on %s, built from the "
            "test split of %s by the original rule (%d scenes, %d context and %d target views in the first %d "
            "frames); give one with --pipeline.datamanager.eval-index",
            views,
            parser.standard_index_name.format(views=views),
            ", ".join(str(folder) for folder in index_folders(parser.data, parser.standard_index_name)),
            name,
            parser.data,
            len(built),
            views,
            targets,
            window,
        )
        entries = {key: IndexEntry(tuple(v["context"]), tuple(v["target"])) for key, v in built.items()}
        return EvaluationIndex(entries, f"{name} (built from the test split of {parser.data})")

    # ---- Nerfstudio's DataManager contract --------------------------------------------------
    def setup_train(self) -> None:
        """Loaders start lazily in next_train (an ns-eval run never starts training workers)."""

    def setup_eval(self) -> None:
        """See setup_train."""

    def _loader(self, dataset: MultiSceneDataset, training: bool, batch_size: int) -> DataLoader:
        # Training visits scenes chunk by chunk in random order, so a worker loads each chunk once a pass.
        sampler = SourceGroupedShuffle(dataset, seed=self.config.seed + self.local_rank) if training else None
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.config.num_workers,
            persistent_workers=training and self.config.num_workers > 0,
            drop_last=training,
            pin_memory=torch.device(self.device).type == "cuda",
        )

    def next_train(self, step: int) -> dict:
        self.step.value = step
        if self._train_loader is None:
            self._train_loader = _forever(self._loader(self.train_data, True, self.config.batch_size))
        self.train_count += 1
        try:
            batch = next(self._train_loader)
        except SceneError as error:  # no usable training scene is left (each was reported when skipped)
            raise UserError(f"training stopped: {scene_error_message(error)}") from None
        return batch_to(batch, self.device)

    def next_eval(self, step: int) -> dict:
        """The next evaluation scene, cycling through the index in order (for training-time images)."""
        dataset = self.eval_data
        for _ in range(len(dataset)):
            position = self._eval_position % len(dataset)
            self._eval_position += 1
            try:
                example = dataset[position]
                break
            except SceneError as error:  # an image that does not decode: show the next scene instead
                LOGGER.warning("skipping evaluation scene %r: %s", dataset.keys()[position], error)
        else:
            raise UserError(f"no scene of the evaluation index {dataset.views.source} can be loaded")
        self.eval_count += 1
        return batch_to(_batch_of_one(example), self.device)

    def next_eval_image(self, step: int) -> dict:
        return self.next_eval(step)

    def benchmark_batches(self, dataset: MultiSceneDataset | None = None) -> _SizedBatches:
        """Every scene of an evaluation dataset (default: the configured index) once, in order, as
        batches of one on the model's device."""
        return _SizedBatches(self._loader(dataset or self.eval_data, False, 1), self.device)

    def display_scene_keys(self) -> list[str]:
        return self.display_reader.keys()

    def display_example(self, key: str, num_context: int) -> Example:
        """A deterministic example of any scene of the display split (the official index rule)."""
        return self._display_dataset.display_example(key, num_context)

    def display_context(self, key: str, num_context: int) -> dict:
        """A batch of one: the context views the viewer's scene is predicted from."""
        example = self.display_example(key, num_context)
        return batch_to(_batch_of_one(example)["context"], self.device)

    def get_train_rays_per_batch(self) -> int:
        height, width = self.image_shape
        return self.config.batch_size * self.config.num_target_views * height * width

    def get_eval_rays_per_batch(self) -> int:
        height, width = self.image_shape
        return self.config.num_target_views * height * width

    def get_datapath(self) -> Path:
        return self.dataparser.config.data

    def get_param_groups(self) -> dict:
        return {}


def dataset_prefix(standard_index_name: str) -> str:
    """ "re10k" of "re10k_ctx_{views}v_tgt_8v_n200.json": how a dataset's index files start."""
    return standard_index_name.split("_ctx_", 1)[0]


def index_folders(data: Path, standard_index_name: str) -> list[Path]:
    """Where a dataset's index files are looked for, in order: $ZPRESSOR_EVAL_INDEX_DIR, DATA/evaluation
    (make-synthetic), DATA/<dataset>_evaluation (the official assets' folder name), DATA, beside DATA."""
    data = Path(data)
    folders = [
        data / "evaluation",
        data / f"{dataset_prefix(standard_index_name)}_evaluation",
        data,
        data.parent,
    ]
    if os.environ.get("ZPRESSOR_EVAL_INDEX_DIR"):
        folders.insert(0, Path(os.environ["ZPRESSOR_EVAL_INDEX_DIR"]))
    return folders


def find_dataset_index(data: Path, standard_index_name: str, views: int) -> Path | None:
    """The dataset's index file for ``views`` context views: the standard name (e.g. the official
    re10k_ctx_12v_tgt_8v_n200.json) first, else any <dataset>_ctx_<views>v_tgt_<T>v_n<W>.json (make-synthetic
    writes windows shorter than 200 frames), in the first folder of :func:`index_folders` holding one."""
    standard = standard_index_name.format(views=views)
    pattern = f"{dataset_prefix(standard_index_name)}_ctx_{views}v_tgt_*v_n*.json"
    for folder in index_folders(data, standard_index_name):
        if (folder / standard).is_file():
            return folder / standard
        matches = sorted(folder.glob(pattern)) if folder.is_dir() else []
        if matches:
            return matches[0]
    return None


class _SizedBatches:
    """A DataLoader whose batches are moved to a device, with a length for progress bars."""

    def __init__(self, loader: DataLoader, device: torch.device | str) -> None:
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            yield batch_to(batch, self.device)


def _forever(loader: DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def _batch_of_one(example: Example) -> dict:
    return torch.utils.data.default_collate([example])
