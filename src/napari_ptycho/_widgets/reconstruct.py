"""The 2D ptychography reconstruction dock: input, method, parameters, Start/Pause/Cancel.

A thin shell: the form comes from the engine's Config dataclass (:mod:`._forms`), the run
goes through :class:`._runner.StreamRunner` (a napari thread worker), and results are drawn
by :class:`._layers.PtychoLayers` into layers tagged with the run's input, so output can
never land on another dataset even if the selection changes mid-run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_ptycho._widgets._forms import ConfigForm
from napari_ptycho._widgets._hub import hub_for, unwrap_viewer
from napari_ptycho._widgets._layers import (
    RESULT_KEY,
    RUN_KEY,
    PtychoLayers,
    display_name,
    source_key,
)
from napari_ptycho._widgets._runner import RunContext, StreamRunner
from napari_ptycho._widgets._settings import WidgetSettings

DATA_KEY = "ptycho_data"
#: Fields the dock sets itself: one snapshot per iteration keeps Cancel/Pause prompt,
#: and the runner throttles what reaches the screen.
FIXED_FIELDS = {"update_every": 1}


def scan_layers(viewer: Any, dims: int = 2) -> list[Any]:
    """Image layers holding a PtychoData (dims=2) or BraggData (dims=3) in their metadata.

    Points layers may carry the same data object (the reader's scan positions): they are
    not inputs.
    """
    from napari_ptycho.data import BraggData, PtychoData

    kind, key = (PtychoData, DATA_KEY) if dims == 2 else (BraggData, "bragg_data")
    return [ly for ly in viewer.layers if ly._type_string == "image"
            and isinstance(ly.metadata.get(key), kind)]


def refill_scan_box(box: Any, viewer: Any, current: Any, dims: int = 2) -> list[Any]:
    """Fill a combo box with the viewer's scan layers, keeping ``current`` selected.

    Returns the listed layers (index-aligned with the box). Signals stay blocked while the
    box is rebuilt, so listeners only hear about a real change of selection.
    """
    scans = scan_layers(viewer, dims)
    box.blockSignals(True)
    box.clear()
    box.addItems([ly.name for ly in scans])
    if current in scans:
        box.setCurrentIndex(scans.index(current))
    box.blockSignals(False)
    return scans


def release_text_focus(widget: QWidget) -> int:
    """Stop every text cursor inside ``widget`` from blinking; returns how many fields.

    A text field's cursor blinks twice a second, and with software OpenGL each blink
    re-composites the whole window, canvas included (≈ as costly as a layer update), so a
    run started from the keyboard or by code would pay that all along. Clearing the focus
    is not enough: a field that got the focus while its window was inactive (no window
    manager, another application in front) never hears of the change and blinks on, so
    each field is also told explicitly that it lost the focus. The focus is cleared, not
    moved, so no other field starts blinking.
    """
    from qtpy.QtCore import QEvent, Qt
    from qtpy.QtGui import QFocusEvent
    from qtpy.QtWidgets import QAbstractSpinBox, QApplication, QLineEdit, QTextEdit

    for focus in {QApplication.focusWidget(), widget.window().focusWidget()}:
        if (isinstance(focus, QLineEdit | QAbstractSpinBox | QTextEdit)
                and widget.isAncestorOf(focus)):
            focus.clearFocus()
    fields = widget.findChildren(QLineEdit)
    for field in fields:
        if not field.hasFocus():
            QApplication.sendEvent(field, QFocusEvent(QEvent.Type.FocusOut,
                                                      Qt.FocusReason.OtherFocusReason))
    return len(fields)


def initial_state(ctx: RunContext) -> Any:
    """What the layers show before the first snapshot: a flat object and the data's probe."""
    from napari_ptycho.engines import Snapshot

    data = ctx.data
    probe = data.probe if data.probe is not None else np.ones((1, *data.probe_shape),
                                                                np.complex64)
    return Snapshot(iteration=0, total=int(getattr(ctx.config, "iterations", 0)),
                    object=np.ones(data.object_shape, np.complex64), probe=probe,
                    positions=data.positions, method=ctx.method)


def methods_for(dims: int) -> dict[str, str]:
    """Registered methods of dimensionality ``dims``: name -> description."""
    from napari_ptycho.engines import methods

    return {n: m["description"] for n, m in methods().items() if m["dims"] == dims}


class ReconstructionWidget(QWidget):
    """Dock that reconstructs a 2D scan layer with any registered 2D method.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are read and written.
    """

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.hub = hub_for(napari_viewer)
        self.settings = WidgetSettings("reconstruct")
        self.form: ConfigForm | None = None
        self.runner = StreamRunner(self._on_update, self._on_finished)
        self.results: dict[str, Any] = {}  # input key -> last Result of a finished run
        self._scans: list[Any] = []

        self.scan_box = QComboBox()
        self.method_box = QComboBox()
        self.description = QLabel()
        self.description.setWordWrap(True)
        self.form_holder = QVBoxLayout()
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.cancel_button = QPushButton("Cancel")
        self.continue_button = QPushButton("Continue from result")
        self.defaults_button = QPushButton("Restore defaults")
        self.export_button = QPushButton("Export result…")
        self.status = QLabel("Idle")
        self.status.setWordWrap(True)

        top = QFormLayout()
        top.addRow("Scan", self.scan_box)
        top.addRow("Method", self.method_box)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.cancel_button):
            buttons.addWidget(b)
        more = QHBoxLayout()
        for b in (self.continue_button, self.defaults_button, self.export_button):
            more.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.description)
        # long Configs scroll instead of pushing the buttons (and the plots dock) away
        holder = QWidget()
        holder.setLayout(self.form_holder)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(holder)
        scroll.setMinimumHeight(200)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        layout.addLayout(more)
        layout.addWidget(self.status)

        self.method_box.currentTextChanged.connect(self._build_form)
        self.start_button.clicked.connect(lambda: self._guard(self.start))
        self.continue_button.clicked.connect(lambda: self._guard(self.start, warm=True))
        self.pause_button.clicked.connect(self.toggle_pause)
        self.cancel_button.clicked.connect(self.cancel)
        self.defaults_button.clicked.connect(self.restore_defaults)
        self.export_button.clicked.connect(self._export_clicked)
        events = self.viewer.layers.events
        for ev in (events.inserted, events.removed, events.reordered):
            ev.connect(self._refresh_scans)

        names = methods_for(2)
        last = self.settings.get("_last").get("method", "epie")
        self.method_box.blockSignals(True)  # building a form remembers it as "last"
        self.method_box.addItems(sorted(names))
        if last in names:
            self.method_box.setCurrentText(last)
        self.method_box.blockSignals(False)
        self._build_form(self.method_box.currentText())
        self._refresh_scans()
        self._set_running(False)

    # ----------------------------------------------------------------- selection & form
    def _refresh_scans(self, event: Any = None) -> None:
        self._scans = refill_scan_box(self.scan_box, self.viewer, self.selected_layer())
        self._set_running(self.runner.running)

    def selected_layer(self) -> Any:
        """The input layer chosen in the dock (None when there is none)."""
        i = self.scan_box.currentIndex()
        return self._scans[i] if 0 <= i < len(self._scans) else None

    def select_layer(self, layer: Any) -> None:
        """Choose ``layer`` as input (it must hold a PtychoData)."""
        if layer not in self._scans:
            raise ValueError(f"layer {getattr(layer, 'name', layer)!r} holds no ptycho_data")
        self.scan_box.setCurrentIndex(self._scans.index(layer))

    def _build_form(self, method: str) -> None:
        if self.form is not None:
            self.form.native.setParent(None)
            self.form = None
        if not method:
            return
        from napari_ptycho.engines import get_engine, methods

        self.description.setText(methods().get(method, {}).get("description", ""))
        try:
            engine = get_engine(method)
        except (ImportError, AttributeError) as exc:  # declared but not (yet) installed
            self.description.setText(f"{method} is unavailable: {exc}")
            self.start_button.setEnabled(False)
            return
        self.form = ConfigForm(engine.Config, self.settings.get(method),
                               hidden=FIXED_FIELDS)
        self.form.changed.connect(self._remember)
        self.form_holder.addWidget(self.form.native)
        self.settings.set("_last", {"method": method})
        self._set_running(self.runner.running)

    def _remember(self, *_: Any) -> None:
        if self.form is None:
            return
        try:
            values = self.form.changed_values()
        except ValueError:
            return  # half-typed number: remember it once it parses
        self.settings.set(self.method_box.currentText(), values)

    def restore_defaults(self) -> None:
        """Put the current method's parameters back to the Config defaults (and remember)."""
        if self.form is not None:
            self.form.reset()
            self.settings.clear(self.method_box.currentText())

    # ------------------------------------------------------------------------- running
    def _guard(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        from napari.utils.notifications import show_error

        try:
            return func(*args, **kwargs)
        except (ValueError, RuntimeError) as exc:
            show_error(str(exc))
            return None

    def start(self, warm: bool = False) -> RunContext:
        """Start the selected method on the selected scan; ``warm`` continues its last result.

        Raises
        ------
        ValueError
            No scan layer, no usable method, malformed parameters, or nothing to continue.
        """
        layer = self.selected_layer()
        if layer is None:
            raise ValueError("no scan layer: open a scan or a sample (File > Open Sample)")
        if self.form is None:
            raise ValueError(f"method {self.method_box.currentText()!r} is unavailable")
        method = self.method_box.currentText()
        config = self.form.config(**{k: v for k, v in FIXED_FIELDS.items()
                                     if hasattr(self.form.config_cls(), k)})
        key = source_key(layer)
        init = None
        if warm:
            init = self.last_result(layer)
            if init is None:
                raise ValueError(f"no result to continue for {layer.name!r}: run it first")
        ctx = RunContext(data=layer.metadata[DATA_KEY], method=method, config=config,
                         source_name=layer.name, source_key=key, init=init)
        self._layers = PtychoLayers(self.viewer, key, display_name(layer.name),
                                    ctx.data.geometry)
        # Creating layers costs a second or more the first time (vispy visuals); doing it
        # here, before the worker starts, keeps later updates cheap and the UI fluid.
        self._show(ctx, init if init is not None else initial_state(ctx), init)
        layer.visible = False  # detector pixels would swamp the object's nm frame
        self.viewer.reset_view()
        self.settings.set(method, self.form.changed_values())
        release_text_focus(self)
        self.runner.start(ctx)
        self._set_running(True)
        self.status.setText(f"Running {method} on {layer.name}…")
        return ctx

    def last_result(self, layer: Any = None) -> Any:
        """Latest Result (finished, cancelled, or live) for ``layer`` (default: selected)."""
        layer = layer if layer is not None else self.selected_layer()
        if layer is None:
            return None
        key = source_key(layer)
        if key in self.results:
            return self.results[key]
        found = self.hub.latest.get(key)
        return found[1] if found else None

    def toggle_pause(self) -> None:
        """Pause a running worker, or resume a paused one."""
        if not self.runner.running:
            return
        if self.runner.paused or self.pause_button.text() == "Resume":
            self.runner.resume()
            self.pause_button.setText("Pause")
        else:
            self.runner.pause()
            self.pause_button.setText("Resume")

    def cancel(self) -> None:
        """Stop the run after its current iteration; the last snapshot stays displayed."""
        self.runner.cancel()

    def _result(self, ctx: RunContext, snap: Any) -> Any:
        from napari_ptycho.engines import Result

        result = Result.from_snapshot(snap, ctx.parameters, source=ctx.source_name)
        result.extras = {**result.extras, "run_id": ctx.run_id}
        return result

    def _show(self, ctx: RunContext, snap: Any, result: Any) -> None:
        md = {RUN_KEY: ctx.run_id, RESULT_KEY: result, "ptycho_parameters": ctx.parameters,
              "ptycho_source_name": ctx.source_name}
        self.last_layers = self._layers.update(snap, md, ctx.data.probe_shape,
                                               ctx.data.positions)

    def _on_update(self, ctx: RunContext, snap: Any) -> None:
        result = self._result(ctx, snap)
        self._show(ctx, snap, result)
        # Under software OpenGL any widget repaint re-composites the whole window (≈ as
        # costly as redrawing the canvas), so the status text changes only with the
        # thumbnails (every THUMBNAIL_INTERVAL seconds), in the same repaint.
        if self._layers.thumbnails_refreshed:
            err = f", error {snap.errors[-1]:.4g}" if snap.errors else ""
            self.status.setText(f"{ctx.method} on {ctx.source_name}: {snap.unit} "
                                f"{snap.iteration}/{snap.total}{err}")
        self.hub.record(ctx, result)
        self.hub.updated.emit(ctx, result)

    def _on_finished(self, ctx: RunContext, snap: Any, status: str, error: Any) -> None:
        result = self._result(ctx, snap) if snap is not None else None
        if result is not None:
            self.results[ctx.source_key] = result
        layers = getattr(self, "_layers", None)
        if layers is not None:
            layers.finish()  # a cancelled run's last snapshot may be shown in part
        self._set_running(False)
        word = {"done": "Finished", "cancelled": "Cancelled", "error": "Failed"}[status]
        it = f" at {snap.unit} {snap.iteration}/{snap.total}" if snap is not None else ""
        self.status.setText(f"{word}: {ctx.method} on {ctx.source_name}{it}"
                            + (f" — {error}" if error is not None else ""))
        self.hub.finished.emit(ctx, result, status)

    def _set_running(self, running: bool) -> None:
        ready = self.form is not None and self.selected_layer() is not None
        self.start_button.setEnabled(not running and ready)
        self.continue_button.setEnabled(not running and ready)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running)
        self.method_box.setEnabled(not running)
        if self.form is not None:
            # the run uses the Config captured at Start: edits now would change nothing
            self.form.native.setEnabled(not running)
        if not running:
            self.pause_button.setText("Pause")

    # -------------------------------------------------------------------------- export
    def export_result(self, path: str, layer: Any = None) -> str:
        """Write the last result of ``layer`` (default: selected) with parameters and metrics.

        Raises
        ------
        ValueError
            When there is no result yet or ``path`` is empty.
        """
        if not path:
            raise ValueError("path must be a file name")
        layer = layer if layer is not None else self.selected_layer()
        result = self.last_result(layer)
        if result is None:
            raise ValueError("no result to export: run a reconstruction first")
        data = layer.metadata.get(DATA_KEY) if layer is not None else None
        truth = getattr(data, "truth_object", None)
        if truth is not None:
            from napari_ptycho.metrics import evaluate

            result.metrics = {**result.metrics, **evaluate(result, truth)}
        from napari_ptycho.io import save

        save(result, path)
        self.status.setText(f"Exported {path}")
        return str(path)

    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export result", "result.h5",
                                              "HDF5 result (*.h5 *.hdf5);;CXI (*.cxi)")
        if path:
            self._guard(self.export_result, path)
