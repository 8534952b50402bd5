"""Nerfstudio's Trainer with crash-safe checkpoints, safe resume and run-length schedules (Nerfstudio face).

Nerfstudio 1.1.5's Trainer writes checkpoints in place (a run killed while saving leaves a truncated
latest file that stops every resume with a zip-reader traceback), reports refused files with torch's
advice to load them unsafely, and builds schedulers from their configs alone. The methods' trainer
(``FeedForwardTrainerConfig``, the ``_target`` of their TrainerConfig):

- writes each checkpoint atomically (``zpressor_ns.checkpoints.write_checkpoint``);
- resumes (``--load-dir``) from the newest *readable* checkpoint, warning about each truncated or
  corrupt one it passes; a refused file (one asking for more than tensors and plain data) or no
  readable checkpoint at all ends the run with one message naming the file and why;
- gives schedulers whose ``max_steps`` is None the run's length (``--max-num-iterations``).

Everything else a resume needs is in Nerfstudio's checkpoint already: the step (the data order is a
function of it, see the datamanager), the model, the optimizer moments and the scheduler state
(which holds the schedule's length). So a run resumed from a checkpoint at step s continues, bit for bit
on CPU, as the uninterrupted run did after step s.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nerfstudio.engine.optimizers import Optimizers
from nerfstudio.engine.trainer import Trainer, TrainerConfig
from nerfstudio.utils.decorators import check_main_thread
from nerfstudio.utils.rich_utils import CONSOLE

from zpressor_ns.checkpoints import CheckpointError, UnreadableCheckpoint, read_checkpoint, write_checkpoint

LOGGER = logging.getLogger(__name__)
CHECKPOINT_NAME = re.compile(r"^step-(\d+)\.ckpt$")
NERFSTUDIO_CHECKPOINT_KEYS = ("step", "pipeline", "optimizers", "scalers")


@dataclass
class FeedForwardTrainerConfig(TrainerConfig):
    """Nerfstudio's TrainerConfig, training with :class:`FeedForwardTrainer`."""

    _target: type = field(default_factory=lambda: FeedForwardTrainer)


class FeedForwardTrainer(Trainer):
    """See the module docstring."""

    config: FeedForwardTrainerConfig

    def setup_optimizers(self) -> Optimizers:
        """Nerfstudio's optimizers, with schedules of ``max_steps=None`` spanning this run."""
        groups = {}
        for name, group in self.config.optimizers.items():
            scheduler = group.get("scheduler")
            if scheduler is not None and getattr(scheduler, "max_steps", 0) is None:
                scheduler = dataclasses.replace(scheduler, max_steps=self.config.max_num_iterations)
            groups[name] = {**group, "scheduler": scheduler}
        return Optimizers(groups, self.pipeline.get_param_groups())

    def _load_checkpoint(self) -> None:
        try:
            found = self._checkpoint_to_resume()
        except (CheckpointError, FileNotFoundError) as error:
            raise SystemExit(f"error: cannot resume: {error}") from None
        if found is None:
            CONSOLE.print("No Nerfstudio checkpoint to load, so training from scratch.")
            return
        path, state = found
        self._start_step = state["step"] + 1
        self.pipeline.load_pipeline(state["pipeline"], state["step"])
        self.optimizers.load_optimizers(state["optimizers"])
        if "schedulers" in state and self.config.load_scheduler:
            self.optimizers.load_schedulers(state["schedulers"])
        self.grad_scaler.load_state_dict(state["scalers"])
        CONSOLE.print(f"Done loading Nerfstudio checkpoint from {path}")

    def _checkpoint_to_resume(self) -> tuple[Path, dict[str, Any]] | None:
        """The checkpoint named by --load-checkpoint / --load-dir (+ --load-step), else the newest
        readable one of --load-dir; None when the run starts from scratch."""
        if self.config.load_dir is None:
            if self.config.load_checkpoint is None:
                return None
            return self.config.load_checkpoint, read_nerfstudio_checkpoint(self.config.load_checkpoint)
        if self.config.load_step is not None:
            path = self.config.load_dir / f"step-{self.config.load_step:09d}.ckpt"
            return path, read_nerfstudio_checkpoint(path)
        return newest_readable_checkpoint(self.config.load_dir)

    @check_main_thread
    def save_checkpoint(self, step: int) -> None:
        """Nerfstudio's checkpoint, written atomically; older ones are removed only once it is complete.

        The partial file lives beside the checkpoint folder (in the run's folder), never in it: Nerfstudio's
        own loaders (ns-eval, ns-viewer) parse the step out of every name in that folder."""
        path = self.checkpoint_dir / f"step-{step:09d}.ckpt"
        pipeline = self.pipeline.module if hasattr(self.pipeline, "module") else self.pipeline
        write_checkpoint(
            {
                "step": step,
                "pipeline": pipeline.state_dict(),
                "optimizers": {k: v.state_dict() for k, v in self.optimizers.optimizers.items()},
                "schedulers": {k: v.state_dict() for k, v in self.optimizers.schedulers.items()},
                "scalers": self.grad_scaler.state_dict(),
            },
            path,
            scratch_dir=self.checkpoint_dir.parent,
        )
        if self.config.save_only_latest_checkpoint:
            for other in self.checkpoint_dir.glob("step-*.ckpt"):
                if other != path:
                    other.unlink()


def read_nerfstudio_checkpoint(path: Path) -> dict[str, Any]:
    """A Nerfstudio training checkpoint, read weights-only (see ``zpressor_ns.checkpoints``)."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or any(key not in state for key in NERFSTUDIO_CHECKPOINT_KEYS):
        keys = sorted(state)[:6] if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(
            f"{path} is not a Nerfstudio training checkpoint (it holds {keys}; expected "
            f"{list(NERFSTUDIO_CHECKPOINT_KEYS)})"
        )
    return state


def newest_readable_checkpoint(folder: Path) -> tuple[Path, dict[str, Any]]:
    """The newest ``step-*.ckpt`` of ``folder`` that reads, warning about each newer one that does not
    (a run killed while writing with a version that wrote in place). A refused file is an error."""
    if not folder.is_dir():
        raise FileNotFoundError(f"checkpoint folder not found: {folder}")
    steps = sorted(
        ((int(match[1]), path) for path in folder.iterdir() if (match := CHECKPOINT_NAME.match(path.name))),
        reverse=True,
    )
    if not steps:
        raise FileNotFoundError(f"no step-*.ckpt checkpoint in {folder}")
    unreadable = []
    for _, path in steps:
        try:
            state = read_nerfstudio_checkpoint(path)
        except UnreadableCheckpoint as error:
            unreadable.append(path)
            LOGGER.warning("skipping an unreadable checkpoint: %s", error)
            continue
        if unreadable:
            LOGGER.warning(
                "resuming from %s: the newer %s cannot be read",
                path.name,
                ", ".join(p.name for p in unreadable),
            )
        return path, state
    raise CheckpointError(
        f"none of the {len(steps)} checkpoints in {folder} is readable (all truncated or corrupt)"
    )
