"""Opening trained runs safely: the package's commands read config.yml with a loader that builds only
Nerfstudio's configuration objects, and its viewer listens on localhost."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

pytest.importorskip(
    "nerfstudio", reason="drives Nerfstudio, which the core does not need (the GPU machine has none)"
)

from zpressor_ns.cli import main  # noqa: E402
from zpressor_ns.nerfstudio.runs import ConfigError, load_config  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HEADER = "!!python/object:nerfstudio.engine.trainer.TrainerConfig\n"


@pytest.mark.parametrize(
    ("value", "tag"),
    [
        ("!!python/object/apply:os.system ['touch {marker}']", "python/object/apply:os.system"),
        (
            "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
            "python/object/new:subprocess.Popen",
        ),
        (
            "!!python/object:subprocess.Popen {{args: ['touch', '{marker}']}}",
            "python/object:subprocess.Popen",
        ),
        ("!!python/name:os.system ''", "python/name:os.system"),
        ("!!python/module:os ''", "python/module:os"),
        # Trusted module, but not a configuration object / an enum / a path:
        (
            "!!python/object/apply:nerfstudio.scripts.train.main [{{}}]",
            "python/object/apply:nerfstudio.scripts",
        ),
    ],
)
def test_config_tags_that_could_run_code_are_refused_by_name(tmp_path, value, tag):
    marker = tmp_path / "ran"
    path = tmp_path / "config.yml"
    path.write_text(HEADER + "experiment_name: " + value.format(marker=marker) + "\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    message = str(refused.value)
    assert str(path) in message and "refused YAML tag" in message and tag in message
    assert not marker.exists()


def test_a_config_retargeted_to_another_class_is_refused(trained_run, tmp_path):
    text = (trained_run.get_base_dir() / "config.yml").read_text()
    target = "_target: !!python/name:zpressor_ns.nerfstudio.pipeline.FeedForwardPipeline ''"
    assert target in text
    path = tmp_path / "config.yml"
    path.write_text(text.replace(target, "_target: !!python/name:nerfstudio.engine.trainer.Trainer ''"))
    with pytest.raises(ConfigError, match=r"config\.pipeline\._target"):
        load_config(path)


def test_the_commands_refuse_a_crafted_config_with_one_message(trained_run, tmp_path, capsys):
    marker = tmp_path / "ran"
    text = (trained_run.get_base_dir() / "config.yml").read_text()
    crafted = tmp_path / "config.yml"
    crafted.write_text(
        text.replace(
            "experiment_name: test", f"experiment_name: !!python/object/apply:os.system ['touch {marker}']"
        )
    )
    for argv in (
        ["export", "--load-config", str(crafted), "--output", str(tmp_path / "x.ply")],
        ["view", "--load-config", str(crafted)],
        ["sweep", "--load-config", str(crafted), "--views", "6", "--output", str(tmp_path / "sweep")],
    ):
        assert main(argv) == 2, argv
        error = capsys.readouterr().err
        assert "refused YAML tag" in error and "os.system" in error and "Traceback" not in error
    assert not marker.exists()


def test_view_binds_to_localhost_and_reads_the_run_safely(trained_run, monkeypatch):
    started = {}

    def start_viewer(config, pipeline, step):
        started.update(config=config, pipeline=pipeline, step=step)

    monkeypatch.setattr("nerfstudio.scripts.viewer.run_viewer._start_viewer", start_viewer)
    assert main(["view", "--load-config", str(trained_run.get_base_dir() / "config.yml")]) == 0
    viewer = started["config"].viewer
    assert viewer.websocket_host == "127.0.0.1" and viewer.websocket_port == 7007
    assert viewer.num_rays_per_chunk == trained_run.viewer.num_rays_per_chunk
    assert started["step"] == 2 and started["pipeline"].model.display_gaussians is not None


def documented_commands(program: str) -> list[list[str]]:
    commands = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for line in doc.read_text().replace("\\\n", " ").splitlines():
            if line.startswith(program + " "):
                commands.append(shlex.split(line.split(" #")[0])[1:])
    return commands


def test_every_documented_viewer_command_binds_to_localhost():
    """Nerfstudio's ns-viewer replaces the run's viewer settings with its own (0.0.0.0): the documented
    ns-viewer commands must say 127.0.0.1; zpressor-ns view binds there by default."""
    import tyro
    from nerfstudio.scripts.viewer.run_viewer import RunViewer

    ns_viewer = documented_commands("ns-viewer")
    assert ns_viewer
    for argv in ns_viewer:
        viewer = tyro.cli(tyro.conf.FlagConversionOff[RunViewer], args=argv)
        assert viewer.viewer.websocket_host == "127.0.0.1", argv
    from zpressor_ns.cli import build_parser

    views = [argv for argv in documented_commands("zpressor-ns") if argv[0] == "view"]
    assert views
    for argv in views:
        args = build_parser().parse_args(argv)
        assert args.host == "127.0.0.1", argv


def test_the_commands_refuse_a_crafted_checkpoint_with_one_message(trained_run, tmp_path, capsys):
    import os

    import torch

    class RunsCode:
        def __reduce__(self):
            return (os.getcwd, ())

    # A copy of the run whose checkpoint asks to call a function while loading.
    config = load_config(trained_run.get_base_dir() / "config.yml")
    config.output_dir = tmp_path / "outputs"
    config.save_config()
    original = next(trained_run.get_checkpoint_dir().glob("step-*.ckpt"))
    crafted = config.get_checkpoint_dir() / original.name
    crafted.parent.mkdir(parents=True)
    torch.save({**torch.load(original, map_location="cpu"), "payload": RunsCode()}, crafted)

    output = tmp_path / "x.ply"
    argv = ["export", "--load-config", str(config.get_base_dir() / "config.yml"), "--output", str(output)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert str(crafted) in error and "refused" in error and "getcwd" in error
    assert "weights_only" not in error and "Traceback" not in error and not output.exists()
