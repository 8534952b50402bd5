"""What pip installs: every declared dependency is used, test-only ones are test extras, and gsplat is the
version Nerfstudio 1.1.5 requires."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, requires
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
MODULE_OF = {"pillow": "PIL", "pyyaml": "yaml", "scikit-image": "skimage"}


def _project() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def _imports(folders: list[str]) -> str:
    return "\n".join(p.read_text() for folder in folders for p in (REPO / folder).rglob("*.py"))


def _imported(module: str, sources: str) -> bool:
    return re.search(rf"^\s*(import|from) {re.escape(module)}\b", sources, re.MULTILINE) is not None


def test_every_dependency_is_imported_by_the_package():
    sources = _imports(["zpressor_ns", "method_configs", "dataparsers"])
    for requirement in _project()["dependencies"]:
        name = _name(requirement)
        assert _imported(MODULE_OF.get(name, name.replace("-", "_")), sources), requirement


def test_test_extras_are_used_by_the_tests_only():
    package = _imports(["zpressor_ns", "method_configs", "dataparsers"])
    tests = _imports(["tests"])
    pytest_options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    for requirement in _project()["optional-dependencies"]["test"]:
        name = _name(requirement)
        module = MODULE_OF.get(name, name.replace("-", "_"))
        assert not _imported(module, package), f"{requirement} is a run-time dependency, not a test extra"
        used = module == "pytest" or _imported(module, tests) or module in pytest_options["addopts"]
        assert used, requirement


def test_gsplat_is_pinned_as_nerfstudio_requires():
    try:
        nerfstudio_requires = requires("nerfstudio") or []
    except PackageNotFoundError:
        pytest.skip("Nerfstudio is not installed")
    theirs = next(r for r in nerfstudio_requires if _name(r) == "gsplat")
    ours = next(r for r in _project()["dependencies"] if _name(r) == "gsplat")
    assert ours.split("#")[0].replace(" ", "") == theirs.split(";")[0].replace(" ", "")
