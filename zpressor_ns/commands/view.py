"""``zpressor-ns view``: Nerfstudio's viewer on a trained run, listening on localhost only by default.

Unlike ``ns-viewer``, the run's config.yml is read with the package's restricted loader
(``zpressor_ns.nerfstudio.runs``), not with ``yaml.Loader``, which trusts the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from zpressor_ns.commands.runs import load_run

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
    from nerfstudio.configs.base_config import ViewerConfig
    from nerfstudio.scripts.viewer.run_viewer import _start_viewer

    config, pipeline, _, step = load_run(args.load_config, test_mode="test")
    # What ns-viewer's RunViewer.main does after eval_setup: the viewer settings given here, the run's
    # rendering chunk size.
    config.vis = "viewer"
    config.viewer = ViewerConfig(
        websocket_host=args.host,
        websocket_port=args.port,
        num_rays_per_chunk=config.viewer.num_rays_per_chunk,
    )
    try:
        _start_viewer(config, pipeline, step)  # serves until interrupted
    except KeyboardInterrupt:
        print("viewer stopped")
    return 0
