"""The Nerfstudio Pipeline of feed-forward, multi-scene training and benchmark evaluation.

Nerfstudio's VanillaPipeline assumes one scene and always wraps the model in DDP with
``find_unused_parameters=True``; this pipeline drives the multi-scene DataManager, calls the model
through its DDP wrapper (so gradients synchronise), evaluates a benchmark index for ``ns-eval``, loads
checkpoints strictly, and keeps the viewer's cached scene fresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from nerfstudio.engine.callbacks import TrainingCallback, TrainingCallbackAttributes, TrainingCallbackLocation
from nerfstudio.models.base_model import Model
from nerfstudio.pipelines.base_pipeline import Pipeline, VanillaPipelineConfig
from nerfstudio.viewer.viewer_elements import ViewerControl, ViewerDropdown, ViewerSlider
from PIL import Image
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from zpressor_ns.data.dataset import MultiSceneDataset
from zpressor_ns.data.eval_index import EvaluationIndex
from zpressor_ns.data.scene import SceneError
from zpressor_ns.metrics import mean_and_std
from zpressor_ns.nerfstudio.datamanager import (
    FeedForwardDataManager,
    FeedForwardDataManagerConfig,
    UserError,
    scene_error_message,
)
from zpressor_ns.nerfstudio.model import FeedForwardModelConfig, FeedForwardSplatModel
from zpressor_ns.nerfstudio.viewer_cameras import (
    ViewerPose,
    context_camera_pose,
    draw_context_cameras,
    move_client_camera,
)

LOGGER = logging.getLogger(__name__)
MAX_SCENE_CHOICES = 300


@dataclass
class FeedForwardPipelineConfig(VanillaPipelineConfig):
    _target: type = field(default_factory=lambda: FeedForwardPipeline)
    datamanager: FeedForwardDataManagerConfig = field(default_factory=FeedForwardDataManagerConfig)
    model: FeedForwardModelConfig = field(default_factory=FeedForwardModelConfig)
    display_refresh_every: int = 500
    """Re-predict the viewer's scene every N training steps (0: only at start and after loading)."""
    find_unused_parameters: bool = False
    """DDP option; every parameter takes part in every step of these models."""


class FeedForwardPipeline(Pipeline):
    config: FeedForwardPipelineConfig
    datamanager: FeedForwardDataManager

    def __init__(
        self,
        config: FeedForwardPipelineConfig,
        device: str,
        test_mode: Literal["test", "val", "inference"] = "val",
        world_size: int = 1,
        local_rank: int = 0,
        grad_scaler=None,
    ) -> None:
        super().__init__()
        self.config = config
        self.test_mode = test_mode
        self.world_size = world_size
        self.datamanager = config.datamanager.setup(
            device=device,
            test_mode=test_mode,
            world_size=world_size,
            local_rank=local_rank,
            background_color=config.model.background_color,
        )
        self.datamanager.to(device)
        dataset = self.datamanager.train_dataset
        self._model = config.model.setup(
            scene_box=dataset.scene_box,
            num_train_data=len(dataset),
            metadata=dataset.metadata,
            device=device,
            grad_scaler=grad_scaler,
        )
        self.model.to(device)
        self._check_anchors_fit(self.datamanager.eval_data if test_mode == "val" else None)
        if world_size > 1:
            self._model = typing.cast(
                Model,
                DDP(
                    self._model, device_ids=[local_rank], find_unused_parameters=config.find_unused_parameters
                ),
            )
            dist.barrier(device_ids=[local_rank])
        # Viewer controls (installed by Nerfstudio's viewer under "Custom Elements").
        self.viewer_control = _ViewerHook(on_ready=self._on_viewer_ready)
        self._loaded_step = 0
        # A dropdown of thousands of test scenes is unusable: offer the first few hundred (and the shown one).
        scenes = self.datamanager.display_scene_keys()[:MAX_SCENE_CHOICES]
        if self.datamanager.display_scene not in scenes:
            scenes.append(self.datamanager.display_scene)
        self.scene_dropdown = ViewerDropdown(
            "Scene", self.datamanager.display_scene, scenes, cb_hook=lambda _: self._on_display_change()
        )
        self.context_slider = ViewerSlider(
            "Context views",
            self.datamanager.display_num_context,
            min_value=self.model.encoder.config.num_anchors if self.model.encoder.zpressor is not None else 2,
            max_value=max(self.datamanager.display_num_context, 64),
            step=1,
            cb_hook=lambda _: self._on_display_change(),
            hint="Context views given to the encoder for the displayed scene",
        )
        self._camera_handles: list = []
        self.refresh_display()

    @property
    def model(self) -> FeedForwardSplatModel:
        return typing.cast(FeedForwardSplatModel, super().model)

    def _check_anchors_fit(self, evaluation: MultiSceneDataset | None) -> None:
        """ZPressor keeps K anchors of the context views: every view count the run uses must be >= K."""
        anchors = self.model.config.num_anchors or self.model.encoder.config.num_anchors
        if self.model.encoder.zpressor is None or anchors == "auto":
            return
        datamanager = self.datamanager.config
        counts = [
            ("num-context-views", datamanager.num_context_views),
            ("display-num-context-views", self.datamanager.display_num_context),
        ]
        if evaluation is not None and isinstance(evaluation.views, EvaluationIndex):
            key, count = evaluation.views.fewest_context_views
            counts.append(
                (f"context views of scene {key!r} in the evaluation index {evaluation.views.source}", count)
            )
        for name, count in counts:
            if count < anchors:
                raise UserError(
                    f"{name} is {count}, fewer than the {anchors} ZPressor anchors the model keeps; "
                    "give at least as many context views as anchors, or lower --pipeline.model.num-anchors"
                )

    # ---- training ----------------------------------------------------------------------------
    def get_train_loss_dict(self, step: int):
        batch = self.datamanager.next_train(step)
        self.model.step = step
        outputs = self._model(batch)  # the DDP wrapper when distributed
        metrics_dict = self.model.get_metrics_dict(outputs, batch)
        loss_dict = self.model.get_loss_dict(outputs, batch, metrics_dict)
        return outputs, loss_dict, metrics_dict

    @torch.no_grad()
    def get_eval_loss_dict(self, step: int):
        self.eval()
        batch = self.datamanager.next_eval(step)
        outputs = self.model(batch)
        metrics_dict = self.model.get_metrics_dict(outputs, batch)
        loss_dict = self.model.get_loss_dict(outputs, batch, metrics_dict)
        self.train()
        return outputs, loss_dict, metrics_dict

    @torch.no_grad()
    def get_eval_image_metrics_and_images(self, step: int):
        self.eval()
        batch = self.datamanager.next_eval(step)
        outputs = self.model(batch)
        metrics_dict, images = self.model.get_image_metrics_and_images(outputs, batch)
        metrics_dict["num_rays"] = int(batch["target"]["image"][0, :, 0].numel())
        self.train()
        return metrics_dict, images

    # ---- benchmark evaluation (ns-eval) ------------------------------------------------------
    @torch.no_grad()
    def get_average_eval_image_metrics(
        self, step: int | None = None, output_path: Path | None = None, get_std: bool = False
    ) -> dict[str, float]:
        """Score every scene of the evaluation index: per-target metrics, averaged per scene, then over
        scenes (the original's protocol). Writes per-scene JSON and renders when ``output_path`` is given."""
        self.eval()
        self._check_anchors_fit(self.datamanager.eval_data)  # before anything is scored or written
        try:
            per_scene = self.evaluate_scenes(output_path)
        except SceneError as error:  # a frame that does not decode: the benchmark cannot cover the index
            raise UserError(f"evaluation stopped: {scene_error_message(error)}") from None
        if not per_scene:
            raise RuntimeError("the evaluation index selected no scene of the data: nothing to score")
        results: dict[str, float] = {}
        for key in next(iter(per_scene.values())):
            mean, std = mean_and_std([scores[key] for scores in per_scene.values()])
            results[key] = mean
            if get_std:
                results[f"{key}_std"] = std
        results["num_scenes"] = len(per_scene)
        if output_path is not None:
            output_path.mkdir(parents=True, exist_ok=True)
            (output_path / "per_scene.json").write_text(json.dumps(per_scene, indent=2))
        self.train()
        return results

    @torch.no_grad()
    def evaluate_scenes(
        self,
        output_path: Path | None = None,
        dataset: MultiSceneDataset | None = None,
        num_anchors: int | None = None,
        progress: bool = True,
        timed: bool = False,
    ) -> dict[str, dict[str, float]]:
        """Per-scene mean PSNR/SSIM(/LPIPS) over the targets of every evaluation scene.

        With ``timed``, each scene also gets ``encoder_ms`` and ``render_ms`` (all its targets; device
        synchronised) and ``gaussians``.
        """
        per_scene: dict[str, dict[str, float]] = {}
        loader = self.datamanager.benchmark_batches(dataset)
        for batch in tqdm(loader, total=len(loader), desc="evaluating scenes", disable=not progress):
            image_shape = tuple(batch["target"]["image"].shape[-2:])
            clock = _Stopwatch(self.device, enabled=timed)
            encoded = self.model.encode(batch["context"], num_anchors)
            encoder_ms = clock.lap()
            rendered = self.model.render(encoded, batch["target"], image_shape)
            render_ms = clock.lap()
            scores = self.model.score_views(rendered.color[0], batch["target"]["image"][0])
            scene = batch["scene"][0]
            per_scene[scene] = {k: float(v.mean()) for k, v in scores.items()}
            if timed:
                per_scene[scene].update(
                    encoder_ms=encoder_ms, render_ms=render_ms, gaussians=float(encoded.means.shape[1])
                )
            if output_path is not None:
                self._save_renders(output_path, scene, batch, rendered.color[0])
        return per_scene

    @staticmethod
    def _save_renders(output_path: Path, scene: str, batch: dict, colors: torch.Tensor) -> None:
        folder = output_path / scene
        folder.mkdir(parents=True, exist_ok=True)
        frames = batch["target"]["index"][0].tolist()
        for frame, color, gt in zip(frames, colors, batch["target"]["image"][0]):
            for name, image in (("pred", color), ("gt", gt)):
                array = (image.clamp(0, 1).permute(1, 2, 0) * 255).round().byte().cpu().numpy()
                Image.fromarray(array).save(folder / f"{frame:06d}_{name}.png")

    # ---- checkpoints, viewer -------------------------------------------------------------
    def load_pipeline(self, loaded_state: dict, step: int) -> None:
        """Load strictly: a checkpoint of another method or preset is an error, never a silent partial load."""
        state = {key.removeprefix("module."): value for key, value in loaded_state.items()}
        model_state = {}
        for key, value in state.items():
            if key.startswith("_model."):
                model_state[key[len("_model.") :].removeprefix("module.")] = value
        try:
            self.model.load_state_dict(model_state, strict=True)
        except RuntimeError as error:
            raise RuntimeError(
                "checkpoint does not match this model (method/preset differ?): " + str(error).splitlines()[0]
            ) from error
        self.model.update_to_step(step)
        self._loaded_step = step
        self.refresh_display()

    def refresh_display(self, step: int | None = None) -> None:
        """Predict the displayed scene from its context views and draw its anchor cameras."""
        key = self.scene_dropdown.value
        self._display_context = self.datamanager.display_context(key, int(self.context_slider.value))
        self.model.set_display_scene(self._display_context)
        self._display_key = key
        self._draw_display_cameras()

    def _on_display_change(self) -> None:
        """Viewer callback: predict the chosen scene with the chosen number of context views (a new
        scene also moves the browsers' cameras to its first context camera)."""
        viewer = getattr(self.viewer_control, "viewer", None)
        lock = getattr(viewer, "train_lock", None) or contextlib.nullcontext()
        shown = self._display_key
        with lock:
            try:
                self.refresh_display()
            except SceneError as error:  # e.g. more context views than the scene has frames
                LOGGER.warning("cannot display %s: %s", self.scene_dropdown.value, error)
                return
        server = getattr(self.viewer_control, "viser_server", None)
        if server is not None and self._display_key != shown:
            for client in server.get_clients().values():
                move_client_camera(client, self._start_pose())

    def _on_viewer_ready(self, viewer) -> None:
        """Once Nerfstudio's viewer is up: draw the context cameras and start every browser at the scene.

        Without a trainer (ns-viewer, ``zpressor-ns view``) the session only views a finished run: show
        the run's step and no pause/resume buttons, which would do nothing.
        """
        if viewer.trainer is None:
            viewer.pause_train.visible = False
            viewer.resume_train.visible = False
            viewer.update_step(self._loaded_step)
        viewer.viser_server.on_client_connect(self._start_client_at_scene)
        self._draw_display_cameras()

    def _start_pose(self) -> ViewerPose:
        return context_camera_pose(self._display_context, self.model.display_gaussians.means)

    def _start_client_at_scene(self, client) -> None:
        """Move a new browser's camera to the display scene's first context camera once it reports its own."""
        started = threading.Event()

        def on_first_update(_) -> None:
            if not started.is_set():
                started.set()
                move_client_camera(client, self._start_pose())

        client.camera.on_update(on_first_update)

    def _draw_display_cameras(self) -> None:
        """Anchor and support frustums of the displayed scene (once the viewer is up)."""
        server = getattr(self.viewer_control, "viser_server", None)
        gaussians = self.model.display_gaussians
        if server is None or gaussians is None:
            return
        self._camera_handles = draw_context_cameras(
            server, self._display_context, gaussians.anchors, self._camera_handles
        )

    def get_training_callbacks(self, training_callback_attributes: TrainingCallbackAttributes):
        callbacks = self.datamanager.get_training_callbacks(training_callback_attributes)
        callbacks += self.model.get_training_callbacks(training_callback_attributes)
        if self.config.display_refresh_every > 0:
            callbacks.append(
                TrainingCallback(
                    [TrainingCallbackLocation.AFTER_TRAIN_ITERATION],
                    self.refresh_display,
                    update_every_num_iters=self.config.display_refresh_every,
                )
            )
        return callbacks

    def get_param_groups(self):
        return {**self.datamanager.get_param_groups(), **self.model.get_param_groups()}


class _Stopwatch:
    """Wall-clock laps in milliseconds, synchronising CUDA first so kernels are counted."""

    def __init__(self, device: torch.device, enabled: bool = True) -> None:
        self.device, self.enabled = torch.device(device), enabled
        self.last = self._now()

    def _now(self) -> float:
        if not self.enabled:
            return 0.0
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    def lap(self) -> float:
        now = self._now()
        elapsed, self.last = (now - self.last) * 1000.0, now
        return elapsed


class _ViewerHook(ViewerControl):
    """Nerfstudio's handle on the viewer, calling back once the viewer has set it up."""

    def __init__(self, on_ready) -> None:
        super().__init__()
        self._on_ready = on_ready

    def _setup(self, viewer) -> None:
        super()._setup(viewer)
        self._on_ready(viewer)
