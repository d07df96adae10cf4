"""napari-ptycho: interactive ptychography and Bragg CDI reconstruction for napari.

The Python API (no Qt needed)::

    import napari_ptycho as npt
    data = npt.simulate_ptycho(object="siemens", object_size=256, probe_size=64,
                               overlap=0.7, photons=1e6, seed=0)
    result = npt.reconstruct(data, method="rpie", iterations=100)
    print(npt.evaluate(result, data.truth_object))

Heavy modules (torch, napari) are imported on first use, so ``import napari_ptycho``
is fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "PtychoData": "napari_ptycho.data",
    "BraggData": "napari_ptycho.data",
    "Geometry": "napari_ptycho.data",
    "simulate_ptycho": "napari_ptycho.physics.simulate",
    "simulate_bragg": "napari_ptycho.physics.simulate",
    "forward_intensity": "napari_ptycho.physics.ptycho",
    "evaluate": "napari_ptycho.metrics",
    "load": "napari_ptycho.io",
    "save": "napari_ptycho.io",
    "stream": "napari_ptycho.engines.base",
    "reconstruct": "napari_ptycho.engines.base",
    "methods": "napari_ptycho.engines.base",
    "Snapshot": "napari_ptycho.engines.base",
    "Result": "napari_ptycho.engines.base",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'napari_ptycho' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
