"""Nerfstudio dataparsers of the multi-scene datasets (installed as ``zpressor_ns.dataparsers``)."""

from zpressor_ns.dataparsers.dl3dv import dl3dv_config
from zpressor_ns.dataparsers.multiscene import MultiSceneDataParserConfig
from zpressor_ns.dataparsers.re10k import acid_config, re10k_config

# Subcommand name -> default config, offered after a method name (ns-train METHOD re10k --data ...).
MULTISCENE_DATAPARSERS: dict[str, MultiSceneDataParserConfig] = {
    "re10k": re10k_config,
    "acid": acid_config,
    "dl3dv": dl3dv_config,
}
