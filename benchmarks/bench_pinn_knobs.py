"""PtychoPINN controlled training runs: one knob at a time, how fast does the NLL fall?

Trains the unsupervised PINN on a grouped-grid strip of ``--copies`` 128² Lines objects
(1e9 photons, seed 0) with the engine's defaults plus the named changes, and after every
``--every`` epochs prints one JSON line:

* ``nll_gap_closed``: how far the training-scan Poisson NLL has moved from a flat object's
  towards the true patches' (0 = flat, 1 = truth), through the same constraint and probe;
* ``train_lit`` / ``uniform`` / ``probe``: amplitude and phase PSNR (and FRC50 for the
  held-out scan) in the illuminated region of the training strip and of a held-out Lines
  scan (seed 100), uniform and probe-weighted stitching; ``flat`` gives a constant
  object's scores for reference.

Example (docs/benchmarks.md, "PtychoPINN", session 2026-12-06)::

    python benchmarks/bench_pinn_knobs.py --name ampmax --amplitude-max 1.25 --epochs 60 \\
        --every 15
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    """Train with the given knobs and print a JSON line per checkpoint."""
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_pinn import objective, score
    from napari_ptycho.engines import reconstruct, stream
    from napari_ptycho.training.pinn import simulate_scan

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", default="run")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--every", type=int, default=15)
    p.add_argument("--copies", type=int, default=4, help="Lines objects in the strip")
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--train-scale", action="store_true")
    p.add_argument("--amplitude-max", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    train = simulate_scan("sim:" + "+".join(["lines"] * args.copies), 128, "grouped",
                          photons=1e9, seed=args.seed)
    test = simulate_scan("sim:lines", 128, "grouped", photons=1e9, seed=args.seed + 100)
    flat = {name: score(np.ones(d.object_shape, np.complex64), d)
            for name, d in (("train", train), ("test", test))}
    print(json.dumps({"flat": {k: [round(v["lit_psnr_amplitude"], 1),
                                   round(v["lit_psnr_phase"], 1)] for k, v in flat.items()}}),
          flush=True)
    c0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        for snap in stream(train, "pinn", iterations=args.epochs, update_every=args.every,
                           filters=args.filters, learning_rate=args.lr,
                           batch_size=args.batch_size, train_scale=args.train_scale,
                           amplitude_max=args.amplitude_max, seed=args.seed, save_dir=tmp,
                           cpu_threads=1):
            cpu = time.process_time() - c0
            model = snap.extras["model_path"]
            nll = objective(train, model)
            own = score(snap.object, train)
            row = {"name": args.name, "epoch": snap.iteration, "cpu_s": round(cpu),
                   "nll_gap_closed": round((nll["flat"] - nll["model"])
                                           / (nll["flat"] - nll["truth"]), 3),
                   "train_lit": [round(own["lit_psnr_amplitude"], 1),
                                 round(own["lit_psnr_phase"], 1)]}
            for weighting in ("uniform", "probe"):
                rec = reconstruct(test, "pinn_infer", model_path=model,
                                  stitch_weighting=weighting)
                s = score(rec.object, test)
                row[weighting] = [round(s["lit_psnr_amplitude"], 1),
                                  round(s["lit_psnr_phase"], 1),
                                  round(s["lit_frc50_amplitude"], 3),
                                  round(s["lit_frc50_phase"], 3)]
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
