"""The data model refuses malformed scans with messages that name the culprit."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ptycho.data import BraggData, Geometry, PtychoData, energy_to_wavelength


def _scan(n: int = 4, shape: tuple[int, int] = (8, 8)) -> PtychoData:
    return PtychoData(diffraction=np.ones((n, *shape), np.float32),
                      positions=np.arange(2 * n, dtype=float).reshape(n, 2))


def test_energy_and_wavelength_are_consistent():
    g = Geometry(energy=12398.41984)
    assert g.wavelength == pytest.approx(1e-10, rel=1e-9)
    assert Geometry(wavelength=1e-10).energy == pytest.approx(12398.41984, rel=1e-9)
    with pytest.raises(ValueError, match="energy"):
        energy_to_wavelength(-1.0)


def test_farfield_object_pixel_size_follows_lambda_z_over_n_p():
    g = Geometry(wavelength=1e-10, distance=2.0, detector_pixel_size=75e-6,
                 detector_shape=(128, 128))
    assert g.object_pixel_size == pytest.approx(1e-10 * 2.0 / (128 * 75e-6))
    assert Geometry.from_dict(g.to_dict()).object_pixel_size == pytest.approx(
        g.object_pixel_size)


def test_nearfield_pixel_size_is_detector_pixel_unless_overridden():
    g = Geometry(energy=10000, near_field=True, detector_pixel_size=55e-6,
                 propagation_distance=3.6e-3)
    assert g.object_pixel_size == 55e-6
    g.pixel_size_override = 1e-7
    assert g.object_pixel_size == 1e-7


@pytest.mark.parametrize("field, value", [("distance", -1.0), ("energy", 0.0),
                                          ("detector_pixel_size", float("nan"))])
def test_geometry_rejects_nonpositive_values_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        Geometry(**{field: value})


def test_scan_derives_detector_shape_and_object_frame():
    d = _scan()
    assert d.detector_shape == (8, 8) and d.geometry.detector_shape == (8, 8)
    assert d.object_shape == (6 + 8 + 1, 7 + 8 + 1)
    assert d.n_patterns == 4 and not d.is_lazy


@pytest.mark.parametrize("kwargs, message", [
    ({"diffraction": np.ones((4, 8)), "positions": np.zeros((4, 2))}, "3D stack"),
    ({"diffraction": np.ones((4, 8, 8)), "positions": np.zeros((3, 2))}, "3 rows"),
    ({"diffraction": np.ones((4, 8, 8)), "positions": np.zeros((4, 3))}, "positions"),
    ({"diffraction": np.ones((4, 1, 1)), "positions": np.zeros((4, 2))}, "too small"),
    ({"diffraction": np.ones((4, 8, 8), complex), "positions": np.zeros((4, 2))}, "complex"),
    ({"diffraction": np.ones((2, 8, 8)), "positions": [[0, 0], [np.nan, 1]]}, "NaN"),
    ({"diffraction": np.ones((2, 8, 8)), "positions": np.zeros((2, 2)),
      "probe": np.ones((1, 16, 16))}, "larger than the detector"),
    ({"diffraction": np.ones((2, 8, 8)), "positions": np.zeros((2, 2)),
      "mask": np.ones((4, 4))}, "mask shape"),
])
def test_malformed_scans_are_refused_clearly(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PtychoData(**kwargs)


def test_subset_keeps_the_object_frame():
    d = _scan(6)
    odd = d.subset(slice(1, None, 2))
    assert odd.n_patterns == 3
    np.testing.assert_array_equal(odd.positions, d.positions[1::2])


def test_bragg_volume_validation():
    v = BraggData(intensity=np.ones((8, 8, 8), np.float32))
    assert v.shape == (8, 8, 8)
    with pytest.raises(ValueError, match="3D volume"):
        BraggData(intensity=np.ones((8, 8)))
    with pytest.raises(ValueError, match="too small"):
        BraggData(intensity=np.ones((2, 8, 8)))
    with pytest.raises(ValueError, match="truth_object"):
        BraggData(intensity=np.ones((8, 8, 8)), truth_object=np.ones((4, 4, 4), complex))
