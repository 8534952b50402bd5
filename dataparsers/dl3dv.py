"""DL3DV: raw (<hash>/nerfstudio/transforms.json + images_8), 480P training layout, or converted chunks.

Also reads folders of Nerfstudio captures (``--layout nerfstudio``): a user's own scenes.
"""

from __future__ import annotations

from pathlib import Path

from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from zpressor_ns.dataparsers.multiscene import MultiSceneDataParserConfig

dl3dv_config = MultiSceneDataParserConfig(
    data=Path("data/dl3dv"),
    dataset="dl3dv",
    near=1.0,
    far=200.0,  # DepthSplat(+ZPressor) on DL3DV: near 1, far 200
    evaluation_window=50,  # the DL3DV benchmark indices use the first 50 frames
    standard_index_name="dl3dv_ctx_{views}v_tgt_8v_n50.json",
)

dl3dv_dataparser = DataParserSpecification(
    config=dl3dv_config,
    description="DL3DV (raw benchmark/480P layouts or chunks) and folders of Nerfstudio scenes (multi-scene)",
)
