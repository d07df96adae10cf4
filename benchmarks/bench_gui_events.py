"""What single GUI events cost in CPU in a shown viewer with result layers (diagnostic).

Under software OpenGL (Mesa llvmpipe, e.g. under Xvfb) any repaint of a window holding
the napari canvas re-composites the whole window, so widgets far from the canvas cost CPU
too. This opens the viewer the way ``bench_gui.py`` does, runs a short ePIE run from the
dock so the result layers exist, then repeats one event ``--repeats`` times, 0.1 s apart,
and reports main-thread and llvmpipe CPU milliseconds per event (``_gui_cpu.py``), plus
the CPU per second of the idle viewer with a napari progress bar (its activity indicator
animating) and without one.

Run under a display: ``xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python
benchmarks/bench_gui_events.py``. Prints one JSON object, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20, help="events per kind")
    p.add_argument("--json", default=None, help="also write the JSON here")
    return p.parse_args(argv)


def _wait(seconds: float) -> None:
    from qtpy.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(1000 * seconds), loop.quit)
    loop.exec()


def per_event(meter, action, repeats: int) -> dict[str, float]:
    """CPU milliseconds per call of ``action(i)`` (each followed by 0.1 s of event loop)."""
    meter.start()
    for i in range(repeats):
        action(i)
        _wait(0.1)
    used = meter.stop()
    return {k: round(1000 * used[k] / repeats, 1) for k in ("main", "render", "xserver")}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.repeats < 1:
        raise ValueError(f"repeats must be ≥ 1 (got {args.repeats})")
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        print("bench_gui_events: needs a display; run it with xvfb-run -a", file=sys.stderr)
        return 2
    os.environ.setdefault("NAPARI_PTYCHO_CONFIG_DIR", tempfile.mkdtemp())
    import napari
    import torch
    from napari.utils import progress

    from _gui_cpu import CpuMeter
    from napari_ptycho._widgets.reconstruct import ReconstructionWidget
    from napari_ptycho.physics.simulate import simulate_ptycho

    torch.set_num_threads(1)
    data = simulate_ptycho(object="siemens", object_size=256, probe_size=64, overlap=0.3,
                           photons=1e6, seed=0)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1400, 900)
    viewer.add_image(data.intensities(), name="scan", metadata={"ptycho_data": data})
    dock = ReconstructionWidget(viewer)
    viewer.window.add_dock_widget(dock)
    dock.method_box.setCurrentText("epie")
    dock.form.set_values({"iterations": 3, "device": "cpu", "seed": 0,
                          "batch_size": data.n_patterns})
    dock.start()
    dock.runner.wait(120)
    _wait(1.0)
    meter = CpuMeter()
    canvas = viewer.window._qt_viewer.canvas._scene_canvas
    layer_list = viewer.window._qt_viewer.layers.viewport()
    layers = dock.last_layers

    def refresh(roles):
        return lambda i: [layers[r].refresh(extent=False, thumbnail=False, highlight=False)
                          for r in roles]

    events = {
        "nothing (idle, per 0.1 s)": lambda i: None,
        "canvas redraw": lambda i: canvas.update(),
        "status label text": lambda i: dock.status.setText(f"iteration {i}"),
        "layer-list repaint": lambda i: layer_list.update(),
        "canvas redraw + layer-list repaint": lambda i: (canvas.update(), layer_list.update()),
        "canvas redraw + status label text": lambda i: (
            canvas.update(), dock.status.setText(f"iteration {i}")),
        "refresh amplitude + phase layers": refresh(("amplitude", "phase")),
        "thumbnail of one layer": lambda i: layers["amplitude"]._update_thumbnail(),
    }
    out: dict = {"window": [1400, 900], "repeats": args.repeats,
                 "per_event_ms": {name: per_event(meter, act, args.repeats)
                                  for name, act in events.items()}}
    idle = {}
    for name, bar in (("idle viewer", None), ("idle viewer + napari progress bar", 100)):
        pbar = progress(total=bar, desc="idle") if bar else None
        _wait(0.3)
        meter.start()
        _wait(4.0)
        used = meter.stop()
        if pbar is not None:
            pbar.close()
        idle[name] = {k: round(used[k] / 4.0, 3) for k in ("main", "render", "xserver")}
    out["idle_cpu_s_per_s"] = idle
    out["load_average_1min"] = round(os.getloadavg()[0], 2)
    viewer.close()
    print(json.dumps(out))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)
    print(f"\n{'event (CPU ms per event)':40s} {'main':>6s} {'llvmpipe':>9s} {'Xvfb':>6s}")
    for name, c in out["per_event_ms"].items():
        print(f"{name:40s} {c['main']:6.1f} {c['render']:9.1f} {c['xserver']:6.1f}")
    print(f"\n{'idle (CPU s per s)':40s} {'main':>6s} {'llvmpipe':>9s} {'Xvfb':>6s}")
    for name, c in idle.items():
        print(f"{name:40s} {c['main']:6.3f} {c['render']:9.3f} {c['xserver']:6.3f}")
    print(f"load average {out['load_average_1min']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
