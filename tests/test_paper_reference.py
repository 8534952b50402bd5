"""The paper's published scores beside a sweep: only for the paper's protocol and scene set, and shown in the table;
otherwise the table says why not."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from zpressor_ns.data.eval_index import EvaluationIndex
from zpressor_ns.nerfstudio.sweep import SweepRow, markdown_table, plot_rows
from zpressor_ns.paper_reference import compare_with_paper, paper_tables

# ../shared beside the checkout (as CI has it), or $ZPRESSOR_SHARED_DIR.
SHARED = Path(os.environ.get("ZPRESSOR_SHARED_DIR") or Path(__file__).resolve().parents[2] / "shared")
OFFICIAL = SHARED / "eval_index" / "dl3dv_evaluation"
needs_official = pytest.mark.skipif(
    not OFFICIAL.is_dir(), reason=f"official index files {OFFICIAL} not present"
)
NAME = "dl3dv_ctx_{}v_tgt_8v_n50.json"


def official(views: int) -> tuple[Path, EvaluationIndex]:
    path = OFFICIAL / NAME.format(views)
    return path, EvaluationIndex.load(path)


def named_like_official(folder: Path, views: int, scenes: int = 1) -> tuple[Path, EvaluationIndex]:
    """An index of our own (e.g. make-synthetic's) under the official file's name."""
    path = folder / NAME.format(views)
    entries = {
        f"scene{i}": {"context": list(range(views)), "target": list(range(views, views + 8))}
        for i in range(scenes)
    }
    path.write_text(json.dumps(entries))
    return path, EvaluationIndex.load(path)


@needs_official
@pytest.mark.parametrize("views", [12, 16, 24, 36])
def test_recorded_digests_identify_the_official_files(views):
    (table,) = paper_tables("zpressor-depthsplat")
    assert official(views)[1].digest() == table.index_digests[views]


@needs_official
@pytest.mark.parametrize(
    ("method", "views", "expected"),
    [("zpressor-depthsplat", 36, (23.88, 0.815, 0.150)), ("depthsplat", 16, (22.07, 0.773, 0.195))],
)
def test_table_1_scores_apply_to_all_scenes_of_the_official_files(method, views, expected):
    path, index = official(views)
    comparison = compare_with_paper(method, views, path, index, (256, 448), list(index))
    score = comparison.score
    assert (score.psnr, score.ssim, score.lpips) == expected
    assert "Table 1" in score.source and score.num_scenes == 140 and comparison.reason == ""


@needs_official
def test_no_score_for_part_of_the_official_scenes():
    path, index = official(12)
    comparison = compare_with_paper("zpressor-depthsplat", 12, path, index, (256, 448), list(index)[:139])
    assert comparison.score is None
    assert "139 scenes evaluated" in comparison.reason and "140" in comparison.reason


def test_no_score_for_an_index_only_named_like_the_official_file(tmp_path):
    """make-synthetic and users name their indices like the official files: the content decides."""
    path, index = named_like_official(tmp_path, 12)
    comparison = compare_with_paper("zpressor-depthsplat", 12, path, index, (256, 448), list(index))
    assert comparison.score is None
    assert "content differs" in comparison.reason
    # Even as many scenes as the paper's under the official name are not the paper's scenes.
    path, index = named_like_official(tmp_path, 12, scenes=140)
    assert compare_with_paper("zpressor-depthsplat", 12, path, index, (256, 448), list(index)).score is None


@pytest.mark.parametrize(
    ("method", "views", "name", "image_shape", "reason"),
    [
        (
            "zpressor-depthsplat-small",
            12,
            NAME.format(12),
            (256, 448),
            "reports no zpressor-depthsplat-small",
        ),
        ("zpressor-depthsplat", 12, NAME.format(12), (64, 128), "evaluated at 64x128"),
        ("zpressor-depthsplat", 12, "re10k_ctx_12v_tgt_8v_n200.json", (256, 448), "not an index file"),
        ("zpressor-depthsplat", 8, NAME.format(8), (256, 448), "has no zpressor-depthsplat score at 8 views"),
        (
            "zpressor-depthsplat",
            12,
            NAME.format(16),
            (256, 448),
            "not an index file",
        ),  # a file for other views
    ],
)
def test_no_score_outside_the_protocol_and_the_reason(tmp_path, method, views, name, image_shape, reason):
    path = tmp_path / name
    path.write_text(json.dumps({"s": {"context": [0, 1], "target": [2]}}))
    comparison = compare_with_paper(method, views, path, EvaluationIndex.load(path), image_shape, ["s"])
    assert comparison.score is None and reason in comparison.reason


@needs_official
def test_table_and_plot_show_the_published_scores_and_why_others_have_none(tmp_path):
    def row(method, views, status="ok", psnr=None):
        path, index = official(views)
        comparison = compare_with_paper(method, views, path, index, (256, 448), list(index))
        return SweepRow(method, views, str(path), status, psnr=psnr, paper=comparison.score.__dict__)

    rows = [row("zpressor-depthsplat", 36, psnr=23.5), row("depthsplat", 36, "OOM")]
    lines = markdown_table(rows).splitlines()
    assert lines[0].endswith("| Paper (PSNR / SSIM / LPIPS) |")
    assert lines[2].endswith("| 23.88 / 0.815 / 0.150 |")
    assert lines[3] == "| 36 | depthsplat | OOM | OOM | OOM | - | - | - | - | 19.23 / 0.666 / 0.286 |"
    plot_rows(rows, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0
    # Without published scores the table keeps its usual columns and says why none is shown.
    plain = SweepRow("zpressor-depthsplat", 12, "x", "ok", psnr=20.0, paper_note="1 scenes evaluated; ...")
    lines = markdown_table([plain]).splitlines()
    assert lines[0].endswith("| Gaussians |")
    assert lines[-2:] == [
        "No published score shown for:",
        "- zpressor-depthsplat at 12 views: 1 scenes evaluated; ...",
    ]
