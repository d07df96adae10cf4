"""Physics building blocks: forward models against an oracle, energy conservation, shifts,
Bragg intensity and support helpers, crystals and noise statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_ptycho.data import Geometry
from napari_ptycho.physics.bragg import (
    bragg_field,
    bragg_intensity,
    gaussian_smooth,
    inverse_bragg_field,
    shrink_wrap,
    threshold_support,
)
from napari_ptycho.physics.crystals import (
    FACET_FAMILIES,
    facet_count,
    make_crystal,
    random_polyhedron,
)
from napari_ptycho.physics.noise import add_noise, gaussian_noise, poisson_noise
from napari_ptycho.physics.propagation import (
    Propagator,
    farfield,
    farfield_inverse,
    fresnel_propagate,
)
from napari_ptycho.physics.ptycho import forward_intensity, fourier_shift


def _random_wave(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))


def _energy(x: torch.Tensor) -> float:
    return float(x.abs().square().sum())


# --- forward model against Tike's independent simulation ------------------------------

def test_farfield_forward_model_matches_tike_oracle(shared_data):
    path = shared_data / "ptycho_sim_tike" / "ptycho_setup.npz"
    if not path.is_file():
        pytest.skip(f"Tike oracle not found at {path}")
    d = np.load(path)
    # Tike stores unshifted patterns (DC at the corner); ours are DC centred
    expected = np.fft.fftshift(d["data"], axes=(-2, -1))
    got = forward_intensity(d["psi"][0], d["probe"][0, 0], d["scan"], detector_shape=(32, 32))
    rel = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel < 1e-5


# --- energy conservation -------------------------------------------------------------

@pytest.mark.parametrize("detector", [None, (48, 40)])
def test_farfield_conserves_energy_forward_and_back(detector):
    wave = _random_wave((3, 32, 24))
    field = farfield(wave, detector)
    assert _energy(field) == pytest.approx(_energy(wave), rel=1e-5)
    back = farfield_inverse(field, (32, 24))
    assert torch.allclose(back, wave, atol=1e-5)


def test_fresnel_propagation_conserves_energy_and_inverts():
    wave = _random_wave((2, 32, 32), seed=1)
    out = fresnel_propagate(wave, 50e-9, 1e-10, 3e-3)
    assert _energy(out) == pytest.approx(_energy(wave), rel=1e-5)
    back = fresnel_propagate(out, 50e-9, 1e-10, -3e-3)
    assert torch.allclose(back, wave, atol=1e-4)


@pytest.mark.parametrize("near_field", [False, True])
def test_propagator_conserves_energy_with_padding_and_backward_is_adjoint(near_field):
    geometry = Geometry(energy=12000, distance=1.0, detector_pixel_size=50e-6,
                        detector_shape=(40, 40), near_field=near_field,
                        propagation_distance=2e-3 if near_field else None)
    prop = Propagator((24, 24), (40, 40), geometry)
    wave = _random_wave((2, 24, 24), seed=2)
    field = prop.forward(wave)
    assert field.shape[-2:] == (40, 40)
    assert _energy(field) == pytest.approx(_energy(wave), rel=1e-5)
    # adjoint test <A x, y> == <x, A^H y>
    y = _random_wave((2, 40, 40), seed=3)
    lhs = torch.vdot(field.reshape(-1), y.reshape(-1))
    rhs = torch.vdot(wave.reshape(-1), prop.backward(y).reshape(-1))
    assert abs(complex(lhs - rhs)) < 1e-3 * abs(complex(lhs))
    assert torch.allclose(prop.backward(field), wave, atol=1e-4)


# --- Fourier sub-pixel shift -----------------------------------------------------------

def test_fourier_shift_by_integers_equals_roll():
    x = _random_wave((16, 20), seed=4)
    shifted = fourier_shift(x, torch.tensor([3.0, -5.0]))
    assert torch.allclose(shifted, torch.roll(x, (3, -5), dims=(0, 1)), atol=1e-5)


def test_fourier_half_pixel_shifts_compose_to_one_pixel():
    x = _random_wave((16, 16), seed=5)
    half = fourier_shift(fourier_shift(x, torch.tensor([0.5, 0.5])), torch.tensor([0.5, 0.5]))
    assert torch.allclose(half, torch.roll(x, (1, 1), dims=(0, 1)), atol=1e-4)


# --- Bragg forward model and supports ---------------------------------------------------

@pytest.mark.parametrize("shape", [(16, 16, 16), (15, 16, 17), (20, 22)])
def test_bragg_pattern_of_real_object_has_friedel_symmetry(shape):
    rho = np.random.default_rng(0).random(shape).astype(np.float32)
    intensity = bragg_intensity(rho)
    # I(q) at centred index i ↔ I(-q) at index (n - i) mod n for even n, n - 1 - i for odd n
    mirrored = np.flip(intensity)
    for axis, n in enumerate(shape):
        if n % 2 == 0:
            mirrored = np.roll(mirrored, 1, axis=axis)
    np.testing.assert_allclose(intensity, mirrored, rtol=1e-4, atol=1e-6)


def test_bragg_intensity_is_centred_and_energy_conserving():
    rho = np.zeros((16, 16, 16), np.complex64)
    rho[4:12, 5:11, 6:10] = 1.0
    intensity = bragg_intensity(rho)
    assert np.unravel_index(intensity.argmax(), intensity.shape) == (8, 8, 8)
    assert intensity.sum() == pytest.approx(np.sum(np.abs(rho) ** 2), rel=1e-5)
    np.testing.assert_allclose(inverse_bragg_field(bragg_field(rho)), rho, atol=1e-5)


def test_bragg_intensity_keeps_torch_device_and_type():
    rho = torch.ones(8, 8, 8, dtype=torch.complex64)
    out = bragg_intensity(rho)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32
    assert float(out[4, 4, 4]) == pytest.approx(512.0)


@pytest.mark.parametrize("shape", [(24, 20, 22), (15, 16, 17), (20, 21)])
def test_gaussian_smooth_matches_scipy_wrapped_filter(shape):
    from scipy.ndimage import gaussian_filter

    vol = np.random.default_rng(1).random(shape).astype(np.float32)
    ours = gaussian_smooth(vol, 1.5)
    ref = gaussian_filter(vol.astype(np.float64), 1.5, mode="wrap", truncate=8.0)
    np.testing.assert_allclose(ours, ref, atol=2e-4)


def test_shrink_wrap_thresholds_the_smoothed_amplitude_relative_to_its_max():
    obj = np.zeros((32, 32, 32), np.complex64)
    obj[10:22, 10:22, 10:22] = np.exp(1j * 0.3)
    obj[2, 2, 2] = 0.9  # isolated spike: smoothing must remove it from the support
    support = shrink_wrap(obj, sigma=1.0, threshold=0.2)
    assert support.dtype == bool
    assert not support[2, 2, 2]
    assert support[16, 16, 16] and support[10, 10, 10]
    assert not support[5, 16, 16]
    plain = threshold_support(np.abs(obj), 0.5)
    assert plain[2, 2, 2] and plain.sum() == 12 ** 3 + 1


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, float("nan")])
def test_support_threshold_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match="threshold"):
        threshold_support(np.ones((4, 4)), bad)


def test_shrink_wrap_rejects_negative_sigma_and_1d_input():
    with pytest.raises(ValueError, match="sigma"):
        shrink_wrap(np.ones((8, 8, 8)), -1.0, 0.2)
    with pytest.raises(ValueError, match="2D or 3D"):
        shrink_wrap(np.ones(8), 1.0, 0.2)


# --- crystals ---------------------------------------------------------------------------

def test_crystal_facets_come_from_cubic_families_and_count_between_4_and_20():
    rng = np.random.default_rng(3)
    families = np.concatenate(list(FACET_FAMILIES.values()))
    for _ in range(25):
        poly = random_polyhedron(rng, rotate=False)
        assert 4 <= poly.facet_count() <= 20
        for n in poly.normals:
            assert np.any(np.all(np.isclose(families, n), axis=1))


def test_facet_count_of_a_cube_truncated_at_one_corner_is_seven():
    from napari_ptycho.physics.crystals import Polyhedron

    normals = np.vstack([FACET_FAMILIES["100"], np.ones(3) / np.sqrt(3)])
    poly = Polyhedron(normals, np.array([1.0] * 6 + [1.5]))
    assert poly.facet_count() == 7
    redundant = Polyhedron(normals, np.array([1.0] * 6 + [5.0]))
    assert redundant.facet_count() == 6


@pytest.mark.parametrize("size, oversampling", [(32, 2.0), (64, 3.0)])
def test_crystal_fits_box_at_requested_oversampling(size, oversampling):
    crystal, info = make_crystal(size, seed=1, oversampling=oversampling)
    assert crystal.shape == (size,) * 3 and crystal.dtype == np.complex64
    assert min(info["oversampling"]) >= oversampling
    occupied = np.argwhere(np.abs(crystal) > 0)
    assert (occupied.max(axis=0) - occupied.min(axis=0) + 1).max() <= size / oversampling


def test_facet_count_of_make_crystal_info_is_between_4_and_20_and_bad_input_rejected():
    for seed in range(4):
        _, info = make_crystal(16, seed=seed)
        assert facet_count(info) == info["facets"]
        assert 4 <= info["facets"] <= 20
    with pytest.raises(ValueError, match="Polyhedron"):
        facet_count({"normals": []})


def test_unstrained_crystal_is_real_and_strained_spans_phase_range():
    flat, _ = make_crystal(32, seed=2, strained=False)
    assert np.all(np.angle(flat[np.abs(flat) > 0]) == 0)
    strained, _ = make_crystal(32, seed=2, strained=True, phase_range=(-0.5, 1.0))
    phase = np.angle(strained[np.abs(strained) > 0.5])
    assert phase.min() == pytest.approx(-0.5, abs=1e-3)
    assert phase.max() == pytest.approx(1.0, abs=1e-3)


# --- noise ------------------------------------------------------------------------------

def test_poisson_noise_mean_and_variance_equal_the_intensity():
    noisy = poisson_noise(np.full(200_000, 25.0), seed=0)
    assert noisy.mean() == pytest.approx(25.0, rel=0.01)
    assert noisy.var() == pytest.approx(25.0, rel=0.03)
    assert np.all(noisy == np.round(noisy))


def test_ptyinr_poisson_form_scales_alpha_photons_back_to_input_scale():
    intensity = np.full(200_000, 50.0)
    intensity[0] = 200.0  # the maximum: α photons land here
    alpha = 10.0
    noisy = poisson_noise(intensity, seed=1, alpha=alpha)
    # I_P = max/α · Poisson(I/max · α): mean I, variance I · max/α, values on a max/α grid
    body = noisy[1:]
    assert body.mean() == pytest.approx(50.0, rel=0.01)
    assert body.var() == pytest.approx(50.0 * 200.0 / alpha, rel=0.03)
    np.testing.assert_allclose(noisy / (200.0 / alpha), np.round(noisy / (200.0 / alpha)),
                               atol=1e-3)


def test_gaussian_noise_has_requested_sigma_and_is_clipped_at_zero():
    noisy = gaussian_noise(np.full(200_000, 100.0), sigma=4.0, seed=2)
    assert noisy.std() == pytest.approx(4.0, rel=0.02)
    assert gaussian_noise(np.zeros(1000), sigma=3.0, seed=0).min() == 0.0


def test_mixed_noise_adds_poisson_and_gaussian_variances():
    noisy = add_noise(np.full(200_000, 30.0), "mixed", seed=3, sigma=2.0)
    assert noisy.var() == pytest.approx(30.0 + 4.0, rel=0.03)


def test_noise_is_reproducible_from_its_seed():
    intensity = np.random.default_rng(0).random((8, 8)) * 100
    for kind in ("poisson", "gaussian", "mixed"):
        np.testing.assert_array_equal(add_noise(intensity, kind, seed=5),
                                      add_noise(intensity, kind, seed=5))
    assert not np.array_equal(add_noise(intensity, "poisson", seed=5),
                              add_noise(intensity, "poisson", seed=6))


@pytest.mark.parametrize("kwargs, word", [({"alpha": 0.0}, "alpha"), ({"alpha": -2}, "alpha"),
                                          ({"sigma": -1.0}, "sigma"),
                                          ({"sigma": float("nan")}, "sigma"),
                                          ({"kind": "speckle"}, "noise kind")])
def test_bad_noise_parameters_raise_value_error_naming_them(kwargs, word):
    with pytest.raises(ValueError, match=word):
        add_noise(np.ones(4), **kwargs)


def test_negative_intensity_is_rejected_by_noise():
    with pytest.raises(ValueError, match="intensity"):
        poisson_noise(np.array([1.0, -1.0]))
