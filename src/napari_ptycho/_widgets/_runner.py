"""Run an engine in a napari ``thread_worker`` and hand the UI the latest snapshot, throttled.

Why this shape: the engine yields a snapshot every iteration so that Cancel and Pause
(checked by the worker between yields) act within one iteration; the worker only stores a
reference to the newest snapshot and never waits on the UI. A ``QTimer`` on the main thread
polls that reference a few times per second and pushes it to the layers, so however fast
or slow the engine, the UI redraws at most ``max_rate`` times per second and always shows
the newest state. The rate also adapts to what the display really costs: the CPU time of
everything that draws the GUI (the main thread, and the software rasteriser's threads
when OpenGL is software-rendered) between two updates, which is mostly the repaint an
update causes, not the dock's own refresh. On a slow or busy machine the display updates
less often instead of stealing the engine's CPU or the user's clicks.

Nothing animates while a run streams: napari's activity indicator (a looping GIF) would
repaint the window ~25 times a second, and with software OpenGL every repaint of a window
holding the canvas re-composites the whole window (measured: ~0.35 CPU-seconds per second
under Xvfb/llvmpipe, more than all the updates together). The runner pauses it and steps
it one frame per update instead. Nothing here is 2D-specific: any engine of the registry
can be driven this way.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from qtpy.QtCore import QTimer

from napari_ptycho._threads import gui_cpu_seconds


class RunFailed(Exception):
    """An engine raised mid-run; the message names the method and the input.

    Deliberately not a RuntimeError: superqt's generator worker swallows RuntimeErrors
    (it takes them for a deleted worker) instead of emitting ``errored``.
    """


@dataclass
class RunContext:
    """Everything that identifies one run; output is routed by this, never by UI state.

    Attributes
    ----------
    data : PtychoData or BraggData
        The input, captured when Start was pressed.
    method : str
        Registry name of the engine.
    config : dataclass
        The engine's validated Config.
    source_name : str
        Name of the input layer when the run started (for messages and layer names).
    source_key : str
        Stable identity of the input layer (survives renames), used to find output layers.
    init : Snapshot, optional
        Warm start.
    run_id : str
        Unique id of this run (a fresh uuid4 hex).
    """

    data: Any
    method: str
    config: Any
    source_name: str
    source_key: str
    init: Any = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    purpose: str = "reconstruction"

    @property
    def parameters(self) -> dict[str, Any]:
        """Method name plus every Config field (what result files store)."""
        return {"method": self.method, **dataclasses.asdict(self.config)}


def activity_spinners() -> list[Any]:
    """The QMovies of napari's "in progress" indicators (one per main window).

    napari keeps the indicator private; when that changes, this finds nothing and the
    runner simply leaves the indicator alone.
    """
    from qtpy.QtWidgets import QApplication

    movies = []
    for window in QApplication.topLevelWidgets():
        dialog = getattr(window, "_activity_dialog", None)
        indicator = getattr(getattr(dialog, "_toggleButton", None), "_inProgressIndicator",
                            None)
        movie = indicator.movie() if hasattr(indicator, "movie") else None
        if movie is not None:
            movies.append(movie)
    return movies


class _Slot:
    """Latest snapshot written by the worker thread, read by the UI thread.

    Assigning a Python reference is atomic under the GIL, so no lock is needed; ``seq``
    tells the UI whether something new arrived since it last looked.
    """

    __slots__ = ("error", "latest", "seq")

    def __init__(self) -> None:
        self.latest: Any = None
        self.seq = 0
        self.error: BaseException | None = None


def _generate(ctx: RunContext, slot: _Slot) -> Iterator[None]:
    from napari_ptycho.engines import stream

    try:
        for snap in stream(ctx.data, ctx.method, init=ctx.init, config=ctx.config):
            slot.latest = snap
            slot.seq += 1
            yield None  # gives the worker a chance to honour quit() / pause()
    except Exception as exc:
        # Reported from the main thread (see StreamRunner._on_finished) rather than raised:
        # one clear notification, whatever napari's error-relay settings are.
        err = RunFailed(f"{ctx.method} on {ctx.source_name!r} failed: "
                        f"{type(exc).__name__}: {exc}")
        err.__cause__ = exc
        slot.error = err.with_traceback(exc.__traceback__)


class StreamRunner:
    """Drive one engine run at a time and call back on the main thread.

    Parameters
    ----------
    on_update : callable(ctx, snapshot)
        Called at most ``max_rate`` times per second with the newest snapshot.
    on_finished : callable(ctx, snapshot or None, status, error)
        Called once per run; ``status`` is "done", "cancelled" or "error".
    max_rate : float
        Upper bound on UI updates per second.
    busy_fraction : float
        Largest share of one core that drawing the GUI may take while a run streams
        (adaptive throttle; see :func:`gui_cpu_seconds`).
    show_progress : bool
        Show a progress bar with ETA in napari's activity dock.
    min_rate : float
        The throttle never goes below this many updates per second (as long as the
        engine yields that often), so the display stays live on a slow machine.
    """

    def __init__(self, on_update: Callable[[RunContext, Any], None],
                 on_finished: Callable[[RunContext, Any, str, BaseException | None], None],
                 max_rate: float = 5.0, show_progress: bool = True,
                 busy_fraction: float = 0.1, min_rate: float = 2.0) -> None:
        if not max_rate > 0:
            raise ValueError(f"max_rate must be positive (got {max_rate})")
        if not 0 < busy_fraction <= 1:
            raise ValueError(f"busy_fraction must be in (0, 1] (got {busy_fraction})")
        if not 0 < min_rate <= max_rate:
            raise ValueError(f"min_rate must be in (0, max_rate={max_rate}] (got {min_rate})")
        self.min_interval = 1.0 / max_rate
        self.max_interval = 1.0 / min_rate
        self.busy_fraction = busy_fraction
        self._next_allowed = 0.0
        self.on_update = on_update
        self.on_finished = on_finished
        self.show_progress = show_progress
        self.worker: Any = None
        self.context: RunContext | None = None
        self.updates = 0
        self._slot = _Slot()
        self._shown = 0
        self._pbar: Any = None
        self._pbar_n = 0
        self._spinners: list[Any] = []
        self._gui_cpu_mark: float | None = None
        #: GUI CPU seconds between the last two updates (what the throttle budgets)
        self.last_gui_cpu = 0.0
        self._cancelled = False
        self._in_flush = False
        self._error: BaseException | None = None
        self._timer = QTimer()
        # poll faster than the rate limit so an allowed update is not delayed by a whole tick
        self._timer.setInterval(max(1, int(250 / max_rate)))
        self._timer.timeout.connect(self._flush)

    @property
    def running(self) -> bool:
        """True from :meth:`start` until the run's ``on_finished`` has been called."""
        return self.worker is not None

    @property
    def paused(self) -> bool:
        """True while the worker is paused."""
        return bool(self.worker is not None and self.worker.is_paused)

    @property
    def latest(self) -> Any:
        """Newest snapshot of the current (or last) run."""
        return self._slot.latest

    def start(self, ctx: RunContext) -> Any:
        """Start ``ctx`` in a thread worker; refuses while another run is active."""
        if self.running:
            raise RuntimeError("a run is already active; cancel it first")
        from napari.qt.threading import create_worker

        self.context = ctx
        self._slot = slot = _Slot()
        self._shown = 0
        self._next_allowed = 0.0
        self._gui_cpu_mark = None
        self.updates = 0
        self._cancelled = False
        self._error = None
        worker = create_worker(_generate, ctx, slot, _start_thread=False)
        worker.errored.connect(self._on_errored)  # only for failures outside the engine
        worker.finished.connect(lambda: self._on_finished(ctx, slot, worker))
        self.worker = worker
        if self.show_progress:
            self._open_progress(ctx)
        self._timer.start()
        worker.start()
        return worker

    def pause(self) -> None:
        """Pause the running worker (no-op when idle)."""
        if self.worker is not None:
            self.worker.pause()

    def resume(self) -> None:
        """Resume a paused worker."""
        if self.worker is not None:
            self.worker.resume()

    def cancel(self) -> None:
        """Ask the worker to stop after the current iteration; the last snapshot is kept."""
        if self.worker is not None:
            self._cancelled = True
            if self.worker.is_paused:
                self.worker.resume()  # a paused worker only checks quit() when running
            self.worker.quit()

    def wait(self, timeout: float = 10.0) -> bool:
        """Block (processing Qt events) until the run has finished; True when it did."""
        from qtpy.QtWidgets import QApplication

        end = time.perf_counter() + timeout
        while self.running and time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.005)
        return not self.running

    def _open_progress(self, ctx: RunContext) -> None:
        from napari.utils import progress

        total = int(getattr(ctx.config, "iterations", 0) or 0)
        self._pbar = progress(total=total or None, desc=f"{ctx.method}: {ctx.source_name}")
        self._pbar_n = 0
        # a running GIF would repaint the window continuously (see the module note)
        self._spinners = [m for m in activity_spinners() if m.state() == m.MovieState.Running]
        for movie in self._spinners:
            movie.setPaused(True)

    def _step_spinners(self) -> None:
        """Advance the paused activity indicator by one frame: it moves once per update."""
        for movie in self._spinners:
            try:
                if not movie.jumpToNextFrame():
                    movie.jumpToFrame(0)
            except RuntimeError:  # the window was closed under us
                pass

    def _close_progress(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        for movie in self._spinners:
            try:  # napari stops the indicator itself when no other progress is left
                movie.setPaused(False)
            except RuntimeError:
                pass
        self._spinners = []

    #: main-thread blocking of an update counted as this many times the dock's own refresh
    #: (the repaint follows it); matters where the GUI's CPU cannot be measured or where
    #: the refresh waits rather than computes
    cost_factor = 2.0

    def _flush(self, final: bool = False) -> None:
        slot, ctx = self._slot, self.context
        if ctx is None or slot.seq == self._shown or slot.latest is None:
            return
        now = time.perf_counter()
        if not final and now < self._next_allowed:
            return
        self._shown = slot.seq
        snap = slot.latest
        # everything the GUI drew since the last update: that update's repaint included
        cpu = gui_cpu_seconds()
        spent = cpu - self._gui_cpu_mark if self._gui_cpu_mark is not None else 0.0
        self._gui_cpu_mark = cpu
        self.last_gui_cpu = spent
        self._in_flush = True
        try:
            self.updates += 1
            self.on_update(ctx, snap)
            block = self.cost_factor * (time.perf_counter() - now)
            wait = min(self.max_interval, max(spent, block) / self.busy_fraction)
            self._next_allowed = now + max(self.min_interval, wait)
            self._step_spinners()
            if self._pbar is not None:
                it = int(getattr(snap, "iteration", 0))
                if it > self._pbar_n:
                    # napari's progress bar may process Qt events in here (re-entrancy)
                    self._pbar.update(it - self._pbar_n)
                    self._pbar_n = it
        finally:
            self._in_flush = False

    def _on_errored(self, exc: BaseException) -> None:
        # napari's worker already relays the error to a notification (with traceback)
        self._error = exc

    def _on_finished(self, ctx: RunContext, slot: _Slot, worker: Any) -> None:
        if worker is not self.worker:
            return
        if self._in_flush:  # delivered from inside a flush: finish once that flush is done
            QTimer.singleShot(0, lambda: self._on_finished(ctx, slot, worker))
            return
        self._timer.stop()
        display_error: Exception | None = None
        try:
            self._flush(final=True)  # the final snapshot, however recent the last tick was
        except Exception as exc:  # a display bug must not leave the dock stuck "running"
            display_error = exc
        self._close_progress()
        self.worker = None
        if slot.error is not None:
            self._error = slot.error
            from napari.utils.notifications import Notification, notification_manager

            notification_manager.dispatch(Notification.from_exception(slot.error))
        if self._error is not None:
            status = "error"
        elif self._cancelled or slot.latest is None or not getattr(slot.latest, "done", True):
            status = "cancelled"
        else:
            status = "done"
        self.on_finished(ctx, slot.latest, status, self._error)
        if display_error is not None:
            raise display_error
