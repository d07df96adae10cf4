"""Plots dock (error, FRC), scan inspector and export, after real ePIE runs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_ptycho.metrics import scanned_region

pytest.importorskip("napari")

from napari_ptycho._widgets.inspector import ScanInspectorWidget  # noqa: E402
from napari_ptycho._widgets.plots import PlotsWidget, frc_curve  # noqa: E402
from napari_ptycho._widgets.reconstruct import ReconstructionWidget  # noqa: E402
from widget_helpers import add_scan, small_scan  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def scan():
    return small_scan()


def _run(viewer, layer, iterations=4, method="epie"):
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.method_box.setCurrentText(method)
    dock.form.set_values({"iterations": iterations, "device": "cpu"})
    dock.select_layer(layer)
    dock.start()
    assert dock.runner.wait(90)
    assert dock.status.text().startswith("Finished"), dock.status.text()
    return dock


def test_plots_show_error_curve_and_frc_against_truth_after_run(make_napari_viewer, scan):
    viewer = make_napari_viewer()
    layer = add_scan(viewer, scan)
    plots = PlotsWidget(viewer)
    viewer.window.add_dock_widget(plots)
    dock = _run(viewer, layer, iterations=4)
    y = plots.loss_line.get_ydata()
    assert len(y) == 4 and np.all(y > 0)
    assert plots.loss_ax.get_yscale() == "log"
    assert plots.frc_kind == "vs truth"
    freq, curve, halfbit, seventh = plots.frc_data
    assert len(freq) == len(curve) == len(halfbit) > 5
    assert seventh == pytest.approx(1 / 7)
    region = scanned_region(scan.positions, scan.probe_shape, scan.truth_object.shape)
    expected = frc_curve(dock.last_result().object, scan.truth_object, region)
    np.testing.assert_allclose(curve, expected[1])
    assert len(plots.frc_ax.lines) == 3  # FRC, half-bit, 1/7
    late = PlotsWidget(viewer)  # a dock opened after the run shows it too
    assert len(late.loss_line.get_ydata()) == 4 and late.frc_data is not None
    late.deleteLater()
    assert dock.last_result().errors == list(y)


def test_half_set_frc_runs_odd_and_even_positions_in_a_worker(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    data = small_scan(seed=3)
    data.truth_object = None
    layer = add_scan(viewer, data)
    plots = PlotsWidget(viewer)
    with pytest.raises(ValueError, match="run a reconstruction first"):
        plots.start_half_sets()
    _run(viewer, layer, iterations=3)
    assert plots.frc_data is None
    plots.start_half_sets()
    qtbot.waitUntil(lambda: plots.half_worker is None, timeout=90000)
    assert plots.frc_kind == "odd/even"
    assert np.isfinite(plots.frc_data[1]).all()
    plots.deleteLater()


def test_frc_curve_of_an_object_with_itself_is_one():
    rng = np.random.default_rng(0)
    obj = np.exp(1j * rng.standard_normal((48, 48))).astype(np.complex64)
    freq, curve, _, _ = frc_curve(obj * np.exp(0.7j), obj, (slice(4, 44), slice(4, 44)))
    assert np.all(curve[1:len(curve) - 2] > 0.99)
    with pytest.raises(ValueError, match="differ in shape"):
        frc_curve(obj, obj[:40], (slice(None), slice(None)))


def test_inspector_click_shows_measured_and_predicted_pattern(make_napari_viewer, scan):
    viewer = make_napari_viewer()
    layer = add_scan(viewer, scan)
    inspector = ScanInspectorWidget(viewer)
    viewer.window.add_dock_widget(inspector)
    inspector.show_position(2)
    assert inspector.measured is not None and inspector.model is None
    _run(viewer, layer, iterations=4)
    amp = viewer.layers["scan amplitude"]
    target = 7
    centre = scan.positions[target] + (np.array(scan.probe_shape) - 1) / 2
    index = inspector.click(amp.data_to_world(centre))
    assert index == target and inspector.index_box.value() == target
    np.testing.assert_allclose(inspector.measured, scan.intensities()[target])
    assert inspector.model.shape == inspector.measured.shape
    # the model explains its own data far better than another position's pattern
    other = scan.intensities()[target + 20]
    good = np.abs(np.sqrt(inspector.model) - np.sqrt(inspector.measured)).sum()
    bad = np.abs(np.sqrt(other) - np.sqrt(inspector.measured)).sum()
    assert good < 0.5 * bad
    assert viewer.layers["scan positions"].selected_data == {target}
    with pytest.raises(ValueError, match="index must be in"):
        inspector.show_position(10_000)


def test_export_result_writes_hdf5_with_parameters_and_metrics(make_napari_viewer, scan,
                                                                 tmp_path):
    from napari_ptycho.io import load_result

    viewer = make_napari_viewer()
    layer = add_scan(viewer, scan)
    dock = ReconstructionWidget(viewer)
    with pytest.raises(ValueError, match="no result to export"):
        dock.export_result(str(tmp_path / "none.h5"))
    dock = _run(viewer, layer, iterations=3)
    path = dock.export_result(str(tmp_path / "result.h5"))
    back = load_result(path)
    assert back.parameters["method"] == "epie" and back.parameters["iterations"] == 3
    assert "psnr_phase" in back.metrics or len(back.metrics) > 1
    np.testing.assert_allclose(back.object, dock.last_result().object)


def test_tiff_export_of_result_layer_keeps_pixel_size(make_napari_viewer, scan, tmp_path):
    import tifffile

    viewer = make_napari_viewer()
    layer = add_scan(viewer, scan)
    _run(viewer, layer, iterations=2)
    amp = viewer.layers["scan amplitude"]
    written = amp.save(str(tmp_path / "amp.tif"), plugin="napari-ptycho")
    assert written
    with tifffile.TiffFile(written[0]) as tif:
        image = tif.asarray()
        res = tif.pages[0].tags["XResolution"].value
    np.testing.assert_allclose(image, amp.data)
    pixel_um = res[1] / res[0]
    assert pixel_um == pytest.approx(scan.geometry.object_pixel_size * 1e6, rel=1e-3)
