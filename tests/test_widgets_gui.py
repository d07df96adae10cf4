"""The ``napari-ptycho gui`` command and the small pure helpers behind the docks."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_ptycho._widgets._forms import ConfigForm, field_docs  # noqa: E402
from napari_ptycho._widgets._layers import (  # noqa: E402
    complex_to_rgb,
    display_name,
    scan_centres,
    tile_modes,
)
from napari_ptycho._widgets._settings import WidgetSettings  # noqa: E402
from napari_ptycho.commands import gui  # noqa: E402
from napari_ptycho.engines.config import BaseConfig  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    gui.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_gui_flags_refuse_bad_values_with_clear_messages():
    with pytest.raises(ValueError, match="--quit-after"):
        gui._check(_args("--quit-after", "0"))
    with pytest.raises(ValueError, match=r"\.png"):
        gui._check(_args("--screenshot", "shot.jpg"))
    with pytest.raises(ValueError, match="--run needs a 2D scan"):
        gui._check(_args("--run", "3", "--sample", "none"))
    gui._check(_args("--screenshot", "a.png", "--quit-after", "2"))


def test_build_viewer_docks_both_widgets_and_opens_the_sample(make_napari_viewer):
    make_napari_viewer()  # installs napari's test fixtures' clean-up for the viewer below
    viewer, docks = gui.build_viewer("siemens", "epie", "cpu", show=False)
    try:
        recon = docks["reconstruct"]
        assert recon.selected_layer() is not None
        assert recon.method_box.currentText() == "epie"
        assert recon.form.values()["device"] == "cpu"
        assert "plots" in docks
        with pytest.raises(ValueError, match="sample must be one of"):
            gui.build_viewer("mars")
    finally:
        viewer.close()


@pytest.mark.slow
def test_gui_command_saves_a_non_blank_screenshot_and_quits(tmp_path):
    if not os.environ.get("DISPLAY"):
        pytest.skip("needs an X display (pytest-xvfb provides one)")
    shot = tmp_path / "gui.png"
    env = {**os.environ, "NAPARI_PTYCHO_CONFIG_DIR": str(tmp_path / "cfg")}
    proc = subprocess.run([sys.executable, "-m", "napari_ptycho.cli", "gui", "--sample",
                           "none", "--screenshot", str(shot), "--quit-after", "3"],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    from skimage.io import imread

    image = imread(shot)
    assert image.shape[0] > 500 and image.shape[1] > 800
    assert image[..., :3].std() > 10


def test_form_is_typed_from_the_dataclass_and_validates():
    form = ConfigForm(BaseConfig, {"seed": 4, "nonsense": 1, "device": "tpu"},
                      hidden=["update_every"])
    assert form.values() == {"iterations": 100, "seed": 4, "device": "auto"}
    assert form.container["iterations"].widget_type == "SpinBox"
    assert form.container["device"].widget_type == "ComboBox"
    assert "Random seed" in (form.container["seed"].tooltip or "")
    form.container["iterations"].value = 0
    with pytest.raises(ValueError, match="iterations must be >= 1"):
        form.config(update_every=1)
    form.reset()
    assert form.config(update_every=1) == BaseConfig(update_every=1)
    assert field_docs(BaseConfig)["update_every"].startswith("Yield a snapshot")


def test_settings_survive_corrupt_files_and_are_per_section(tmp_path):
    path = tmp_path / "s.json"
    store = WidgetSettings("reconstruct", path)
    assert store.get("epie") == {}
    store.set("epie", {"alpha": 0.5, "seed": np.int64(3)})
    store.set("rpie", {"alpha": 0.1})
    assert WidgetSettings("reconstruct", path).get("epie") == {"alpha": 0.5, "seed": 3}
    store.clear("epie")
    assert store.get("epie") == {} and store.get("rpie") == {"alpha": 0.1}
    path.write_text("{not json")
    assert store.get("rpie") == {}
    with pytest.raises(ValueError, match="widget"):
        WidgetSettings("")


def test_layer_helpers_composite_tiles_and_centres():
    field_ = np.array([[1.0, 1j], [-1.0, 0.0]], dtype=np.complex64)
    rgb = complex_to_rgb(field_, vmax=1.0)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.float32
    assert np.all(rgb[1, 1] == 0)  # zero amplitude is black whatever the phase
    assert not np.allclose(rgb[0, 0], rgb[0, 1])  # phase sets the hue
    with pytest.raises(ValueError, match="complex"):
        complex_to_rgb(np.ones((2, 2)))
    probe = np.stack([np.full((3, 4), 1 + 0j), np.full((3, 4), 2j)])
    tiled = tile_modes(probe, gap=2)
    assert tiled.shape == (3, 10)
    assert np.all(tiled[:, :4] == 1) and np.all(tiled[:, 6:] == 2j)
    assert np.all(tiled[:, 4:6] == 0)
    assert np.allclose(scan_centres(np.array([[0.0, 10.0]]), (5, 8)), [[2.0, 13.5]])
    assert display_name("siemens diffraction (log10)") == "siemens"
    assert display_name("A") == "A"


def test_resolved_frequency_ignores_the_noisy_innermost_ring():
    from napari_ptycho._widgets.plots import resolved_frequency

    freq = np.linspace(0, 0.5, 6)
    halfbit = np.array([1.0, 0.5, 0.4, 0.3, 0.3, 0.3])
    curve = np.array([0.2, 0.9, 0.8, 0.5, 0.1, 0.0])
    assert resolved_frequency((freq, curve, halfbit, 1 / 7)) == pytest.approx(0.3)
    assert resolved_frequency((freq, np.zeros(6), halfbit, 1 / 7)) == 0.0


def test_manifest_widgets_open_through_npe2(make_napari_viewer):
    from napari_ptycho._widgets._hub import hub_for

    viewer = make_napari_viewer()
    hubs = []
    for name in ("Ptychography reconstruction", "Plots (loss, FRC)", "Scan inspector"):
        _, widget = viewer.window.add_plugin_dock_widget("napari-ptycho", name)
        assert widget.viewer is viewer  # not the proxy npe2 passes in
        hubs.append(widget.hub)
    assert all(h is hub_for(viewer) for h in hubs)  # the docks hear each other
    assert hub_for(make_napari_viewer()) is not hub_for(viewer)


def test_runner_throttles_costly_updates_and_always_shows_the_final_snapshot(qtbot):
    import time

    from napari_ptycho._widgets._runner import RunContext, StreamRunner
    from napari_ptycho.engines import make_config
    from widget_helpers import small_scan

    shown, finished = [], []

    def slow_update(ctx, snap):  # stands in for a costly layer refresh (50 ms)
        time.sleep(0.05)
        shown.append(snap.iteration)

    runner = StreamRunner(slow_update, lambda *a: finished.append(a), max_rate=100,
                          show_progress=False, busy_fraction=0.25)
    config = make_config("slow_test", iterations=150, delay=0.01)
    ctx = RunContext(small_scan(), "slow_test", config, "scan", "k")
    t0 = time.perf_counter()
    runner.start(ctx)
    assert runner.wait(30)
    wall = time.perf_counter() - t0
    # each update "costs" 2 × 50 ms of main thread, so at most one per 0.4 s (+ the final)
    assert len(shown) <= wall / 0.4 + 2
    assert shown[-1] == 150 and finished[0][2] == "done"
    assert shown == sorted(shown)
    with pytest.raises(ValueError, match="busy_fraction"):
        StreamRunner(slow_update, slow_update, busy_fraction=0)


def _burn(seconds: float) -> None:
    """Spend ``seconds`` of CPU time in the calling thread."""
    import time

    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_gui_cpu_counts_main_thread_and_software_rasteriser_threads_only():
    import ctypes
    import threading

    from napari_ptycho._widgets._runner import gui_cpu_seconds

    libc = ctypes.CDLL(None)

    def named_burner(name: bytes, seconds: float, ready: threading.Event,
                     go: threading.Event, burnt: threading.Event,
                     release: threading.Event) -> None:
        libc.prctl(15, ctypes.c_char_p(name), 0, 0, 0)  # PR_SET_NAME: as Mesa names them
        ready.set()
        go.wait()
        _burn(seconds)
        burnt.set()
        release.wait()  # stay alive while the caller reads /proc (a dead thread's CPU is gone)

    def measured(name: bytes, seconds: float) -> float:
        events = [threading.Event() for _ in range(4)]
        ready, go, burnt, release = events
        t = threading.Thread(target=named_burner, args=(name, seconds, *events))
        t.start()
        ready.wait()
        before = gui_cpu_seconds()
        go.set()
        burnt.wait()  # blocks without spending main-thread CPU
        after = gui_cpu_seconds()
        release.set()
        t.join()
        return after - before

    assert measured(b"llvmpipe-0", 0.3) >= 0.2  # draws for the main thread: counted
    assert measured(b"engine-worker", 0.3) < 0.1  # the engine's threads: not GUI
    before = gui_cpu_seconds()
    _burn(0.2)
    assert gui_cpu_seconds() - before >= 0.18  # the main thread itself


def test_runner_budgets_the_repaint_cpu_that_follows_an_update_not_just_the_update(qtbot):
    """The repaint after a refresh runs outside ``on_update`` (a later Qt event): the
    throttle must count it, or a cheap refresh with a costly paint runs at ``max_rate``."""
    import time

    from qtpy.QtCore import QTimer

    from napari_ptycho._widgets._runner import RunContext, StreamRunner
    from napari_ptycho.engines import make_config
    from widget_helpers import small_scan

    shown = []

    def cheap_update_costly_paint(ctx, snap):
        shown.append(time.perf_counter())
        QTimer.singleShot(0, lambda: _burn(0.04))  # the "repaint": 40 ms of CPU

    runner = StreamRunner(cheap_update_costly_paint, lambda *a: None, max_rate=100,
                          min_rate=0.5, show_progress=False, busy_fraction=0.2)
    config = make_config("slow_test", iterations=200, delay=0.01)
    t0 = time.perf_counter()
    runner.start(RunContext(small_scan(), "slow_test", config, "scan", "k"))
    assert runner.wait(30)
    wall = time.perf_counter() - t0
    # 40 ms of GUI CPU per update at a 20 % budget: one update per ≥ 0.2 s (+ the first
    # ones, measured before any paint, and the final one)
    assert len(shown) <= wall / 0.2 + 4, (len(shown), wall)
    assert runner.last_gui_cpu >= 0.03


def test_runner_keeps_min_rate_when_updates_are_too_costly_for_the_budget(qtbot):
    import time

    from napari_ptycho._widgets._runner import RunContext, StreamRunner
    from napari_ptycho.engines import make_config
    from widget_helpers import small_scan

    shown = []

    def costly(ctx, snap):  # 60 ms of CPU: a 1 % budget would allow one per 6 s
        shown.append(time.perf_counter())
        _burn(0.06)

    runner = StreamRunner(costly, lambda *a: None, max_rate=20, min_rate=4,
                          show_progress=False, busy_fraction=0.01)
    config = make_config("slow_test", iterations=150, delay=0.01)
    runner.start(RunContext(small_scan(), "slow_test", config, "scan", "k"))
    assert runner.wait(30)
    gaps = np.diff(shown[:-1])  # the final snapshot is shown whenever it arrives
    assert len(gaps) >= 3 and np.median(gaps) < 0.25 + 0.06 + 0.15, gaps
    with pytest.raises(ValueError, match="min_rate"):
        StreamRunner(costly, costly, max_rate=2, min_rate=3)
