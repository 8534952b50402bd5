"""Trained runs as the commands open them: a missing or wrong ``--load-config`` is one message, not a traceback."""

from __future__ import annotations

from pathlib import Path

from zpressor_ns.cli import CommandError


def check_run_config(path: Path) -> Path:
    """The ``config.yml`` of a run (a run folder holding one is accepted), or a CommandError saying what to give."""
    path = Path(path)
    if path.is_dir() and (path / "config.yml").is_file():
        return path / "config.yml"
    if not path.is_file():
        raise CommandError(
            f"--load-config {path}: no such file; give the config.yml that ns-train wrote, "
            "e.g. outputs/<data>/<method>/<timestamp>/config.yml"
        )
    return path


def load_run(path: Path, test_mode: str = "test"):
    """(config, pipeline, step) of a trained run, loaded as Nerfstudio's ns-eval loads it."""
    from nerfstudio.utils.eval_utils import eval_setup

    config, pipeline, _, step = eval_setup(check_run_config(path), test_mode=test_mode)
    return config, pipeline, step
