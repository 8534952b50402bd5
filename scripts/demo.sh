#!/usr/bin/env bash
# The main job on an embedded default: make synthetic scenes, train the small ZPressor-DepthSplat on
# them, evaluate it on the benchmark index and render a video, all on CPU. Outputs go to demo_output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. "${ZPRESSOR_VENV:-.venv}/bin/activate"
exec zpressor-ns demo --output demo_output "$@"
