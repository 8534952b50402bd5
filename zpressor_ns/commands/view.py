"""``zpressor-ns view``: Nerfstudio's viewer on a trained run, listening on localhost only by default.

``ns-viewer --load-config`` replaces the run's viewer settings with its own defaults and listens on every
interface (0.0.0.0) unless given ``--viewer.websocket-host 127.0.0.1``; it also reads config.yml with
``yaml.Loader``, which trusts the file. This command opens the run with the package's restricted loader
(``zpressor_ns.nerfstudio.runs``) and starts the same viewer bound to 127.0.0.1. Open the printed address
in a browser (from another machine, forward the port over SSH rather than exposing it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "open the Nerfstudio viewer on a trained run (bound to 127.0.0.1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of the run")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: localhost only)")
    parser.add_argument("--port", type=int, default=7007, help="websocket/HTTP port")


def run(args: argparse.Namespace) -> int:
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.scripts.viewer.run_viewer import _start_viewer

    from zpressor_ns.nerfstudio.runs import RUN_ERRORS, load_run

    try:
        config, pipeline, _, step = load_run(args.load_config, test_mode="test")
    except RUN_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # What ns-viewer's RunViewer.main does after eval_setup: the viewer settings given here, the run's
    # rendering chunk size.
    config.vis = "viewer"
    config.viewer = ViewerConfig(
        websocket_host=args.host,
        websocket_port=args.port,
        num_rays_per_chunk=config.viewer.num_rays_per_chunk,
    )
    _start_viewer(config, pipeline, step)  # serves until interrupted
    return 0
