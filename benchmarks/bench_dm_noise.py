"""DM and RAAR on strongly noisy scans: do they finish, and where does the data error go?

The scans on which DM used to stop with non-finite values (issue #4, found in PtyINR's
noise study): Siemens stars under a focused probe at 50 % overlap (sub-pixel raster),
Poisson noise with α = 10 photons at the brightest pixel (PtyINR's eq. 6) or Gaussian
noise σ = 100 counts, the probe started from the data guess, the engine's defaults.
Prints one JSON object and a Markdown table (first → lowest → final data error, or the
message the run stopped with; process CPU seconds).

Usage::

    .venv/bin/python benchmarks/bench_dm_noise.py --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

#: (probe side, object side, noise) of the scans that diverged
CASES = [(64, 128, "poisson"), (64, 192, "poisson"), (64, 192, "gaussian"),
         (48, 128, "poisson")]


def run_case(probe: int, size: int, noise: str, method: str, iterations: int) -> dict:
    """One scan, one engine; the errors or the stop message."""
    from napari_ptycho.engines import EngineError, reconstruct
    from napari_ptycho.physics.simulate import simulate_ptycho

    kw = {"alpha": 10.0} if noise == "poisson" else {"sigma": 100.0}
    data = simulate_ptycho(object="siemens", object_size=size, probe_size=probe,
                           overlap=0.5, photons=1e6, noise=noise, probe="focused", seed=0,
                           **kw)
    row = {"probe": probe, "object": size, "noise": noise, "method": method,
           "patterns": data.n_patterns}
    cpu = time.process_time()
    try:
        result = reconstruct(data, method, iterations=iterations, probe_init="data",
                             device="cpu", seed=0, update_every=iterations)
        row.update(first=result.errors[0], lowest=min(result.errors),
                   final=result.errors[-1], stopped=None)
    except EngineError as err:
        row.update(stopped=str(err))
    row["cpu_seconds"] = time.process_time() - cpu
    return row


def main(argv: list[str] | None = None) -> int:
    """Run every case and print JSON plus a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="dm,raar")
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    rows = []
    for method in args.methods.split(","):
        for case in CASES:
            rows.append(run_case(*case, method, args.iterations))
            print(f"# {rows[-1]}", file=sys.stderr, flush=True)
    print(json.dumps({"config": vars(args), "loadavg": os.getloadavg(), "rows": rows},
                     indent=1))
    print("\n| method | probe | object | noise | patterns | data error: first → lowest → "
          "final | CPU s |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        err = (f"stopped: {r['stopped']}" if r["stopped"] else
               f"{r['first']:.3f} → {r['lowest']:.3f} → {r['final']:.3f}")
        print(f"| {r['method']} | {r['probe']}² | {r['object']}² | {r['noise']} | "
              f"{r['patterns']} | {err} | {r['cpu_seconds']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
