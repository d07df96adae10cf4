"""Scan inspector: a measured diffraction pattern beside the current model's prediction.

Click a scan position (on the result layers or the reader's scan-position points) or pick
an index; the dock shows ``log10(1 + I)`` of the measured pattern and of
``forward_intensity(object, probe, position)`` from the newest reconstruction of that
scan, with a shared colour scale so that misfits stand out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import QComboBox, QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from napari_ptycho._widgets._hub import hub_for, unwrap_viewer
from napari_ptycho._widgets._layers import (
    RESULT_KEY,
    ROLE_KEY,
    SOURCE_KEY,
    scan_centres,
    source_key,
)
from napari_ptycho._widgets._mpl import ThemedCanvas
from napari_ptycho._widgets.reconstruct import DATA_KEY, refill_scan_box


def nearest_position(point: np.ndarray, positions: np.ndarray,
                     probe_shape: tuple[int, int]) -> int:
    """Index of the scan position whose window centre is closest to ``point`` (pixels)."""
    centres = scan_centres(positions, probe_shape)
    return int(np.argmin(((centres - np.asarray(point, float)[-2:]) ** 2).sum(axis=1)))


def predicted_pattern(result: Any, data: Any, index: int) -> np.ndarray:
    """Model intensity at scan position ``index`` from ``result``'s object and probe."""
    from napari_ptycho.physics.ptycho import forward_intensity

    if result.probe is None:
        raise ValueError("the result has no probe: cannot predict a 2D pattern")
    positions = result.positions if result.positions is not None else data.positions
    return forward_intensity(result.object, result.probe, positions[index:index + 1],
                             detector_shape=data.detector_shape, geometry=data.geometry)[0]


class ScanInspectorWidget(QWidget):
    """Compare measured and predicted diffraction at one scan position."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.hub = hub_for(napari_viewer)
        self._scans: list[Any] = []
        self.scan_box = QComboBox()
        self.index_box = QSpinBox()
        self.info = QLabel("Click a scan position on the object, or choose an index.")
        self.info.setWordWrap(True)
        self.plot = ThemedCanvas(self.viewer, ncols=2)
        self.plot.setMinimumHeight(200)
        self.measured_ax, self.model_ax = self.plot.axes
        self.measured: np.ndarray | None = None
        self.model: np.ndarray | None = None
        form = QFormLayout()
        form.addRow("Scan", self.scan_box)
        form.addRow("Position", self.index_box)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.info)
        self.scan_box.currentIndexChanged.connect(self._scan_changed)
        self.index_box.valueChanged.connect(self.show_position)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed):
            ev.connect(self._refresh)
        self.hub.finished.connect(lambda *_: self.show_position(self.index_box.value()))
        self.viewer.mouse_drag_callbacks.append(self._on_click)
        for ax, title in ((self.measured_ax, "measured"), (self.model_ax, "model")):
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
        self.plot.apply_theme()
        self._refresh()

    def _refresh(self, event: Any = None) -> None:
        self._scans = refill_scan_box(self.scan_box, self.viewer, self.scan_layer())
        self._scan_changed()

    def scan_layer(self) -> Any:
        """The scan being inspected (None when the viewer holds none)."""
        i = self.scan_box.currentIndex()
        return self._scans[i] if 0 <= i < len(self._scans) else None

    def _scan_changed(self, *_: Any) -> None:
        layer = self.scan_layer()
        n = layer.metadata[DATA_KEY].n_patterns if layer is not None else 1
        self.index_box.setRange(0, max(n - 1, 0))

    def latest_result(self, layer: Any) -> Any:
        """Newest result for ``layer``: a live run's, else one stored on its output layers."""
        key = source_key(layer)
        if key in self.hub.latest:
            return self.hub.latest[key][1]
        for ly in self.viewer.layers:
            if ly.metadata.get(SOURCE_KEY) == key and ly.metadata.get(RESULT_KEY) is not None:
                return ly.metadata[RESULT_KEY]
        return None

    def show_position(self, index: int) -> None:
        """Show measured vs predicted pattern ``index`` of the selected scan."""
        layer = self.scan_layer()
        if layer is None:
            return
        data = layer.metadata[DATA_KEY]
        if not 0 <= int(index) < data.n_patterns:
            raise ValueError(f"index must be in 0..{data.n_patterns - 1} (got {index})")
        index = int(index)
        if self.index_box.value() != index:
            self.index_box.blockSignals(True)
            self.index_box.setValue(index)
            self.index_box.blockSignals(False)
        self.measured = np.asarray(data.diffraction[index], dtype=np.float32)
        result = self.latest_result(layer)
        self.model = predicted_pattern(result, data, index) if result is not None else None
        self._draw(index, data, result)

    def _draw(self, index: int, data: Any, result: Any) -> None:
        c = self.plot.colours
        log_meas = np.log10(1.0 + np.maximum(self.measured, 0))
        vmax = float(log_meas.max()) or 1.0
        panels = ((self.measured_ax, log_meas, f"measured #{index}"),
                  (self.model_ax, None if self.model is None else
                   np.log10(1.0 + np.maximum(self.model, 0)), "model"))
        for ax, image, title in panels:
            ax.clear()
            if image is not None:
                ax.imshow(image, cmap="magma", vmin=0, vmax=vmax)
            else:
                ax.text(0.5, 0.5, "no reconstruction yet", ha="center", va="center",
                        color=c["text"], transform=ax.transAxes)
            ax.set_title(title)
            ax.set_xticks([])
            ax.set_yticks([])
            self.plot.style_axes(ax, c)
        self.plot.draw()
        text = f"Position {index}: ({data.positions[index][0]:.1f}, " \
               f"{data.positions[index][1]:.1f}) px, log10(1 + counts)."
        if self.model is not None:
            r = np.abs(np.sqrt(self.model) - np.sqrt(np.maximum(self.measured, 0))).sum()
            r /= max(float(np.sqrt(np.maximum(self.measured, 0)).sum()), 1e-12)
            text += f" R-factor {r:.3f} ({result.method} iteration {result.iteration})."
        self.info.setText(text)
        self._highlight(index)

    def _highlight(self, index: int) -> None:
        layer = self.scan_layer()
        key = source_key(layer)
        for ly in self.viewer.layers:
            if ly.metadata.get(SOURCE_KEY) == key and ly.metadata.get(ROLE_KEY) == "positions":
                ly.selected_data = {index}

    def _object_frame_layer(self, layer: Any) -> Any:
        """A layer whose data coordinates are object pixels for the inspected scan."""
        key, data = source_key(layer), layer.metadata[DATA_KEY]
        for ly in self.viewer.layers:
            if ly.metadata.get(SOURCE_KEY) == key and ly.metadata.get(ROLE_KEY) == "amplitude":
                return ly
        for ly in self.viewer.layers:  # the reader's scan-position points
            if ly._type_string == "points" and ly.metadata.get(DATA_KEY) is data:
                return ly
        return None

    def click(self, world_position: Any) -> int | None:
        """Select the scan position nearest to a world coordinate; returns its index."""
        layer = self.scan_layer()
        if layer is None:
            return None
        frame = self._object_frame_layer(layer)
        if frame is None:
            return None
        point = np.asarray(frame.world_to_data(np.asarray(world_position)[-frame.ndim:]))
        data = layer.metadata[DATA_KEY]
        index = nearest_position(point, data.positions, data.probe_shape)
        self.show_position(index)
        return index

    def _on_click(self, viewer: Any, event: Any) -> Any:
        dragged = False
        yield
        while event.type == "mouse_move":
            dragged = True
            yield
        if dragged:
            return
        try:
            visible = self.isVisible()
        except RuntimeError:  # the dock was closed and deleted: stop listening
            if self._on_click in viewer.mouse_drag_callbacks:
                viewer.mouse_drag_callbacks.remove(self._on_click)
            return
        if visible:
            self.click(event.position)
