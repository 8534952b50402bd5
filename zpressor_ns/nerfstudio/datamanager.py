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
from torch.utils.data import DataLoader

from zpressor_ns.data.dataset import ExampleOptions, MultiSceneDataset, SharedStep, SourceGroupedShuffle
from zpressor_ns.data.eval_index import EvaluationIndex, IndexEntry, build_evaluation_index
from zpressor_ns.data.samplers import BoundedSampler, SamplerName
from zpressor_ns.data.shims import DepthBounds
from zpressor_ns.dataparsers import MULTISCENE_DATAPARSERS
from zpressor_ns.dataparsers.multiscene import MultiSceneDataParser, example_outputs
from zpressor_ns.types import Example, batch_to

LOGGER = logging.getLogger(__name__)

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
    """Height and width the images are rescaled and centre-cropped to."""
    num_context_views: int = 12
    """Context views per training example."""
    num_target_views: int = 8
    """Target views per training example."""
    batch_size: int = 1
    """Scenes per step and process."""
    num_workers: int = 4
    """DataLoader worker processes (0: load in the training process)."""
    augment: bool = True
    """Random horizontal flips of training examples (the original's augmentation)."""
    resize_mode: Literal["bicubic", "pil_lanczos"] = "bicubic"
    """Image resampling; pil_lanczos reproduces the original's exactly (slower)."""
    max_fov_deg: float | None = 100.0
    """Training skips scenes wider than this field of view (the original's RE10K filter)."""
    view_sampler: SamplerName = "boundedv2"
    """Training view sampler: DepthSplat/MVSplat's boundedv2 or pixelSplat's bounded (set by the method)."""
    depth_bounds: DepthBounds = "dataset"
    """near/far of every example: the dataparser's, or pixelSplat's bounds shim from the context cameras
    (set by the method; the evaluation and the viewer use the same)."""
    eval_index: Path | None = None
    """Evaluation index JSON ({scene: {context, target}}). Default: the dataset's standard file for
    eval_num_context_views next to the data or in $ZPRESSOR_EVAL_INDEX_DIR, else built from the test split."""
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
        **kwargs,
    ) -> None:
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
            near=parser_config.near,
            far=parser_config.far,
            augment=False,
            resize_mode=config.resize_mode,
            depth_bounds=config.depth_bounds,
        )
        self.step = SharedStep()
        self._train_loader: Iterator | None = None
        self._eval_position = 0
        self._train_data: MultiSceneDataset | None = None
        self._eval_data: MultiSceneDataset | None = None

        self.display_reader = self.dataparser.reader(self.dataparser.split_name(config.display_split))
        keys = self.display_reader.keys()
        self.display_scene = config.display_scene or keys[0]
        if self.display_scene not in keys:
            raise ValueError(
                f"display scene {self.display_scene!r} is not in the {config.display_split} split of "
                f"{parser_config.data} ({len(keys)} scenes, e.g. {keys[:3]})"
            )
        self.display_num_context = config.display_num_context_views or config.num_context_views
        self._display_dataset = MultiSceneDataset(self.display_reader, self._training_sampler(), self.options)
        self.train_dataset = DisplayViewsDataset(
            self.display_example(self.display_scene, self.display_num_context)
        )
        self.eval_dataset = self.train_dataset
        super().__init__()

    # ---- datasets (built on first use: ns-eval never touches the training split) -------------
    def _training_sampler(self) -> BoundedSampler:
        """The original configuration's bounded sampler for this dataset at the configured view counts."""
        return BoundedSampler.preset(
            self.dataparser.config.dataset,
            self.config.num_context_views,
            self.config.num_target_views,
            sampler=self.config.view_sampler,
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
            self._eval_data = self.evaluation_dataset()
        return self._eval_data

    def evaluation_dataset(self, index: EvaluationIndex | None = None) -> MultiSceneDataset:
        """The test split's scenes of an evaluation index (default: the configured one), in index order."""
        reader = self.dataparser.reader(self.dataparser.split_name("test"))
        index = self.evaluation_index(reader) if index is None else index
        keys = index.report_missing(reader.keys())
        if self.config.max_eval_scenes is not None:
            keys = keys[: self.config.max_eval_scenes]
        return MultiSceneDataset(reader, index, self.options, scene_keys=keys)

    def evaluation_index(self, reader) -> EvaluationIndex:
        """The configured index, else the dataset's standard file, else one built by the original rule."""
        if self.config.eval_index is not None:
            return EvaluationIndex.load(self.config.eval_index)
        views = self.config.eval_num_context_views or self.config.num_context_views
        parser = self.dataparser.config
        name = parser.standard_index_name.format(views=views)
        folders = [parser.data, parser.data.parent]
        if os.environ.get("ZPRESSOR_EVAL_INDEX_DIR"):
            folders.insert(0, Path(os.environ["ZPRESSOR_EVAL_INDEX_DIR"]))
        for folder in folders:
            if (folder / name).is_file():
                LOGGER.info("evaluating on the standard index %s", folder / name)
                return EvaluationIndex.load(folder / name)
        LOGGER.warning(
            "no evaluation index given and %s not found in %s: building one from the test split with the "
            "original rule (%d context views, first %d frames)",
            name,
            ", ".join(str(f) for f in folders),
            views,
            parser.evaluation_window,
        )
        built = build_evaluation_index(reader, views, self.config.num_target_views, parser.evaluation_window)
        entries = {key: IndexEntry(tuple(v["context"]), tuple(v["target"])) for key, v in built.items()}
        return EvaluationIndex(entries, f"built from {parser.data} (test split)")

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
        return batch_to(next(self._train_loader), self.device)

    def next_eval(self, step: int) -> dict:
        """The next evaluation scene, cycling through the index in order (for training-time images)."""
        dataset = self.eval_data
        example = dataset[self._eval_position % len(dataset)]
        self._eval_position += 1
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
        height, width = self.config.image_shape
        return self.config.batch_size * self.config.num_target_views * height * width

    def get_eval_rays_per_batch(self) -> int:
        height, width = self.config.image_shape
        return self.config.num_target_views * height * width

    def get_datapath(self) -> Path:
        return self.dataparser.config.data

    def get_param_groups(self) -> dict:
        return {}


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
