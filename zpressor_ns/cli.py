"""``zpressor-ns``: the project's command line (data tools, model tools, benchmarks).

Each subcommand lives in ``zpressor_ns.commands.<module>`` and is imported only when it runs, so
``zpressor-ns --help`` stays fast. A command module defines ``HELP`` (one line), ``DESCRIPTION``,
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help). Ordered as a user meets them.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("demo", "train, evaluate and render the small model on synthetic scenes (CPU, minutes)"),
    "make-synthetic": ("make_synthetic", "write procedurally textured scenes in the RE10K and DL3DV layouts"),
    "inspect": ("inspect", "detect a dataset layout and list its scenes, frames and cameras"),
    "describe": ("describe", "print a registered method's parameter counts"),
    "import-checkpoint": ("import_checkpoint", "convert an official ZPressor/DepthSplat checkpoint"),
    "sweep": ("sweep", "evaluate a trained run at several context-view counts (paper Tables 1/2)"),
    "export": ("export_ply", "predict a scene of a trained run and write a standard 3DGS .ply"),
    "view": ("view", "open the Nerfstudio viewer on a trained run (bound to 127.0.0.1)"),
}

DESCRIPTION = """\
ZPressor for Nerfstudio: feed-forward 3D Gaussian splatting that compresses N context views into K
anchor views, so cost stays flat as N grows.

Training, evaluation and viewing go through Nerfstudio (ns-train zpressor-depthsplat re10k --data
PATH, ns-eval, ns-viewer, ns-export); these subcommands cover the rest. Run
`zpressor-ns COMMAND --help` for each one's options.
"""


def build_parser(load_commands: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zpressor-ns", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        if not load_commands:
            sub.add_parser(name, help=help_text)
            continue
        module = importlib.import_module(f"zpressor_ns.commands.{module_name}")
        command_parser = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "DESCRIPTION", help_text),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command_parser)
        command_parser.set_defaults(_module=module)
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
    module = importlib.import_module(f"zpressor_ns.commands.{COMMANDS[chosen][0]}")
    parser = argparse.ArgumentParser(
        prog=f"zpressor-ns {chosen}",
        description=getattr(module, "DESCRIPTION", COMMANDS[chosen][1]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    module.add_arguments(parser)
    index = argv.index(chosen)
    args = parser.parse_args(argv[:index] + argv[index + 1 :])
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
