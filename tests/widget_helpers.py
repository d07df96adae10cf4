"""Helpers for the widget tests: small scans as layers and test-only engines."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from napari_ptycho.engines import EngineError, Snapshot, register
from napari_ptycho.engines.config import BaseConfig


def small_scan(seed: int = 0, object_size: int = 64, probe_size: int = 32,
               overlap: float = 0.3):
    """A tiny simulated far-field scan with ground truth (49 positions: quick ePIE)."""
    from napari_ptycho.physics.simulate import simulate_ptycho

    return simulate_ptycho(object="siemens", object_size=object_size, probe_size=probe_size,
                           overlap=overlap, photons=1e6, noise="poisson", seed=seed)


def add_scan(viewer, data, name: str = "scan"):
    """Add ``data`` to ``viewer`` the way readers and sample data do."""
    return viewer.add_image(data.intensities(), name=name, metadata={"ptycho_data": data})


@dataclass
class SlowConfig(BaseConfig):
    """Test engine parameters.

    Parameters
    ----------
    delay : float
        Seconds each iteration sleeps (stands in for real work).
    fail_at : int
        Raise an EngineError at this iteration (0 = never).
    """

    iterations: int = 40
    delay: float = 0.03
    fail_at: int = 0


class SlowEngine:
    """Deterministic test engine: the object brightens every iteration."""

    name = "slow_test"
    description = "test engine"
    dims = 2
    unit = "iteration"
    Config = SlowConfig

    def run(self, data, config: SlowConfig, init=None) -> Iterator[Snapshot]:
        shape = data.object_shape
        start = 0 if init is None else init.iteration
        obj = np.ones(shape, np.complex64) if init is None else init.object.copy()
        probe = np.ones((1, *data.probe_shape), np.complex64)
        t0 = time.perf_counter()
        errors: list[float] = [] if init is None else list(init.errors)
        for i in range(start + 1, start + config.iterations + 1):
            time.sleep(config.delay)
            if config.fail_at and i >= config.fail_at:
                raise EngineError(f"non-finite object at iteration {i}")
            obj = obj * np.complex64(np.exp(0.05j)) * np.float32(1.01)
            probe = probe * np.complex64(np.exp(-0.05j))
            errors.append(1.0 / i)
            yield Snapshot(iteration=i, total=start + config.iterations, object=obj.copy(),
                           probe=probe.copy(), positions=data.positions, errors=list(errors),
                           elapsed=time.perf_counter() - t0, method=self.name,
                           done=i == start + config.iterations)


register("slow_test", __name__, "SlowEngine", "test engine (sleeps)", 2)
