"""Seconds per iteration of DM and RAAR, phase by phase, against the FFT floor (issue #4).

DM and RAAR now run their own update for the first ``1 − final_ap_fraction`` of a run and
plain alternating projections at its end, and apply the raster gauge after every overlap
projection. ``bench_speed_2d.py`` times a few default iterations, which mixes the phases;
this script times each phase alone (and the engine without the gauge) on the same scan:
1024 patterns of 64² on a 32 × 32 raster (``bench_speed_2d.make_scan``), divided by one
forward + inverse ``torch.fft.fft2`` over a (1024, 64, 64) complex64 stack measured in the
same process (best of 7, before and after; the smaller is used).

Usage::

    .venv/bin/python benchmarks/bench_projections_speed.py --threads 2 --k 6

Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_speed_2d import fft_floor, make_scan, seconds_per_iteration  # noqa: E402

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


def main(argv: list[str] | None = None) -> int:
    """Time every configuration and print JSON plus a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, default=6, help="iterations timed per row (>= 2)")
    args = parser.parse_args(argv)
    if args.k < 2:
        raise ValueError(f"--k must be >= 2 (got {args.k})")

    import torch

    torch.set_num_threads(args.threads)
    data = make_scan()
    floor_before = fft_floor()
    rows = []
    for label, method, overrides in CONFIGS:
        sec = seconds_per_iteration(data, method, overrides, args.k)
        rows.append({"configuration": label, "seconds": sec})
        print(f"# {label}: {sec:.3f} s", file=sys.stderr, flush=True)
    floor = min(floor_before, fft_floor())
    for r in rows:
        r["ratio"] = r["seconds"] / floor
    print(json.dumps({"config": vars(args), "fft_floor_s": floor,
                      "fft_floor_before_s": floor_before, "rows": rows}, indent=1))
    print(f"\nFFT floor: {floor * 1e3:.1f} ms\n")
    print("| configuration | s / iteration | ÷ FFT floor |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['configuration']} | {r['seconds']:.3f} | {r['ratio']:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
