"""Helpers of the parity tests against dumps of the original code (``.ref/fixtures``, git-ignored).

The fixtures are written by the harnesses in shared/parity from the original code; tests skip where they
are absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parents[1] / ".ref" / "fixtures"


def load_fixture(name: str) -> dict:
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"parity fixture {path} not present (it is produced from the original code, not shipped)")
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def assert_close(name: str, ours: torch.Tensor, reference: torch.Tensor, rel: float) -> None:
    """Max-abs error relative to the reference's magnitude (robust for tensors near zero)."""
    assert ours.shape == reference.shape, f"{name}: shape {tuple(ours.shape)} != {tuple(reference.shape)}"
    error = (ours.double() - reference.double()).abs().max().item()
    scale = reference.double().abs().max().item()
    assert error <= rel * scale, f"{name}: max abs error {error:.3e} > {rel:.0e} x {scale:.3e}"
