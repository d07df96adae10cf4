"""CPU-time accounting for the GUI benchmark (Linux ``/proc``; zeros elsewhere).

Wall-clock ratios on a shared machine drift with other people's jobs; CPU seconds per
thread say where the work went. Threads of this process are grouped by role:

* ``main``: the Qt main thread (layer refreshes, vispy draw calls, event handling; in a
  headless run it is the engine's own thread);
* ``render``: Mesa's software rasteriser threads (``llvmpipe-N``), which draw every
  repaint of the window under Xvfb;
* ``engine``: every other thread (the worker running the engine and its torch/OpenMP
  helpers, Qt's small helper threads);

plus ``xserver``: the Xvfb process serving ``$DISPLAY`` (another process).
"""

from __future__ import annotations

import os
import time

from napari_ptycho._threads import RENDER_THREAD_PREFIXES, thread_cpu_seconds, thread_name


def _xserver_pid() -> int | None:
    """PID of the Xvfb process whose command line names our display (None if not found)."""
    display = os.environ.get("DISPLAY", "").split(".")[0]
    if not display or not os.path.isdir("/proc"):
        return None
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or thread_name(f"/proc/{entry}") != "Xvfb":
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                args = fh.read().split(b"\0")
        except OSError:
            continue
        if display.encode() in args:
            return int(entry)
    return None


def cpu_by_role(xserver: int | None) -> dict[str, float]:
    """Cumulative CPU seconds so far of this process's threads by role, and of Xvfb."""
    out = {"main": 0.0, "render": 0.0, "engine": 0.0, "xserver": 0.0}
    if not os.path.isdir("/proc/self/task"):
        return out
    pid = os.getpid()
    for tid in os.listdir("/proc/self/task"):
        task = f"/proc/self/task/{tid}"
        cpu = thread_cpu_seconds(task) or 0.0
        if int(tid) == pid:
            out["main"] += cpu
        elif thread_name(task).startswith(RENDER_THREAD_PREFIXES):
            out["render"] += cpu
        else:
            out["engine"] += cpu
    if xserver is not None:
        out["xserver"] = thread_cpu_seconds(f"/proc/{xserver}") or 0.0
    return out


class CpuMeter:
    """Measure CPU seconds by role (and wall seconds) over a stretch of code.

    Threads that end inside the stretch lose their CPU from the count: the engine's
    worker thread is pooled (it lives on), torch's helpers too.
    """

    def __init__(self) -> None:
        self.xserver = _xserver_pid()
        self._start: dict[str, float] = {}
        self._wall = 0.0

    def start(self) -> CpuMeter:
        self._start = cpu_by_role(self.xserver)
        self._wall = time.perf_counter()
        return self

    def stop(self) -> dict[str, float]:
        """CPU seconds per role since :meth:`start`, plus ``wall`` and ``gui`` (main+render)."""
        now = cpu_by_role(self.xserver)
        out = {k: round(now[k] - self._start.get(k, 0.0), 2) for k in now}
        out["gui"] = round(out["main"] + out["render"], 2)
        out["wall"] = round(time.perf_counter() - self._wall, 2)
        return out
