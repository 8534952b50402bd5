"""zpressor-ns: ZPressor feed-forward 3DGS methods (DepthSplat, MVSplat, pixelSplat, with and without
ZPressor) for Nerfstudio.

Importing the package is cheap (torch and numpy only): every ``ns-*`` command imports it through the
entry points, so heavy modules are imported where they are used. The public API,
``zpressor_ns.build_encoder`` and ``zpressor_ns.import_official``, is loaded on first access.
"""

from zpressor_ns.compat import allow_nerfstudio_checkpoint_globals

__version__ = "0.1.0"

allow_nerfstudio_checkpoint_globals()

_PUBLIC = {"build_encoder", "import_official"}


def __getattr__(name: str):
    if name in _PUBLIC:
        from zpressor_ns.encoders import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'zpressor_ns' has no attribute {name!r}")
