"""The paper's published scores beside a sweep: only under the paper's protocol, and shown in the table."""

from __future__ import annotations

import pytest

from zpressor_ns.nerfstudio.sweep import SweepRow, markdown_table, plot_rows
from zpressor_ns.paper_reference import paper_score

INDEX = "assets/dl3dv_evaluation/dl3dv_ctx_{}v_tgt_8v_n50.json"


@pytest.mark.parametrize(
    ("method", "views", "expected"),
    [("zpressor-depthsplat", 36, (23.88, 0.815, 0.150)), ("depthsplat", 16, (22.07, 0.773, 0.195))],
)
def test_table_1_scores_apply_to_the_dl3dv_protocol(method, views, expected):
    score = paper_score(method, views, INDEX.format(views), (256, 448))
    assert (score.psnr, score.ssim, score.lpips) == expected
    assert "Table 1" in score.source


@pytest.mark.parametrize(
    ("method", "views", "index_file", "image_shape"),
    [
        ("zpressor-depthsplat-small", 12, INDEX.format(12), (256, 448)),  # another configuration
        ("zpressor-depthsplat", 12, INDEX.format(12), (64, 128)),  # another resolution
        ("zpressor-depthsplat", 12, "re10k_ctx_12v_tgt_8v_n200.json", (256, 448)),  # another dataset
        ("zpressor-depthsplat", 8, INDEX.format(8), (256, 448)),  # a view count the paper did not run
        ("zpressor-depthsplat", 12, INDEX.format(16), (256, 448)),  # a file for other views
    ],
)
def test_no_score_outside_the_protocol(method, views, index_file, image_shape):
    assert paper_score(method, views, index_file, image_shape) is None


def test_table_and_plot_show_the_published_scores(tmp_path):
    def row(method, views, status="ok", psnr=None):
        reference = paper_score(method, views, INDEX.format(views), (256, 448))
        return SweepRow(method, views, INDEX.format(views), status, psnr=psnr, paper=reference.__dict__)

    rows = [row("zpressor-depthsplat", 36, psnr=23.5), row("depthsplat", 36, "OOM")]
    lines = markdown_table(rows).splitlines()
    assert lines[0].endswith("| Paper (PSNR / SSIM / LPIPS) |")
    assert lines[2].endswith("| 23.88 / 0.815 / 0.150 |")
    assert lines[3] == "| 36 | depthsplat | OOM | OOM | OOM | - | - | - | - | 19.23 / 0.666 / 0.286 |"
    plot_rows(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
    # Without published scores the table keeps its usual columns.
    plain = markdown_table([SweepRow("m", 6, "x", "ok", psnr=20.0)]).splitlines()
    assert plain[0].endswith("| Gaussians |")
