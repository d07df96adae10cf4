"""DM and RAAR (engines.projections) and the raster-grid gauge (engines.raster_gauge).

The older DM/RAAR tests (streaming, warm starts, modes, near field, bad input) live in
test_engines_iterative.py; these protect the fixes of issue #4 part B: convergence from the
generic data-derived probe on a perfect raster scan.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ptycho.data import PtychoData
from napari_ptycho.engines import Snapshot, common, stream
from napari_ptycho.engines.raster_gauge import RasterGauge, raster_steps
from napari_ptycho.physics.objects import make_object
from napari_ptycho.physics.ptycho import forward_intensity

PROBE = 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _grid(step: float, side: int, origin: float = 1.3) -> np.ndarray:
    g = origin + step * np.arange(side)
    return np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)


def _exit_waves(obj: torch.Tensor, probe: torch.Tensor, positions: np.ndarray
                ) -> torch.Tensor:
    windows = common.Windows(torch.from_numpy(positions), tuple(probe.shape[-2:]),
                             tuple(obj.shape))
    return windows.probes(probe) * windows.gather(obj)[:, None]


def test_raster_steps_finds_a_subpixel_raster_and_refuses_irregular_scans():
    pos = _grid(4.2952, 9)
    rows, cols = raster_steps(pos)
    assert rows == pytest.approx(4.2952, abs=1e-6) and cols == pytest.approx(4.2952, abs=1e-6)
    missing = np.delete(pos, [3, 4, 5, 20], axis=0)  # a few skipped points: still a raster
    assert raster_steps(missing)[0] == pytest.approx(4.2952, abs=1e-6)
    jittered = pos + np.random.default_rng(0).uniform(-0.5, 0.5, pos.shape)
    assert raster_steps(jittered) == (None, None)
    line = np.stack([np.full(9, 2.0), 2.0 + 3.0 * np.arange(9)], -1)
    assert raster_steps(line) == (None, pytest.approx(3.0))
    with pytest.raises(ValueError, match="positions"):
        raster_steps(np.zeros((4, 3)))


def test_raster_gauge_removes_a_scan_periodic_factor_and_keeps_every_exit_wave():
    step, side, h = 5.3, 9, 16
    pos = _grid(step, side)
    size = int(np.ceil(pos.max())) + h + 2
    obj = torch.from_numpy(make_object("grf", size, 0, (0.7, 1.0), (0.0, 1.0)))
    c = np.arange(h) - (h - 1) / 2
    probe = torch.from_numpy(np.exp(-(c[:, None] ** 2 + c[None] ** 2) / 10.0
                                    + 0.03j * c[None] ** 2)[None].astype(np.complex64))

    def periodic(r: np.ndarray, q: np.ndarray) -> np.ndarray:
        k = 2 * np.pi / step
        return np.exp(0.3 * np.cos(k * r)[:, None] + 0.25j * np.sin(k * q)[None, :])

    rows = np.arange(size, dtype=np.float64)
    f_obj = torch.from_numpy(periodic(rows, rows).astype(np.complex64))
    probe_rows = np.arange(h) + pos[0, 0]
    f_probe = torch.from_numpy(periodic(probe_rows, probe_rows).astype(np.complex64))
    bad_obj, bad_probe = obj * f_obj, probe / f_probe
    waves = _exit_waves(obj, probe, pos)
    # the data cannot see f (up to the sub-pixel shift's discretisation) ...
    torch.testing.assert_close(_exit_waves(bad_obj, bad_probe, pos), waves, rtol=0, atol=1e-2)
    # ... although f alone changes the exit waves a lot
    assert float((_exit_waves(bad_obj, probe, pos) - waves).abs().max()) > 0.1

    gauge = RasterGauge(pos, (h, h), (size, size))
    assert gauge.active
    new_obj, new_probe = bad_obj, bad_probe
    for _ in range(3):
        new_obj, new_probe = gauge.apply(new_obj, new_probe)
    inner = (slice(h // 2, size - h // 2),) * 2

    def nrmse(o: torch.Tensor) -> float:
        x, t = o[inner].numpy().ravel(), obj[inner].numpy().ravel()
        return float(np.linalg.norm(np.vdot(x, t) / np.vdot(x, x) * x - t) / np.linalg.norm(t))

    assert nrmse(bad_obj) > 0.2
    assert nrmse(new_obj) < 0.25 * nrmse(bad_obj)
    torch.testing.assert_close(_exit_waves(new_obj, new_probe, pos), waves, rtol=0, atol=1e-2)


def test_raster_gauge_does_nothing_on_an_irregular_scan():
    pos = _grid(3.7, 8) + np.random.default_rng(1).uniform(-0.6, 0.6, (64, 2))
    gauge = RasterGauge(pos, (16, 16), (48, 48))
    obj = torch.ones((48, 48), dtype=torch.complex64)
    probe = torch.ones((1, 16, 16), dtype=torch.complex64)
    assert not gauge.active
    out_obj, out_probe = gauge.apply(obj, probe)
    assert out_obj is obj and out_probe is probe


def _raster_scan() -> PtychoData:
    """A perfect sub-pixel raster (8 x 8, step 4.3 px) under a strongly defocused probe
    with Poisson noise: the flat-phase probe guess from the data focuses to a spot narrower
    than the step, the situation in which DM and RAAR fell into the raster-grid pathology."""
    grid = 1.0 + 4.3 * np.arange(8)
    pos = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    size = int(np.ceil(pos.max())) + PROBE + 2
    obj = make_object("grf", size, 0, (0.7, 1.0), (0.0, 1.0))
    c = np.arange(PROBE) - (PROBE - 1) / 2
    r2 = c[:, None] ** 2 + c[None] ** 2
    sigma = PROBE / 2.0 / 2.3548
    probe = np.exp(-r2 / (2 * sigma ** 2) + 0.12j * r2)[None].astype(np.complex64)
    intensity = forward_intensity(obj, probe, pos)
    scale = 1e5 / intensity.sum(axis=(1, 2)).mean()
    counts = np.random.default_rng(0).poisson(intensity * scale).astype(np.float32)
    return PtychoData(counts, pos, truth_object=obj,
                      truth_probe=(probe * np.sqrt(scale)).astype(np.complex64),
                      object_shape=(size, size))


@pytest.fixture(scope="module")
def raster() -> PtychoData:
    return _raster_scan()


def _nrmse(obj: np.ndarray, data: PtychoData) -> float:
    """NRMSE in the well-lit region after the best global complex scale."""
    lit = np.zeros(data.object_shape)
    p2 = (np.abs(data.truth_probe) ** 2).sum(0)
    for r, c in np.floor(data.positions).astype(int):
        lit[r:r + PROBE, c:c + PROBE] += p2
    region = lit > 0.2 * lit.max()
    x, t = obj[region], data.truth_object[region]
    return float(np.linalg.norm(np.vdot(x, t) / np.vdot(x, x) * x - t) / np.linalg.norm(t))


_RUNS: dict = {}


def _run(data: PtychoData, method: str, gauge: bool = True) -> Snapshot:
    """150 iterations from the generic probe guess (cached: several tests score one run)."""
    key = (id(data), method, gauge)
    if key not in _RUNS:
        _RUNS[key] = list(stream(data, method=method, iterations=150, update_every=150,
                                 probe_init="data", seed=0, raster_gauge=gauge))[-1]
    return _RUNS[key]


@pytest.mark.parametrize("method", ["dm", "raar"])
def test_generic_probe_on_a_raster_fits_the_data_and_recovers_the_object(raster, method):
    snap = _run(raster, method)
    assert snap.errors[-1] < 0.1 * snap.errors[0]
    start = _nrmse(np.ones(raster.object_shape, np.complex64), raster)
    assert _nrmse(snap.object, raster) < 0.7 * start
    # the final alternating projections descend: no step of the last 30 % raises the error
    tail = np.array(snap.errors[105:])
    assert np.all(np.diff(tail) <= 1e-6 * tail[:-1])


def test_raster_gauge_keeps_dm_out_of_the_raster_grid_pathology(raster):
    with_gauge = _nrmse(_run(raster, "dm").object, raster)
    without = _nrmse(_run(raster, "dm", gauge=False).object, raster)
    assert with_gauge < 0.5 * without


@pytest.mark.parametrize("value", [1.0, -0.1, float("nan")])
def test_final_ap_fraction_outside_zero_one_is_refused(raster, value):
    with pytest.raises(ValueError, match="final_ap_fraction"):
        next(stream(raster, method="dm", final_ap_fraction=value))


def test_band_limit_drops_scan_harmonics_that_would_alias_under_subpixel_shifts():
    pos = _grid(4.0, 8, origin=1.0)
    wide_band = RasterGauge(pos, (PROBE, PROBE), (48, 48), bandwidth=(0.3, 0.3))
    assert not wide_band.active  # 1/4 cycle per pixel would alias under sub-pixel shifts
    assert RasterGauge(pos, (PROBE, PROBE), (48, 48)).active
