"""The one streaming engine interface every method implements.

An engine is a class with a ``name``, a ``Config`` dataclass, a short ``description``,
``dims`` (2 or 3) and a ``run(data, config, init=None)`` generator that yields
:class:`Snapshot` objects every few iterations (epochs, steps or diffusion timesteps: the
``unit`` field says which). The last snapshot has ``done=True``. Widgets, the CLI, the
benchmarks and the tests drive engines through :func:`stream` only, so they never know
which engine runs.

Engines register themselves with :func:`register`; the registry imports engine modules
lazily so that ``import napari_ptycho`` stays cheap.
"""

from __future__ import annotations

import dataclasses
import importlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np


@dataclass
class Snapshot:
    """State of a running reconstruction, as numpy arrays (never torch tensors).

    Attributes
    ----------
    iteration : int
        Iterations (or epochs / steps / timesteps) completed so far.
    total : int
        Planned total, in the same unit.
    object : ndarray
        Complex object, (H, W) or (D, H, W).
    probe : ndarray or None
        Complex probe modes (modes, h, w); ``None`` for 3D methods.
    positions : ndarray or None
        Current (possibly refined) positions (N, 2) in object pixels.
    errors : list of float
        Error / loss history, one entry per iteration so far.
    elapsed : float
        Seconds since the run started.
    unit : str
        "iteration", "epoch", "step" or "timestep".
    method : str
        Registry name of the engine that produced it.
    done : bool
        True for the final snapshot of a run (finished, not cancelled).
    extras : dict
        Engine-specific extras (e.g. ``support``, ``preview``, ``strain``, ``loss_terms``).
    """

    iteration: int
    total: int
    object: np.ndarray
    probe: np.ndarray | None = None
    positions: np.ndarray | None = None
    errors: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    unit: str = "iteration"
    method: str = ""
    done: bool = False
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> float:
        """Fraction complete in [0, 1]."""
        return min(1.0, self.iteration / max(self.total, 1))

    @property
    def eta(self) -> float | None:
        """Estimated seconds left, or ``None`` before the first iteration."""
        if self.iteration <= 0:
            return None
        return self.elapsed / self.iteration * max(self.total - self.iteration, 0)


@dataclass
class Result(Snapshot):
    """The outcome of :func:`reconstruct`: the last snapshot plus its provenance.

    Attributes
    ----------
    parameters : dict
        The engine's full configuration (``dataclasses.asdict``), plus ``method``.
    metrics : dict
        Quality metrics (filled when ground truth exists or by the caller).
    source : str
        Identifier of the input data (file path or layer name).
    """

    parameters: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def from_snapshot(cls, snap: Snapshot, parameters: dict[str, Any] | None = None,
                      source: str = "") -> Result:
        """Wrap a snapshot with its parameters."""
        kw = {f.name: getattr(snap, f.name) for f in dataclasses.fields(Snapshot)}
        return cls(**kw, parameters=dict(parameters or {}), source=source)


class Engine(Protocol):
    """What every reconstruction method provides."""

    name: ClassVar[str]
    description: ClassVar[str]
    dims: ClassVar[int]
    unit: ClassVar[str]
    Config: ClassVar[type]

    def run(self, data: Any, config: Any, init: Snapshot | None = None) -> Iterator[Snapshot]:
        """Yield snapshots while reconstructing ``data`` with ``config``."""
        ...


class EngineError(RuntimeError):
    """Raised by an engine when a run cannot continue (e.g. non-finite values)."""


# name -> (module path, class name, description, dims); filled by the modules' register()
_REGISTRY: dict[str, tuple[str, str, str, int]] = {}
_ENGINES: dict[str, type] = {}


def register(name: str, module: str, cls: str, description: str, dims: int) -> None:
    """Declare an engine without importing it.

    Parameters
    ----------
    name : str
        Registry name (e.g. ``"epie"``).
    module : str
        Absolute module path that defines the engine class.
    cls : str
        Class name inside ``module``.
    description : str
        One-line description shown in the GUI and by :func:`methods`.
    dims : int
        2 for ptychography, 3 for Bragg CDI.
    """
    _REGISTRY[name] = (module, cls, description, dims)


def methods() -> dict[str, dict[str, Any]]:
    """Registered methods: name -> {"description", "dims"}."""
    _load_builtin()
    return {n: {"description": d, "dims": k} for n, (_, _, d, k) in _REGISTRY.items()}


def get_engine(name: str) -> type:
    """Return the engine class registered as ``name``.

    Raises
    ------
    ValueError
        If no engine of that name exists.
    """
    _load_builtin()
    key = name.lower().replace("-", "_")
    if key not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {sorted(_REGISTRY)}")
    if key not in _ENGINES:
        module, cls, _, _ = _REGISTRY[key]
        _ENGINES[key] = getattr(importlib.import_module(module), cls)
    return _ENGINES[key]


def make_config(name: str, **overrides: Any) -> Any:
    """Build the engine's config dataclass, refusing unknown keywords by name."""
    engine = get_engine(name)
    valid = {f.name for f in dataclasses.fields(engine.Config)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise ValueError(f"method {name!r} has no parameter(s) {unknown}; valid: "
                         f"{sorted(valid)}")
    return engine.Config(**overrides)


def stream(data: Any, method: str = "rpie", init: Snapshot | None = None,
           config: Any = None, **overrides: Any) -> Iterator[Snapshot]:
    """Run ``method`` on ``data`` and yield its snapshots (the streaming API).

    Parameters
    ----------
    data : PtychoData or BraggData
        The scan or volume.
    method : str
        Registry name (see :func:`methods`).
    init : Snapshot, optional
        Warm start from an earlier snapshot or result.
    config : dataclass, optional
        A ready config; ``overrides`` are applied on top of it.
    **overrides
        Config fields, e.g. ``iterations=100, seed=0``.
    """
    engine = get_engine(method)
    if config is None:
        config = make_config(method, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    yield from engine().run(data, config, init)


def reconstruct(data: Any, method: str = "rpie", init: Snapshot | None = None,
                config: Any = None, callback: Any = None, **overrides: Any) -> Result:
    """Run ``method`` to the end and return a :class:`Result`.

    Parameters
    ----------
    data, method, init, config, **overrides
        As for :func:`stream`.
    callback : callable, optional
        Called with every snapshot (e.g. a progress bar).
    """
    engine = get_engine(method)
    if config is None:
        config = make_config(method, **overrides)
    elif overrides:
        config = dataclasses.replace(config, **overrides)
    last: Snapshot | None = None
    for snap in engine().run(data, config, init):
        last = snap
        if callback is not None:
            callback(snap)
    if last is None:
        raise EngineError(f"method {method!r} produced no snapshot")
    params = {"method": engine.name, **dataclasses.asdict(config)}
    source = str(getattr(data, "metadata", {}).get("source", ""))
    return Result.from_snapshot(last, params, source)


def select_device(device: str = "auto") -> Any:
    """Pick a torch device once: "auto" is CUDA when present, else CPU."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]' (got {device!r})")
    return torch.device(device)


class Timer:
    """Elapsed-time helper for engines."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start


_BUILTIN_LOADED = False


def _load_builtin() -> None:
    """Import the modules that declare the built-in engines (cheap: declarations only)."""
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    importlib.import_module("napari_ptycho.engines.registry")
