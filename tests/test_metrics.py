"""Behaviour of napari_ptycho.metrics: registration, image scores, FRC, data fidelity."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_ptycho import metrics
from napari_ptycho.engines.base import Snapshot
from napari_ptycho.metrics import (
    apply_shift,
    chi2,
    evaluate,
    frc,
    frc_crossing,
    free_poisson_nll,
    halfbit_threshold,
    nrmse,
    poisson_nll,
    scanned_region,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REQUIRED_KEYS = {"psnr_amplitude", "psnr_phase", "ssim_amplitude", "ssim_phase",
                 "mae_amplitude", "mae_phase", "nrmse", "frc50", "frc_halfbit", "shift"}


def band_limited_object(shape: tuple[int, ...], seed: int = 0, cutoff: float = 0.2
                        ) -> np.ndarray:
    """A smooth complex object with no spectral content beyond ``cutoff`` cycles/pixel.

    Band limiting makes the Fourier shift an exact model of a translation (no energy near
    Nyquist), so a perfect registration must give a near-perfect score.
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    inside = np.sqrt(sum(g ** 2 for g in grids)) < cutoff
    amp = np.fft.ifftn(rng.normal(size=shape) * inside).real
    phase = np.fft.ifftn(rng.normal(size=shape) * inside).real
    amp = 0.75 + 0.2 * amp / np.abs(amp).max()
    obj = amp * np.exp(1j * 1.2 * phase / np.abs(phase).max())
    # exp() widens the spectrum again: cut it once more so the object is truly band limited
    return np.fft.ifftn(np.fft.fftn(obj) * inside).astype(np.complex64)


@pytest.fixture(scope="module")
def truth2d() -> np.ndarray:
    return band_limited_object((64, 64))


@pytest.mark.parametrize("shift", [(3.0, -2.0), (2.37, -4.61), (-0.5, 1.25)])
def test_shifted_and_phased_copy_scores_as_perfect_after_registration(truth2d, shift):
    rec = apply_shift(truth2d, shift) * np.exp(1j * 2.3)
    out = evaluate(rec.astype(np.complex64), truth2d)
    assert out["psnr_amplitude"] >= 60 and out["psnr_phase"] >= 60
    assert out["ssim_amplitude"] >= 0.99 and out["ssim_phase"] >= 0.99
    assert out["nrmse"] < 1e-3
    # the reported shift is the one that undoes the applied one
    assert out["shift_0"] == pytest.approx(-shift[0], abs=1e-3)
    assert out["shift_1"] == pytest.approx(-shift[1], abs=1e-3)
    assert out["global_phase"] == pytest.approx(-2.3, abs=1e-3)


@settings(max_examples=12, deadline=None)
@given(dy=st.floats(-6, 6), dx=st.floats(-6, 6), theta=st.floats(-np.pi, np.pi))
def test_any_shift_and_global_phase_is_registered_exactly(dy, dx, theta):
    truth = band_limited_object((48, 48), seed=11)
    out = evaluate(apply_shift(truth, (dy, dx)) * np.exp(1j * theta), truth)
    assert out["psnr_amplitude"] >= 60 and out["psnr_phase"] >= 60
    assert out["ssim_amplitude"] >= 0.99 and out["ssim_phase"] >= 0.99


def test_registration_of_a_noisy_smooth_object_stays_sub_pixel():
    # Whitened (phase) correlation fails here: noise fills the empty part of the spectrum.
    truth = band_limited_object((96, 96), seed=7, cutoff=0.1)
    rng = np.random.default_rng(9)
    noise = 0.1 * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))
    out = evaluate(apply_shift(truth, (-3.3, 2.6)) + noise, truth)
    assert (out["shift_0"], out["shift_1"]) == pytest.approx((3.3, -2.6), abs=0.05)


def test_without_registration_a_shifted_copy_scores_poorly(truth2d):
    rec = apply_shift(truth2d, (2.37, -4.61))
    assert evaluate(rec, truth2d, register=False)["psnr_amplitude"] < 40


def test_evaluate_returns_plain_json_floats_for_snapshot_and_data_objects(truth2d):
    snap = Snapshot(iteration=1, total=1, object=truth2d)
    data = SimpleNamespace(truth_object=truth2d[None])  # (1, H, W) like Tike's psi
    out = evaluate(snap, data)
    assert REQUIRED_KEYS <= set(out)
    assert all(type(v) is float for v in out.values())
    json.dumps(out, allow_nan=False)


def test_region_ignores_garbage_outside_the_scanned_area(truth2d):
    rec = apply_shift(truth2d, (1.3, -0.7)) * np.exp(-0.4j)
    region = (slice(10, 54), slice(12, 50))
    garbage = np.ones(rec.shape, dtype=bool)
    garbage[8:56, 10:52] = False
    rec[garbage] = 1.0 + 0.5j  # unscanned border with a sharp edge
    out = evaluate(rec, truth2d, region=region)
    assert out["psnr_amplitude"] >= 60 and out["psnr_phase"] >= 60
    assert out["n_pixels"] == 44 * 38
    mask = np.zeros(rec.shape, dtype=bool)
    mask[region] = True
    assert evaluate(rec, truth2d, region=mask)["psnr_phase"] >= 60
    assert evaluate(rec, truth2d)["psnr_amplitude"] < 40  # the garbage counts without it


def test_phase_ramp_and_amplitude_scale_are_removed_on_request(truth2d):
    yy, xx = np.mgrid[:64, :64]
    rec = 2.5 * apply_shift(truth2d, (0.6, 1.1)) * np.exp(2j * np.pi * (0.013 * yy - 0.02 * xx))
    out = evaluate(rec, truth2d, ramp=True, scale=True)
    assert out["psnr_phase"] >= 60 and out["psnr_amplitude"] >= 60
    assert out["scale"] == pytest.approx(0.4, rel=1e-4)
    assert (out["ramp_0"], out["ramp_1"]) == pytest.approx((0.013, -0.02), abs=1e-5)
    assert evaluate(rec, truth2d)["psnr_phase"] < 30


def test_3d_twin_scores_like_the_object_itself():
    truth = band_limited_object((24, 24, 24), seed=3, cutoff=0.25)
    twin = np.conj(truth[::-1, ::-1, ::-1])
    twin = apply_shift(twin, (1.5, -2.0, 0.25)) * 1j
    direct, mirrored = evaluate(truth, truth), evaluate(twin, truth)
    assert mirrored["twin"] == 1.0 and direct["twin"] == 0.0
    for key in ("psnr_amplitude", "psnr_phase"):
        assert mirrored[key] >= 60 and direct[key] >= 60
    for key in ("ssim_amplitude", "ssim_phase", "nrmse", "frc50"):
        assert mirrored[key] == pytest.approx(direct[key], abs=1e-4)
    assert evaluate(twin, truth, twin=False)["nrmse"] > 0.1


def test_3d_twin_region_is_mirrored_with_the_reconstruction():
    truth = band_limited_object((24, 24, 24), seed=6, cutoff=0.25)
    twin = apply_shift(np.conj(truth[::-1, ::-1, ::-1]), (0.5, 1.0, -0.75))
    region = (slice(3, 17), slice(5, 21), slice(2, 15))  # in the reconstruction's frame
    outside = np.ones(twin.shape, dtype=bool)
    outside[region] = False
    twin[outside] = 3.0  # garbage that only a correctly mirrored region ignores
    out = evaluate(twin, truth, region=region)
    assert out["twin"] == 1.0
    assert out["psnr_amplitude"] >= 60 and out["psnr_phase"] >= 60
    assert out["n_pixels"] == 14 * 16 * 13


@pytest.mark.parametrize("theta", [0.0, 0.7, -2.9, np.pi])
def test_nrmse_is_invariant_to_global_phase(truth2d, theta):
    rng = np.random.default_rng(1)
    noisy = truth2d + 0.05 * (rng.normal(size=truth2d.shape) + 1j * rng.normal(size=truth2d.shape))
    assert nrmse(truth2d * np.exp(1j * theta), truth2d) < 1e-6
    assert nrmse(noisy * np.exp(1j * theta), truth2d) == pytest.approx(nrmse(noisy, truth2d),
                                                                       rel=1e-9)
    assert nrmse(noisy, truth2d) > 0.01
    assert nrmse(truth2d * np.exp(1j * 0.5), truth2d, phase=False) > 0.1


@pytest.mark.parametrize("shape", [(64, 64), (48, 64), (16, 16, 16)])
def test_frc_of_an_image_with_itself_is_one_in_every_ring(shape):
    rng = np.random.default_rng(2)
    img = rng.normal(size=shape) + 1j * rng.normal(size=shape)
    freq, curve, halfbit, seventh = frc(img, img)
    np.testing.assert_allclose(curve, 1.0, atol=1e-12)
    assert freq[0] == 0 and freq[-1] == pytest.approx(0.5)
    assert seventh == pytest.approx(1 / 7)
    assert halfbit.shape == curve.shape
    assert frc_crossing(freq, curve, 0.5) == pytest.approx(0.5)


def test_frc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(2, 128, 128))
    freq, curve, halfbit, _ = frc(a, b)
    # ~1/sqrt(pixels in the ring) fluctuations around zero, below the half-bit curve
    assert abs(curve[1:].mean()) < 0.05
    assert np.mean(np.abs(curve[1:]) < halfbit[1:]) >= 0.95
    assert np.sqrt(np.mean(curve[20:] ** 2)) < 0.12
    assert frc_crossing(freq, curve, 0.5) < 0.02


def test_frc50_finds_the_band_limit_of_a_noisy_copy():
    truth = band_limited_object((96, 96), seed=4, cutoff=0.3)
    rng = np.random.default_rng(5)
    noisy = truth + 0.02 * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))
    freq, curve, halfbit, _ = frc(noisy, truth)
    f50 = frc_crossing(freq, curve, 0.5)
    assert 0.1 < f50 <= 0.31
    assert frc_crossing(freq, curve, halfbit) <= 0.31


def test_halfbit_threshold_matches_van_heel_limits():
    assert halfbit_threshold(1) == pytest.approx(2.1173 / 2.1173, abs=1e-4)
    assert halfbit_threshold(1e12) == pytest.approx(0.2071 / 1.2071, abs=1e-5)
    assert np.all(np.diff(halfbit_threshold(np.arange(1, 100))) < 0)


def test_frc_crossing_interpolates_linearly():
    freq = np.array([0.0, 0.1, 0.2, 0.3])
    assert frc_crossing(freq, [1.0, 0.9, 0.3, 0.1], 0.5) == pytest.approx(0.1 + 0.1 * 4 / 6)


def test_chi2_is_zero_for_exact_data_and_positive_otherwise():
    rng = np.random.default_rng(6)
    intensity = rng.uniform(0, 100, size=(5, 8, 8))
    assert chi2(intensity, intensity) == 0.0
    assert chi2(4 * intensity, intensity) == pytest.approx(1.0)  # (2√I − √I)² / I
    mask = np.zeros((5, 8, 8), dtype=bool)
    mask[0] = True
    bad = intensity.copy()
    bad[1:] *= 9
    assert chi2(bad, intensity, mask) == 0.0


def test_poisson_nll_is_minimal_at_the_true_intensity_and_matches_scipy():
    from scipy.stats import poisson

    rng = np.random.default_rng(7)
    rate = rng.uniform(0.5, 50, size=200)
    counts = rng.poisson(rate).astype(float)
    best = poisson_nll(counts, counts)
    for factor in (0.8, 0.95, 1.05, 1.3):
        assert poisson_nll(counts * factor + 1e-3, counts) > best
    expected = -poisson.logpmf(counts, rate).mean()
    assert poisson_nll(rate, counts) == pytest.approx(expected, rel=1e-10)
    # dropping the log Γ constant shifts every model by the same amount
    shift = poisson_nll(rate, counts) - poisson_nll(rate, counts, constant=False)
    assert (poisson_nll(2 * rate, counts) - poisson_nll(2 * rate, counts, constant=False)
            == pytest.approx(shift))


def test_free_poisson_nll_uses_only_held_out_pixels():
    rng = np.random.default_rng(8)
    counts = rng.poisson(10, size=(4, 6, 6)).astype(float)
    model = counts + rng.uniform(0, 2, size=counts.shape)
    free = rng.random(counts.shape) < 0.1
    assert free_poisson_nll(model, counts, free) == pytest.approx(
        poisson_nll(model[free], counts[free]))
    with pytest.raises(ValueError, match="free_mask selects every pixel"):
        free_poisson_nll(model, counts, np.ones(counts.shape, dtype=bool))
    with pytest.raises(ValueError, match="free_mask selects no element"):
        free_poisson_nll(model, counts, np.zeros(counts.shape, dtype=bool))


def test_scanned_region_covers_every_probe_window():
    positions = np.array([[2.0, 3.0], [2.0, 20.5], [15.25, 3.0], [15.25, 20.5]])
    rows, cols = scanned_region(positions, (16, 16), (40, 40))
    # windows start at floor(position), as in the forward model
    assert (rows, cols) == (slice(2, 31), slice(3, 36))
    assert scanned_region(positions, (16, 16), (30, 30)) == (slice(2, 30), slice(3, 30))
    with pytest.raises(ValueError, match="positions"):
        scanned_region(np.zeros((3, 3)), (16, 16), (40, 40))
    with pytest.raises(ValueError, match="probe_shape"):
        scanned_region(positions, (0, 16), (40, 40))


@pytest.mark.parametrize("rec, truth, match", [
    (np.ones((16, 16), complex), np.ones((16, 18), complex), "reconstruction shape"),
    (np.ones((16, 16)), np.ones((16, 16), complex), "reconstruction must be complex"),
    (np.ones((16, 16), complex), np.ones((16, 16)), "truth must be complex"),
    (np.full((16, 16), np.nan + 0j), np.ones((16, 16), complex), "reconstruction contains NaN"),
    (np.ones((16, 16), complex), np.full((16, 16), np.inf + 0j), "truth contains NaN"),
    (np.ones((16, 16), complex), SimpleNamespace(truth_object=None), "truth has no truth_obj"),
    (np.ones(16, complex), np.ones(16, complex), "reconstruction must be a 2D image"),
])
def test_evaluate_rejects_bad_input_naming_the_argument(rec, truth, match):
    with pytest.raises(ValueError, match=match):
        evaluate(rec, truth)


def test_bad_options_and_data_are_named():
    t = np.ones((16, 16), complex)
    with pytest.raises(ValueError, match="region has 1 slice"):
        evaluate(t, t, region=(slice(0, 4),))
    with pytest.raises(ValueError, match="region spans"):
        evaluate(t, t, region=(slice(0, 2), slice(0, 16)))
    with pytest.raises(ValueError, match="region shape"):
        evaluate(t, t, region=np.ones((4, 4), bool))
    with pytest.raises(ValueError, match="dims"):
        evaluate(t, t, dims=3)
    with pytest.raises(ValueError, match="a shape"):
        frc(np.ones((8, 8)), np.ones((8, 9)))
    with pytest.raises(ValueError, match="estimate must be non-negative"):
        chi2(-np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="measured contains NaN"):
        poisson_nll(np.ones(4), np.array([1, np.nan, 1, 1]))


def test_fit_metrics_of_the_true_object_on_noise_free_data_is_exact():
    pytest.importorskip("torch")
    from napari_ptycho.physics.simulate import simulate_ptycho

    data = simulate_ptycho(object_size=48, probe_size=32, noise="none", seed=0)
    truth = Snapshot(iteration=0, total=0, object=data.truth_object, probe=data.truth_probe)
    exact = metrics.fit_metrics(truth, data)
    assert exact["chi2"] < 1e-8
    wrong = Snapshot(iteration=0, total=0, object=data.truth_object * 0.8,
                     probe=data.truth_probe)
    free = np.zeros(data.detector_shape, dtype=bool)
    free[::5, ::3] = True
    worse = metrics.fit_metrics(wrong, data, free_mask=free)
    assert worse["chi2"] > 1e-3 and worse["poisson_nll"] > exact["poisson_nll"]
    assert np.isfinite(worse["poisson_nll_free"])


def test_fit_metrics_of_the_tike_truth_reproduces_the_tike_data():
    pytest.importorskip("torch")
    path = DATA / "ptycho_sim_tike" / "ptycho_setup.npz"
    if not path.is_file():
        pytest.skip(f"shared test data not found at {path}")
    from napari_ptycho import io

    data = io.load(path)
    truth = SimpleNamespace(object=data.truth_object, probe=data.truth_probe,
                            positions=data.positions)
    # Tike's own test holds sqrt(model) to 1e-6 of sqrt(data): χ² must be tiny
    assert metrics.fit_metrics(truth, data)["chi2"] < 1e-10


def test_illuminated_region_sums_windows_and_modes() -> None:
    from napari_ptycho.metrics import illuminated_region

    probe = np.zeros((2, 4, 4), complex)
    probe[0, 1:3, 1:3] = 1.0  # bright centre
    probe[1, 0, 0] = 0.5  # a weak second mode: 0.25 < 0.5 of the peak
    pos = np.array([[0.0, 0.0], [0.0, 2.0]])  # windows overlap in columns 2-3
    lit = illuminated_region(pos, probe, (6, 8), fraction=0.5)
    expected = np.zeros((6, 8), bool)
    expected[1:3, 1:5] = True  # each window's centre; the overlap adds nothing bright
    assert np.array_equal(lit, expected)
    # every pixel that any window lights passes a tiny threshold, nothing outside does
    # (the two centres, 2 × 4 pixels, and the second mode's corner pixel of each window)
    assert illuminated_region(pos, probe, (6, 8), fraction=1e-3).sum() == 2 * 4 + 2


def test_illuminated_region_refuses_bad_input() -> None:
    from napari_ptycho.metrics import illuminated_region

    with pytest.raises(ValueError, match="fraction"):
        illuminated_region([[0, 0]], np.ones((4, 4)), (8, 8), fraction=0)
    with pytest.raises(ValueError, match="probe"):
        illuminated_region([[0, 0]], np.ones(4), (8, 8))
