"""The Bragg CDI dock streams volumes into a headless napari viewer and exports them."""

from __future__ import annotations

import numpy as np
import pytest

from _crystal import toy_crystal
from napari_ptycho.data import BraggData

pytest.importorskip("napari")
pytestmark = [pytest.mark.gui, pytest.mark.usefixtures("one_torch_thread")]


@pytest.fixture
def dock(make_napari_viewer, qtbot):
    from napari_ptycho._widgets.bragg import BraggWidget

    viewer = make_napari_viewer()
    truth, intensity = toy_crystal(n=24, radius=5)
    data = BraggData(intensity, metadata={"name": "toy"})
    viewer.add_image(np.log10(1 + intensity), name="toy intensity (log10)",
                     metadata={"bragg_data": data})
    widget = BraggWidget(viewer)
    widget.min_interval = 0.0  # show every update, however fast the run
    viewer.window.add_dock_widget(widget)
    return viewer, widget


def _run(widget, qtbot, **fields) -> None:
    for name, value in fields.items():
        widget.form[name].value = value
    widget.start()
    qtbot.waitUntil(lambda: widget.finished, timeout=60_000)


def test_dock_streams_volumes_in_place_and_exports_tiffs(dock, qtbot, tmp_path) -> None:
    import tifffile

    viewer, widget = dock
    assert widget.layer_box.value.name == "toy intensity (log10)"
    assert {"er", "hio", "raar_3d", "er_hio"} <= set(widget.method_box.choices)
    widget.method_box.value = "er"
    seen: list[int] = []
    assert widget.form["iterations"].value == 200  # the ER Config defaults fill the form
    _run(widget, qtbot, iterations=30, update_every=5)
    assert widget.last_error == ""
    assert widget.n_updates >= 3
    amp = viewer.layers["toy amplitude"]
    seen.append(id(amp))
    assert amp.data.shape == (24, 24, 24) and amp.data.max() > 0
    assert viewer.dims.ndisplay == 3
    verts, faces, values = viewer.layers["toy isosurface"].data[:3]
    phase = viewer.layers["toy phase"].data
    assert len(verts) > 0 and phase.min() <= values.min() <= values.max() <= phase.max()
    assert viewer.layers["toy strain"].data.shape == (24, 24, 24)
    assert len(widget.chi2_history) == widget.n_updates
    assert widget.chi2_history[-1][1] < widget.chi2_history[0][1]
    assert widget.axes.lines  # the χ² curve is drawn

    # a second run reuses the same layers instead of piling up new ones
    n_layers = len(viewer.layers)
    _run(widget, qtbot, iterations=10, update_every=5)
    assert len(viewer.layers) == n_layers and id(viewer.layers["toy amplitude"]) in seen

    written = widget.export(tmp_path)
    assert len(written) == 3
    vol = tifffile.imread(written[0])
    assert vol.shape[-3:] == (24, 24, 24) or vol.size == 24**3


def test_dock_reports_bad_parameters_without_crashing(dock) -> None:
    _, widget = dock
    widget.method_box.value = "hio"
    widget.form["beta"].value = 0.0
    widget.start()
    assert "beta" in widget.status.value and widget.worker is None


def test_headless_twin_throttles_updates_but_keeps_the_final_one() -> None:
    from napari_ptycho._widgets.bragg import compute
    from napari_ptycho.engines import make_config

    _, intensity = toy_crystal(n=16, radius=3)
    cfg = make_config("er", iterations=20, update_every=1)
    every = list(compute(BraggData(intensity), "er", cfg))
    few = list(compute(BraggData(intensity), "er", cfg, min_interval=60.0))
    assert len(every) == 20 and len(few) == 2  # the first and the final update
    assert few[-1][0].done and "surface" in few[-1][1]


def test_dock_preprocesses_before_reconstructing(dock, qtbot) -> None:
    viewer, widget = dock
    widget.method_box.value = "er"
    widget.preprocess.value = True
    widget.size_box.value = "32"
    _run(widget, qtbot, iterations=10, update_every=5)
    assert widget.last_error == ""
    assert viewer.layers["toy amplitude"].data.shape == (32, 32, 32)


def test_cancel_stops_a_long_run_and_keeps_the_last_volumes(dock, qtbot) -> None:
    viewer, widget = dock
    widget.method_box.value = "er"
    widget.form["iterations"].value = 1_000_000
    widget.form["update_every"].value = 1
    widget.min_interval = 0.2  # as in use: do not flood the GUI thread with updates
    widget.start()
    qtbot.waitUntil(lambda: widget.n_updates >= 1, timeout=60_000)
    # the running Config cannot change, so its settings are greyed out until the end
    assert not widget.form.enabled and not widget.method_box.enabled
    widget.cancel()
    qtbot.waitUntil(lambda: widget.finished, timeout=60_000)
    assert widget.status.value.startswith("cancelled after")
    assert widget.chi2_history[-1][0] < 1_000_000
    assert "toy amplitude" in viewer.layers and widget.start_btn.enabled
    assert widget.form.enabled and widget.method_box.enabled and widget.layer_box.enabled
