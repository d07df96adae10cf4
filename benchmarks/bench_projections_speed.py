"""Seconds per iteration of DM and RAAR, phase by phase, against the FFT floor (issue #4).

DM and RAAR now run their own update for the first ``1 − final_ap_fraction`` of a run and
plain alternating projections at its end, and apply the raster gauge after every overlap
projection. ``bench_speed_2d.py`` times a few default iterations, which mixes the phases;
this script times each phase alone (and the engine without the gauge) on the same scan:
1024 patterns of 64² on a 32 × 32 raster (``bench_speed_2d.make_scan``), divided by one
forward + inverse ``torch.fft.fft2`` over a (1024, 64, 64) complex64 stack measured in the
same process (best of 7, before and after; the smaller is used).

``--step 4.3`` uses the same 32 × 32 raster with a non-integer step, i.e. sub-pixel
positions (as in the fidelity benchmark), where the probe step adds its line search (one
more shifted-probe pass per overlap solve; whole-pixel scans skip it). Besides wall seconds
it reports process CPU seconds per iteration, the comparable figure on a shared machine.

Usage::

    .venv/bin/python benchmarks/bench_projections_speed.py --threads 2 --k 6
    .venv/bin/python benchmarks/bench_projections_speed.py --threads 1 --k 6 --step 4.3

Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed_2d import fft_floor, make_scan  # noqa: E402

#: (label, method, overrides); final_ap_fraction 0 = the engine's own update only,
#: 0.99 = alternating projections from the first iteration (for runs of < 50 iterations)
CONFIGS = [
    ("dm (difference-map iterations)", "dm", {"final_ap_fraction": 0.0}),
    ("dm (difference-map iterations, no raster gauge)", "dm",
     {"final_ap_fraction": 0.0, "raster_gauge": False}),
    ("dm (final alternating projections)", "dm", {"final_ap_fraction": 0.99}),
    ("raar (RAAR iterations)", "raar", {"final_ap_fraction": 0.0}),
    ("raar (RAAR iterations, no raster gauge)", "raar",
     {"final_ap_fraction": 0.0, "raster_gauge": False}),
    ("raar (final alternating projections)", "raar", {"final_ap_fraction": 0.99}),
]


def scan(step: float):
    """``make_scan``'s 32 × 32 raster over a Siemens star, with raster step ``step``."""
    if step == 5.0:
        return make_scan()
    from napari_ptycho.physics.simulate import simulate_ptycho

    grid = np.arange(32) * step + 2
    pos = np.array([(r, c) for r in grid for c in grid], dtype=float)
    return simulate_ptycho(object="siemens", object_size=int(np.ceil(grid[-1])) + 64 + 3,
                           probe_size=64, positions=pos, photons=1e6, seed=0)


def per_iteration(data, method: str, overrides: dict, k: int) -> tuple[float, float]:
    """Steady-state (wall, process CPU) seconds per iteration (set-up and first iteration
    excluded)."""
    from napari_ptycho.engines import stream

    wall, cpu = [], []
    for s in stream(data, method, iterations=k, update_every=1, probe_init="data",
                    **overrides):
        wall.append(s.elapsed)
        cpu.append(time.process_time())
    return (wall[-1] - wall[0]) / (k - 1), (cpu[-1] - cpu[0]) / (k - 1)


def main(argv: list[str] | None = None) -> int:
    """Time every configuration and print JSON plus a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=6, help="iterations timed per row (>= 2)")
    parser.add_argument("--step", type=float, default=5.0,
                        help="raster step in px (non-integer: sub-pixel positions)")
    args = parser.parse_args(argv)
    if args.k < 2:
        raise ValueError(f"--k must be >= 2 (got {args.k})")

    import torch

    torch.set_num_threads(args.threads)
    data = scan(args.step)
    floor_before = fft_floor()
    rows = []
    for label, method, overrides in CONFIGS:
        sec, cpu = per_iteration(data, method, overrides, args.k)
        rows.append({"configuration": label, "seconds": sec, "cpu_seconds": cpu})
        print(f"# {label}: {sec:.3f} s, CPU {cpu:.3f} s", file=sys.stderr, flush=True)
    floor = min(floor_before, fft_floor())
    for r in rows:
        r["ratio"] = r["seconds"] / floor
    print(json.dumps({"config": vars(args), "fft_floor_s": floor,
                      "fft_floor_before_s": floor_before, "rows": rows}, indent=1))
    print(f"\nFFT floor: {floor * 1e3:.1f} ms\n")
    print("| configuration | s / iteration | ÷ FFT floor | CPU s / iteration |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['configuration']} | {r['seconds']:.3f} | {r['ratio']:.2f} | "
              f"{r['cpu_seconds']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
