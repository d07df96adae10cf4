"""LSQ-ML and automatic-differentiation engines on tiny simulated scans (fast, CPU)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_ptycho.engines import EngineError, reconstruct, stream
from napari_ptycho.engines.autodiff import ADConfig
from napari_ptycho.engines.lsqml import LSQMLConfig
from napari_ptycho.metrics import evaluate
from napari_ptycho.physics.simulate import simulate_ptycho

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scan():
    """A 48² Siemens star scanned by a 16² Gaussian probe, 1e5 photons, Poisson noise."""
    return simulate_ptycho(object="siemens", object_size=48, probe_size=16, probe="gaussian",
                           overlap=0.6, photons=1e5, seed=1)


def _illuminated(data) -> np.ndarray:
    """Object pixels that the true probe lights with >= 10 % of the peak summed intensity."""
    probe_int = (np.abs(data.truth_probe) ** 2).sum(0)
    h, w = probe_int.shape
    cover = np.zeros(data.object_shape)
    for r, c in np.floor(data.positions).astype(int):
        cover[r:r + h, c:c + w] += probe_int
    return cover > 0.1 * cover.max()


def _nrmse(obj: np.ndarray, data) -> float:
    return evaluate(obj, data.truth_object, region=_illuminated(data), scale=True)["nrmse"]


def _start_nrmse(data) -> float:
    return _nrmse(np.ones(data.object_shape, np.complex64), data)


@pytest.mark.parametrize("method,kw,gain", [
    ("lsqml", {}, 0.85),
    ("lsqml", {"noise_model": "poisson"}, 0.85),
    ("ad", {}, 0.85),
])
def test_blind_reconstruction_fits_data_and_beats_start(scan, method, kw, gain):
    result = reconstruct(scan, method, iterations=25, probe_init="data", seed=0, **kw)
    assert len(result.errors) == 25
    # the Poisson noise floor of this scan is about 2e-3 in this metric
    assert result.errors[-1] < 0.01
    assert result.errors[-1] < 0.2 * result.errors[0]
    assert _nrmse(result.object, scan) < gain * _start_nrmse(scan)


@pytest.mark.parametrize("loss", ["amplitude", "gaussian", "poisson"])
def test_ad_every_loss_lowers_the_data_error(scan, loss):
    result = reconstruct(scan, "ad", iterations=20, loss=loss, probe_init="data")
    assert result.errors[-1] < 0.25 * result.errors[0]
    assert result.extras["loss"] == loss
    assert _nrmse(result.object, scan) < _start_nrmse(scan)


@pytest.mark.parametrize("method", ["lsqml", "ad"])
def test_probe_modes_come_out_orthogonal(scan, method):
    result = reconstruct(scan, method, iterations=5, probe_modes=2, probe_init="data")
    p = result.probe.reshape(2, -1)
    overlap = abs(np.vdot(p[0], p[1])) / (np.linalg.norm(p[0]) * np.linalg.norm(p[1]))
    assert result.probe.shape[0] == 2
    assert overlap < 1e-3
    assert np.linalg.norm(p[0]) >= np.linalg.norm(p[1])


@pytest.mark.parametrize("method,iterations", [("lsqml", 60), ("ad", 30)])
def test_position_refinement_moves_positions_toward_the_truth(method, iterations):
    data = simulate_ptycho(object="grf", object_size=64, probe_size=32, probe="gaussian",
                           overlap=0.6, photons=1e6, seed=2, position_error=1.0)
    data = dataclasses.replace(data, probe=data.truth_probe)
    true = np.asarray(data.metadata["true_positions"])

    def rms(pos):
        err = pos - true
        err -= err.mean(0)  # a common shift is unobservable
        return float(np.sqrt((err ** 2).sum(1).mean()))

    result = reconstruct(data, method, iterations=iterations, update_probe=False,
                         position_refinement=True, position_refinement_start=2)
    assert rms(result.positions) < 0.75 * rms(data.positions)


def test_stream_closes_early_and_warm_start_continues(scan):
    gen = stream(scan, "lsqml", iterations=50, probe_init="data")
    first = next(gen)
    second = next(gen)
    gen.close()  # stopping early must not raise
    assert (first.iteration, second.iteration, second.total) == (1, 2, 50)
    assert not second.done
    warm = reconstruct(scan, "lsqml", init=second, iterations=3)
    cold = reconstruct(scan, "lsqml", iterations=3, probe_init="data")
    assert warm.iteration == 5 and warm.total == 5 and warm.done
    assert warm.errors[:2] == second.errors
    assert warm.errors[-1] < cold.errors[-1]


def test_ad_warm_start_keeps_the_probe_and_object(scan):
    first = reconstruct(scan, "ad", iterations=8, probe_init="data")
    more = reconstruct(scan, "ad", init=first, iterations=2, learning_rate=0.002,
                       probe_learning_rate=0.002)
    assert more.iteration == 10
    assert more.errors[-1] < 1.5 * first.errors[-1]


@pytest.mark.parametrize("method", ["lsqml", "ad"])
def test_same_seed_same_result(scan, method):
    a = reconstruct(scan, method, iterations=3, seed=4, probe_init="data")
    b = reconstruct(scan, method, iterations=3, seed=4, probe_init="data")
    np.testing.assert_allclose(a.object, b.object, atol=1e-5)


@pytest.mark.parametrize("method,kw,word", [
    ("lsqml", {"iterations": 0}, "iterations"),
    ("lsqml", {"probe_modes": 0}, "probe_modes"),
    ("lsqml", {"noise_model": "cauchy"}, "noise_model"),
    ("lsqml", {"beta_object": 0.0}, "beta_object"),
    ("ad", {"loss": "l1"}, "loss"),
    ("ad", {"learning_rate": -1.0}, "learning_rate"),
    ("ad", {"schedule": "step"}, "schedule"),
])
def test_bad_config_is_refused_before_starting(scan, method, kw, word):
    with pytest.raises(ValueError, match=word):
        next(stream(scan, method, **kw))


@pytest.mark.parametrize("method", ["lsqml", "ad"])
def test_positions_outside_the_object_are_refused(scan, method):
    bad = dataclasses.replace(scan, positions=scan.positions + 40.0,
                              object_shape=scan.object_shape)
    with pytest.raises(ValueError, match="outside the object"):
        next(stream(bad, method, iterations=2))


def test_too_many_modes_for_the_data_are_refused(scan):
    tiny = scan.subset(slice(0, 3))
    with pytest.raises(ValueError, match="probe_modes"):
        next(stream(tiny, "lsqml", probe_modes=4))


def test_non_finite_update_stops_with_the_iteration_named(scan, monkeypatch):
    from napari_ptycho.engines import _lsq_helpers

    original = _lsq_helpers.detector_update
    calls = {"n": 0}

    def poisoned(far, *args):
        change, err = original(far, *args)
        calls["n"] += 1
        return change * float("nan") if calls["n"] > 30 else change, err

    monkeypatch.setattr(_lsq_helpers, "detector_update", poisoned)
    with pytest.raises(EngineError, match=r"iteration \d+"):
        reconstruct(scan, "lsqml", iterations=20)


def test_ad_non_finite_gradient_stops_with_the_iteration_named(scan, monkeypatch):
    from napari_ptycho.engines import autodiff

    original = autodiff.data_loss
    monkeypatch.setattr(autodiff, "data_loss",
                        lambda *args: original(*args) * float("nan"))
    with pytest.raises(EngineError, match="iteration 1"):
        reconstruct(scan, "ad", iterations=3)


def test_near_field_scan_reconstructs_with_the_fresnel_propagator():
    data = simulate_ptycho(object="siemens", object_size=48, probe_size=16, probe="gaussian",
                           overlap=0.6, photons=1e6, seed=3, near_field_distance=2e-4)
    assert data.geometry.near_field
    result = reconstruct(data, "lsqml", iterations=20, probe_init="given",
                         update_probe=False)
    assert result.errors[-1] < 0.2 * result.errors[0]


def test_configs_share_the_2d_engine_fields():
    for cls in (LSQMLConfig, ADConfig):
        names = {f.name for f in dataclasses.fields(cls)}
        assert {"iterations", "seed", "device", "probe_modes", "update_probe",
                "position_refinement", "batch_size"} <= names
