"""Bragg CDI pre/post-processing: peak cropping and binning, ramps, twin, unwrap, strain."""

from __future__ import annotations

import numpy as np
import pytest

from _crystal import toy_crystal
from napari_ptycho import bragg_processing as bp
from napari_ptycho.data import BraggData


def _gaussian_peak(shape: tuple[int, int, int], peak: tuple[int, int, int], width: float = 3.0
                   ) -> np.ndarray:
    grids = np.indices(shape).astype(float)
    r2 = sum((g - p) ** 2 for g, p in zip(grids, peak, strict=True))
    return (1e4 * np.exp(-r2 / (2 * width**2))).astype(np.float32)


def _ramp(shape: tuple[int, int, int], grad: tuple[float, float, float]) -> np.ndarray:
    grids = np.indices(shape).astype(float)
    return sum(g * k for g, k in zip(grids, grad, strict=True))


def test_crop_puts_an_off_centre_peak_at_the_window_centre() -> None:
    vol = _gaussian_peak((60, 70, 50), (25, 40, 22))
    out, valid = bp.crop_around_peak(vol, 32)
    assert out.shape == (32, 32, 32)
    assert np.unravel_index(np.argmax(out), out.shape) == (16, 16, 16)
    assert valid.all()


def test_crop_beyond_the_array_pads_with_invalid_voxels() -> None:
    vol = _gaussian_peak((40, 40, 40), (6, 20, 20))
    out, valid = bp.crop_around_peak(vol, 32)
    assert np.unravel_index(np.argmax(out), out.shape) == (16, 16, 16)
    assert not valid[:10].any() and valid[10:].all()


@pytest.mark.parametrize("peak", [(0, 20, 20), (20, 39, 20), (20, 20, 1)])
def test_peak_at_the_edge_is_refused_with_a_clear_message(peak: tuple[int, int, int]) -> None:
    with pytest.raises(ValueError, match="edge of the array"):
        bp.crop_around_peak(_gaussian_peak((40, 40, 40), peak), 16)


def test_binning_sums_counts_and_invalidates_partial_bins() -> None:
    vol = np.ones((8, 8, 8), np.float32)
    mask = np.ones_like(vol, bool)
    mask[0, 0, 0] = False
    out, valid = bp.bin_volume(vol, 2, mask)
    assert out.shape == (4, 4, 4) and out[1, 1, 1] == 8
    assert not valid[0, 0, 0] and valid.sum() == 63
    with pytest.raises(ValueError, match="multiple"):
        bp.bin_volume(np.ones((9, 8, 8)), 2)


def test_oversampling_estimate_matches_a_known_box() -> None:
    obj = np.zeros((64, 64, 64), np.complex64)
    obj[24:40, 28:36, 20:44] = 1  # extents 16, 8, 24 -> oversampling 4, 8, 2.67
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(obj))) ** 2
    est = bp.estimate_oversampling(intensity)
    np.testing.assert_allclose(est, (4.0, 8.0, 64 / 24), rtol=0.1)


def test_prepare_bins_to_the_target_oversampling_and_keeps_the_peak_centred() -> None:
    obj = np.zeros((96, 96, 96), np.complex64)
    obj[40:52, 42:50, 40:56] = 1  # oversampling 8, 12, 6
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(obj, norm="ortho"))) ** 2
    out = bp.prepare(BraggData(intensity), size=16, target_oversampling=3.0)
    assert out.shape == (16, 16, 16)
    assert np.unravel_index(np.argmax(out.intensity), out.shape) == (8, 8, 8)
    assert out.metadata["preprocess"]["bin"] == [2, 4, 2]
    assert all(3.0 <= o < 6.0 for o in out.oversampling)
    with pytest.raises(ValueError, match="target_oversampling"):
        bp.prepare(BraggData(intensity), size=16, target_oversampling=1.0)


def test_phase_ramp_removal_removes_a_known_ramp() -> None:
    truth, _ = toy_crystal(noise=False)
    support = np.abs(truth) > 0
    grad = (0.3, -0.7, 1.1)  # > π/2 per voxel on one axis: wraps several times
    ramped = truth * np.exp(1j * (_ramp(truth.shape, grad) + 0.4))
    out, found = bp.remove_phase_ramp(ramped, support)
    own = bp.phase_gradient(truth, support)  # the strain field has a mean gradient too
    np.testing.assert_allclose(found - own, grad, atol=1e-4)
    # what is left is the truth's own phase, up to its residual ramp and offset
    ref, _ = bp.remove_phase_ramp(truth, support)
    diff = np.angle(out[support] * np.conj(ref[support]))
    assert np.abs(diff).max() < 1e-3


def test_twin_resolution_picks_the_orientation_closer_to_the_truth() -> None:
    truth, _ = toy_crystal(noise=False)
    twin = bp.twin(truth)
    # the twin has the same diffraction, so only the reference can tell them apart
    np.testing.assert_allclose(np.abs(np.fft.fftn(twin)), np.abs(np.fft.fftn(truth)),
                               rtol=1e-3, atol=1e-3)
    moved = np.roll(twin, (3, -2, 1), axis=(0, 1, 2)) * np.exp(1.3j)
    chosen, flipped = bp.resolve_twin(moved, truth)
    assert flipped
    # the twin of a shifted twin is the truth shifted the other way
    np.testing.assert_allclose(np.abs(np.roll(chosen, (3, -2, 1), axis=(0, 1, 2))),
                               np.abs(truth), atol=1e-5)
    same, flipped = bp.resolve_twin(truth * np.exp(0.5j), truth)
    assert not flipped and np.allclose(same, truth * np.exp(0.5j))


def test_strain_of_a_linear_phase_ramp_along_q_is_constant() -> None:
    truth, _ = toy_crystal(noise=False)
    support = np.abs(truth) > 0
    q = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    slope = 0.8  # rad per voxel along q: wraps within the crystal
    obj = support * np.exp(1j * slope * _ramp(truth.shape, tuple(q)))
    strain = bp.strain_map(obj, q, support, voxel_size=2.0, q_magnitude=4.0)
    defined = support & np.isfinite(strain)
    assert defined.sum() > 0.95 * support.sum()  # only one-voxel-thin edges are undefined
    np.testing.assert_allclose(strain[defined], slope / 2.0 / 4.0, atol=1e-5)
    assert np.all(strain[~support] == 0)
    # a ramp perpendicular to q carries no strain along q
    perp = support * np.exp(1j * 0.5 * _ramp(truth.shape, (0.0, 0.0, 1.0)))
    assert np.nanmax(np.abs(bp.strain_map(perp, q, support)[support])) < 1e-5


def test_unwrapped_phase_of_a_steep_ramp_is_linear() -> None:
    truth, _ = toy_crystal(noise=False)
    support = np.abs(truth) > 0
    obj = support * np.exp(1j * 0.9 * _ramp(truth.shape, (0.0, 0.0, 1.0)))
    phase = bp.unwrap_phase(obj, support)
    steps = np.diff(phase, axis=2)[support[:, :, 1:] & support[:, :, :-1]]
    np.testing.assert_allclose(steps, 0.9, atol=1e-4)
    with pytest.raises(ValueError, match="empty"):
        bp.unwrap_phase(obj, np.zeros_like(support))


def test_centering_moves_the_crystal_to_the_array_centre() -> None:
    truth, _ = toy_crystal(noise=False)
    moved = np.roll(truth, (7, -5, 4), axis=(0, 1, 2))
    centred, shift = bp.center_object(moved)
    com = [float((np.abs(centred) * g).sum() / np.abs(centred).sum())
           for g in np.indices(truth.shape)]
    np.testing.assert_allclose(com, [16, 16, 16], atol=0.5)
    assert shift != (0, 0, 0)


@pytest.mark.parametrize("func,args", [(bp.find_peak, ()), (bp.twin, ()),
                                       (bp.center_object, ()),
                                       (bp.remove_phase_ramp, ())])
def test_non_3d_input_is_refused(func, args) -> None:
    with pytest.raises(ValueError, match="3D"):
        func(np.ones((8, 8)), *args)


def test_other_bad_input_gets_clear_messages() -> None:
    with pytest.raises(ValueError, match="no positive"):
        bp.find_peak(np.zeros((8, 8, 8)))
    with pytest.raises(ValueError, match="size"):
        bp.crop_around_peak(_gaussian_peak((20, 20, 20), (10, 10, 10)), 0)
    with pytest.raises(ValueError, match="q_direction"):
        bp.strain_map(np.ones((8, 8, 8), complex), (0, 0, 0))
    with pytest.raises(ValueError, match="empty"):
        bp.center_object(np.zeros((8, 8, 8), complex))


def test_postprocess_gives_every_view_of_a_crystal() -> None:
    truth, _ = toy_crystal(noise=False)
    rec = np.roll(bp.twin(truth), (2, 3, -4), axis=(0, 1, 2)) * np.exp(0.7j)
    views = bp.postprocess(rec, reference=truth, q_direction=(0, 0, 1), unwrap=True)
    assert views["twin_flipped"]
    assert views["support"].sum() == (np.abs(truth) > 0).sum()
    verts, faces, values = views["surface"]
    assert len(verts) > 100 and faces.max() < len(verts) and values.shape == (len(verts),)
    assert np.all(np.isfinite(views["strain"]))
    # phase after ramp removal matches the truth's after the same treatment
    ref = bp.postprocess(truth, q_direction=(0, 0, 1))
    sup = ref["support"] & views["support"]
    assert sup.sum() > 0.9 * ref["support"].sum()
    diff = np.angle(views["object"][sup] * np.conj(ref["object"][sup]))
    assert np.abs(diff).max() < 1e-3


def test_isosurface_of_an_empty_volume_is_empty() -> None:
    verts, faces, values = bp.isosurface(np.zeros((8, 8, 8)), np.zeros((8, 8, 8)))
    assert verts.shape == (0, 3) and faces.shape == (0, 3) and values.shape == (0,)
