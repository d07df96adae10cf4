"""Low-overlap fidelity of the diffusion prior vs rPIE and AWF (the shape of Cam et al.'s
Table 1).

Held-out 128² test objects (``training._diffusion_data.heldout_objects``: columns of the
bundled pictures the prior never saw), a 32² focused probe of 20 px FWHM (known to every
method), raster scans at the given overlaps (``1 − step / FWHM``), Poisson noise with a
maximum count of 1e5. Scores: complex NRMSE with the global phase removed and SSIM of the
amplitude (``metrics.evaluate``, no shift registration: positions are known). The
generalisation check re-runs the diffusion prior at the first overlap on a spiral scan
(new probe positions, same overlap) and reports the change of its mean NRMSE.

Usage (split overlaps over processes, then merge)::

    python benchmarks/bench_diffusion.py --overlaps 0.2,0.38 --json /tmp/a.json
    python benchmarks/bench_diffusion.py --merge /tmp/a.json /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

METHODS = ("rpie", "awf", "diffusion")


def run_case(obj: np.ndarray, overlap: float, seed: int, method: str, args: argparse.Namespace,
             scan: str = "raster") -> dict[str, float]:
    """Simulate one scan of ``obj`` and reconstruct it with ``method``."""
    from napari_ptycho.engines import reconstruct
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.physics.simulate import simulate_ptycho

    data = simulate_ptycho(object_array=obj, probe_size=32, overlap=overlap, photons=1e5,
                           photons_mode="max", noise="poisson", seed=seed, scan=scan,
                           probe_fwhm=args.probe_fwhm)
    kw: dict = {"device": "cpu", "seed": seed, "probe_init": "given"}
    if method == "rpie":
        kw.update(iterations=args.rpie_iterations, update_probe=False, alpha=args.rpie_alpha)
    elif method == "awf":
        kw.update(iterations=args.awf_iterations)
    else:
        kw.update(iterations=args.steps, zeta=args.zeta, time_travel=args.travel,
                  travel_every=args.travel_every, update_every=10 ** 6)
    t0 = time.perf_counter()
    res = reconstruct(data, method, **kw)
    wall = time.perf_counter() - t0
    m = evaluate(res.object, data.truth_object, register=False)
    return {"nrmse": m["nrmse"], "ssim_amplitude": m["ssim_amplitude"], "wall_s": wall,
            "positions": data.n_patterns, "error": res.errors[-1]}


def measure(args: argparse.Namespace) -> dict:
    """All cases of this process."""
    import torch

    from napari_ptycho.training._diffusion_data import heldout_objects

    torch.set_num_threads(args.threads)
    objects = heldout_objects(args.objects, 128, seed=args.object_seed)
    lo, _, hi = args.object_range.partition(":")
    first = int(lo or 0)
    objects = objects[first:int(hi) if hi else None]
    overlaps = [float(v) for v in args.overlaps.split(",")]
    methods = args.methods.split(",")
    rows = []
    for ov in overlaps:
        for method in methods:
            cases = [run_case(o, ov, k, method, args, scan=args.scan)
                     for k, o in enumerate(objects, start=first)]
            rows.append({"overlap": ov, "method": method, "scan": args.scan, "cases": cases})
            print(json.dumps(summary_row(rows[-1])), flush=True)
    out: dict = {"rows": rows, "settings": {k: v for k, v in vars(args).items()
                                            if k not in ("merge", "json")}}
    if args.generalisation and "diffusion" in methods:
        ov = overlaps[0]
        cases = [run_case(o, ov, k, "diffusion", args, scan="spiral")
                 for k, o in enumerate(objects, start=first)]
        out["generalisation"] = {"overlap": ov, "scan": "spiral", "cases": cases}
    return out


def summary_row(row: dict) -> dict:
    """Mean ± std of the scores of one (overlap, method)."""
    c = row["cases"]

    def stat(key: str) -> tuple[float, float]:
        v = np.array([x[key] for x in c], dtype=float)
        return float(v.mean()), float(v.std())

    return {"overlap": row["overlap"], "method": row["method"], "n": len(c),
            "scan": row.get("scan", "raster"),
            "positions": int(np.mean([x["positions"] for x in c])),
            "nrmse": stat("nrmse"), "ssim_amplitude": stat("ssim_amplitude"),
            "wall_s": stat("wall_s")}


def table(results: list[dict]) -> str:
    """Markdown table of merged results."""
    rows = [summary_row(r) for res in results for r in res["rows"]]
    rows.sort(key=lambda r: (r["overlap"], r["scan"], METHODS.index(r["method"])
                             if r["method"] in METHODS else 9))
    lines = ["| overlap | scan | positions | method | n | NRMSE | SSIM (amplitude) | wall s / "
             "object |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['overlap']:.0%} | {r['scan']} | {r['positions']} | {r['method']} | "
                     f"{r['n']} | "
                     f"{r['nrmse'][0]:.3f} ± {r['nrmse'][1]:.3f} | "
                     f"{r['ssim_amplitude'][0]:.3f} ± {r['ssim_amplitude'][1]:.3f} | "
                     f"{r['wall_s'][0]:.1f} |")
    for res in results:
        gen = res.get("generalisation")
        if not gen:
            continue
        base = next(r for r in res["rows"] if r["method"] == "diffusion"
                    and r["overlap"] == gen["overlap"])
        a = np.mean([x["nrmse"] for x in base["cases"]])
        b = np.mean([x["nrmse"] for x in gen["cases"]])
        lines.append(f"\nGeneralisation at {gen['overlap']:.0%}: raster NRMSE {a:.3f}, "
                     f"{gen['scan']} (new positions) {b:.3f}, change {abs(a - b):.3f}")
    return "\n".join(lines)


def main() -> None:
    """Measure (or merge) and print JSON then the table."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=10)
    p.add_argument("--object-seed", type=int, default=1000)
    p.add_argument("--object-range", default=":", help="slice of the objects, e.g. 0:5")
    p.add_argument("--overlaps", default="0.2,0.38,0.44,0.5,0.62")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--probe-fwhm", type=float, default=20.0)
    p.add_argument("--rpie-iterations", type=int, default=200)
    p.add_argument("--rpie-alpha", type=float, default=0.1)
    p.add_argument("--awf-iterations", type=int, default=300)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--zeta", type=float, default=0.2)
    p.add_argument("--travel", type=int, default=5)
    p.add_argument("--travel-every", type=int, default=10)
    p.add_argument("--scan", default="raster", help="scan kind of the main rows")
    p.add_argument("--generalisation", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--merge", nargs="+", help="merge result JSON files instead of measuring")
    args = p.parse_args()
    if args.merge:
        results = [json.loads(Path(f).read_text()) for f in args.merge]
    else:
        results = [measure(args)]
        if args.json:
            Path(args.json).write_text(json.dumps(results[0]))
    print(json.dumps([[summary_row(r) for r in res["rows"]] for res in results]))
    print(table(results))


if __name__ == "__main__":
    main()
