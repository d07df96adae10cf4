"""The Bragg CDI dock: pick a volume, preprocess, run a 3D engine, watch the crystal grow.

The compute (engine + :func:`napari_ptycho.bragg_processing.postprocess`) runs in a napari
``thread_worker``; the main thread only swaps layer data in place, so the 3D view keeps
its camera while amplitude, phase, strain and the phase-coloured isosurface update.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LiteralEvalLineEdit,
    ProgressBar,
    PushButton,
    create_widget,
)
from qtpy.QtWidgets import QVBoxLayout, QWidget

_SIZES = ("64", "32", "128")


def _bragg_of(layer: Any) -> Any:
    """The BraggData behind a layer: its metadata, or the layer's own 3D array."""
    from napari_ptycho.data import BraggData

    data = layer.metadata.get("bragg_data")
    if data is not None:
        return data
    arr = np.asarray(layer.data)
    if arr.ndim != 3:
        raise ValueError(f"layer {layer.name!r} is not a 3D volume (shape {arr.shape})")
    return BraggData(arr.astype(np.float32), metadata={"name": layer.name})


def compute(data: Any, method: str, config: Any, preprocess: bool = False, size: int = 64,
            oversampling: float = 3.0, min_interval: float = 0.0
            ) -> Iterator[tuple[Any, dict[str, Any]]]:
    """Headless twin of the dock: yield ``(snapshot, views)`` for the engine's updates.

    ``views`` is :func:`~napari_ptycho.bragg_processing.postprocess` of the snapshot (the
    final one also unwraps the phase), computed here so the GUI thread only draws.
    Post-processing a 64³ volume takes about 0.2 s, more than ten iterations, so updates
    that arrive less than ``min_interval`` seconds after the last shown one are skipped
    (never the final one).
    """
    import time

    from napari_ptycho import bragg_processing as bp
    from napari_ptycho.engines import stream

    if preprocess:
        data = bp.prepare(data, size=size, target_oversampling=oversampling)
    q = getattr(data, "q_direction", (1.0, 0.0, 0.0))
    q_mag = (getattr(data, "metadata", {}) or {}).get("q_magnitude")
    shown = -float("inf")
    for snap in stream(data, method, config=config):
        if not snap.done and time.perf_counter() - shown < min_interval:
            continue
        views = bp.postprocess(snap.object, snap.extras.get("support"), q_direction=q,
                               unwrap=snap.done, q_magnitude=q_mag)
        shown = time.perf_counter()
        yield snap, views


class BraggWidget(QWidget):
    """Dock widget for 3D Bragg CDI phase retrieval (napari.yaml: ``bragg_widget``)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.n_updates = 0
        self.finished = False
        self.last_error = ""
        self.chi2_history: list[tuple[int, float]] = []
        self._prefix = "bragg"
        #: seconds between shown updates (post-processing is slower than the iterations)
        self.min_interval = 0.5
        self._cancelled = False

        self.layer_box = ComboBox(label="volume", choices=self._volume_layers)
        self.preprocess = CheckBox(text="crop around peak and bin", value=False)
        self.size_box = ComboBox(label="size", choices=_SIZES, value="64")
        self.os_box = FloatSpinBox(label="oversampling", value=3.0, min=2.0, max=10.0,
                                   step=0.5)
        self.method_box = ComboBox(label="method", choices=self._methods())
        self.form = Container(labels=True)
        self.start_btn = PushButton(text="Start")
        self.cancel_btn = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=100)
        self.status = Label(value="")
        self.export_dir = FileEdit(label="export to", mode="d", value=str(Path.home()))
        self.export_btn = PushButton(text="Export volumes (TIFF)", enabled=False)
        controls = Container(widgets=[
            self.layer_box, self.preprocess, self.size_box, self.os_box, self.method_box,
            self.form, self.start_btn, self.cancel_btn, self.progress, self.status,
            self.export_dir, self.export_btn], labels=True)

        self.method_box.changed.connect(self._build_form)
        self.start_btn.clicked.connect(self.start)
        self.cancel_btn.clicked.connect(self.cancel)
        self.export_btn.clicked.connect(lambda: self.export(self.export_dir.value))
        self.viewer.layers.events.inserted.connect(self.layer_box.reset_choices)
        self.viewer.layers.events.removed.connect(self.layer_box.reset_choices)

        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4, 2.4), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.axes = self.figure.add_subplot(111)
        layout = QVBoxLayout()
        layout.addWidget(controls.native)
        layout.addWidget(self.canvas)
        self.setLayout(layout)
        self._build_form()

    # ----------------------------------------------------------------- choices, form

    def _volume_layers(self, _widget: Any = None) -> list[Any]:
        from napari.layers import Image

        layers = [ly for ly in self.viewer.layers if isinstance(ly, Image)
                  and (ly.metadata.get("bragg_data") is not None or ly.data.ndim == 3)
                  and not ly.metadata.get("bragg_output")]
        return sorted(layers, key=lambda ly: ly.metadata.get("bragg_data") is None)

    @staticmethod
    def _methods() -> list[str]:
        from napari_ptycho.engines import methods

        found = [name for name, info in methods().items() if info["dims"] == 3]
        return sorted(found, key=lambda n: n != "er_hio")

    def _build_form(self, *_: Any) -> None:
        from napari_ptycho.engines import get_engine

        self.form.clear()
        if not self.method_box.value:
            return
        cls = get_engine(self.method_box.value).Config
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = f.default
            kind = hints.get(f.name, type(default))
            if f.name == "device":
                widget = ComboBox(name=f.name, choices=("auto", "cpu", "cuda"), value=default)
            elif kind is int:  # the default SpinBox max (999) is too small for iterations
                widget = create_widget(value=default, annotation=int, name=f.name,
                                       options={"max": 10**7})
            elif kind is float:
                widget = create_widget(value=default, annotation=float, name=f.name,
                                       options={"max": 1e6, "step": 0.05})
            else:
                try:
                    widget = create_widget(value=default, annotation=kind, name=f.name)
                except (TypeError, ValueError):  # e.g. tuples, optionals: a literal field
                    widget = LiteralEvalLineEdit(value=repr(default), name=f.name)
            widget.label = f.name.replace("_", " ")
            self.form.append(widget)

    def config(self) -> Any:
        """The selected engine's Config from the form, validated (ValueError if not)."""
        from napari_ptycho.engines import make_config

        cfg = make_config(self.method_box.value, **{w.name: w.value for w in self.form})
        cfg.validate()
        return cfg

    # --------------------------------------------------------------------- running

    def start(self) -> None:
        """Start the selected method on the selected volume in a worker thread."""
        from napari.qt.threading import thread_worker

        from napari_ptycho._widgets.reconstruct import release_text_focus

        layer = self.layer_box.value
        if layer is None:
            self.status.value = "no 3D volume layer to reconstruct"
            return
        try:
            data, cfg = _bragg_of(layer), self.config()
        except ValueError as exc:
            self.status.value = str(exc)
            return
        self._prefix = str(getattr(layer, "name", "bragg")).split(" intensity")[0]
        self.n_updates, self.finished, self.last_error = 0, False, ""
        self._cancelled = False
        self.chi2_history = []
        self.worker = thread_worker(compute, start_thread=False)(
            data, self.method_box.value, cfg, self.preprocess.value,
            int(self.size_box.value), float(self.os_box.value), self.min_interval)
        self.worker.yielded.connect(self._on_update)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        self.start_btn.enabled, self.cancel_btn.enabled = False, True
        self._lock_settings(True)
        release_text_focus(self)
        self.status.value = f"running {self.method_box.value} ..."
        self.viewer.dims.ndisplay = 3
        self.worker.start()

    def _lock_settings(self, locked: bool) -> None:
        # The run already holds its Config, so an edit made mid-run would not reach it;
        # greying the settings out says so (as the 2D dock does), instead of letting the
        # form show values that differ from what is running.
        for widget in (self.layer_box, self.preprocess, self.size_box, self.os_box,
                       self.method_box, self.form):
            widget.enabled = not locked

    def cancel(self) -> None:
        """Stop the run at its next update (the last volumes stay)."""
        if self.worker is not None and not self.finished:
            self._cancelled = True
            self.worker.quit()
            self.status.value = "cancelling ..."

    def _on_error(self, exc: Exception) -> None:
        self.last_error = str(exc)
        self.status.value = f"error: {exc}"

    def _on_finished(self) -> None:
        self.finished = True
        if self._cancelled:
            done = self.chi2_history[-1][0] if self.chi2_history else 0
            self.status.value = f"cancelled after {done} iterations"
        self.start_btn.enabled, self.cancel_btn.enabled = True, False
        self._lock_settings(False)
        self.export_btn.enabled = self.n_updates > 0

    def _on_update(self, item: tuple[Any, dict[str, Any]]) -> None:
        snap, views = item
        self.n_updates += 1
        self.progress.value = int(100 * snap.progress)
        chi2 = snap.extras.get("chi2", float("nan"))
        self.chi2_history.append((snap.iteration, float(chi2)))
        self.status.value = (f"{snap.method}: {snap.iteration}/{snap.total}  χ²={chi2:.3g}  "
                             f"free LLK={snap.extras.get('llk_free', float('nan')):.3g}")
        amp = views["amplitude"]
        self._show("amplitude", amp, "image", colormap="gray", rendering="mip",
                   contrast_limits=(0.0, float(amp.max()) or 1.0))
        # the final update carries the unwrapped phase, which may leave [-π, π]
        plim = max(np.pi, float(np.abs(views["phase"]).max()))
        self._show("phase", views["phase"], "image", colormap="twilight_shifted",
                   contrast_limits=(-plim, plim), visible=False)
        strain = views["strain"]
        lim = float(np.abs(strain).max()) or 1.0
        self._show("strain", strain, "image", colormap="coolwarm", contrast_limits=(-lim, lim),
                   visible=False)
        if len(views["surface"][0]):
            # the ramp-free phase on the surface spans far less than 2π: stretch the colours
            values = views["surface"][2]
            lo, hi = float(values.min()), float(values.max())
            self._show("isosurface", views["surface"], "surface", colormap="turbo",
                       contrast_limits=(lo, hi if hi > lo else lo + 1e-3))
        self._plot(snap)
        if snap.done:
            self.status.value = "done: " + self.status.value

    def _show(self, kind: str, data: Any, layer_type: str, **kwargs: Any) -> None:
        """Replace the data of the output layer in place, creating it the first time."""
        name = f"{self._prefix} {kind}"
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            if "contrast_limits" in kwargs:
                layer.contrast_limits = kwargs["contrast_limits"]
            return
        first = not any(ly.metadata.get("bragg_output") for ly in self.viewer.layers)
        meta = {"bragg_output": kind}
        if layer_type == "surface":
            self.viewer.add_surface(data, name=name, metadata=meta, **kwargs)
        else:
            self.viewer.add_image(data, name=name, metadata=meta, **kwargs)
        if first:  # frame the crystal, which fills a third of the box at oversampling 3
            self.viewer.reset_view()
            self.viewer.camera.zoom *= 2.0

    def _plot(self, snap: Any) -> None:
        ax = self.axes
        ax.clear()
        if snap.errors:
            ax.semilogy(np.arange(1, len(snap.errors) + 1), snap.errors, lw=1,
                        label="iterate misfit")
        its, chis = zip(*self.chi2_history, strict=True)
        offset = snap.iteration - len(snap.errors)
        ax.semilogy(np.asarray(its) - offset, chis, "o", ms=3, label="χ² (support)")
        ax.set_xlabel("iteration")
        ax.set_ylabel("χ²")
        ax.legend(fontsize="small")
        self.canvas.draw_idle()

    # ---------------------------------------------------------------------- export

    def export(self, folder: Any) -> list[str]:
        """Write amplitude, phase and strain volumes as TIFF through the plugin writer."""
        from napari_ptycho._writer import write_tiff_multiple

        items = []
        for kind in ("amplitude", "phase", "strain"):
            name = f"{self._prefix} {kind}"
            if name in self.viewer.layers:
                layer = self.viewer.layers[name]
                items.append((layer.data, {"name": kind, "scale": tuple(layer.scale)},
                              "image"))
        if not items:
            raise ValueError("nothing to export yet: run a reconstruction first")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        written = write_tiff_multiple(str(folder / f"{self._prefix}.tif"), items)
        self.status.value = f"wrote {len(written)} TIFF files to {folder}"
        return written
