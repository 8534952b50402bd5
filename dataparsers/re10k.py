"""RE10K and ACID: pixelSplat's chunk layout (train/ and test/ with *.torch + index.json)."""

from __future__ import annotations

from nerfstudio.plugins.registry_dataparser import DataParserSpecification
from zpressor_ns.dataparsers.multiscene import MultiSceneDataParserConfig

re10k_config = MultiSceneDataParserConfig(
    dataset="re10k",
    near=1.0,
    far=200.0,  # DepthSplat(+ZPressor) trains RE10K with near 1, far 200
    evaluation_window=200,
    standard_index_name="re10k_ctx_{views}v_tgt_8v_n200.json",
)
acid_config = MultiSceneDataParserConfig(
    data=re10k_config.data.parent / "acid",
    dataset="acid",
    near=1.0,
    far=100.0,  # the ACID generalisation test of the original uses near 1, far 100
    evaluation_window=200,
    standard_index_name="acid_ctx_{views}v_tgt_8v_n200.json",
)

re10k_dataparser = DataParserSpecification(
    config=re10k_config,
    description="RealEstate10K in pixelSplat's chunk layout (multi-scene, feed-forward methods)",
)
acid_dataparser = DataParserSpecification(
    config=acid_config, description="ACID in pixelSplat's chunk layout (multi-scene, feed-forward methods)"
)
