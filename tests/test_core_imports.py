"""The model core runs where Nerfstudio is not installed (the lent GPU machine has torch but no
nerfstudio, viser or tyro): every module outside the Nerfstudio face, and the GPU benchmarks, must import
with those packages absent."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import zpressor_ns

REPO = Path(__file__).resolve().parents[1]
# The Nerfstudio face: a folder of the package, and the two top-level folders installed into it.
NERFSTUDIO_FACE = {
    "zpressor_ns.nerfstudio.model",
    "zpressor_ns.nerfstudio.pipeline",
    "zpressor_ns.nerfstudio.datamanager",
    "zpressor_ns.nerfstudio.optim",
    "zpressor_ns.nerfstudio.viewer_cameras",
    "zpressor_ns.method_configs",
    "zpressor_ns.dataparsers",
}
GPU_BENCHMARKS = ("common", "cuda_dry_run", "efficiency", "rasterizer", "zpressor_module")
# Raises ModuleNotFoundError for Nerfstudio and its UI stack, as on a machine without them.
BLOCKER = """
import sys
class Absent:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"nerfstudio", "viser", "tyro"}:
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, Absent())
"""


def core_modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(zpressor_ns.__path__, prefix="zpressor_ns.")
        if not any(info.name == face or info.name.startswith(face + ".") for face in NERFSTUDIO_FACE)
    ]
    return sorted(names)


def test_core_and_gpu_benchmarks_import_without_nerfstudio():
    modules = core_modules()
    assert {"zpressor_ns.zpressor", "zpressor_ns.encoders.depthsplat.encoder", "zpressor_ns.render"} <= set(
        modules
    )
    code = (
        BLOCKER
        + f"sys.path.insert(0, {str(REPO / 'benchmarks')!r})\n"
        + "import importlib\n"
        + f"for name in {modules + list(GPU_BENCHMARKS)!r}:\n"
        + "    importlib.import_module(name)\n"
        + "import nerfstudio\n"  # the blocker itself works: this must fail
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == "ModuleNotFoundError: No module named 'nerfstudio'", (
        result.stderr
    )
