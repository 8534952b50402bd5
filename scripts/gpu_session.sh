#!/usr/bin/env bash
# The GPU agenda of the open issues (#2 module timings, #4 gsplat parity and CUDA tests, #5 efficiency vs
# views) as a few long calls of the device tool, whose machine has torch but no nerfstudio, gsplat or lpips
# and no internet.
#
# Here (CPU, with internet to PyPI):   bash scripts/gpu_session.sh prepare
# Then one device call per stage, each with carry [".whl"] and the command
#   bash scripts/gpu_session.sh checks            # compile gsplat, pytest -m gpu, rasterizer torch vs gsplat
#   bash scripts/gpu_session.sh module            # ZPressor module per attention backend (issue #2)
#   bash scripts/gpu_session.sh efficiency 256x448
#   bash scripts/gpu_session.sh efficiency 270x480   # rows merge into benchmarks/results (--resume)
#   bash scripts/gpu_session.sh thousand          # zpressor-depthsplat, 1000 views at 480P
# Logs and JSON/PNG land in $OUT; copy the efficiency JSON back into benchmarks/results/ before the next
# efficiency call so that --resume keeps the rows already measured.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(gsplat==1.4.0 lpips==0.1.4)

prepare() {
  grep -qx '/.whl/' .gitignore || { echo "expected /.whl/ in .gitignore" >&2; exit 1; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
  ls -l .whl
}

on_device() {
  : "${OUT:?run this stage through the device tool (it sets OUT)}"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$OUT/gpu.csv"
  # gsplat JIT-compiles its CUDA code on first use (~3 minutes); do it once, outside any timed setting.
  local start=$SECONDS
  python3 -c "from gsplat.cuda._backend import _C; assert _C is not None"
  echo "gsplat build or load: $((SECONDS - start)) s" | tee "$OUT/gsplat_build.log"
}

stage=${1:-}
case "$stage" in
  prepare) prepare ;;
  checks)
    on_device
    python3 -m pytest -m gpu tests/ -q -rs -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log" || echo "GPU tests failed (see gpu_tests.log)"
    python3 benchmarks/rasterizer.py --device cuda --output "$OUT/rasterizer_h100.json" 2>&1 | tee "$OUT/rasterizer.log" \
      || echo "rasterizer benchmark failed (see rasterizer.log)"
    ;;
  module)
    on_device
    python3 benchmarks/zpressor_module.py --out "$OUT/zpressor_module_h100.json" 2>&1 | tee "$OUT/zpressor_module.log"
    ;;
  efficiency)
    on_device
    python3 benchmarks/efficiency.py --resolutions "${2:?give a size, e.g. 256x448}" --resume 2>&1 | tee "$OUT/efficiency.log" \
      || echo "efficiency.py failed (see efficiency.log); the rows written so far come back"
    cp benchmarks/results/efficiency_*.json benchmarks/results/efficiency_*.png "$OUT"/
    ;;
  thousand)
    on_device
    python3 benchmarks/efficiency.py --methods zpressor-depthsplat --views 1000 --resolutions 270x480 --resume \
      2>&1 | tee "$OUT/efficiency.log" || echo "efficiency.py failed (see efficiency.log)"
    cp benchmarks/results/efficiency_*.json benchmarks/results/efficiency_*.png "$OUT"/
    ;;
  *)
    sed -n 2,14p "$0" >&2
    exit 2
    ;;
esac
