"""``zpressor-ns view``: Nerfstudio's viewer on a trained run, listening on localhost only by default."""

from __future__ import annotations

import argparse
from pathlib import Path

from zpressor_ns.commands.runs import check_run_config

HELP = "open the Nerfstudio viewer on a trained run (bound to 127.0.0.1)"
DESCRIPTION = """\
Open Nerfstudio's viewer on a trained run, without training: the run's display scene is predicted
from its context views and drawn with the anchor (orange) and support (blue) cameras; the panel's
"Custom Elements" choose another test scene and the number of context views. The browser starts at
the scene's first context camera.

ns-viewer listens on every interface (0.0.0.0) unless told otherwise; this command listens on
127.0.0.1. Open the printed address in a browser; from another machine, forward the port over SSH
(ssh -L 7007:localhost:7007 HOST) rather than exposing it. Stop it with Ctrl-C.
"""
EXAMPLE = "zpressor-ns view --load-config outputs/re10k/zpressor-depthsplat/RUN/config.yml --port 7007"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of the run")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=7007, help="websocket/HTTP port")


def run(args: argparse.Namespace) -> int:
    from nerfstudio.scripts.viewer.run_viewer import RunViewer, ViewerConfigWithoutNumRays

    viewer = ViewerConfigWithoutNumRays(websocket_host=args.host, websocket_port=args.port)
    try:
        RunViewer(load_config=check_run_config(args.load_config), viewer=viewer).main()
    except KeyboardInterrupt:
        print("viewer stopped")
    return 0
