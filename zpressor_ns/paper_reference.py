"""The paper's published scores, so that a reproduction can be read against them at a glance, and only then.

The scores live with their family in the registry (``EncoderFamily.paper_tables``). A published score
applies to a row only under its table's protocol: that method at its paper configuration, that
resolution, the official index file of that table and all of its scenes. A file is recognised by its
content (``EvaluationIndex.digest``, recorded in the table), not by its name: ``make-synthetic`` and
users name their own indices like the official files. :func:`compare_with_paper` gives the score, or
says why none is shown.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from zpressor_ns.data.eval_index import EvaluationIndex
from zpressor_ns.encoders.registry import PaperTable, family_of, method_names


@dataclass(frozen=True)
class PaperScore:
    psnr: float
    ssim: float
    lpips: float
    source: str
    num_scenes: int | None = None


@dataclass(frozen=True)
class PaperComparison:
    """The published score of a row, or None and the reason (one sentence) it does not apply."""

    score: PaperScore | None
    reason: str = ""


def paper_tables(method: str) -> tuple[PaperTable, ...]:
    """The tables that report ``method`` at its paper configuration (none for other names, e.g. "-small")."""
    if method not in method_names():
        return ()
    family, _ = family_of(method)
    return family.paper_tables


def compare_with_paper(
    method: str,
    views: int,
    index_file: str | Path,
    index: EvaluationIndex,
    image_shape: tuple[int, int],
    evaluated: Collection[str],
) -> PaperComparison:
    """The published score for ``method`` at ``views`` context views, if the row's evaluation is the paper's.

    ``index`` is the index read from ``index_file``; ``evaluated`` the scene keys scored (or to be scored)
    with it. The score applies when the file's name and the resolution match a table, the index's content
    is the official file's (when the table records its digest), and every scene of the index is evaluated,
    as many as the paper averaged.
    """
    tables = paper_tables(method)
    if not tables:
        return PaperComparison(None, f"the paper reports no {method} configuration")
    name = Path(index_file).name
    height, width = image_shape
    for table in tables:
        match = re.fullmatch(table.index_pattern, name)
        if match is None or int(match.group(1)) != views:
            continue
        if tuple(image_shape) != table.image_shape:
            paper_height, paper_width = table.image_shape
            return PaperComparison(
                None, f"evaluated at {height}x{width}; {table.source} is at {paper_height}x{paper_width}"
            )
        scores = table.scores.get((method, views))
        if scores is None:
            return PaperComparison(None, f"{table.source} has no {method} score at {views} views")
        expected = table.index_digests.get(views)
        if expected is not None and index.digest() != expected:
            return PaperComparison(
                None,
                f"{name} is named like the official file but selects other scenes or frames "
                "(its content differs from the official index)",
            )
        count = table.num_scenes if table.num_scenes is not None else len(index)
        scored = set(evaluated)
        if scored != set(index) or len(scored) != count:
            return PaperComparison(
                None, f"{len(scored)} scenes evaluated; {table.source} averages all {count} scenes of {name}"
            )
        return PaperComparison(PaperScore(*scores, source=table.source, num_scenes=count))
    files = ", ".join(table.index_pattern for table in tables)
    return PaperComparison(None, f"{name} is not an index file of the paper's tables ({files})")
