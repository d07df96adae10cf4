"""Per-viewer events that let separate docks follow the same runs.

The reconstruction dock emits, the plots dock and the scan inspector listen. Docks are
created independently by napari, so they meet through the viewer they share.
"""

from __future__ import annotations

import weakref
from typing import Any

from psygnal import Signal


class RunEvents:
    """Signals about runs in one viewer, plus the latest state of each input.

    Signals
    -------
    updated(ctx, snapshot)
        A throttled live update of a run.
    finished(ctx, result, status)
        A run ended ("done", "cancelled" or "error"); ``result`` may be None.
    """

    updated = Signal(object, object)
    finished = Signal(object, object, str)

    def __init__(self) -> None:
        # source key -> (RunContext, latest snapshot or Result)
        self.latest: dict[str, tuple[Any, Any]] = {}
        self.last_key: str | None = None

    def record(self, ctx: Any, snap: Any) -> None:
        """Remember ``snap`` as the newest state of ``ctx``'s input."""
        if snap is not None and getattr(ctx, "purpose", "reconstruction") == "reconstruction":
            self.latest[ctx.source_key] = (ctx, snap)
            self.last_key = ctx.source_key


_HUBS: weakref.WeakKeyDictionary[Any, RunEvents] = weakref.WeakKeyDictionary()


def hub_for(viewer: Any) -> RunEvents:
    """The :class:`RunEvents` shared by every dock of ``viewer``."""
    hub = _HUBS.get(viewer)
    if hub is None:
        hub = _HUBS[viewer] = RunEvents()
    return hub
