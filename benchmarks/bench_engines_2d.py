"""Fidelity of the 2D iterative engines on a simulated Siemens star (issue #4).

For each overlap (default 70 %, 50 %, 30 %) a Siemens star (default 256², 64² probe, 1e6
photons per pattern, Poisson noise) is reconstructed blind by every engine: the probe starts
from the generic guess estimated from the data (``probe_init="data"``), never the truth.
Scores, inside the illuminated region (where the true scan's summed probe intensity exceeds
10 % of its maximum), after removing global phase, sub-pixel shift and amplitude scale:
object NRMSE, phase PSNR, FRC 0.5 crossing; plus the final χ² (Σ(√I_model − √I)² / ΣI over
all patterns) against the Poisson noise floor (χ² of the TRUE object and probe against the
same noisy data) and the wall time.

Usage::

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/bench_engines_2d.py \\
        --iterations epie=60,rpie=60,dm=60,raar=60,lsqml=40,ad=60 --images docs/images

Prints one JSON object and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_ITERATIONS = "epie=60,rpie=60,dm=60,raar=60,lsqml=40,ad=60"


def parse_iterations(text: str) -> dict[str, int]:
    """``"epie=60,ad=40"`` → ``{"epie": 60, "ad": 40}``."""
    out = {}
    for item in text.split(","):
        name, _, n = item.partition("=")
        if not n:
            raise ValueError(f"--iterations expects NAME=N pairs (got {item!r})")
        out[name.strip()] = int(n)
    return out



def save_images(results: dict, data, region: np.ndarray, path: Path) -> None:
    """Amplitude and phase of every engine's object (region box) as one small PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = np.nonzero(region)
    box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    items = [("truth", data.truth_object)] + [(k, v.object) for k, v in results.items()]
    fig, axes = plt.subplots(2, len(items), figsize=(1.6 * len(items), 3.4), dpi=60)
    for j, (name, obj) in enumerate(items):
        o = obj[box]
        ref = data.truth_object[box]
        o = o * np.exp(1j * np.angle(np.vdot(o, ref)))  # global phase as the truth
        axes[0, j].imshow(np.abs(o), cmap="gray")
        axes[1, j].imshow(np.angle(o), cmap="twilight", vmin=-np.pi, vmax=np.pi)
        axes[0, j].set_title(name, fontsize=8)
        for ax in axes[:, j]:
            ax.set_axis_off()
    fig.tight_layout(pad=0.2)
    fig.savefig(path)
    plt.close(fig)


def run_overlap(overlap: float, args: argparse.Namespace, iterations: dict[str, int]
                ) -> tuple[list[dict], dict]:
    """Every engine on one simulated scan; returns rows and the results by engine."""
    from napari_ptycho.engines import Snapshot, reconstruct
    from napari_ptycho.metrics import evaluate, fit_metrics, illuminated_region
    from napari_ptycho.physics.simulate import simulate_ptycho

    data = simulate_ptycho(object="siemens", object_size=args.object_size,
                           probe_size=args.probe_size, overlap=overlap, photons=args.photons,
                           noise="poisson", seed=args.seed)
    region = illuminated_region(data.positions, data.truth_probe, data.object_shape)
    truth = Snapshot(iteration=0, total=0, object=data.truth_object, probe=data.truth_probe,
                     positions=data.positions)
    floor = fit_metrics(truth, data)["chi2"]
    rows, results = [], {}
    for method, n_iter in iterations.items():
        t0 = time.perf_counter()
        result = reconstruct(data, method, iterations=n_iter, seed=args.seed,
                             probe_init="data")
        wall = time.perf_counter() - t0
        scores = evaluate(result, data.truth_object, region=region, scale=True)
        chi2 = fit_metrics(result, data)["chi2"]
        rows.append({"overlap": overlap, "method": method, "iterations": n_iter,
                     "patterns": data.n_patterns, "nrmse": scores["nrmse"],
                     "psnr_phase": scores["psnr_phase"], "frc50": scores["frc50"],
                     "chi2": chi2, "chi2_floor": floor, "chi2_over_floor": chi2 / floor,
                     "seconds": wall})
        results[method] = result
        print(f"# {overlap:.0%} {method}: nrmse {scores['nrmse']:.3f} chi2/floor "
              f"{chi2 / floor:.2f} ({wall:.0f} s)", file=sys.stderr, flush=True)
    if args.images:
        Path(args.images).mkdir(parents=True, exist_ok=True)
        save_images(results, data, region,
                    Path(args.images) / f"engines_2d_overlap{int(round(overlap * 100))}.png")
    return rows, results


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print JSON plus a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object-size", type=int, default=256)
    parser.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--photons", type=float, default=1e6)
    parser.add_argument("--overlaps", default="0.7,0.5,0.3")
    parser.add_argument("--iterations", default=DEFAULT_ITERATIONS,
                        help=f"NAME=N per engine (default {DEFAULT_ITERATIONS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", default="", help="folder for PNGs (none when empty)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    iterations = parse_iterations(args.iterations)
    rows: list[dict] = []
    for ov in (float(x) for x in args.overlaps.split(",")):
        rows += run_overlap(ov, args, iterations)[0]
    print(json.dumps({"config": vars(args), "rows": rows}, indent=1))
    print("\n| overlap | method | iters | NRMSE | phase PSNR (dB) | FRC50 | χ² / floor | s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['overlap']:.0%} | {r['method']} | {r['iterations']} | {r['nrmse']:.3f} | "
              f"{r['psnr_phase']:.1f} | {r['frc50']:.3f} | {r['chi2_over_floor']:.2f} | "
              f"{r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
