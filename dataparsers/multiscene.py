"""Multi-scene dataparsers (Nerfstudio face): where a dataset lives and its per-dataset defaults.

A feed-forward method trains over thousands of scenes, which Nerfstudio's single-scene
``DataparserOutputs`` cannot hold. The parser therefore does two jobs:
- it opens the dataset's scene readers (``reader(split)``) for the multi-scene DataManager, with the
  original configs' near/far and view-sampler defaults for that dataset;
- it returns Nerfstudio outputs for ONE display scene (``display_scene``), which the viewer draws and
  ``ns-render`` flies through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from nerfstudio.cameras.cameras import Cameras, CameraType
from nerfstudio.data.dataparsers.base_dataparser import DataParser, DataParserConfig, DataparserOutputs
from nerfstudio.data.scene_box import SceneBox
from torch import Tensor

from zpressor_ns.cameras import camera_centres, normalised_to_pixel_K, opencv_to_opengl_c2w
from zpressor_ns.data.readers import SceneReader, open_dataset
from zpressor_ns.data.scene import Scene
from zpressor_ns.types import Example


@dataclass
class MultiSceneDataParserConfig(DataParserConfig):
    """A dataset of many scenes (RE10K/ACID chunks, DL3DV, or folders of Nerfstudio scenes)."""

    _target: type = field(default_factory=lambda: MultiSceneDataParser)
    data: Path = Path("data/re10k")
    """Dataset root (for chunk layouts: the folder holding train/ and test/)."""
    dataset: str = "re10k"
    """Which original configuration's view-sampler defaults to use: re10k, acid or dl3dv."""
    layout: str = "auto"
    """On-disk layout: auto, re10k (chunks), dl3dv (raw), dl3dv-chunks, nerfstudio."""
    image_dir: str | None = None
    """Image folder of transforms.json scenes: DL3DV defaults to images_8 (270x480; images_4 = 540x960),
    Nerfstudio captures to the paths written in transforms.json."""
    near: float = 1.0
    """Near depth bound given to the model (the original: 1 for DepthSplat on RE10K and DL3DV)."""
    far: float = 200.0
    """Far depth bound (the original: 200 for DepthSplat on RE10K and DL3DV; 100 for MVSplat/ACID)."""
    train_split: str = "train"
    eval_split: str = "test"
    evaluation_window: int = 200
    """Frames of each test scene the evaluation index may use (RE10K/ACID 200, DL3DV 50)."""
    standard_index_name: str = "re10k_ctx_{views}v_tgt_8v_n200.json"
    """File name of the dataset's official evaluation index for a view count."""


class MultiSceneDataParser(DataParser):
    config: MultiSceneDataParserConfig

    def reader(self, split: str) -> SceneReader:
        return open_dataset(
            self.config.data, split, layout=self.config.layout, image_dir=self.config.image_dir
        )

    def split_name(self, split: str) -> str:
        return self.config.train_split if split == "train" else self.config.eval_split

    def _generate_dataparser_outputs(self, split: str = "train", **kwargs) -> DataparserOutputs:
        reader = self.reader(self.split_name(split))
        keys = reader.keys()
        if not keys:
            raise ValueError(f"{self.config.data}: the {self.split_name(split)} split holds no scenes")
        return scene_outputs(reader.scene(keys[0]))


def scene_outputs(scene: Scene) -> DataparserOutputs:
    """Nerfstudio outputs of all frames of a scene, at the size stored on disk."""
    frames = list(range(scene.num_frames))
    return _outputs(scene.c2w, scene.K, scene.height, scene.width, scene.key, frames, Path(scene.source))


def example_outputs(example: Example) -> DataparserOutputs:
    """Nerfstudio outputs of an example's context views, at the example's (model) resolution."""
    context = example["context"]
    height, width = context["image"].shape[-2:]
    frames = context["index"].tolist()
    return _outputs(
        context["c2w"], context["K"], height, width, example["scene"], frames, Path(example["scene"])
    )


def _outputs(
    c2w: Tensor, K: Tensor, height: int, width: int, key: str, frames: list[int], source: Path
) -> DataparserOutputs:
    K = normalised_to_pixel_K(K, width, height)
    cameras = Cameras(
        camera_to_worlds=opencv_to_opengl_c2w(c2w)[:, :3, :4],
        fx=K[:, 0, 0:1],
        fy=K[:, 1, 1:2],
        cx=K[:, 0, 2:3],
        cy=K[:, 1, 2:3],
        width=int(width),
        height=int(height),
        camera_type=CameraType.PERSPECTIVE,
    )
    centres = camera_centres(c2w)
    extent = (centres.amax(0) - centres.amin(0)).max().clamp_min(1.0)
    middle = centres.mean(0)
    return DataparserOutputs(
        # Frames live inside chunk files or are already decoded: these names only label them.
        image_filenames=[source / f"{key}#frame{i:05d}" for i in frames],
        cameras=cameras,
        scene_box=SceneBox(aabb=torch.stack([middle - extent, middle + extent])),
        metadata={"scene": key, "frames": frames},
    )
