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


# keyed by id(): napari viewers compare equal by their fields, so they are poor dict keys
_HUBS: dict[int, RunEvents] = {}


def unwrap_viewer(viewer: Any) -> Any:
    """The viewer itself: npe2 hands each dock its own public-only proxy of it.

    Docks must agree on one identity (to share :func:`hub_for`) and write result arrays
    in place, which proxies (they wrap every returned object) would prevent.
    """
    return getattr(viewer, "__wrapped__", viewer)


def hub_for(viewer: Any) -> RunEvents:
    """The :class:`RunEvents` shared by every dock of ``viewer`` (proxied or not)."""
    viewer = unwrap_viewer(viewer)
    key = id(viewer)
    hub = _HUBS.get(key)
    if hub is None:
        hub = _HUBS[key] = RunEvents()
        weakref.finalize(viewer, _HUBS.pop, key, None)
    return hub
