"""The reconstruction dock: live in-place layers, cancel, routing, errors, persistence."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_ptycho._widgets._layers import (  # noqa: E402
    RESULT_KEY,
    ROLE_KEY,
    SOURCE_KEY,
    display_name,
    source_key,
)
from napari_ptycho._widgets.reconstruct import ReconstructionWidget  # noqa: E402
from widget_helpers import add_scan, small_scan  # noqa: E402

ROLES = {"amplitude", "phase", "hsv", "probe_amplitude", "probe_phase", "positions"}


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))


@pytest.fixture(scope="module")
def scan():
    return small_scan()


def _dock(viewer, method="slow_test", **params):
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.method_box.setCurrentText(method)
    dock.form.set_values(params)
    return dock


def _outputs(viewer, key=None):
    return [ly for ly in viewer.layers if ROLE_KEY in ly.metadata
            and (key is None or ly.metadata[SOURCE_KEY] == key)]


def test_cancel_mid_run_keeps_last_snapshot_and_dock_can_start_again(make_napari_viewer,
                                                                       scan, qtbot):
    viewer = make_napari_viewer()
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=2000, delay=0.02)
    dock.start()
    qtbot.waitUntil(lambda: dock.runner.updates >= 2, timeout=60_000)
    assert dock.cancel_button.isEnabled() and not dock.start_button.isEnabled()
    t0 = time.perf_counter()
    dock.cancel()
    assert dock.runner.wait(5)
    assert time.perf_counter() - t0 < 1.0
    last = dock.runner.latest
    assert 0 < last.iteration < 2000 and not last.done
    shown = viewer.layers["scan amplitude"]
    np.testing.assert_allclose(shown.data, np.abs(last.object), rtol=1e-6)
    assert shown.metadata[RESULT_KEY].iteration == last.iteration
    assert dock.status.text().startswith("Cancelled")
    assert dock.start_button.isEnabled() and not dock.cancel_button.isEnabled()
    dock.form.set_values({"iterations": 3, "delay": 0.0})
    dock.start()
    assert dock.runner.wait(10)
    assert viewer.layers["scan amplitude"].metadata[RESULT_KEY].done


def test_switching_selected_layer_does_not_redirect_running_output(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    a = add_scan(viewer, small_scan(seed=1), name="A")
    b = add_scan(viewer, small_scan(seed=2, object_size=80), name="B")
    dock = _dock(viewer, iterations=100, delay=0.03)
    dock.select_layer(a)
    ctx = dock.start()
    qtbot.waitUntil(lambda: dock.runner.updates >= 1, timeout=60_000)
    assert dock.runner.running
    dock.select_layer(b)
    assert dock.selected_layer() is b
    assert dock.runner.wait(30)
    assert {ly.metadata[ROLE_KEY] for ly in _outputs(viewer, source_key(a))} == ROLES
    assert _outputs(viewer, source_key(b)) == []
    result = viewer.layers["A amplitude"].metadata[RESULT_KEY]
    assert result.done and result.source == "A" and result.extras["run_id"] == ctx.run_id
    assert viewer.layers["A amplitude"].data.shape == tuple(a.metadata["ptycho_data"]
                                                            .object_shape)
    assert dock.last_result(b) is None


def test_engine_error_mid_run_becomes_notification_and_dock_recovers(make_napari_viewer,
                                                                      scan):
    from napari.utils.notifications import notification_manager

    viewer = make_napari_viewer()
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=50, delay=0.01, fail_at=4)
    before = len(notification_manager.records)
    dock.start()
    assert dock.runner.wait(15)
    messages = [str(n.message) for n in notification_manager.records[before:]]
    assert any("slow_test" in m and "non-finite" in m for m in messages), messages
    assert dock.status.text().startswith("Failed")
    assert dock.start_button.isEnabled()


def test_screenshot_of_shown_viewer_after_run_is_not_blank(make_napari_viewer, scan):
    viewer = make_napari_viewer(show=True)
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=5, delay=0.0)
    dock.start()
    assert dock.runner.wait(15)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    rgb = shot[..., :3].astype(float)
    assert rgb.std() > 5 and rgb.max() > 50


def test_parameters_persist_between_sessions_and_restore_defaults(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = _dock(viewer, iterations=17, delay=0.25, seed=9)
    dock.form.container["device"].value = "cpu"
    viewer2 = make_napari_viewer()
    again = ReconstructionWidget(viewer2)
    assert again.method_box.currentText() == "slow_test"
    assert again.form.values() == {"iterations": 17, "seed": 9, "device": "cpu",
                                   "delay": 0.25, "fail_at": 0}
    again.restore_defaults()
    assert again.form.values()["iterations"] == 40
    third = ReconstructionWidget(viewer2)
    assert third.form.values()["delay"] == 0.03
    for w in (again, third):
        w.deleteLater()


def test_only_changed_parameters_are_remembered(make_napari_viewer):
    # a remembered copy of an unchanged default would pin it when a later version
    # improves the default
    from napari_ptycho._widgets._settings import WidgetSettings

    viewer = make_napari_viewer()
    dock = _dock(viewer, iterations=17)
    assert WidgetSettings("reconstruct").get("slow_test") == {"iterations": 17}
    dock.form.set_values({"iterations": 40})  # back to the default: nothing to remember
    assert WidgetSettings("reconstruct").get("slow_test") == {}
    dock.deleteLater()


def test_continue_from_result_warm_starts_a_new_run(make_napari_viewer, scan):
    viewer = make_napari_viewer()
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=4, delay=0.0)
    with pytest.raises(ValueError, match="no result to continue"):
        dock.start(warm=True)
    dock.start()
    assert dock.runner.wait(10)
    first = dock.last_result()
    ctx = dock.start(warm=True)
    assert ctx.init is first
    assert dock.runner.wait(10)
    assert dock.last_result().iteration == 8
    assert len(dock.last_result().errors) == 8


def test_start_without_scan_layer_is_a_clear_error(make_napari_viewer):
    viewer = make_napari_viewer()
    dock = _dock(viewer)
    assert not dock.start_button.isEnabled()
    with pytest.raises(ValueError, match="no scan layer"):
        dock.start()
    dock.form.container["delay"].value = "fast"
    add_scan(viewer, small_scan())
    with pytest.raises(ValueError, match="delay must be a number"):
        dock.start()


def test_epie_on_sample_scan_streams_updates_into_the_same_layers(make_napari_viewer,
                                                                   qtbot):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-ptycho", "siemens")
    dock = _dock(viewer, method="epie", iterations=200, device="cpu")
    scan_layer = dock.selected_layer()
    assert scan_layer is not None and scan_layer.name.startswith("siemens")
    seen = []

    name = display_name(scan_layer.name)
    assert name == "siemens"

    def record(ctx, result):
        seen.append((viewer.layers[f"{name} amplitude"],
                     viewer.layers[f"{name} amplitude"].data.copy(),
                     viewer.layers[f"{name} phase"].data.copy(),
                     viewer.layers[f"{name} probe amplitude"].data.copy(), len(viewer.layers)))

    dock.hub.updated.connect(record)
    n_before = len(viewer.layers)
    dock.start()
    assert len(viewer.layers) == n_before + len(ROLES)
    # the update rate adapts to the machine: wait for three, however long they take
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=120_000)
    dock.cancel()
    assert dock.runner.wait(60)
    assert dock.status.text().startswith("Cancelled"), dock.status.text()
    assert len(seen) >= 3
    assert all(s[0] is seen[0][0] for s in seen), "amplitude layer was replaced"
    assert all(s[4] == n_before + len(ROLES) for s in seen), "a layer was added mid-run"
    for k in (1, 2, 3):
        assert not np.allclose(seen[0][k], seen[-1][k])
    roles = [ly.metadata[ROLE_KEY] for ly in _outputs(viewer)]
    assert sorted(roles) == sorted(ROLES)
    amp = viewer.layers[f"{name} amplitude"]
    data = scan_layer.metadata["ptycho_data"]
    assert amp.scale[-1] == pytest.approx(data.geometry.object_pixel_size * 1e6)
    assert tuple(str(u) for u in amp.units) == ("micrometer", "micrometer")
    result = amp.metadata[RESULT_KEY]
    assert result.method == "epie" and result.parameters["iterations"] == 200
    assert result.iteration == dock.runner.latest.iteration  # the last snapshot is shown


def test_activity_indicator_steps_once_per_update_instead_of_animating(make_napari_viewer,
                                                                       scan, qtbot):
    """A looping GIF would repaint the window ~25×/s during the run (with software
    OpenGL, each repaint re-composites the whole window, canvas included)."""
    from napari_ptycho._widgets._runner import activity_spinners

    viewer = make_napari_viewer()
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=60, delay=0.03)
    dock.start()
    movies = activity_spinners()
    assert movies, "napari's activity indicator was not found"
    movie = movies[0]
    assert movie.state() == movie.MovieState.Paused
    frames = set()
    for n in range(2, 5):
        qtbot.waitUntil(lambda n=n: dock.runner.updates >= n, timeout=30_000)
        frames.add(movie.currentFrameNumber())
    assert len(frames) >= 2  # it still moves: one frame per update
    assert movie.state() == movie.MovieState.Paused
    assert dock.runner.wait(30)
    qtbot.waitUntil(lambda: movie.state() == movie.MovieState.NotRunning, timeout=5_000)


def test_status_text_changes_only_with_the_thumbnails_while_streaming(make_napari_viewer,
                                                                      scan):
    """Each text change repaints the window; the layers update up to 5×/s."""
    from napari_ptycho._widgets._layers import THUMBNAIL_INTERVAL

    viewer = make_napari_viewer()
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=80, delay=0.02)
    texts = []
    dock.status.setText = lambda text, _set=dock.status.setText: (texts.append(text),
                                                                   _set(text))
    t0 = time.perf_counter()
    dock.start()
    assert dock.runner.wait(30)
    wall = time.perf_counter() - t0
    running = [t for t in texts if t.startswith("slow_test on")]
    assert 1 <= len(running) <= wall / THUMBNAIL_INTERVAL + 2, (len(running), wall)
    assert dock.runner.updates > len(running)
    assert texts[-1].startswith("Finished")


def test_start_stops_blinking_text_cursors_and_locks_the_form_while_running(
        make_napari_viewer, scan, qtbot):
    """A blinking cursor repaints the whole window twice a second (under software OpenGL
    as costly as a layer update), even in a field that lost its focus unnoticed."""
    from qtpy.QtCore import QEvent, QObject, Qt
    from qtpy.QtGui import QFocusEvent
    from qtpy.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit

    viewer = make_napari_viewer(show=True)
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=200, delay=0.03)
    fields = dock.form.native.findChildren(QLineEdit)
    assert fields

    class CursorPaints(QObject):
        count = 0

        def eventFilter(self, obj, event):  # a cursor blink repaints a few-pixel strip
            if (event.type() == QEvent.Type.Paint and obj in fields
                    and event.region().boundingRect().width() < 20):
                self.count += 1
            return False

    paints = CursorPaints()
    QApplication.instance().installEventFilter(paints)
    try:
        # a field that believes it has the focus while Qt's focus tracking says none has
        # it (what napari's first field shows under Xvfb without a window manager)
        QApplication.sendEvent(fields[0], QFocusEvent(QEvent.Type.FocusIn,
                                                      Qt.FocusReason.OtherFocusReason))
        qtbot.wait(1300)
        if paints.count == 0:
            pytest.skip("this display does not blink text cursors")
        dock.start()
        assert not dock.form.native.isEnabled()
        focus = QApplication.focusWidget()
        assert not isinstance(focus, QLineEdit | QAbstractSpinBox), focus
        paints.count = 0
        qtbot.wait(1300)
        assert paints.count == 0
        dock.cancel()
        assert dock.runner.wait(30)
        assert dock.form.native.isEnabled()
    finally:
        QApplication.instance().removeEventFilter(paints)


def test_layer_list_hears_streamed_updates_only_with_thumbnail_refreshes(make_napari_viewer,
                                                                        scan):
    """Each layer event repaints the layer list (an extra window composite under software
    OpenGL); between thumbnail refreshes it has nothing new to show."""
    viewer = make_napari_viewer()
    add_scan(viewer, scan)
    dock = _dock(viewer, iterations=80, delay=0.02)
    heard = []
    viewer.layers.events.connect(lambda e: heard.append(e.type) if e.type in (
        "set_data", "contrast_limits", "thumbnail") else None)
    with_thumbs = []
    show = dock.runner.on_update

    def counting(ctx, snap):
        show(ctx, snap)
        with_thumbs.append(dock._layers.thumbnails_refreshed)

    dock.runner.on_update = counting
    dock.start()
    heard.clear()  # Start itself shows the initial state with everything
    assert dock.runner.wait(30)
    streamed = len(with_thumbs) - 1  # the last update shows the final snapshot in full
    assert streamed - sum(with_thumbs[:-1]) >= 3, with_thumbs  # updates without thumbnails
    # two or four layers refresh per update, a few events each, but only when heard
    assert heard.count("set_data") <= 4 * (sum(with_thumbs) + 1), (heard, with_thumbs)
    # the canvas did get every update: the shown amplitude is the final snapshot's
    final = dock.runner.latest
    np.testing.assert_allclose(dock.last_layers["amplitude"].data, np.abs(final.object),
                               rtol=1e-6)
