"""The ``zpressor-ns`` command line as a user meets it: help that says what each command does, its defaults
and an example; one message, not a traceback, for a run that is not there."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from zpressor_ns.cli import COMMANDS, command_parser, main


def help_text(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 0
    return capsys.readouterr().out


def option_blocks(text: str) -> dict[str, str]:
    """Each option's help, joined over its wrapped lines, by its first option string."""
    options = text.split("options:", 1)[1].split("example:", 1)[0]
    blocks = re.split(r"\n(?=  -)", options)
    return {block.split()[0].rstrip(","): " ".join(block.split()) for block in blocks if block.strip()}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_help_says_what_it_does_its_defaults_and_an_example(name, capsys):
    text = help_text([name, "--help"], capsys)
    parser = command_parser(name)
    description = parser.description.strip().splitlines()
    assert len(description) >= 2 and description[0] in text  # more than the one-line summary
    assert "``" not in text  # plain text, not reStructuredText
    blocks = option_blocks(text)
    for action in parser._actions:
        takes_value = action.nargs != 0 and action.option_strings and action.dest != "help"
        if takes_value and not action.required:
            assert "default" in blocks[action.option_strings[0]], (name, action.option_strings)
    example = text.split("example:\n", 1)[1].splitlines()[0]
    assert example.startswith(f"  zpressor-ns {name} ")


def test_top_level_help_lists_every_command_and_the_safe_viewer(capsys):
    text = help_text(["--help"], capsys)
    for name, (_, summary) in COMMANDS.items():
        assert name in text and summary.split()[0] in text
    assert "ns-viewer" not in text  # Nerfstudio's viewer listens on 0.0.0.0; `zpressor-ns view` on localhost
    assert "ns-train zpressor-depthsplat --data PATH re10k" in text  # method options before the dataparser


@pytest.mark.parametrize(
    "argv",
    [
        ["view", "--load-config", "no/such/config.yml"],
        ["export", "--load-config", "no/such/config.yml", "--output", "x.ply"],
        ["render", "--load-config", "no/such/config.yml"],
        ["sweep", "--load-config", "no/such/config.yml", "--views", "12"],
    ],
)
def test_a_missing_run_is_one_message(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"zpressor-ns {argv[0]}: --load-config no/such/config.yml: no such file; give the config.yml that "
        "ns-train wrote, e.g. outputs/<data>/<method>/<timestamp>/config.yml"
    )


@pytest.mark.parametrize("module", ["zpressor_ns", "zpressor_ns.cli"])
def test_python_dash_m_is_the_command(module):
    """``python -m zpressor_ns`` (and ``-m zpressor_ns.cli``) give the same one-line error as the script."""
    result = subprocess.run(
        [sys.executable, "-m", module, "view", "--load-config", "no/such/config.yml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]  # after any third-party import warnings
    assert last.startswith("zpressor-ns view: --load-config no/such/config.yml: no such file")
    assert "Traceback" not in result.stderr
