"""``zpressor-ns view``: Nerfstudio's viewer on a trained run, listening on localhost only by default.

``ns-viewer`` builds its own viewer settings and listens on every interface (0.0.0.0) unless told
otherwise; this command starts the same viewer bound to 127.0.0.1. Open the printed address in a
browser (from another machine, forward the port over SSH rather than exposing it).
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "open the Nerfstudio viewer on a trained run (bound to 127.0.0.1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of the run")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=7007, help="websocket/HTTP port")


def run(args: argparse.Namespace) -> int:
    from nerfstudio.scripts.viewer.run_viewer import RunViewer, ViewerConfigWithoutNumRays

    viewer = ViewerConfigWithoutNumRays(websocket_host=args.host, websocket_port=args.port)
    RunViewer(load_config=args.load_config, viewer=viewer).main()
    return 0
