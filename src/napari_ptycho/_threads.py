"""CPU threads of a process that draws a GUI while torch computes: their settings and their
CPU accounting.

torch's CPU kernels run on an OpenMP pool whose idle workers, by default, spin for a
while before sleeping. Headless that costs nothing; in napari the spinning workers take
the cores the Qt main thread and the software-OpenGL repaint need, so a reconstruction
streamed into a shown viewer ran 1.25-1.29x slower than headless on a 2-core machine and
1.06-1.13x with passive waiting (``benchmarks/bench_gui.py``, docs/benchmarks.md, "GUI
responsiveness"). OpenMP reads the policy once, when torch is first imported, so it has
to be set before that; the plugin's GUI entry points call :func:`prefer_passive_wait`.
"""

from __future__ import annotations

import os
import sys
import time

#: name prefixes of threads that draw for the main thread: Mesa's software rasterisers
RENDER_THREAD_PREFIXES = ("llvmpipe", "softpipe")


def prefer_passive_wait() -> bool:
    """Ask OpenMP to put idle torch workers to sleep instead of spinning.

    Sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy or torch is already
    imported (then it would have no effect).

    Returns
    -------
    bool
        Whether the policy in force for this process is passive (or will be, once torch
        is imported).
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE"


def thread_name(task: str) -> str:
    """Name (``comm``) of a thread or process from its ``/proc`` directory; "" when gone."""
    try:
        with open(task + "/comm") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def thread_cpu_seconds(task: str) -> float | None:
    """CPU seconds (user + system) of a thread or process from its ``/proc`` directory;
    None when it has ended."""
    try:
        with open(task + "/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gui_cpu_seconds() -> float:
    """CPU seconds spent so far on drawing the GUI; call it from the main thread.

    That is the main thread's CPU time plus, on Linux, that of the software-OpenGL
    rasteriser threads (Mesa's llvmpipe), which do the pixel work of every repaint for
    the main thread. Elsewhere (or on a GPU driver) only the main thread is counted.
    """
    total = time.thread_time()
    if not sys.platform.startswith("linux"):
        return total
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return total
    for tid in tids:
        task = f"/proc/self/task/{tid}"
        if thread_name(task).startswith(RENDER_THREAD_PREFIXES):
            total += thread_cpu_seconds(task) or 0.0
    return total
