"""Low-overlap fidelity of the diffusion prior vs rPIE and AWF (the shape of Cam et al.'s
Table 1).

Held-out 128² test objects (``training._diffusion_data.heldout_objects``: columns of the
bundled pictures the prior never saw), a 32² focused probe of 20 px FWHM (known to every
method), raster scans at the given overlaps (``1 − step / FWHM``), Poisson noise with a
maximum count of 1e5. Scores: complex NRMSE with the global phase removed and SSIM of the
amplitude (``metrics.evaluate``, no shift registration: positions are known). The
generalisation check re-runs the diffusion prior at the first overlap on new probe positions
(``--gen-scan``: ``jitter:2`` = the same raster with every position moved by a random
2-px (σ) offset, so overlap and covered area stay the same; ``spiral`` = a spiral, which at
the same nominal overlap has fewer positions and covers less) and reports the change of its
mean NRMSE.

Usage (split overlaps over processes, then merge)::

    python benchmarks/bench_diffusion.py --overlaps 0.2,0.38 --json /tmp/a.json
    python benchmarks/bench_diffusion.py --merge /tmp/a.json /tmp/b.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("rpie", "awf", "diffusion")  # and "bound" (scan-geometry bound, uses the truth)


def run_case(obj: np.ndarray, overlap: float, seed: int, method: str, args: argparse.Namespace,
             scan: str = "raster") -> dict[str, float]:
    """Simulate one scan of ``obj`` and reconstruct it with ``method``."""
    from napari_ptycho.engines import reconstruct
    from napari_ptycho.metrics import evaluate, scanned_region
    from napari_ptycho.physics.simulate import simulate_ptycho

    kind, _, jitter = scan.partition(":")
    kind = "raster" if kind == "jitter" else kind
    data = simulate_ptycho(object_array=obj, probe_size=32, overlap=overlap, photons=1e5,
                           photons_mode="max", noise="poisson", seed=seed, scan=kind,
                           probe_fwhm=args.probe_fwhm, jitter=float(jitter or 0.0))
    # the method's own random seed (diffusion: noise draws, tile offsets) may differ from
    # the scan's, to measure the spread of one sample on the same data
    kw: dict = {"device": "cpu", "seed": seed + args.method_seed_offset, "probe_init": "given"}
    if method == "rpie":
        kw.update(iterations=args.rpie_iterations, update_probe=False, alpha=args.rpie_alpha)
    elif method == "awf":
        kw.update(iterations=args.awf_iterations)
    else:
        kw.update(iterations=args.steps, zeta=args.zeta, time_travel=args.travel,
                  travel_every=args.travel_every, update_every=10 ** 6,
                  dc_steps=args.dc_steps, polish=args.polish, samples=args.samples,
                  dc_noise=args.dc_noise, final_denoise=args.final_denoise,
                  final_draws=args.final_draws, final_refit=args.final_refit,
                  final_noise=args.final_noise, prior=args.prior)
    if method == "bound":
        return bound_case(data)
    t0 = time.perf_counter()
    res = reconstruct(data, method, **kw)
    wall = time.perf_counter() - t0
    m = evaluate(res.object, data.truth_object, register=False)
    # the windows' bounding box: the frame's border beyond it is never measured, and there
    # every method can only guess (its start value, or the prior's sample)
    box = scanned_region(data.positions, data.probe_shape, data.object_shape)
    ms = evaluate(res.object, data.truth_object, register=False, region=box)
    return {"nrmse": m["nrmse"], "ssim_amplitude": m["ssim_amplitude"], "wall_s": wall,
            "nrmse_scanned": ms["nrmse"], "ssim_scanned": ms["ssim_amplitude"],
            "positions": data.n_patterns, "error": res.errors[-1],
            "truth_error": truth_error(data)}


def bound_case(data: Any) -> dict[str, float]:
    """Scores of the truth inside the probe windows' bounding box and the truth's mean
    outside it: what a method that recovered every scanned pixel exactly, and could only
    guess a constant where no window ever reached, would score (a bound set by the scan
    geometry, not a method; it uses the truth)."""
    from napari_ptycho.metrics import evaluate, scanned_region

    truth = np.asarray(data.truth_object)
    box = scanned_region(data.positions, data.probe_shape, data.object_shape)
    inside = np.zeros(truth.shape, dtype=bool)
    inside[box] = True
    obj = np.where(inside, truth, truth[inside].mean())
    m = evaluate(obj, truth, register=False)
    ms = evaluate(obj, truth, register=False, region=box)
    err = truth_error(data)  # unlit pixels do not touch the data: the truth's misfit
    return {"nrmse": m["nrmse"], "ssim_amplitude": m["ssim_amplitude"], "wall_s": 0.0,
            "nrmse_scanned": ms["nrmse"], "ssim_scanned": ms["ssim_amplitude"],
            "positions": data.n_patterns, "error": err, "truth_error": err}


def truth_error(data: Any) -> float:
    """Data error E of the true object: the noise floor a data-consistent result reaches."""
    import torch

    from napari_ptycho.engines.common import prepare
    from napari_ptycho.engines.diffusion import Diffusion, DiffusionConfig

    problem = prepare(data, DiffusionConfig(device="cpu", probe_init="given"))
    return Diffusion.misfit(problem, torch.as_tensor(data.truth_object))[1]


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
    for ov in overlaps if not args.skip_main else []:
        for method in methods:
            cases = [run_case(o, ov, k, method, args, scan=args.scan)
                     for k, o in enumerate(objects, start=first)]
            rows.append({"overlap": ov, "method": method, "scan": args.scan, "cases": cases})
            print(json.dumps(summary_row(rows[-1])), flush=True)
    out: dict = {"rows": rows, "settings": {k: v for k, v in vars(args).items()
                                            if k not in ("merge", "json")}}
    if args.generalisation and "diffusion" in methods:
        ov = overlaps[0]
        cases = [run_case(o, ov, k, "diffusion", args, scan=args.gen_scan)
                 for k, o in enumerate(objects, start=first)]
        out["generalisation"] = {"overlap": ov, "scan": args.gen_scan, "cases": cases}
    return out


def denoise_truth(args: argparse.Namespace) -> dict:
    """The prior as a denoiser of the *true* held-out objects: NRMSE and amplitude SSIM of
    the final Tweedie denoising (``final_denoise`` = t, 2 draws) applied to the truth. It
    is what that last step alone costs a perfect reconstruction, and a direct measure of
    the prior's quality (a prior that knows the objects' edges keeps them)."""
    import torch

    from napari_ptycho.engines.diffusion import Diffusion, DiffusionConfig
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.nn.unet import load_prior
    from napari_ptycho.training._diffusion_data import heldout_objects

    torch.set_num_threads(args.threads)
    model, patch, card = load_prior(args.prior or None)
    objects = heldout_objects(args.objects, 128, seed=args.object_seed)
    out: dict = {"prior": args.prior or "shipped", "prior_steps": card.get("steps")}
    for t in (20, 50, 100):
        scores = []
        for k, obj in enumerate(objects):
            cfg = DiffusionConfig(final_denoise=t, final_draws=2)
            den = Diffusion().final_denoise(model, torch.as_tensor(obj), patch, cfg,
                                            torch.Generator().manual_seed(k))
            m = evaluate(den.numpy(), obj, register=False)
            scores.append((m["nrmse"], m["ssim_amplitude"]))
        out[f"t{t}"] = {"nrmse": float(np.mean([v[0] for v in scores])),
                        "ssim_amplitude": float(np.mean([v[1] for v in scores]))}
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
            "wall_s": stat("wall_s"),
            "nrmse_scanned": stat("nrmse_scanned") if "nrmse_scanned" in c[0] else None,
            "ssim_scanned": stat("ssim_scanned") if "ssim_scanned" in c[0] else None,
            "error_ratio": float(np.mean([x["error"] / x["truth_error"] for x in c]))
            if all("truth_error" in x for x in c) else float("nan")}


def _pm(value: tuple[float, float] | None) -> str:
    return "–" if value is None else f"{value[0]:.3f} ± {value[1]:.3f}"


def label(method: str, settings: dict) -> str:
    """Row label: for the diffusion engine, the settings that differ from the defaults
    (posterior samples averaged, annealed data consistency, polish, final denoising,
    another prior)."""
    if method == "bound":
        return "bound: truth in the scanned box, its mean outside"
    if method != "diffusion":
        return method
    parts = [method]
    if int(settings.get("samples", 1)) > 1:
        parts.append(f"mean of {settings['samples']}")
    if float(settings.get("dc_noise", 0.0)) > 0:
        parts.append(f"κ {settings['dc_noise']:g}")
    if int(settings.get("polish", 100)) != 100:
        parts.append(f"polish {settings['polish']}")
    if int(settings.get("final_denoise", 0)) > 0:
        parts.append(f"denoise t {settings['final_denoise']}×{settings.get('final_draws', 4)}")
    if float(settings.get("final_noise", 0.0)) > 0:
        parts.append(f"adaptive denoise σ₀ {settings['final_noise']:g}"
                     f"×{settings.get('final_draws', 4)}")
    if int(settings.get("final_refit", 0)) > 0:
        parts.append(f"refit {settings['final_refit']}")
    if int(settings.get("method_seed_offset", 0)):
        parts.append(f"method seed +{settings['method_seed_offset']}")
    if settings.get("prior"):
        parts.append(f"prior {settings.get('prior_label') or settings['prior']}")
    return ", ".join(parts)


def pooled(results: list[dict]) -> tuple[list[dict], list[dict], list[dict | None]]:
    """Rows of all result files pooled by (overlap, method, scan), objects split over
    processes (``--object-range``) joined again; plus the generalisation runs and the
    raster rows they are compared with, pooled the same way."""
    groups: dict[tuple, dict] = {}
    gen: dict[tuple, dict] = {}
    for res in results:
        settings = res.get("settings", {})
        for r in res["rows"]:
            method = label(r["method"], settings)
            key = (r["overlap"], method, r.get("scan", "raster"))
            groups.setdefault(key, {**r, "method": method, "cases": []}
                              )["cases"].extend(r["cases"])
        g = res.get("generalisation")
        if g:
            method = label("diffusion", settings)
            gen.setdefault((g["overlap"], g["scan"], method),
                           {**g, "method": method, "cases": []})["cases"].extend(g["cases"])
    # compared with the pooled raster rows of the same overlap and method (any file)
    base = [groups.get((g["overlap"], g["method"], "raster")) for g in gen.values()]
    return list(groups.values()), list(gen.values()), base


def table(results: list[dict]) -> str:
    """Markdown table of merged results (generalisation runs as extra rows)."""
    main_rows, gen_rows, base_rows = pooled(results)
    rows = [summary_row(r) for r in main_rows + gen_rows]
    rows.sort(key=lambda r: (r["overlap"], r["scan"] != "raster", r["scan"],
                             r["method"]))
    lines = ["| overlap | scan | positions | method | n | NRMSE | SSIM (amplitude) | "
             "NRMSE, scanned box | SSIM, scanned box | E / E(truth) | wall s / object |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['overlap']:.0%} | {r['scan']} | {r['positions']} | {r['method']} | "
                     f"{r['n']} | "
                     f"{r['nrmse'][0]:.3f} ± {r['nrmse'][1]:.3f} | "
                     f"{r['ssim_amplitude'][0]:.3f} ± {r['ssim_amplitude'][1]:.3f} | "
                     f"{_pm(r['nrmse_scanned'])} | {_pm(r['ssim_scanned'])} | "
                     f"{r['error_ratio']:.2f} | {r['wall_s'][0]:.1f} |")
    for g, b in zip(gen_rows, base_rows, strict=True):
        if b is None:  # merge with the file holding the raster rows to compare
            continue
        a = np.mean([x["nrmse"] for x in b["cases"]])
        c = np.mean([x["nrmse"] for x in g["cases"]])
        lines.append(f"\nGeneralisation of {g['method']} at {g['overlap']:.0%} "
                     f"({len(g['cases'])} objects, "
                     f"{len(b['cases'])} raster): "
                     f"raster NRMSE {a:.3f}, {g['scan']} (new positions) {c:.3f}, "
                     f"change {abs(a - c):.3f}")
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
    p.add_argument("--zeta", type=float, default=0.0, help="DPS gradient step")
    p.add_argument("--dc-steps", type=int, default=3, help="data-consistency steps per step")
    p.add_argument("--polish", type=int, default=100, help="final AWF iterations")
    p.add_argument("--samples", type=int, default=1, help="posterior samples averaged")
    p.add_argument("--dc-noise", type=float, default=0.0,
                   help="κ of the annealed data-consistency weight (0 = full steps)")
    p.add_argument("--final-denoise", type=int, default=0,
                   help="timestep of a final Tweedie denoising (0 = off)")
    p.add_argument("--final-draws", type=int, default=4)
    p.add_argument("--final-noise", type=float, default=0.0,
                   help="σ0 of the illumination-adaptive final denoising (0 = off)")
    p.add_argument("--final-refit", type=int, default=0,
                   help="AWF iterations after the final denoising")
    p.add_argument("--prior", default="", help="prior file/folder (default: shipped)")
    p.add_argument("--prior-label", default="", help="short name of --prior in row labels")
    p.add_argument("--method-seed-offset", type=int, default=0,
                   help="added to each case's seed for the method only (the scan keeps its)")
    p.add_argument("--travel", type=int, default=5)
    p.add_argument("--travel-every", type=int, default=10)
    p.add_argument("--scan", default="raster", help="scan kind of the main rows")
    p.add_argument("--generalisation", action="store_true")
    p.add_argument("--gen-scan", default="jitter:2",
                   help="new positions: 'jitter:SIGMA' (same raster, moved) or 'spiral'")
    p.add_argument("--skip-main", action="store_true",
                   help="only the generalisation run (merge with a file that has the rows)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="also write the raw results here")
    p.add_argument("--merge", nargs="+", help="merge result JSON files instead of measuring")
    p.add_argument("--denoise-truth", action="store_true",
                   help="only score the prior's final denoising of the true objects")
    args = p.parse_args()
    if args.denoise_truth:
        print(json.dumps(denoise_truth(args)))
        return
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
