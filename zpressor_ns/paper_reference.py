"""The paper's published scores, so that a reproduction can be read against them at a glance.

Table 1 of the paper: DepthSplat with and without ZPressor on DL3DV at 256x448, trained with 12 context
views (6 anchors), evaluated on the 140 DL3DV benchmark scenes with the official index files
``dl3dv_ctx_<N>v_tgt_8v_n50.json``. A score applies only to that protocol: the paper configuration of
the method, that resolution and those files. Nothing else in the paper is a DepthSplat score.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PaperScore:
    psnr: float
    ssim: float
    lpips: float
    source: str


_TABLE_1 = "ZPressor paper, Table 1 (DL3DV, 256x448, 140 scenes)"
# (method, context views) -> (PSNR, SSIM, LPIPS)
DL3DV_TABLE_1: dict[tuple[str, int], tuple[float, float, float]] = {
    ("depthsplat", 36): (19.23, 0.666, 0.286),
    ("zpressor-depthsplat", 36): (23.88, 0.815, 0.150),
    ("depthsplat", 24): (20.38, 0.711, 0.253),
    ("zpressor-depthsplat", 24): (24.26, 0.820, 0.147),
    ("depthsplat", 16): (22.07, 0.773, 0.195),
    ("zpressor-depthsplat", 16): (24.25, 0.819, 0.147),
    ("depthsplat", 12): (23.32, 0.807, 0.162),
    ("zpressor-depthsplat", 12): (24.30, 0.821, 0.146),
}
_DL3DV_INDEX = re.compile(r"dl3dv_ctx_(\d+)v_tgt_8v_n50\.json")


def paper_score(
    method: str, views: int, index_file: str | Path, image_shape: tuple[int, int]
) -> PaperScore | None:
    """The published score for this (method, views) on this index file and resolution, if the paper has one."""
    match = _DL3DV_INDEX.fullmatch(Path(index_file).name)
    if match is None or int(match.group(1)) != views or tuple(image_shape) != (256, 448):
        return None
    scores = DL3DV_TABLE_1.get((method, views))
    return None if scores is None else PaperScore(*scores, source=_TABLE_1)
