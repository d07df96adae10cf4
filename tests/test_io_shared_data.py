"""Real files from other projects load with the right shapes, units and geometry."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ptycho.data import BraggData, PtychoData
from napari_ptycho.io import load

PETRA = "ptycho_nearfield_petra3/PETRAIII_P25_Near_Field_Ptycho.cxi"


def test_petra_near_field_cxi_loads_with_its_geometry(shared_data):
    data = load(shared_data / PETRA)
    assert isinstance(data, PtychoData) and data.is_lazy
    assert data.diffraction.shape == (200, 100, 100)
    g = data.geometry
    assert g.distance == pytest.approx(1.12, rel=1e-6)
    assert g.energy == pytest.approx(12.66e3, rel=2e-3)  # 2.028e-15 J in the file
    assert g.wavelength == pytest.approx(9.79e-11, rel=1e-3)
    assert g.detector_pixel_size == pytest.approx(55e-6, rel=1e-6)
    assert g.near_field, "1.3 µm steps exceed the far-field window: must be detected"
    assert data.mask.sum() == 100 * 100 - 5  # five flagged pixels in the CXI mask


def test_petra_propagation_distance_sets_cone_beam_magnification(shared_data):
    data = load(shared_data / PETRA, propagation_distance=3.65e-3)
    g = data.geometry
    assert g.near_field and g.propagation_distance == pytest.approx(3.65e-3)
    # Fresnel scaling: object pixel = detector pixel * z_eff / z
    assert g.object_pixel_size == pytest.approx(55e-6 * 3.65e-3 / 1.12, rel=1e-6)
    steps = np.linalg.norm(np.diff(data.positions, axis=0), axis=1)
    assert 3 < np.median(steps) < 15  # ≈1.3 µm steps at ≈180 nm pixels
    assert data.positions.min() == pytest.approx(4.0)


def test_petra_near_field_can_be_switched_off(shared_data):
    data = load(shared_data / PETRA, near_field=False)
    assert not data.geometry.near_field
    assert data.geometry.object_pixel_size == pytest.approx(9.79e-11 * 1.12 / (100 * 55e-6),
                                                            rel=2e-3)


@pytest.mark.parametrize("name", ["ft_crop_64.tif", "ft_crop_64.npy"])
def test_bcdi_volumes_load_as_64_cubed(shared_data, name):
    data = load(shared_data / "bcdi_3dcdinn_64" / name)
    assert isinstance(data, BraggData)
    assert data.shape == (64, 64, 64)
    assert float(np.asarray(data.intensity).max()) > 0


def test_bcdi_npy_amplitudes_can_be_squared(shared_data):
    path = shared_data / "bcdi_3dcdinn_64" / "ft_crop_64.npy"
    amp = np.load(path)
    data = load(path, amplitudes=True)
    np.testing.assert_allclose(data.intensities(), amp.astype(np.float32) ** 2)


def test_tike_npz_matches_its_own_arrays(shared_data):
    path = shared_data / "ptycho_sim_tike" / "ptycho_setup.npz"
    raw = np.load(path)
    data = load(path)
    assert data.diffraction.shape == (169, 32, 32)
    np.testing.assert_array_equal(data.diffraction, np.fft.fftshift(raw["data"], axes=(1, 2)))
    np.testing.assert_array_equal(data.positions, raw["scan"])
    assert data.probe.shape == (2, 16, 16) and data.truth_object.shape == (128, 128)
