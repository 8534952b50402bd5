"""Trained runs as the commands open them: a missing, refused or unreadable run is one message, not a
traceback. The files are read with the package's restricted loaders (:mod:`zpressor_ns.nerfstudio.runs`)."""

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
    """(config, pipeline, checkpoint path, step) of a trained run, set up as ns-eval sets it up."""
    from zpressor_ns.nerfstudio.runs import RUN_ERRORS
    from zpressor_ns.nerfstudio.runs import load_run as load_trusted_run

    try:
        return load_trusted_run(check_run_config(path), test_mode=test_mode)
    except RUN_ERRORS as error:
        raise CommandError(str(error)) from None


def chosen_scene(datamanager, scene: str | None) -> str:
    """``scene`` if the run's display split has it (the run's display scene when None), else a CommandError."""
    scene = scene or datamanager.display_scene
    if scene not in datamanager.display_scene_keys():
        raise CommandError(
            f"scene {scene!r} is not in the run's {datamanager.config.display_split} split "
            f"(e.g. {datamanager.display_scene_keys()[:3]})"
        )
    return scene
