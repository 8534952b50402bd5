"""The viewer as a user opens it: ``zpressor-ns view`` in headless Chromium (software WebGL) shows the predicted
scene, the run's step and no training buttons (scripts/viewer_screenshot.py; skipped without Chromium)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("nerfstudio", reason="drives Nerfstudio's viewer, which the core does not need")

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "viewer_screenshot.py"
_spec = importlib.util.spec_from_file_location("viewer_screenshot", SCRIPT)
viewer_screenshot = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = viewer_screenshot  # dataclasses look their module up there
_spec.loader.exec_module(viewer_screenshot)
CHROMIUM = viewer_screenshot.find_chromium()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None, reason="no Chromium on PATH for the browser check (apt-get install chromium)"
    ),
]


def test_viewer_opens_on_the_predicted_scene_of_a_finished_run(trained_run, tmp_path):
    capture = viewer_screenshot.capture_viewer(
        trained_run.get_base_dir() / "config.yml", tmp_path / "viewer.png", CHROMIUM
    )
    # Nerfstudio's default camera at (3, 3, 3) sees an empty canvas of one colour; at the first context camera
    # the predicted scene fills it.
    assert viewer_screenshot.scene_coverage(capture.png) > 0.8
    assert f"Step: {trained_run.max_num_iterations - 1}" in capture.page_text  # the run's last saved step
    assert "Pause Training" not in capture.page_text and "Resume Training" not in capture.page_text
    assert "Context views" in capture.page_text and "Scene" in capture.page_text
