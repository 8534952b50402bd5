"""Screenshot of ``zpressor-ns view`` in headless Chromium with software WebGL: what a user sees on opening it.

Starts the viewer on a trained run (127.0.0.1, a free port), opens the page in headless Chromium
(SwiftShader WebGL) through the DevTools protocol, waits until the viewer's renders settle, writes a PNG,
prints the share of the canvas the scene covers, and stops both processes. Needs a Chromium binary
(Debian: ``apt-get install chromium``). ``tests/test_viewer_browser.py`` runs it on a tiny trained run.

    python scripts/viewer_screenshot.py --load-config outputs/.../config.yml --output viewer.png
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# Nerfstudio's viewer: the canvas left of the control panel, below the title bar, at the window size used.
WINDOW = (1280, 800)
CANVAS_BOX = (0, 60, 950, 790)  # left, top, right, bottom

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    """A Chromium-family binary on PATH (or $CHROMIUM), or None."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for name in CHROMIUM_NAMES if (path := shutil.which(name))), None)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the process serving {url} exited with status {process.returncode}")
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2):
                return
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


@contextlib.contextmanager
def started(command: list[str], log: Path) -> Iterator[subprocess.Popen]:
    """Run ``command`` in its own process group for the duration of the block, then stop that group."""
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


class DevTools:
    """The few DevTools-protocol calls needed: navigate, evaluate, screenshot."""

    def __init__(self, socket) -> None:
        self.socket = socket  # a websockets ClientConnection to a page target
        self.next_id = 0

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        self.socket.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv())
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def page_text(self) -> str:
        return self.call("Runtime.evaluate", expression="document.body.innerText")["result"].get("value", "")


def page_target(debug_port: int, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{debug_port}/json/list", timeout=2) as answer:
                pages = [t for t in json.load(answer) if t.get("type") == "page"]
                if pages:
                    return pages[0]["webSocketDebuggerUrl"]
        time.sleep(0.3)
    raise TimeoutError("headless Chromium opened no page")


@dataclass(frozen=True)
class ViewerCapture:
    png: Path
    page_text: str
    """The page's visible text (the step, the buttons, the panel)."""


def scene_coverage(png: Path) -> float:
    """Share of the viewer's canvas not in its most common colour: near 0 for an empty view (one background
    colour), near 1 when a predicted scene fills it."""
    canvas = np.asarray(Image.open(png).convert("RGB").crop(CANVAS_BOX), dtype=np.int16).reshape(-1, 3)
    colours, counts = np.unique(canvas, axis=0, return_counts=True)
    background = colours[counts.argmax()]
    return float((np.abs(canvas - background).max(axis=1) > 12).mean())


def _rendered_resolution(text: str) -> str | None:
    match = re.search(r"Resolution: (\d+)\D(\d+)px", text)
    return match.group(0) if match and match.group(1) != "0" else None


def capture_viewer(
    load_config: Path, output: Path, chromium: str, settle_s: float = 90.0, start_timeout_s: float = 600.0
) -> ViewerCapture:
    """Start the viewer on ``load_config``, open it in headless Chromium, and write what it shows to ``output``
    once the viewer has rendered and its resolution has stayed the same for three seconds."""
    from websockets.sync.client import connect  # installed with viser

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="viewer_screenshot_") as scratch:
        scratch = Path(scratch)
        viewer_command = [sys.executable, "-m", "zpressor_ns.cli", "view", "--load-config", str(load_config)]
        with started(viewer_command + ["--port", str(port)], scratch / "viewer.log") as viewer:
            try:
                wait_for_http(url, viewer, start_timeout_s)
            except (RuntimeError, TimeoutError) as error:
                log = (scratch / "viewer.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{error}; viewer log:\n{log}") from None
            debug_port = free_port()
            browser_command = [
                chromium,
                "--headless=new",
                "--no-sandbox",  # root in containers
                "--use-angle=swiftshader",  # software WebGL
                "--enable-unsafe-swiftshader",
                f"--remote-debugging-port={debug_port}",
                f"--user-data-dir={scratch / 'profile'}",
                f"--window-size={WINDOW[0]},{WINDOW[1]}",
                "about:blank",
            ]
            with started(browser_command, scratch / "chromium.log"):
                with connect(page_target(debug_port), max_size=64 * 2**20) as connection:
                    devtools = DevTools(connection)
                    devtools.call(
                        "Emulation.setDeviceMetricsOverride",
                        width=WINDOW[0],
                        height=WINDOW[1],
                        deviceScaleFactor=1,
                        mobile=False,
                    )
                    devtools.call("Page.navigate", url=url)
                    # Connect, report the camera, be moved to the scene, get the renders back.
                    deadline, last, stable_since = time.monotonic() + settle_s, None, time.monotonic()
                    while time.monotonic() < deadline:
                        time.sleep(1.0)
                        resolution = _rendered_resolution(devtools.page_text())
                        if resolution != last:
                            last, stable_since = resolution, time.monotonic()
                        elif resolution is not None and time.monotonic() - stable_since >= 3.0:
                            break
                    png = devtools.call("Page.captureScreenshot", format="png")["data"]
                    text = devtools.page_text()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(base64.b64decode(png))
    return ViewerCapture(output, text)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--load-config", type=Path, required=True, help="config.yml of a trained run")
    parser.add_argument(
        "--output", type=Path, default=Path("viewer.png"), help="PNG to write (default: viewer.png)"
    )
    parser.add_argument(
        "--settle", type=float, default=90.0, help="most seconds to wait for the renders (default: 90)"
    )
    args = parser.parse_args()
    chromium = find_chromium()
    if chromium is None:
        print("no Chromium on PATH (set $CHROMIUM or apt-get install chromium)", file=sys.stderr)
        return 2
    capture = capture_viewer(args.load_config, args.output, chromium, settle_s=args.settle)
    print(f"wrote {capture.png}: the scene covers {scene_coverage(capture.png):.0%} of the canvas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
