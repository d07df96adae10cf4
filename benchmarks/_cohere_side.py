"""Side script: time cohere-core's ER/HIO on an amplitude volume (run in cohere's own venv).

Usage: ``python _cohere_side.py AMPLITUDES.npy SEQUENCE SW_EVERY THREADS`` prints one JSON
line ``{"seconds", "iterations", "ms_per_iteration", "cpu_ms_per_iteration", ...}``
(``cpu`` = process CPU time, which a loaded machine inflates far less than wall time).
cohere-core is never a dependency of napari-ptycho; benchmarks/bench_bragg.py calls this
with the interpreter given by ``--cohere-python``.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time


def main() -> None:
    path, sequence, every, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    import torch
    from cohere_core.controller import phasing

    torch.set_num_threads(threads)
    params = {
        "algorithm_sequence": sequence,
        "hio_beta": 0.9,
        "shrink_wrap_trigger": [1, every],
        "shrink_wrap_type": "GAUSS",
        "shrink_wrap_threshold": 0.1,
        "shrink_wrap_gauss_sigma": 1.0,
        "initial_support_area": [0.5, 0.5, 0.5],
    }
    with contextlib.redirect_stdout(io.StringIO()):  # cohere prints progress
        rec = phasing.create_rec(params, path, "torch", -1, debug=True)
        t0, c0 = time.perf_counter(), time.process_time()
        rec.iterate()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(rec.errs)
    print(json.dumps({"seconds": seconds, "iterations": n, "ms_per_iteration": 1e3 * seconds / n,
                      "cpu_ms_per_iteration": 1e3 * cpu / n,
                      "sequence": sequence, "shrink_wrap_every": every,
                      "final_error": float(rec.errs[-1])}))


if __name__ == "__main__":
    main()
