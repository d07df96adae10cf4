"""Iterative 2D engines (ePIE, rPIE, DM, RAAR) and their shared machinery (engines.common)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ptycho.data import Geometry, PtychoData
from napari_ptycho.engines import EngineError, Snapshot, common, get_engine, stream
from napari_ptycho.engines import iterative as it
from napari_ptycho.physics.objects import make_object
from napari_ptycho.physics.propagation import Propagator
from napari_ptycho.physics.ptycho import forward_intensity

METHODS = ["epie", "rpie", "dm", "raar"]
PROBE = 16
STEP = 4
SIDE = 8  # 8 x 8 = 64 positions


def _probe(modes: int = 1) -> np.ndarray:
    c = np.arange(PROBE) - (PROBE - 1) / 2
    r2 = c[:, None] ** 2 + c[None] ** 2
    sigma = PROBE / 2.5 / 2.3548
    base = np.exp(-r2 / (2 * sigma ** 2) + 0.02j * r2)
    out = [base] + [0.6 ** k * base * (c[:, None] if k % 2 else c[None]) / sigma
                    for k in range(1, modes)]
    return np.array(out, dtype=np.complex64)


def _scan(jitter: float = 0.8, modes: int = 1, geometry: Geometry | None = None,
          seed: int = 0, photons: float = 1e5) -> PtychoData:
    """A small far-field (or near-field) scan of a textured object, noise free."""
    rng = np.random.default_rng(seed)
    grid = np.arange(SIDE) * STEP + 1.0
    pos = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    pos = pos + rng.uniform(-jitter, jitter, pos.shape)
    size = int(np.ceil(pos.max())) + PROBE + 2
    obj = make_object("grf", size, seed, (0.7, 1.0), (0.0, 1.0))
    probe = _probe(modes)
    intensity = forward_intensity(obj, probe, pos, geometry=geometry)
    scale = photons / intensity.sum(axis=(1, 2)).mean()
    return PtychoData((intensity * scale).astype(np.float32), pos,
                      geometry=geometry or Geometry(),
                      truth_object=obj, truth_probe=(probe * np.sqrt(scale)).astype(np.complex64),
                      object_shape=(size, size))


def _lit(data: PtychoData, fraction: float = 0.2) -> np.ndarray:
    """Object pixels lit by at least ``fraction`` of the peak total illumination."""
    ill = np.zeros(data.object_shape)
    p2 = (np.abs(data.truth_probe) ** 2).sum(0)
    for r, c in np.round(data.positions).astype(int):
        ill[r:r + PROBE, c:c + PROBE] += p2
    return ill > fraction * ill.max()


def _nrmse(x: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    """NRMSE after the optimal global complex scale (phase and amplitude)."""
    x, t = x[region], truth[region]
    c = np.vdot(x, t) / np.vdot(x, x)
    return float(np.linalg.norm(c * x - t) / np.linalg.norm(t))


def _last(gen) -> Snapshot:
    snaps = list(gen)
    return snaps[-1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def scan() -> PtychoData:
    return _scan()


@pytest.mark.parametrize("method", METHODS)
def test_engine_lowers_data_error_and_object_nrmse_from_a_data_probe_guess(scan, method):
    snap = _last(stream(scan, method=method, iterations=40, update_every=40,
                        probe_init="data", seed=1))
    assert snap.done and snap.iteration == 40 and len(snap.errors) == 40
    assert snap.errors[-1] < 0.2 * snap.errors[0]
    region = _lit(scan)
    start = _nrmse(np.ones(scan.object_shape, np.complex64), scan.truth_object, region)
    assert _nrmse(snap.object, scan.truth_object, region) < 0.6 * start
    assert snap.method == method and snap.probe.shape == (1, PROBE, PROBE)


@pytest.mark.parametrize("method", ["epie", "rpie"])
@pytest.mark.parametrize("batch_size", [1, 16])
def test_pie_sequential_and_overlapping_minibatches_converge(scan, method, batch_size):
    snap = _last(stream(scan, method=method, iterations=6, update_every=6,
                        batch_size=batch_size, probe_init="data", sequential_iterations=0))
    assert snap.errors[-1] < 0.5 * snap.errors[0]


def test_parallel_batch_of_disjoint_windows_steps_the_object_like_sequential_pie(scan):
    # windows 16 px apart never overlap: one parallel batch of them must move the object
    # exactly as the compact-set (= sequential) update does
    grid = np.array([[0, 0], [0, 16], [16, 0], [16, 16], [32, 8]], dtype=float)
    sub = PtychoData(scan.intensities()[:len(grid)], grid, probe=scan.truth_probe,
                     object_shape=scan.object_shape)
    for method in ("rpie", "epie"):
        runs = {b: _last(stream(sub, method=method, iterations=1, update_probe=False,
                                batch_size=b, final_step_fraction=1.0))
                for b in (0, len(grid))}
        assert not np.allclose(runs[0].object, 1)
        np.testing.assert_allclose(runs[0].object, runs[len(grid)].object, atol=1e-5)


def test_parallel_rpie_leaves_the_data_probe_guess_without_a_warm_up(scan):
    region = _lit(scan)
    start = _nrmse(np.ones(scan.object_shape, np.complex64), scan.truth_object, region)
    snap = _last(stream(scan, method="rpie", iterations=30, update_every=30, batch_size=16,
                        probe_init="data", seed=2))
    assert it.RPIEConfig().sequential_iterations == 0  # the default needs no warm-up
    assert snap.errors[-1] < 0.05 * snap.errors[0]
    assert _nrmse(snap.object, scan.truth_object, region) < 0.5 * start


def test_late_step_decay_lowers_the_final_error_on_noisy_data():
    noisy = _scan(photons=3e3)
    rng = np.random.default_rng(0)
    noisy = PtychoData(rng.poisson(noisy.intensities()).astype(np.float32), noisy.positions,
                       object_shape=noisy.object_shape)
    final = {f: _last(stream(noisy, method="rpie", iterations=30, update_every=30,
                             batch_size=16, probe_init="data", final_step_fraction=f)
                      ).errors[-1] for f in (1.0, 0.2)}
    assert final[0.2] < final[1.0]


def test_compact_sets_converge_without_sequential_warm_up(scan):
    snap = _last(stream(scan, method="rpie", iterations=30, update_every=30,
                        probe_init="data", sequential_iterations=0))
    assert snap.errors[-1] < 0.2 * snap.errors[0]


def test_sequential_warm_up_then_batched_updates(scan, monkeypatch):
    calls: list[int] = []
    real = it.modulus_projection

    def counting(fields, amplitudes, mask=None):
        calls.append(fields.shape[0])
        return real(fields, amplitudes, mask)

    monkeypatch.setattr(it, "modulus_projection", counting)
    _last(stream(scan, method="epie", iterations=3, sequential_iterations=2))
    n = scan.n_patterns
    assert calls[:2 * n] == [1] * (2 * n)  # two sequential sweeps
    later = calls[2 * n:]
    assert sum(later) == n and max(later) > 1  # then one sweep of parallel batches

    calls.clear()  # a probe that comes with the data needs no sequential warm-up
    with_probe = PtychoData(scan.diffraction, scan.positions, probe=scan.truth_probe,
                            object_shape=scan.object_shape)
    _last(stream(with_probe, method="epie", iterations=1, sequential_iterations=2))
    assert sum(calls) == n and max(calls) > 1


def test_whole_pixel_fast_path_converges(scan):
    snap = _last(stream(scan, method="rpie", iterations=30, update_every=30, subpixel=False,
                        probe_init="data", sequential_iterations=0))
    assert snap.errors[-1] < 0.2 * snap.errors[0]


def test_stream_yields_every_update_every_with_numpy_state(scan):
    snaps = list(stream(scan, method="epie", iterations=7, update_every=3))
    assert [s.iteration for s in snaps] == [3, 6, 7]
    assert [s.done for s in snaps] == [False, False, True]
    assert all(isinstance(s.object, np.ndarray) and s.object.dtype == np.complex64
               for s in snaps)
    assert snaps[0].errors == snaps[-1].errors[:3]
    assert snaps[-1].positions.shape == (scan.n_patterns, 2)
    assert snaps[-1].elapsed >= snaps[0].elapsed > 0


@pytest.mark.parametrize("method", ["rpie", "dm"])
def test_stream_can_be_closed_early(scan, method):
    gen = stream(scan, method=method, iterations=1000, update_every=1)
    first = next(gen)
    gen.close()
    assert first.iteration == 1 and not first.done
    with pytest.raises(StopIteration):
        next(gen)


@pytest.mark.parametrize("method", ["rpie", "raar"])
def test_warm_start_continues_below_a_cold_start(scan, method):
    kw = dict(method=method, update_every=100, probe_init="data", seed=3)
    first = _last(stream(scan, iterations=8, **kw))
    warm = _last(stream(scan, iterations=8, init=first, **kw))
    cold = _last(stream(scan, iterations=8, **kw))
    assert warm.iteration == 16 and warm.total == 16 and len(warm.errors) == 16
    assert warm.errors[:8] == first.errors
    assert warm.errors[-1] < cold.errors[-1]


def test_same_seed_gives_the_same_reconstruction(scan):
    a = _last(stream(scan, method="rpie", iterations=3, seed=5, probe_init="data"))
    b = _last(stream(scan, method="rpie", iterations=3, seed=5, probe_init="data"))
    np.testing.assert_array_equal(a.object, b.object)


@pytest.mark.parametrize("method", ["rpie", "dm"])
def test_multimode_probes_stay_orthogonal_and_fit_mixed_data(method):
    data = _scan(modes=2, seed=2)
    snap = _last(stream(data, method=method, iterations=25, update_every=25, probe_modes=2,
                        probe_init="data"))
    flat = snap.probe.reshape(2, -1)
    overlap = np.abs(flat @ flat.conj().T)
    assert overlap[0, 1] < 1e-4 * overlap[0, 0]
    assert overlap[0, 0] >= overlap[1, 1]  # strongest mode first
    assert snap.errors[-1] < 0.2 * snap.errors[0]


def test_position_refinement_reduces_position_error():
    data = _scan(jitter=1.0, seed=1)
    grid = np.arange(SIDE) * STEP + 1.0
    nominal = np.stack(np.meshgrid(grid, grid, indexing="ij"), -1).reshape(-1, 2)
    start = PtychoData(data.diffraction, nominal, object_shape=data.object_shape)

    def error(p: np.ndarray) -> float:
        e = p - data.positions
        return float(np.median(np.linalg.norm(e - e.mean(0), axis=1)))

    # 64 positions: batches of 8 give the positions 8 steps per pass (the default 32 suits
    # scans of thousands of patterns)
    snap = _last(stream(start, method="rpie", iterations=40, update_every=40, batch_size=8,
                        position_refinement=True, position_refinement_start=5))
    assert error(snap.positions) < 0.5 * error(nominal)


def test_near_field_geometry_reconstructs():
    geometry = Geometry(energy=12_000.0, near_field=True, propagation_distance=2e-3,
                        pixel_size_override=1e-6)
    data = _scan(geometry=geometry, seed=4)
    for method in ("rpie", "dm"):
        snap = _last(stream(data, method=method, iterations=20, update_every=20,
                            probe_init="data"))
        assert snap.errors[-1] < 0.2 * snap.errors[0], method


def test_masked_pixels_are_ignored(scan):
    bad = scan.intensities().copy()
    bad[:, 3:5, 3:5] = 1e9  # a hot region the mask excludes
    mask = np.ones(scan.detector_shape, bool)
    mask[3:5, 3:5] = False
    data = PtychoData(bad, scan.positions, mask=mask, object_shape=scan.object_shape)
    snap = _last(stream(data, method="rpie", iterations=20, update_every=20,
                        probe_init="data"))
    assert snap.errors[-1] < 0.2 * snap.errors[0]


def test_modulus_projection_keeps_masked_model_amplitudes():
    g = torch.Generator().manual_seed(0)
    fields = torch.randn((2, 2, 4, 4), dtype=torch.complex64, generator=g)
    amps = torch.rand((2, 4, 4), generator=g)
    mask = torch.ones((4, 4), dtype=torch.bool)
    mask[0, 0] = False
    before = fields.clone()
    err = common.modulus_projection(fields, amps, mask)
    total = fields.abs().square().sum(1).sqrt()
    torch.testing.assert_close(total[:, mask], amps[:, mask])
    torch.testing.assert_close(fields[..., 0, 0], before[..., 0, 0])
    expected = ((before.abs().square().sum(1).sqrt() - amps)[:, mask] ** 2).sum()
    torch.testing.assert_close(err, expected)
    torch.testing.assert_close(common.data_error(before, amps, mask), expected)


@pytest.mark.parametrize("detector", [(16, 16), (24, 20)])
def test_native_detector_equals_propagator_up_to_a_fixed_shift(detector):
    g = torch.Generator().manual_seed(0)
    wave = torch.randn((3, 2, 16, 16), dtype=torch.complex64, generator=g)
    native, prop = common.Detector((16, 16), detector), Propagator((16, 16), detector)
    torch.testing.assert_close(native.forward(wave), native.to_native(prop.forward(wave)))
    field = prop.forward(wave)
    torch.testing.assert_close(native.backward(native.to_native(field)), prop.backward(field))
    torch.testing.assert_close(native.from_native(native.to_native(field)), field)
    # preallocated outputs (the PIE hot loop's buffers) give the same numbers
    out = torch.empty((3, 2, *detector), dtype=torch.complex64)
    torch.testing.assert_close(native.forward(wave, out=out), native.forward(wave))
    back = torch.empty_like(wave)
    torch.testing.assert_close(native.backward(out, out=back), native.backward(out))


def test_orthogonalisation_keeps_the_incoherent_intensity():
    g = torch.Generator().manual_seed(1)
    probe = torch.randn((3, 8, 8), dtype=torch.complex64, generator=g)
    new, u = common.orthogonalize_modes(probe)
    torch.testing.assert_close(common.abs2(new).sum(0), common.abs2(probe).sum(0),
                               rtol=1e-4, atol=1e-4)
    flat = new.reshape(3, -1)
    gram = (flat @ flat.conj().T).abs()
    assert torch.all(gram - torch.diag(torch.diag(gram)) < 1e-3 * gram.max())
    torch.testing.assert_close(u @ probe.reshape(3, -1), flat, rtol=1e-4, atol=1e-4)


def test_probe_estimate_is_centred_with_the_mean_total_intensity(scan):
    det = common.Detector((PROBE, PROBE), scan.detector_shape)
    amps = det.to_native(torch.from_numpy(scan.intensities()).sqrt())
    probe = common.estimate_probe(amps, det)
    assert probe.shape == (1, PROBE, PROBE)
    np.testing.assert_allclose(float(common.abs2(probe).sum()),
                               scan.intensities().sum(axis=(1, 2)).mean(), rtol=1e-4)
    peak = np.unravel_index(int(common.abs2(probe[0]).argmax()), (PROBE, PROBE))
    assert abs(peak[0] - PROBE // 2) <= 1 and abs(peak[1] - PROBE // 2) <= 1


def test_compact_sets_hold_every_position_once_without_overlap(scan):
    pos = torch.from_numpy(scan.positions)
    sets = common.compact_sets(pos, (PROBE, PROBE), torch.Generator().manual_seed(0))
    assert sorted(torch.cat(sets).tolist()) == list(range(scan.n_patterns))
    assert len(sets) < scan.n_patterns // 2
    for s in sets:
        p = pos[s]
        d = (p[:, None] - p[None]).abs()
        clash = (d[..., 0] < PROBE) & (d[..., 1] < PROBE)
        assert int(clash.sum()) == len(s)  # only each window with itself


@pytest.mark.parametrize("overrides, word", [
    (dict(iterations=0), "iterations"),
    (dict(probe_modes=11), "probe_modes"),
    (dict(probe_modes=0), "probe_modes"),
    (dict(alpha=1.5), "alpha"),
    (dict(batch_size=-1), "batch_size"),
    (dict(probe_init="truth"), "probe_init"),
    (dict(position_max_step=0.0), "position_max_step"),
    (dict(final_step_fraction=0.0), "final_step_fraction"),
])
def test_bad_configs_are_refused_before_starting(scan, overrides, word):
    with pytest.raises(ValueError, match=word):
        next(stream(scan, method="rpie", **overrides))


def test_impossible_inputs_are_refused(scan):
    few = scan.subset(slice(0, 2))
    with pytest.raises(ValueError, match="probe_modes"):
        next(stream(few, method="epie", probe_modes=3))
    outside = PtychoData(scan.diffraction, scan.positions + 30, object_shape=scan.object_shape)
    with pytest.raises(ValueError, match="outside the object"):
        next(stream(outside, method="epie"))
    with pytest.raises(ValueError, match="position_refinement"):
        next(stream(scan, method="dm", position_refinement=True))
    with pytest.raises(ValueError, match="beta"):
        next(stream(scan, method="raar", beta=0.0))
    nan = scan.intensities().copy()
    nan[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        next(stream(PtychoData(nan, scan.positions, object_shape=scan.object_shape)))
    with pytest.raises(ValueError, match="PtychoData"):
        next(stream(np.zeros((3, 8, 8)), method="rpie"))
    with pytest.raises(ValueError, match="RPIEConfig"):
        next(get_engine("rpie")().run(scan, it.EPIEConfig()))
    bad_init = Snapshot(iteration=1, total=1, object=np.ones((5, 5), np.complex64))
    with pytest.raises(ValueError, match="init object"):
        next(stream(scan, method="rpie", init=bad_init))


def test_non_finite_values_stop_the_run_naming_the_iteration(scan, monkeypatch):
    calls = {"n": 0}
    real = it.modulus_projection

    def poisoned(fields, amplitudes, mask=None):
        calls["n"] += 1
        if calls["n"] == 3:  # one batch per iteration: this is iteration 3
            fields[0, 0, 0, 0] = float("nan")
        return real(fields, amplitudes, mask)

    monkeypatch.setattr(it, "modulus_projection", poisoned)
    with pytest.raises(EngineError, match="iteration 3"):
        for _ in stream(scan, method="epie", iterations=10, batch_size=10_000,
                        sequential_iterations=0):
            pass


@pytest.mark.parametrize("method", METHODS)
def test_probe_is_held_until_probe_update_start_and_when_switched_off(scan, method):
    snaps = list(stream(scan, method=method, iterations=4, update_every=1,
                        probe_update_start=2, probe_init="data", sequential_iterations=0)
                 if method in ("epie", "rpie") else
                 stream(scan, method=method, iterations=4, update_every=1,
                        probe_update_start=2, probe_init="data"))
    np.testing.assert_array_equal(snaps[0].probe, snaps[1].probe)
    assert not np.array_equal(snaps[1].probe, snaps[3].probe)
    fixed = list(stream(scan, method=method, iterations=3, update_probe=False,
                        probe_init="data"))
    np.testing.assert_array_equal(fixed[0].probe, fixed[-1].probe)
