"""The npe2 contributions in a real (Xvfb) napari viewer: open, sample data, save, picker."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.io import save


@pytest.fixture(autouse=True)
def _config_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))


def scan_file(path, truth: bool = True):
    rng = np.random.default_rng(0)
    pos = np.stack(np.meshgrid(np.arange(4) * 4.0, np.arange(4) * 4.0, indexing="ij"),
                   -1).reshape(-1, 2)
    data = PtychoData(rng.poisson(100, size=(16, 16, 16)).astype(np.float32) * 10, pos,
                      Geometry(energy=8000.0, distance=2.0, detector_pixel_size=75e-6),
                      truth_object=np.ones((32, 32), np.complex64) if truth else None,
                      object_shape=(32, 32))
    save(data, path)
    return data


def test_open_cxi_adds_lazy_log_diffraction_positions_and_truth(make_napari_viewer, tmp_path):
    data = scan_file(tmp_path / "scan.cxi")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "scan.cxi"), plugin="napari-ptycho")
    names = [layer.name for layer in viewer.layers]
    assert names == ["scan diffraction (log10)", "scan scan positions",
                     "scan truth object amplitude", "scan truth object phase"]
    diff = viewer.layers[0]
    assert type(diff.data).__module__.startswith("dask")  # nothing read eagerly
    loaded = diff.metadata["ptycho_data"]
    np.testing.assert_array_equal(np.asarray(loaded.diffraction), data.diffraction)
    lo, hi = diff.contrast_limits
    assert hi > 1.0 and (lo, hi) != (0.0, 1.0)  # from the data, not the default 0-1
    frame = np.asarray(diff.data[2])
    np.testing.assert_allclose(frame, np.log10(1 + data.diffraction[2]), rtol=1e-6)
    # far-field frames are scaled to spatial frequency p / (λ z) in 1/µm
    g = data.geometry
    assert diff.scale[-1] == pytest.approx(g.detector_pixel_size / (g.wavelength * 2.0) / 1e6)
    assert str(diff.units[-1]) == "1 / micrometer"
    amp = viewer.layers["scan truth object amplitude"]
    assert amp.scale[-1] == pytest.approx(g.object_pixel_size * 1e6)
    assert str(amp.units[-1]) == "micrometer"
    assert viewer.layers["scan scan positions"].data.shape == (16, 2)


def test_open_bcdi_volume_adds_bragg_layer(make_napari_viewer, shared_data):
    viewer = make_napari_viewer()
    viewer.open(str(shared_data / "bcdi_3dcdinn_64" / "ft_crop_64.tif"), plugin="napari-ptycho")
    assert len(viewer.layers) == 1
    layer = viewer.layers[0]
    assert layer.data.shape == (64, 64, 64)
    assert isinstance(layer.metadata["bragg_data"], BraggData)


def test_sample_data_opens_siemens_scan_with_truth(make_napari_viewer, monkeypatch):
    import napari_ptycho._sample_data as sample

    monkeypatch.setattr(sample, "OBJECT_SIZE", 64)
    monkeypatch.setattr(sample, "PROBE_SIZE", 32)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-ptycho", "siemens")
    names = [layer.name for layer in viewer.layers]
    assert "siemens diffraction (log10)" in names and "siemens truth object phase" in names
    data = viewer.layers["siemens diffraction (log10)"].metadata["ptycho_data"]
    assert data.truth_object.shape == (64, 64)
    assert data.metadata["measured_overlap"] == pytest.approx(0.7, abs=0.05)


def test_low_overlap_and_bragg_samples_are_what_they_say(monkeypatch):
    import napari_ptycho._sample_data as sample

    monkeypatch.setattr(sample, "OBJECT_SIZE", 64)
    monkeypatch.setattr(sample, "PROBE_SIZE", 32)
    low = sample.low_overlap_scan()[0][1]["metadata"]["ptycho_data"]
    assert low.metadata["measured_overlap"] == pytest.approx(0.3, abs=0.05)
    bragg = sample.bragg_crystal()
    assert bragg[0][1]["metadata"]["bragg_data"].shape == (64, 64, 64)
    assert bragg[1][1]["name"] == "bragg_crystal truth crystal amplitude"


def test_saving_layers_writes_intensities_and_keeps_pixel_size(make_napari_viewer, tmp_path):
    import tifffile

    from napari_ptycho.io.tiff import read_tiff_scale

    data = scan_file(tmp_path / "scan.cxi")
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "scan.cxi"), plugin="napari-ptycho")
    viewer.layers.selection = {viewer.layers["scan diffraction (log10)"]}
    written = viewer.layers.save(str(tmp_path / "diff.tif"), selected=True,
                                 plugin="napari-ptycho")
    # the layer shows log10(1 + I); the export holds the measured intensities
    np.testing.assert_array_equal(tifffile.imread(written[0]), data.diffraction)
    amp, phase = viewer.layers["scan truth object amplitude"], viewer.layers[
        "scan truth object phase"]
    viewer.layers.selection = {amp, phase}
    written = viewer.layers.save(str(tmp_path / "obj.tif"), selected=True,
                                 plugin="napari-ptycho")
    assert sorted(p.rsplit("/", 1)[-1] for p in written) == [
        "obj_scan_truth_object_amplitude.tif", "obj_scan_truth_object_phase.tif"]
    size, unit = read_tiff_scale(written[0])
    assert unit == "um"
    assert size == pytest.approx(data.geometry.object_pixel_size * 1e6, rel=1e-5)


def test_ambiguous_hdf5_docks_picker_which_opens_and_remembers(make_napari_viewer, tmp_path):
    from napari_ptycho._widgets.hdf5_picker import HDF5PickerWidget

    rng = np.random.default_rng(0)
    for name in ("a.h5", "b.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["scan/frames"] = rng.poisson(4, size=(5, 8, 8)).astype(np.uint16)
            f["scan/xy"] = np.stack([np.arange(5.0), np.zeros(5)], axis=1)  # no units
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "a.h5"), plugin="napari-ptycho")
    assert len(viewer.layers) == 0
    docks = [w for w in viewer.window.dock_widgets.values()
             if isinstance(w, HDF5PickerWidget)]
    assert len(docks) == 1
    picker = docks[0]
    assert picker.choice()["diffraction"] == "scan/frames"
    assert picker.choice()["positions"] == "scan/xy"
    picker.units.setCurrentText("pixel")
    picker.order.setCurrentText("xy")
    added = picker.open_file()
    assert len(added) >= 2 and len(viewer.layers) == len(added)
    loaded = viewer.layers[0].metadata["ptycho_data"]
    np.testing.assert_allclose(loaded.positions[:, 1] - loaded.positions[:, 1].min(),
                               np.arange(5.0))
    viewer.open(str(tmp_path / "b.h5"), plugin="napari-ptycho")  # same layout: no question
    assert viewer.layers[-1].name.startswith("b ")
