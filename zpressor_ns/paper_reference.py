"""The paper's published scores, so that a reproduction can be read against them at a glance.

The scores live with their family in the registry (``EncoderFamily.paper_tables``); each applies only to its
protocol: that method at its paper configuration, that resolution and the official index files of that
table. ``paper_score`` finds the one that applies to a run, if any.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from zpressor_ns.encoders.registry import PaperTable, family_of, method_names


@dataclass(frozen=True)
class PaperScore:
    psnr: float
    ssim: float
    lpips: float
    source: str
    num_scenes: int | None = None


def paper_tables(method: str) -> tuple[PaperTable, ...]:
    """The tables that report ``method`` at its paper configuration (none for other names, e.g. "-small")."""
    if method not in method_names():
        return ()
    family, _ = family_of(method)
    return family.paper_tables


def paper_score(
    method: str, views: int, index_file: str | Path, image_shape: tuple[int, int]
) -> PaperScore | None:
    """The published score for this (method, views) on this index file and resolution, if the paper has one."""
    name = Path(index_file).name
    for table in paper_tables(method):
        match = re.fullmatch(table.index_pattern, name)
        if match is None or int(match.group(1)) != views or tuple(image_shape) != table.image_shape:
            continue
        scores = table.scores.get((method, views))
        if scores is not None:
            return PaperScore(*scores, source=table.source, num_scenes=table.num_scenes)
    return None
