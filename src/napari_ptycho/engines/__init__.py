"""Reconstruction engines behind one streaming interface (see :mod:`.base`)."""

from napari_ptycho.engines.base import (
    Engine,
    EngineError,
    Result,
    Snapshot,
    get_engine,
    make_config,
    methods,
    reconstruct,
    register,
    select_device,
    stream,
)
from napari_ptycho.engines.config import BaseConfig

__all__ = [
    "BaseConfig", "Engine", "EngineError", "Result", "Snapshot", "get_engine", "make_config",
    "methods", "reconstruct", "register", "select_device", "stream",
]
