"""Simulator: objects, probes, scans at a requested overlap, simulate_ptycho/simulate_bragg."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from napari_ptycho.data import BraggData, PtychoData
from napari_ptycho.physics.bragg import bragg_intensity
from napari_ptycho.physics.objects import OBJECT_KINDS, make_object
from napari_ptycho.physics.probes import (
    add_incoherent_modes,
    focused_probe,
    gaussian_probe,
    make_probe,
    probe_fwhm,
)
from napari_ptycho.physics.ptycho import forward_intensity
from napari_ptycho.physics.scans import make_scan, measure_overlap
from napari_ptycho.physics.simulate import simulate_bragg, simulate_ptycho

SMALL = {"object_size": 64, "probe_size": 32}


# --- objects ----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", OBJECT_KINDS)
def test_every_object_kind_respects_amplitude_and_phase_ranges(kind):
    obj = make_object(kind, 48, seed=1, amplitude_range=(0.5, 0.9), phase_range=(-0.4, 1.2))
    assert obj.shape == (48, 48) and obj.dtype == np.complex64
    amp, phase = np.abs(obj), np.angle(obj)
    assert amp.min() >= 0.5 - 1e-5 and amp.max() <= 0.9 + 1e-5
    assert phase.min() >= -0.4 - 1e-5 and phase.max() <= 1.2 + 1e-5
    # the object must have structure, not be a constant
    assert amp.std() > 0.01 and phase.std() > 0.01


def test_unknown_object_kind_lists_the_kinds():
    with pytest.raises(ValueError, match="siemens.*lines.*grf.*large_features.*images"):
        make_object("blob", 32)


def test_grf_correlation_length_controls_smoothness():
    def roughness(ell: float) -> float:
        amp = np.abs(make_object("grf", 64, seed=0, correlation_length=ell))
        return float(np.abs(np.diff(amp, axis=1)).mean() / amp.std())

    assert roughness(2.0) > 2 * roughness(8.0)


# --- probes -----------------------------------------------------------------------------

def test_gaussian_probe_fwhm_matches_its_definition():
    assert probe_fwhm(gaussian_probe(64, fwhm=16.0)) == pytest.approx(16.0, rel=0.02)


def test_focused_probe_has_rings_and_curved_phase():
    probe = focused_probe(64)[0]
    profile = np.abs(probe[32, 32:])
    # rings: the radial amplitude profile rises again somewhere after its first minimum
    assert np.any(np.diff(profile[:24]) > 0.02 * profile.max())
    # defocus curvature: phase differs between the centre and the first ring
    phase_step = np.angle(probe[32, 32 + 6] * np.conj(probe[32, 32]))
    assert abs(phase_step) > 0.1
    # the beam stays inside the central half of the window (oversampled far field)
    inner = np.sum(np.abs(probe[16:48, 16:48]) ** 2) / np.sum(np.abs(probe) ** 2)
    assert inner > 0.95


def test_far_field_of_focused_probe_through_empty_object_is_the_lens_pupil():
    # a focused beam's far field images the lens aperture: a bright disk, here an annulus
    probe = focused_probe(64, central_stop=0.4)
    pattern = forward_intensity(np.ones((80, 80), np.complex64), probe, np.array([[8.0, 8.0]]))
    pattern = pattern[0] / pattern.max()
    assert pattern[32, 32] < 0.05  # the central stop darkens the middle
    radial = pattern[32, 32:]
    bright = np.nonzero(radial > 0.5)[0]
    assert bright.size and bright.min() > 2 and bright.max() < 16
    assert pattern[32, 32 + bright.max() + 4] < 0.05  # nothing outside the aperture


@pytest.mark.parametrize("kind", ["focused", "gaussian"])
def test_requested_probe_fwhm_is_met_within_3_percent(kind):
    data = simulate_ptycho(probe=kind, probe_fwhm=11.0, noise="none", **SMALL)
    assert data.metadata["probe_fwhm_px"] == pytest.approx(11.0, rel=0.03)
    assert probe_fwhm(data.truth_probe) == pytest.approx(11.0, rel=0.03)
    with pytest.raises(ValueError, match="fwhm"):
        simulate_ptycho(probe=kind, probe_fwhm=40.0, **SMALL)


def test_incoherent_modes_are_orthogonal_with_decreasing_power():
    modes = add_incoherent_modes(focused_probe(32), 4)
    gram = np.einsum("aij,bij->ab", modes.conj(), modes)
    power = np.real(np.diag(gram))
    assert np.allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-5 * power.max())
    assert np.all(np.diff(power) < 0)
    assert power.sum() == pytest.approx(1.0, rel=1e-5)


def test_bad_probe_arguments_raise_value_error():
    with pytest.raises(ValueError, match="probe kind"):
        make_probe("bessel", 32)
    with pytest.raises(ValueError, match="probe_modes"):
        make_probe("gaussian", 32, modes=0)
    with pytest.raises(ValueError, match="fwhm"):
        gaussian_probe(32, fwhm=40)
    with pytest.raises(ValueError, match="central_stop"):
        focused_probe(32, central_stop=1.0)


# --- scans and overlap ------------------------------------------------------------------

def test_measure_overlap_of_a_raster_with_known_step_and_gaussian_probe():
    probe = gaussian_probe(32, fwhm=10.0)
    pos = make_scan("raster", (80, 80), (32, 32), step=3.0)
    assert measure_overlap(pos, probe) == pytest.approx(1 - 3.0 / 10.0, rel=0.02)


@pytest.mark.parametrize("scan", ["raster", "spiral"])
@pytest.mark.parametrize("overlap", [0.3, 0.8])
def test_simulated_overlap_equals_requested_within_2_percent(scan, overlap):
    data = simulate_ptycho(scan=scan, overlap=overlap, noise="none", **SMALL)
    measured = measure_overlap(data.positions, data.truth_probe)
    assert measured == pytest.approx(overlap, rel=0.02)


@settings(max_examples=25, deadline=None)
@given(overlap=st.floats(0.1, 0.9), fwhm=st.floats(5.0, 14.0),
       scan=st.sampled_from(["raster", "spiral"]))
def test_scan_generator_hits_any_requested_overlap_within_2_percent(overlap, fwhm, scan):
    probe = gaussian_probe(32, fwhm=fwhm)
    step = (1 - overlap) * probe_fwhm(probe)
    pos = make_scan(scan, (120, 120), (32, 32), step)
    assert measure_overlap(pos, probe) == pytest.approx(overlap, rel=0.02)


def test_positions_keep_every_probe_window_inside_the_object():
    data = simulate_ptycho(scan="spiral", jitter=2.0, noise="none", **SMALL)
    ph, pw = data.probe_shape
    assert data.positions.min() >= 1
    assert np.floor(data.positions[:, 0]).max() + ph <= 64 - 1
    assert np.floor(data.positions[:, 1]).max() + pw <= 64 - 1


# --- simulate_ptycho --------------------------------------------------------------------

def test_noise_free_data_equal_the_shared_forward_model_of_the_truth():
    data = simulate_ptycho(noise="none", probe_modes=2, detector_size=40, **SMALL)
    assert isinstance(data, PtychoData)
    assert data.diffraction.shape[1:] == (40, 40) and data.diffraction.dtype == np.float32
    model = forward_intensity(data.truth_object, data.truth_probe, data.positions,
                              detector_shape=(40, 40))
    np.testing.assert_allclose(data.diffraction, model, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(data.probe, data.truth_probe)
    assert data.truth_probe.shape == (2, 32, 32)


def test_near_field_simulation_uses_the_fresnel_forward_model():
    data = simulate_ptycho(noise="none", near_field_distance=2e-4, **SMALL)
    g = data.geometry
    assert g.near_field and g.propagation_distance == 2e-4
    model = forward_intensity(data.truth_object, data.truth_probe, data.positions,
                              geometry=g)
    np.testing.assert_allclose(data.diffraction, model, rtol=1e-5, atol=1e-3)
    far = simulate_ptycho(noise="none", **SMALL)
    # different propagation, different patterns; both conserve the exit-wave energy, so
    # reaching the same photon count needs the same probe scale
    assert not np.allclose(data.diffraction, far.diffraction, rtol=0.1)
    np.testing.assert_allclose(data.truth_probe, far.truth_probe, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="near_field_distance"):
        simulate_ptycho(near_field_distance=0.0, **SMALL)


def test_photons_total_is_mean_counts_per_pattern():
    data = simulate_ptycho(noise="none", photons=1e5, **SMALL)
    assert data.diffraction.sum(axis=(1, 2)).mean() == pytest.approx(1e5, rel=1e-4)
    noisy = simulate_ptycho(noise="poisson", photons=1e5, **SMALL)
    assert noisy.diffraction.sum(axis=(1, 2)).mean() == pytest.approx(1e5, rel=0.01)
    assert np.all(noisy.diffraction == np.round(noisy.diffraction))


def test_photons_max_sets_the_brightest_pixel():
    data = simulate_ptycho(noise="none", photons=1e5, photons_mode="max", **SMALL)
    assert data.diffraction.max() == pytest.approx(1e5, rel=1e-5)


def test_far_field_geometry_and_metadata_record_the_simulation():
    data = simulate_ptycho(scan="spiral", alpha=50.0, **SMALL)
    g = data.geometry
    assert g.energy == 8000 and g.distance == 2.0 and g.detector_pixel_size == 75e-6
    assert not g.near_field and g.object_pixel_size == pytest.approx(
        g.wavelength * 2.0 / (32 * 75e-6))
    params = data.metadata["simulation"]
    for key in ("object", "object_size", "probe_size", "overlap", "photons", "noise", "scan",
                "seed", "probe", "probe_modes", "detector_size", "jitter", "amplitude_range",
                "phase_range", "photons_mode", "alpha", "sigma"):
        assert key in params
    assert params["scan"] == "spiral" and params["alpha"] == 50.0
    assert data.object_shape == (64, 64)


def test_same_seed_reproduces_and_other_seed_differs():
    a = simulate_ptycho(object="lines", jitter=0.5, **SMALL)
    b = simulate_ptycho(object="lines", jitter=0.5, **SMALL)
    c = simulate_ptycho(object="lines", jitter=0.5, seed=1, **SMALL)
    np.testing.assert_array_equal(a.diffraction, b.diffraction)
    np.testing.assert_array_equal(a.positions, b.positions)
    assert not np.array_equal(a.truth_object, c.truth_object)
    assert not np.array_equal(a.positions, c.positions)


def test_position_error_perturbs_recorded_positions_but_not_the_data():
    exact = simulate_ptycho(noise="none", **SMALL)
    data = simulate_ptycho(noise="none", position_error=1.5, **SMALL)
    true = np.asarray(data.metadata["true_positions"])
    np.testing.assert_array_equal(true, exact.positions)
    np.testing.assert_array_equal(data.diffraction, exact.diffraction)
    errors = data.positions - true
    assert 0.8 < errors.std() < 2.0
    assert data.positions.min() >= 1 and data.positions.max() <= 64 - 32 - 1


def test_user_probe_and_positions_are_used_and_rescaled_to_the_photon_count():
    probe = gaussian_probe(24, fwhm=8.0)[0] * 7.0
    # PtychoPINN-style grouped grid: 4 px inside 2x2 groups, 12 px between groups
    base = np.array([[r, c] for r in (0, 4) for c in (0, 4)], dtype=np.float64)
    positions = np.concatenate([base + [gr, gc] for gr in (2, 14, 26) for gc in (2, 14, 26)])
    data = simulate_ptycho(probe_array=probe, positions=positions, object_size=64,
                           noise="none", photons=1e4)
    np.testing.assert_array_equal(data.positions, positions)
    assert data.truth_probe.shape == (1, 24, 24)
    np.testing.assert_allclose(data.truth_probe[0] / data.truth_probe[0, 12, 12],
                               probe / probe[12, 12], atol=1e-5)
    assert data.diffraction.sum(axis=(1, 2)).mean() == pytest.approx(1e4, rel=1e-4)
    assert data.metadata["simulation"]["scan"] == "custom"
    assert data.metadata["simulation"]["probe"] == "custom"


def test_user_positions_outside_the_object_are_rejected():
    with pytest.raises(ValueError, match="positions"):
        simulate_ptycho(positions=np.array([[0.0, 0.0], [40.0, 0.0]]), **SMALL)
    with pytest.raises(ValueError, match="positions"):
        simulate_ptycho(positions=np.array([0.0, 1.0]), **SMALL)


def test_user_object_array_is_used_as_truth():
    obj = make_object("grf", 72, seed=3)
    data = simulate_ptycho(object_array=obj, probe_size=32, noise="none")
    np.testing.assert_array_equal(data.truth_object, obj)
    assert data.object_shape == (72, 72) and data.metadata["simulation"]["object"] == "custom"


@pytest.mark.parametrize("kwargs, word", [
    ({"probe_size": 64, "object_size": 64}, "probe_size"),
    ({"overlap": 0.0}, "overlap"), ({"overlap": 1.0}, "overlap"), ({"overlap": 1.5}, "overlap"),
    ({"photons": 0}, "photons"), ({"photons": -5.0}, "photons"),
    ({"object": "cat"}, "object"), ({"scan": "zigzag"}, "scan"),
    ({"noise": "pink"}, "noise"), ({"probe": "bessel"}, "probe"),
    ({"photons_mode": "mean"}, "photons_mode"), ({"alpha": 0.0}, "alpha"),
    ({"sigma": -1.0}, "sigma"), ({"detector_size": 16}, "detector_size"),
    ({"object_array": np.ones((4, 4, 4))}, "object_array"),
    ({"position_error": -1.0}, "position_error"), ({"jitter": -1.0}, "jitter"),
    ({"photons": "many"}, "photons"), ({"overlap": None}, "overlap"),
    ({"probe_size": 31.5}, "probe_size"), ({"seed": -1}, "seed"), ({"alpha": "x"}, "alpha"),
    ({"amplitude_range": (1.0, 0.5)}, "amplitude_range"),
    ({"phase_range": "ab"}, "phase_range"),
    ({"probe_array": np.zeros((8, 8))}, "probe_array"),
    ({"probe_array": np.ones((8, 6))}, "probe_array"),
    ({"object_array": np.full((40, 40), np.nan)}, "object_array"),
])
def test_bad_simulate_ptycho_input_raises_value_error_naming_it(kwargs, word):
    with pytest.raises(ValueError, match=word):
        simulate_ptycho(**{**SMALL, **kwargs})


# --- simulate_bragg ---------------------------------------------------------------------

def test_simulate_bragg_returns_consistent_truth_and_total_photons():
    data = simulate_bragg(size=32, photons=1e7, noise="none", oversampling=2.5)
    assert isinstance(data, BraggData) and data.shape == (32, 32, 32)
    assert data.intensity.sum() == pytest.approx(1e7, rel=1e-4)
    np.testing.assert_allclose(data.intensity, bragg_intensity(data.truth_object),
                               rtol=1e-4, atol=1e-2)
    assert min(data.oversampling) >= 2.5
    assert 4 <= data.metadata["facets"] <= 20
    assert data.metadata["simulation"]["photons"] == 1e7


def test_simulate_bragg_poisson_counts_and_unstrained_real_truth():
    data = simulate_bragg(size=32, seed=4, photons=1e6, strained=False)
    assert np.all(data.intensity == np.round(data.intensity))
    assert data.intensity.sum() == pytest.approx(1e6, rel=0.01)
    assert np.all(np.isclose(np.angle(data.truth_object[np.abs(data.truth_object) > 0]), 0))
    again = simulate_bragg(size=32, seed=4, photons=1e6, strained=False)
    np.testing.assert_array_equal(data.intensity, again.intensity)


@pytest.mark.parametrize("kwargs, word", [({"size": 8}, "size"), ({"photons": 0}, "photons"),
                                          ({"oversampling": 1.5}, "oversampling"),
                                          ({"noise": "pink"}, "noise"),
                                          ({"oversampling": "x"}, "oversampling"),
                                          ({"phase_range": (1.0, 0.0)}, "phase_range")])
def test_bad_simulate_bragg_input_raises_value_error(kwargs, word):
    with pytest.raises(ValueError, match=word):
        simulate_bragg(**{"size": 32, **kwargs})


def test_strained_crystal_pattern_breaks_friedel_symmetry():
    data = simulate_bragg(size=32, seed=2, noise="none")
    flipped = np.roll(np.flip(data.intensity), 1, axis=(0, 1, 2))
    asym = np.abs(data.intensity - flipped).sum() / data.intensity.sum()
    assert asym > 0.05 and math.isfinite(asym)


def test_numpy_scalar_parameters_are_accepted():
    data = simulate_ptycho(overlap=np.float32(0.6), photons=np.int64(1000), seed=np.int64(2),
                           noise="none", **SMALL)
    assert data.metadata["simulation"]["seed"] == 2
    assert data.diffraction.sum(axis=(1, 2)).mean() == pytest.approx(1000, rel=1e-4)
