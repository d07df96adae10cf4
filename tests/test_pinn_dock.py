"""PtychoPINN in the reconstruction dock: "Train on this scan" streams a preview per epoch."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_ptycho._widgets.reconstruct import ReconstructionWidget  # noqa: E402
from widget_helpers import add_scan  # noqa: E402


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_PTYCHO_CONFIG_DIR", str(tmp_path / "config"))


def test_training_in_the_dock_streams_a_stitched_preview_every_epoch(make_napari_viewer,
                                                                      tmp_path):
    from napari_ptycho.physics.simulate import simulate_ptycho
    from napari_ptycho.training.pinn import grouped_grid_positions

    data = simulate_ptycho(object="lines", object_size=56, probe_size=32, photons=1e6,
                           seed=3, positions=grouped_grid_positions((56, 56), 32))
    viewer = make_napari_viewer()
    add_scan(viewer, data)
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.method_box.setCurrentText("pinn")
    assert "probe_source" in dock.form.values() and "save_dir" in dock.form.values()
    dock.form.set_values({"iterations": 4, "pattern_size": 32, "filters": 4,
                          "batch_size": 4, "device": "cpu", "save_dir": str(tmp_path)})
    seen: list[int] = []
    show = dock.runner.on_update
    dock.runner.on_update = lambda ctx, snap: (seen.append(snap.iteration), show(ctx, snap))
    # show every epoch: no rate cap and no busy-time throttle (a quiet machine trains these
    # tiny epochs faster than the dock's default 5 updates per second)
    dock.runner._timer.setInterval(5)
    dock.runner.min_interval = 0.0
    dock.runner.busy_fraction = 1.0
    dock.start()
    assert dock.runner.wait(120)
    assert len(set(seen)) >= 3, seen
    last = dock.runner.latest
    assert last.done and last.unit == "epoch" and len(last.errors) == 4
    shown = viewer.layers["scan amplitude"].data
    np.testing.assert_allclose(shown, np.abs(last.object), rtol=1e-6)
    assert (tmp_path / "pinn.pt").is_file() and (tmp_path / "pinn.json").is_file()
