"""Plots dock: the live error curve and the FRC with half-bit and 1/7 thresholds.

The FRC compares the reconstruction with the ground truth when the scan has one; otherwise
the "Half-set FRC" button reconstructs the odd and the even scan positions independently
(same method and parameters as the last run) in a worker and correlates the two objects.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from napari_ptycho._widgets._hub import hub_for, unwrap_viewer
from napari_ptycho._widgets._layers import display_name
from napari_ptycho._widgets._mpl import ThemedCanvas

DATA_KEY = "ptycho_data"
#: seconds between live redraws of the error curve: a matplotlib draw costs tens of ms on
#: the main thread, and the curve barely moves between two streamed snapshots
LOSS_INTERVAL = 0.5


def _region_mask(data: Any, shape: tuple[int, int]) -> tuple[slice, slice]:
    from napari_ptycho.metrics import scanned_region

    return scanned_region(data.positions, data.probe_shape, shape)


def frc_curve(a: np.ndarray, b: np.ndarray, region: tuple[slice, slice]) -> tuple[Any, ...]:
    """FRC of two complex objects over ``region`` after registering ``a`` onto ``b``.

    Returns ``(freq, frc, halfbit, one_seventh)`` as :func:`napari_ptycho.metrics.frc`.
    """
    from napari_ptycho.metrics import frc, register

    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"objects differ in shape: {a.shape} vs {b.shape}")
    mask = np.zeros(a.shape, bool)
    mask[region] = True
    reg = register(a, b, mask=mask, scale=True)
    return frc(reg.aligned[region], reg.reference[region], window=True)


def frc_against_truth(result: Any, data: Any) -> tuple[Any, ...] | None:
    """FRC of a result's object against the scan's truth (None without a usable truth)."""
    truth = getattr(data, "truth_object", None)
    if truth is None or np.shape(truth) != np.shape(result.object):
        return None
    return frc_curve(result.object, truth, _region_mask(data, np.shape(truth)))


def resolved_frequency(curve: tuple[Any, ...]) -> float:
    """Highest frequency at which the FRC still reaches the half-bit threshold.

    The first crossing would be misleading here: the innermost rings hold a handful of
    pixels, so their half-bit threshold is close to 1 and a noisy ring "crosses" at once.
    """
    freq, values, halfbit = (np.asarray(a, dtype=float) for a in curve[:3])
    above = np.flatnonzero(values[1:] >= halfbit[1:]) + 1
    return float(freq[above[-1]]) if above.size else 0.0


def half_set_runs(data: Any, method: str, config: Any) -> Any:
    """Generator: reconstruct the even then the odd positions; returns both objects.

    Yields ``(half, iteration, total)`` so that the worker can be cancelled between
    iterations.
    """
    from napari_ptycho.engines import stream

    objects = []
    for half, index in enumerate((slice(0, None, 2), slice(1, None, 2))):
        last = None
        for snap in stream(data.subset(index), method, config=config):
            last = snap
            yield half, snap.iteration, snap.total
        if last is None:
            raise ValueError(f"{method} produced no snapshot on half-set {half}")
        objects.append(last.object)
    return objects


class PlotsWidget(QWidget):
    """Error curve (log scale) and FRC of the latest reconstruction in the viewer."""

    def __init__(self, napari_viewer: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = unwrap_viewer(napari_viewer)
        self.hub = hub_for(napari_viewer)
        self.plot = ThemedCanvas(self.viewer, nrows=2)
        self.plot.setMinimumHeight(360)  # two readable axes; smaller collapses the layout
        self.loss_ax, self.frc_ax = self.plot.axes
        self.half_button = QPushButton("Half-set FRC (odd/even positions)")
        self.info = QLabel("Run a reconstruction to see its error and FRC.")
        self.info.setWordWrap(True)
        self.frc_data: tuple[Any, ...] | None = None
        self.frc_kind = ""
        self.half_worker: Any = None
        self._key: str | None = None
        self._pending_loss: tuple[list[float], str] | None = None
        self._loss_drawn = -np.inf
        self._loss_timer = QTimer(self)
        self._loss_timer.setSingleShot(True)
        self._loss_timer.timeout.connect(self._flush_loss)
        buttons = QHBoxLayout()
        buttons.addWidget(self.half_button)
        layout = QVBoxLayout(self)
        layout.addWidget(self.plot, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.info)
        self.half_button.clicked.connect(self._half_clicked)
        self.hub.updated.connect(self._on_update)
        self.hub.finished.connect(self._on_finished)
        self._draw_loss([])
        self._draw_frc(None, "")
        if self.hub.last_key in self.hub.latest:  # docked after a run: show it
            ctx, result = self.hub.latest[self.hub.last_key]
            self._on_finished(ctx, result, "done")

    # ------------------------------------------------------------------ drawing
    def _draw_loss(self, errors: list[float], label: str = "") -> None:
        ax, c = self.loss_ax, self.plot.colours
        ax.clear()
        y = np.asarray(errors, dtype=float)
        x = np.arange(1, len(y) + 1)
        ok = np.isfinite(y) & (y > 0)
        self.loss_line, = ax.plot(x[ok], y[ok], color=c["accent"], lw=1.5)
        if ok.any():
            ax.set_yscale("log")
        ax.set_xlabel("iteration")
        ax.set_ylabel("error")
        ax.set_title(label or "error", fontsize="medium")
        ax.grid(True, color=c["grid"], lw=0.5, alpha=0.6)
        self.plot.style_axes(ax, c)
        self.plot.draw()

    def _draw_frc(self, curve: tuple[Any, ...] | None, kind: str) -> None:
        ax, c = self.frc_ax, self.plot.colours
        ax.clear()
        self.frc_data, self.frc_kind = curve, kind
        if curve is not None:
            freq, values, halfbit, seventh = curve
            ax.plot(freq, values, color=c["accent"], lw=1.5, label="FRC")
            ax.plot(freq, halfbit, color=c["highlight"], lw=1, ls="--", label="half-bit")
            ax.axhline(seventh, color=c["text"], lw=1, ls=":", label="1/7")
            ax.set_title(f"FRC {kind}: ≥ half-bit up to {resolved_frequency(curve):.3f} "
                         "cycles/px", fontsize="medium")
            ax.legend(loc="upper right", fontsize="small")
        else:
            ax.set_title("FRC: needs a truth or half-sets", fontsize="medium")
        ax.set_xlim(0, 0.5)
        ax.set_ylim(-0.1, 1.05)
        ax.set_xlabel("spatial frequency (cycles/pixel)")
        ax.set_ylabel("FRC")
        ax.grid(True, color=c["grid"], lw=0.5, alpha=0.6)
        self.plot.style_axes(ax, c)
        self.plot.draw()

    # ------------------------------------------------------------------ run events
    def _source_data(self, key: str) -> Any:
        from napari_ptycho._widgets._layers import source_key

        for layer in self.viewer.layers:
            if source_key(layer) == key and DATA_KEY in layer.metadata:
                return layer.metadata[DATA_KEY]
        return None

    def _flush_loss(self) -> None:
        pending, self._pending_loss = self._pending_loss, None
        if pending is not None:
            self._loss_drawn = time.perf_counter()
            self._draw_loss(*pending)

    def showEvent(self, event: Any) -> None:  # noqa: N802 (Qt override)
        super().showEvent(event)
        self._flush_loss()  # live updates that arrived while hidden

    def _on_update(self, ctx: Any, result: Any) -> None:
        """A live snapshot: redrawn at most every LOSS_INTERVAL s, and only when shown."""
        if getattr(ctx, "purpose", "reconstruction") != "reconstruction":
            return
        self._key = ctx.source_key
        self._pending_loss = (list(result.errors),
                              f"error: {ctx.method} on {display_name(ctx.source_name)}")
        if not self.isVisible():
            return
        wait = LOSS_INTERVAL - (time.perf_counter() - self._loss_drawn)
        if wait <= 0:
            self._flush_loss()
        elif not self._loss_timer.isActive():
            self._loss_timer.start(max(1, int(1000 * wait)))

    def _on_finished(self, ctx: Any, result: Any, status: str) -> None:
        if result is None or getattr(ctx, "purpose", "reconstruction") != "reconstruction":
            return
        self._on_update(ctx, result)
        self._loss_timer.stop()
        self._flush_loss()  # the final curve, whatever the throttle
        data = getattr(ctx, "data", None)
        try:
            curve = frc_against_truth(result, data) if data is not None else None
        except ValueError as exc:
            self.info.setText(f"FRC against truth failed: {exc}")
            return
        if curve is not None:
            self._draw_frc(curve, "vs truth")
            self.info.setText(f"{ctx.method} on {ctx.source_name} ({status}), FRC against "
                              "the ground truth.")
        else:
            self.info.setText(f"{ctx.method} on {ctx.source_name} ({status}); no ground "
                              "truth: use the half-set FRC button.")

    # ------------------------------------------------------------------ half sets
    def start_half_sets(self) -> Any:
        """Run the odd/even half-set reconstructions of the latest run's input in a worker.

        Raises
        ------
        ValueError
            When no reconstruction has run in this viewer yet.
        """
        if self.half_worker is not None:
            raise ValueError("half-set reconstructions are already running")
        key = self._key or self.hub.last_key
        if key is None or key not in self.hub.latest:
            raise ValueError("run a reconstruction first: the half-sets reuse its method "
                             "and parameters")
        ctx, _ = self.hub.latest[key]
        if ctx.data.n_patterns < 4:
            raise ValueError("half-set FRC needs at least 4 scan positions")
        from napari.qt.threading import create_worker

        worker = create_worker(half_set_runs, ctx.data, ctx.method, ctx.config,
                               _start_thread=False, _progress={
                                   "total": 2 * int(ctx.config.iterations),
                                   "desc": f"half-set FRC: {ctx.source_name}"})
        worker.returned.connect(lambda objs: self._half_done(ctx, objs))
        worker.finished.connect(self._half_finished)
        self.half_worker = worker
        self.half_button.setEnabled(False)
        self.info.setText(f"Reconstructing odd and even positions of {ctx.source_name}…")
        worker.start()
        return worker

    def _half_done(self, ctx: Any, objects: list[np.ndarray]) -> None:
        region = _region_mask(ctx.data, np.shape(objects[0]))
        self._draw_frc(frc_curve(objects[0], objects[1], region), "odd/even")
        self.info.setText(f"Half-set FRC of {ctx.source_name} ({ctx.method}).")

    def _half_finished(self) -> None:
        self.half_worker = None
        self.half_button.setEnabled(True)

    def _half_clicked(self) -> None:
        from napari.utils.notifications import show_error

        try:
            self.start_half_sets()
        except ValueError as exc:
            show_error(str(exc))
