"""Scan I/O: round trips, laziness, compressed data, writers and the simulate command."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.engines.base import Result
from napari_ptycho.io import FileFormatError, load, load_result, save
from napari_ptycho.io import hdf5 as h5io
from napari_ptycho.io.tiff import read_tiff_scale, write_tiff


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))


def small_scan(n_side: int = 4, frame: int = 16, seed: int = 0) -> PtychoData:
    rng = np.random.default_rng(seed)
    rows, cols = np.meshgrid(np.arange(n_side) * 5.0, np.arange(n_side) * 5.0, indexing="ij")
    pos = np.stack([rows.ravel(), cols.ravel()], axis=1) + 2.25
    n = len(pos)
    probe = (rng.normal(size=(1, frame, frame)) + 1j).astype(np.complex64)
    obj = np.exp(1j * rng.uniform(size=(40, 40))).astype(np.complex64)
    return PtychoData(rng.poisson(50, size=(n, frame, frame)).astype(np.float32), pos,
                      Geometry(energy=8000.0, distance=2.0, detector_pixel_size=75e-6),
                      probe=probe, mask=rng.uniform(size=(frame, frame)) > 0.1,
                      metadata={"name": "small", "note": np.float32(1.5)},
                      truth_object=obj, truth_probe=probe, object_shape=(40, 40))


def test_simulated_scan_round_trips_through_cxi_identically(tmp_path):
    from napari_ptycho.physics.simulate import simulate_ptycho

    data = simulate_ptycho(object_size=64, probe_size=32, overlap=0.7, seed=1)
    path = save(data, tmp_path / "scan.cxi")
    back = load(path)
    assert back.is_lazy
    np.testing.assert_array_equal(np.asarray(back.diffraction), data.diffraction)
    np.testing.assert_array_equal(back.positions, data.positions)
    np.testing.assert_array_equal(back.truth_object, data.truth_object)
    np.testing.assert_array_equal(back.probe, data.probe)
    assert back.geometry.to_dict() == data.geometry.to_dict()
    assert back.object_shape == data.object_shape


def test_cxi_is_standard_for_other_programs(tmp_path):
    data = small_scan()
    save(data, tmp_path / "s.cxi")
    with h5py.File(tmp_path / "s.cxi", "r") as f:
        energy_j = f["entry_1/instrument_1/source_1/energy"][()]
        assert energy_j == pytest.approx(8000.0 * 1.602176634e-19)
        trans = f["entry_1/sample_1/geometry_1/translation"][()]
        assert trans.shape == (16, 3)
        dx = data.geometry.object_pixel_size
        np.testing.assert_allclose(trans[:, 1] / dx, data.positions[:, 0])
        # CXI masks flag bad pixels with non-zero values
        np.testing.assert_array_equal(f["entry_1/instrument_1/detector_1/mask"][()] == 0,
                                      data.mask)


def test_foreign_cxi_converts_translations_to_pixels_with_margin(tmp_path):
    data = small_scan()
    save(data, tmp_path / "s.cxi")
    with h5py.File(tmp_path / "s.cxi", "a") as f:  # as another program would write it
        del f["entry_1/napari_ptycho"]
    back = load(tmp_path / "s.cxi", margin=3)
    np.testing.assert_allclose(back.positions - back.positions.min(0),
                               data.positions - data.positions.min(0), atol=1e-9)
    assert back.positions.min() == pytest.approx(3.0)
    assert not back.geometry.near_field
    np.testing.assert_array_equal(back.mask, data.mask)


def test_loading_reads_no_diffraction_until_asked(tmp_path, monkeypatch):
    from napari_ptycho.io import _common

    save(small_scan(n_side=8), tmp_path / "s.cxi")
    reads: list = []
    original = _common.H5Array.__getitem__
    monkeypatch.setattr(_common.H5Array, "__getitem__",
                        lambda self, idx: reads.append(idx) or original(self, idx))
    data = load(tmp_path / "s.cxi")
    assert reads == []  # the validation sample reads the h5py dataset, not the dask graph
    frame = np.asarray(data.diffraction[5])
    assert frame.shape == (16, 16) and len(reads) == 1


def test_lazy_stack_keeps_file_open_after_loader_returns(tmp_path):
    import gc

    save(small_scan(), tmp_path / "s.cxi")
    data = load(tmp_path / "s.cxi")
    gc.collect()
    assert float(data.diffraction[3].sum().compute()) > 0


@pytest.mark.parametrize("compression", ["bitshuffle", "blosc"])
def test_compressed_detector_data_opens(tmp_path, compression):
    import hdf5plugin

    data = small_scan()
    save(data, tmp_path / "plain.cxi")
    filt = hdf5plugin.Bitshuffle(cname="lz4") if compression == "bitshuffle" \
        else hdf5plugin.Blosc(cname="lz4")
    with h5py.File(tmp_path / "plain.cxi", "a") as f:
        arr = f["entry_1/instrument_1/detector_1/data"][()].astype(np.uint32)
        del f["entry_1/instrument_1/detector_1/data"]
        del f["entry_1/data_1/data"]
        f.create_dataset("entry_1/instrument_1/detector_1/data", data=arr,
                         chunks=(1, 16, 16), **filt)
    back = load(tmp_path / "plain.cxi")
    np.testing.assert_array_equal(np.asarray(back.diffraction), arr)


def test_bragg_volume_round_trips_with_truth(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.poisson(5, size=(8, 10, 12)).astype(np.float32)
    truth = (rng.normal(size=vol.shape) + 1j).astype(np.complex64)
    data = BraggData(vol, Geometry(energy=9000.0, distance=1.5, detector_pixel_size=55e-6),
                     truth_object=truth, oversampling=(2.0, 3.0, 4.0))
    back = load(save(data, tmp_path / "b.h5"))
    assert isinstance(back, BraggData)
    np.testing.assert_array_equal(np.asarray(back.intensity), vol)
    np.testing.assert_array_equal(back.truth_object, truth)
    assert back.oversampling == (2.0, 3.0, 4.0)
    assert back.geometry.to_dict() == data.geometry.to_dict()


def test_result_round_trips_with_parameters_metrics_and_version(tmp_path):
    rng = np.random.default_rng(0)
    obj = (rng.normal(size=(20, 20)) + 1j * rng.normal(size=(20, 20))).astype(np.complex64)
    frc = (np.linspace(0, 0.5, 20), rng.uniform(size=20), np.full(20, 0.2), np.full(20, 0.14))
    result = Result(iteration=5, total=5, object=obj, probe=obj[None, :8, :8],
                    positions=rng.uniform(size=(7, 2)), errors=[3.0, 2.0, 1.0],
                    method="epie", done=True, parameters={"method": "epie", "alpha": 0.5},
                    metrics={"nrmse": np.float64(0.1), "frc": frc},
                    extras={"support": rng.uniform(size=(20, 20)) > 0.5}, source="x.cxi")
    for suffix in (".h5", ".cxi"):
        back = load_result(save(result, tmp_path / f"r{suffix}"))
        np.testing.assert_array_equal(back.object, obj)
        np.testing.assert_array_equal(back.probe, result.probe)
        np.testing.assert_array_equal(back.positions, result.positions)
        assert back.errors == result.errors and back.method == "epie" and back.done
        assert back.parameters == {"method": "epie", "alpha": 0.5}
        assert back.metrics["nrmse"] == pytest.approx(0.1)
        np.testing.assert_array_equal(back.metrics["frc"][1], frc[1])
        np.testing.assert_array_equal(back.extras["support"], result.extras["support"])
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["napari_ptycho_result"].attrs["version"]


def test_failed_write_leaves_no_file_under_the_final_name(tmp_path, monkeypatch):
    from napari_ptycho.io import cxi

    target = tmp_path / "scan.cxi"
    original = h5py.Group.create_group

    def boom(self, name, *a, **k):
        if name == cxi.OURS:
            raise RuntimeError("killed mid-export")
        return original(self, name, *a, **k)

    monkeypatch.setattr(h5py.Group, "create_group", boom)
    with pytest.raises(RuntimeError, match="killed"):
        save(small_scan(), target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone too


def test_overwriting_replaces_the_old_file_atomically(tmp_path):
    target = tmp_path / "scan.cxi"
    save(small_scan(seed=0), target)
    save(small_scan(seed=1), target)
    np.testing.assert_array_equal(np.asarray(load(target).diffraction),
                                  small_scan(seed=1).diffraction)


def test_tiff_export_keeps_values_pixel_size_and_unit(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    img = rng.normal(size=(3, 12, 10))
    write_tiff(img, tmp_path / "a.tif", pixel_size=0.065, unit="micrometer", spacing=0.5)
    with tifffile.TiffFile(tmp_path / "a.tif") as tif:
        np.testing.assert_array_equal(tif.asarray(), img.astype(np.float32))
        assert tif.imagej_metadata["unit"] == "um"
        assert tif.imagej_metadata["spacing"] == pytest.approx(0.5)
    size, unit = read_tiff_scale(tmp_path / "a.tif")
    assert size == pytest.approx(0.065, rel=1e-6) and unit == "um"


def test_complex_tiff_export_has_amplitude_and_phase_channels(tmp_path):
    import tifffile

    z = (np.exp(1j * np.linspace(-3, 3, 64)).reshape(8, 8) * 2).astype(np.complex64)
    write_tiff(z, tmp_path / "z.tif", pixel_size=10.0, unit="nm")
    arr = tifffile.imread(tmp_path / "z.tif")
    assert arr.shape == (2, 8, 8) and arr.dtype == np.float32
    np.testing.assert_allclose(arr[0], 2.0, rtol=1e-6)
    np.testing.assert_allclose(arr[1], np.angle(z), atol=1e-6)


def test_tiff_export_refuses_bad_arguments_by_name(tmp_path):
    with pytest.raises(ValueError, match="pixel_size"):
        write_tiff(np.ones((4, 4)), tmp_path / "x.tif", pixel_size=-1.0, unit="um")
    with pytest.raises(ValueError, match="unit"):
        write_tiff(np.ones((4, 4)), tmp_path / "x.tif", pixel_size=1.0, unit="1/um")
    with pytest.raises(ValueError, match="2D or 3D"):
        write_tiff(np.ones((2, 2, 2, 2)), tmp_path / "x.tif")


def test_ptychopinn_npz_squares_amplitudes_and_converts_centres(tmp_path):
    rng = np.random.default_rng(0)
    amp = rng.uniform(size=(5, 16, 16)).astype(np.float32)
    x = np.array([10.0, 14, 18, 22, 26])
    y = np.array([12.0, 12, 12, 16, 16])
    probe = np.ones((8, 8), np.complex64)
    np.savez(tmp_path / "pinn.npz", diffraction=amp, xcoords=x, ycoords=y, probeGuess=probe,
             objectGuess=np.ones((48, 48), np.complex64))
    data = load(tmp_path / "pinn.npz")
    np.testing.assert_allclose(data.diffraction, amp ** 2)
    np.testing.assert_allclose(data.positions[:, 1], x - 4)  # centre -> corner (8/2)
    np.testing.assert_allclose(data.positions[:, 0], y - 4)
    assert data.probe.shape == (1, 8, 8) and data.truth_object.shape == (48, 48)


def test_tike_npz_moves_dc_to_the_centre(tmp_path):
    data = np.zeros((2, 8, 8), np.float32)
    data[:, 0, 0] = 100.0  # Tike keeps DC at the corner
    np.savez(tmp_path / "t.npz", data=data, scan=np.array([[0.0, 0.0], [1.0, 2.0]]),
             probe=np.ones((1, 1, 2, 4, 4), np.complex64))
    d = load(tmp_path / "t.npz")
    assert d.diffraction[0, 4, 4] == 100.0
    assert d.probe.shape == (2, 4, 4)
    np.testing.assert_array_equal(d.positions, [[0.0, 0.0], [1.0, 2.0]])


def test_tiff_stack_with_positions_sidecar_is_a_scan(tmp_path):
    import tifffile

    stack = np.random.default_rng(0).poisson(3, size=(4, 8, 8)).astype(np.float32)
    tifffile.imwrite(tmp_path / "scan.tif", stack)
    np.savetxt(tmp_path / "scan_positions.csv", [[0, 0], [0, 3], [3, 0], [3, 3]],
               delimiter=",")
    data = load(tmp_path / "scan.tif")
    assert isinstance(data, PtychoData) and data.n_patterns == 4
    np.testing.assert_array_equal(np.asarray(data.diffraction), stack)


def write_generic(path, with_units: bool = True) -> None:
    rng = np.random.default_rng(0)
    with h5py.File(path, "w") as f:
        f["entry/data/frames"] = rng.poisson(4, size=(6, 8, 8)).astype(np.uint16)
        f["entry/data/dark"] = np.zeros((2, 4, 4))
        x = f.create_dataset("entry/sample/x", data=np.arange(6) * 2.0)
        y = f.create_dataset("entry/sample/y", data=np.zeros(6))
        if with_units:
            x.attrs["units"] = "pixel"
            y.attrs["units"] = "pixel"


def test_generic_hdf5_finds_stack_and_xy_positions(tmp_path):
    write_generic(tmp_path / "g.h5")
    data = load(tmp_path / "g.h5", margin=0)
    assert data.n_patterns == 6
    np.testing.assert_array_equal(data.positions[:, 1], np.arange(6) * 2.0)


def test_ambiguous_hdf5_asks_and_then_remembers_the_choice_per_layout(tmp_path):
    write_generic(tmp_path / "a.h5", with_units=False)
    with pytest.raises(h5io.AmbiguousLayout, match="units"):
        load(tmp_path / "a.h5")
    with h5py.File(tmp_path / "a.h5", "r") as f:
        key = h5io.layout_key(h5io.list_datasets(f))
    h5io.remember_choice(key, {"diffraction": "entry/data/frames", "positions_x":
                               "entry/sample/x", "positions_y": "entry/sample/y",
                               "units": "pixel", "order": "yx", "kind": "ptycho"})
    write_generic(tmp_path / "b.h5", with_units=False)  # same layout, another file
    assert load(tmp_path / "b.h5").n_patterns == 6
    stored = json.loads((tmp_path / "config" / "hdf5_layouts.json").read_text())
    assert key in stored


def test_simulate_command_writes_cxi_with_truth_and_bragg_h5(tmp_path, capsys):
    from napari_ptycho.cli import main

    rc = main(["simulate", "ptycho", "--object-size", "64", "--probe-size", "32",
               "--overlap", "0.5", "--photons", "1e5", "--seed", "3",
               "-o", str(tmp_path / "s.cxi")])
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    data = load(tmp_path / "s.cxi")
    assert data.truth_object is not None and data.n_patterns == summary["patterns"]
    assert main(["simulate", "bragg", "--size", "16", "-o", str(tmp_path / "b.h5")]) == 0
    assert load(tmp_path / "b.h5").truth_object.shape == (16, 16, 16)
    assert main(["simulate", "bragg", "--size", "16", "-o", str(tmp_path / "b.txt")]) == 2
    assert "--output" in capsys.readouterr().err


def test_load_and_save_name_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="path"):
        load(tmp_path / "missing.cxi")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ValueError, match="extension"):
        load(tmp_path / "x.txt")
    with pytest.raises(ValueError, match="obj"):
        save(object(), tmp_path / "x.h5")
    with pytest.raises(ValueError, match="path"):
        save(small_scan(), tmp_path / "x.tif")
    with pytest.raises(FileFormatError):
        load_result(save(small_scan(), tmp_path / "scan.cxi"))


def test_reader_turns_result_and_bragg_files_into_layers(tmp_path):
    from napari_ptycho._reader import read_layers

    obj = np.exp(1j * np.linspace(0, 1, 64)).reshape(8, 8).astype(np.complex64)
    res = Result(iteration=1, total=1, object=obj, probe=obj[None, :4, :4], method="rpie",
                 parameters={"object_pixel_size": 5e-8})
    layers = read_layers(str(save(res, tmp_path / "res.h5")))
    assert [ld[1]["name"] for ld in layers] == ["res object amplitude", "res object phase",
                                                "res probe amplitude"]
    np.testing.assert_allclose(layers[1][0], np.angle(obj), atol=1e-6)
    assert layers[0][1]["scale"] == (pytest.approx(0.05),) * 2
    vol = np.random.default_rng(0).poisson(3, size=(6, 6, 6)).astype(np.float32)
    path = save(BraggData(vol, Geometry()), tmp_path / "vol.h5")
    (data, meta, kind), = read_layers(str(path))
    assert kind == "image" and isinstance(meta["metadata"]["bragg_data"], BraggData)
    np.testing.assert_allclose(np.asarray(data), np.log10(1 + vol), rtol=1e-6)


def test_generic_hdf5_volume_opens_as_bragg_when_asked(tmp_path):
    vol = np.random.default_rng(0).poisson(3, size=(8, 10, 12)).astype(np.uint16)
    with h5py.File(tmp_path / "v.h5", "w") as f:
        f["entry/data/data"] = vol
    data = load(tmp_path / "v.h5", kind="bragg")
    assert isinstance(data, BraggData) and data.shape == (8, 10, 12)
    np.testing.assert_array_equal(np.asarray(data.intensity), vol)


def test_unreadable_frame_shows_blank_in_the_view_but_engines_still_see_the_error(
        tmp_path, monkeypatch):
    from napari_ptycho.io import _common
    from napari_ptycho.io.layers import ptycho_layers

    save(small_scan(), tmp_path / "s.cxi")
    data = load(tmp_path / "s.cxi")
    view = ptycho_layers(data)[0][0]
    np.testing.assert_allclose(np.asarray(view[2]), np.log10(1 + data.diffraction[2]),
                               rtol=1e-6)
    original = _common.H5Array.__getitem__

    def damaged(self, index):
        if isinstance(index, tuple) and index and index[0] == 5:
            raise OSError("Can't read data (inflate() failed)")
        return original(self, index)

    monkeypatch.setattr(_common.H5Array, "__getitem__", damaged)
    with pytest.warns(RuntimeWarning, match="could not be read"):
        frame = np.asarray(view[5])
    assert frame.shape == (16, 16) and np.isnan(frame).all()
    with pytest.raises(OSError):
        np.asarray(data.diffraction[5])


def test_nexus_like_file_converts_micrometre_positions_with_its_geometry(tmp_path):
    with h5py.File(tmp_path / "nx.nxs", "w") as f:
        f["entry/data/data"] = np.ones((3, 32, 32), np.uint32)
        pos = f.create_dataset("entry/sample/positions", data=[[0.0, 0.0], [0.0, 1.0],
                                                               [2.0, 0.0]])
        pos.attrs["units"] = "um"
        e = f.create_dataset("entry/instrument/source/incident_energy", data=8.0)
        e.attrs["units"] = "keV"
        d = f.create_dataset("entry/instrument/detector/distance", data=2000.0)
        d.attrs["units"] = "mm"
        p = f.create_dataset("entry/instrument/detector/x_pixel_size", data=75.0)
        p.attrs["units"] = "um"
    data = load(tmp_path / "nx.nxs", margin=0)
    g = data.geometry
    assert g.energy == pytest.approx(8000.0) and g.distance == pytest.approx(2.0)
    assert g.detector_pixel_size == pytest.approx(75e-6)
    np.testing.assert_allclose(data.positions[1], [0.0, 1e-6 / g.object_pixel_size])
    np.testing.assert_allclose(data.positions[2], [2e-6 / g.object_pixel_size, 0.0])
