"""``zpressor-ns sweep``: one row per view count, OOM rows instead of a crash, table/JSON/plot written."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

pytest.importorskip(
    "nerfstudio", reason="drives Nerfstudio, which the core does not need (the GPU machine has none)"
)

from zpressor_ns.commands import sweep as sweep_command  # noqa: E402
from zpressor_ns.nerfstudio.model import FeedForwardSplatModel  # noqa: E402
from zpressor_ns.nerfstudio.sweep import SweepRow, markdown_table  # noqa: E402


def test_sweep_reports_oom_rows_and_keeps_going(trained_run, tmp_path, monkeypatch, most_gaussians):
    run_config = trained_run.get_base_dir() / "config.yml"
    encode = FeedForwardSplatModel.encode

    def encode_or_run_out_of_memory(self, context, num_anchors=None):
        if context["image"].shape[1] == 8:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return encode(self, context, num_anchors)

    monkeypatch.setattr(FeedForwardSplatModel, "encode", encode_or_run_out_of_memory)
    parser = argparse.ArgumentParser()
    sweep_command.add_arguments(parser)
    args = parser.parse_args(
        ["--load-config", str(run_config), "--views", "6", "8", "16", "--output", str(tmp_path)]
    )
    assert sweep_command.run(args) == 0
    rows = json.loads((tmp_path / "sweep.json").read_text())
    assert [(row["views"], row["status"]) for row in rows] == [(6, "ok"), (8, "OOM"), (16, "missing index")]
    ok = rows[0]
    assert ok["scenes"] == 2 and ok["gaussians"] == most_gaussians(trained_run)
    assert ok["paper"] is None  # the small preset on synthetic data: no published score, and why
    assert f"the paper reports no {trained_run.method_name} configuration" in ok["paper_note"]
    assert len(ok["per_scene"]) == 2  # the scenes behind the means, for paired comparisons
    assert ok["psnr"] == pytest.approx(sum(s["psnr"] for s in ok["per_scene"].values()) / 2)
    assert ok["psnr"] > 0 and 0 < ok["ssim"] <= 1 and ok["encoder_ms"] > 0
    table = (tmp_path / "sweep.md").read_text()
    assert f"| 8 | {trained_run.method_name} | OOM |" in table
    assert "No published score shown for:" in table
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_table_is_in_paper_layout_with_deltas():
    rows = [
        SweepRow("zpressor", 12, "a", "ok", 2, 24.30, 0.821, 0.146, 10.0, 1.0, None, 688128),
        SweepRow("baseline", 12, "a", "ok", 2, 23.32, 0.807, 0.162, 20.0, 2.0, None, 1376256),
        SweepRow("zpressor", 36, "b", "ok", 2, 23.88, 0.815, 0.150, 10.0, 1.0, None, 688128),
        SweepRow("baseline", 36, "b", "OOM"),
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[2].startswith("| 36 | zpressor | 23.88 |")  # most views first
    assert lines[3] == "| 36 | baseline | OOM | OOM | OOM | - | - | - | - |"
    assert "| 12 | baseline | 23.32 (-0.98) | 0.807 (-0.014) | 0.162 (+0.016) |" in lines[5]
