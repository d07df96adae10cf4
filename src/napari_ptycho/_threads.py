"""CPU-thread settings for processes that draw a GUI while torch computes.

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
