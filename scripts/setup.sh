#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv and install zpressor-ns into it.
# Idempotent: a second run only reinstalls when pyproject.toml changed. CPU machines get the
# torch/torchvision pair that pip finds locally on this kind of machine (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${ZPRESSOR_VENV:-.venv}
PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-"torch==2.14.1 torchvision==0.29.1"}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating $VENV"
  "$PY" -m venv "$VENV"
fi
. "$VENV/bin/activate"

stamp="$VENV/.zpressor-ns-installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python -m pip install -q --upgrade pip
if ! python -c "import torch, torchvision" 2>/dev/null; then
  echo "[setup] installing $TORCH_SPEC"
  # shellcheck disable=SC2086
  python -m pip install -q $TORCH_SPEC
fi
echo "[setup] installing zpressor-ns (editable) and its dependencies"
python -m pip install -q -e ".[test]"
# open3d (imported by ns-export) needs libusb; install it where we may.
if ! ldconfig -p 2>/dev/null | grep -q libusb-1.0 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  (apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q libusb-1.0-0 >/dev/null 2>&1)) \
    || echo "[setup] could not install libusb-1.0-0: ns-export will fail to import open3d"
fi
echo "$want" > "$stamp"
echo "[setup] done: $(python -c 'import torch; print("torch", torch.__version__)')"
