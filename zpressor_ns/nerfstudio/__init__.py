"""The Nerfstudio face: Model, Pipeline, DataManager, optimisers, viewer hooks and sweeps.

It adapts the core (``zpressor_ns.encoders``, ``zpressor_ns.data``, ``zpressor_ns.render``, ...) to
Nerfstudio's contracts and holds no model math. Everything outside this folder (and the top-level
``method_configs``/``dataparsers`` folders) imports without Nerfstudio.
"""
