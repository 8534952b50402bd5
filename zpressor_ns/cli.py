"""``zpressor-ns``: the project's command line (data tools, model tools, benchmarks).

Each subcommand lives in ``zpressor_ns.commands.<module>`` and is imported only when it runs, so
``zpressor-ns --help`` stays fast. A command module defines ``HELP`` (one line), ``DESCRIPTION`` (plain
text: what it does and writes), ``EXAMPLE`` (one command line), ``add_arguments(parser)`` and
``run(args) -> int``. A user mistake found by a command is a :class:`CommandError`: one message, no
traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from types import ModuleType

# name -> (module, one-line help). Ordered as a user meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train, evaluate and render the small model on synthetic scenes (CPU, minutes)"),
    "make-synthetic": ("make_synthetic", "write procedurally textured scenes in the RE10K and DL3DV layouts"),
    "inspect": ("inspect", "detect a dataset layout and list its scenes, frames and cameras"),
    "describe": ("describe", "print a registered method's parameter counts"),
    "import-checkpoint": (
        "import_checkpoint",
        "convert an official ZPressor checkpoint or initialisation file",
    ),
    "sweep": ("sweep", "evaluate trained runs at several context-view counts (paper Tables 1/2)"),
    "export": ("export_ply", "predict a scene of a trained run and write a standard 3DGS .ply"),
    "view": ("view", "open the Nerfstudio viewer on a trained run (bound to 127.0.0.1)"),
    "render": ("render", "fly through a predicted scene of a trained run and write a GIF (no ffmpeg)"),
}

DESCRIPTION = """\
ZPressor for Nerfstudio: feed-forward 3D Gaussian splatting that compresses N context views into K
anchor views, so cost stays flat as N grows.

Training and evaluation go through Nerfstudio: method options (--data, --pipeline...) come before the
dataparser's name, e.g.
  ns-train zpressor-depthsplat --data PATH re10k
  ns-eval --load-config outputs/.../config.yml --output-path eval.json
These subcommands cover the rest (viewing, export, fly-throughs, sweeps, data and checkpoint tools).
Run `zpressor-ns COMMAND --help` for each one's options, defaults and an example.
"""


class CommandError(Exception):
    """A user mistake a command found (missing file, unknown scene): printed as one line, exit status 2."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and shows each option's default (unless its help already says it)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if action.required or unset or "default" in text:
            return text
        return f"{text} (default: %(default)s)"


def command_module(name: str) -> ModuleType:
    return importlib.import_module(f"zpressor_ns.commands.{COMMANDS[name][0]}")


def configure_command_parser(parser: argparse.ArgumentParser, name: str, module: ModuleType) -> None:
    """Description, defaults and example of one subcommand, and its arguments."""
    parser.description = getattr(module, "DESCRIPTION", COMMANDS[name][1])
    parser.epilog = f"example:\n  {module.EXAMPLE}" if getattr(module, "EXAMPLE", None) else None
    parser.formatter_class = HelpFormatter
    module.add_arguments(parser)


def command_parser(name: str) -> argparse.ArgumentParser:
    """The parser of ``zpressor-ns NAME``."""
    parser = argparse.ArgumentParser(prog=f"zpressor-ns {name}")
    configure_command_parser(parser, name, command_module(name))
    return parser


def build_parser(load_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zpressor-ns", description=DESCRIPTION, formatter_class=HelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if load_commands:
            module = command_module(name)
            configure_command_parser(command, name, module)
            command.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen command's module is imported; top-level help lists names without importing.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        parser = build_parser(load_commands=False)
        args = parser.parse_args(argv)
        parser.print_help()
        return 0 if args.command is None and ("-h" in argv or "--help" in argv or not argv) else 2
    parser = command_parser(chosen)
    index = argv.index(chosen)
    args = parser.parse_args(argv[:index] + argv[index + 1 :])
    try:
        return int(command_module(chosen).run(args) or 0)
    except CommandError as error:
        print(f"zpressor-ns {chosen}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    # Run as ``python -m zpressor_ns.cli``, this file is ``__main__`` and the commands raise the
    # CommandError of ``zpressor_ns.cli``, a second copy of it: hand over to that module.
    from zpressor_ns.cli import main as package_main

    sys.exit(package_main())
