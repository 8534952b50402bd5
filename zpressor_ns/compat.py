"""Compatibility shims between Nerfstudio 1.1.5 and current torch/numpy.

Nerfstudio 1.1.5 checkpoints hold numpy float64 learning rates (optimizer and scheduler state), and
torch >= 2.6 loads with ``weights_only=True``, which refuses them: resume, ns-eval, ns-viewer and
ns-export all fail. Allow-listing the few numpy types involved keeps the safe loader on (a pickled
checkpoint still cannot run code) while those files load.
"""

from __future__ import annotations

import numpy as np
import torch


def _numpy_scalar_reconstructors() -> list:
    found = []
    for module_name in ("numpy.core.multiarray", "numpy._core.multiarray"):
        try:
            module = __import__(module_name, fromlist=["scalar"])
        except ImportError:
            continue
        scalar = getattr(module, "scalar", None)
        if scalar is not None and scalar not in found:
            found.append(scalar)
    return found


def allow_nerfstudio_checkpoint_globals() -> None:
    """Register numpy scalar/dtype types with torch's weights-only unpickler (idempotent)."""
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # torch < 2.4 has no weights-only allow-list and no such problem
        return
    dtype_types = [type(np.dtype(t)) for t in (np.float64, np.float32, np.int64, np.int32, np.bool_)]
    add([*_numpy_scalar_reconstructors(), np.dtype, *dtype_types])
