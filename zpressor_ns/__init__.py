"""zpressor-ns: ZPressor feed-forward 3DGS methods (DepthSplat with/without ZPressor) for Nerfstudio.

Importing the package is cheap (torch and numpy only): every ``ns-*`` command imports it through the
entry points, so heavy modules are imported where they are used.
"""

from zpressor_ns.compat import allow_nerfstudio_checkpoint_globals

__version__ = "0.1.0"

allow_nerfstudio_checkpoint_globals()
