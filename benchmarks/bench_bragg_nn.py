"""Benchmark the Bragg networks (AutoPhaseNN + ER, 3D-CDI-NN + AD) against ER/HIO.

Simulated part: ``--crystals`` test crystals ``simulate_bragg(size=32, seed=s)`` with seeds
0, 1, … (training uses seeds ≥ 100 000, so none of these were seen). Per crystal:

* the networks alone: amplitude SSIM against the truth (``metrics.evaluate``: shift, twin
  and global phase removed), χ², wall time of input preparation + forward pass (weights
  already loaded, after one warm-up);
* AutoPhaseNN + 50 ER (the paper's predicted support; with shrink-wrap; with the support
  grown by 1 or 2 voxels), 3D-CDI-NN + AD refinement and the 600-iteration
  ``(20ER+160HIO+20ER)*3`` baseline (one start, no held-out voxels so that every method
  fits the same voxels): χ², time, and for every method the complex NRMSE and phase MAE
  against the truth (``metrics.evaluate(scale=True, ramp=True)``: shift, twin, global
  phase, scale and phase ramp removed).

χ² is ``metrics.chi2(bragg_intensity(obj), I)`` for every method. Every run is timed twice:
wall seconds and process CPU seconds (``time.process_time``; with ``--threads 1`` this is
the single thread's work, steady on a shared machine where wall time is not); the time
ratios to the baseline are per-crystal ratios (same crystal, same run), then the median.
The network time is input preparation + forward pass (``nn_seconds`` / ``nn_cpu_seconds``
of the engine), weights loaded and the network frozen for inference beforehand.

Real part: every method on ``ft_crop_64.tif`` (64³, networks via ``resize="bin"``) and
``ft_downsampled_32.npy`` (32³, intensity = amplitude²).

Usage::

    python benchmarks/bench_bragg_nn.py [--crystals 20] [--threads 1] [--skip cdinn] \
        [--no-real] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "bcdi_3dcdinn_64"


def _chi2(obj: np.ndarray, intensity: np.ndarray) -> float:
    from napari_ptycho.metrics import chi2
    from napari_ptycho.physics.bragg import bragg_intensity

    return chi2(bragg_intensity(obj.astype(np.complex64)), intensity)


def _crystal_box(truth: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    """Bounding box of the true crystal (amplitude > 10 % of max) grown by ``margin``:
    SSIM over the whole box is dominated by empty voxels, this one by the crystal."""
    idx = np.nonzero(np.abs(truth) > 0.1 * np.abs(truth).max())
    return tuple(slice(max(int(i.min()) - margin, 0), min(int(i.max()) + margin + 1, n))
                 for i, n in zip(idx, truth.shape, strict=True))


def _run(data: Any, method: str, **kw: Any) -> tuple[Any, float, float]:
    """(result, wall seconds, process CPU seconds) of one ``reconstruct`` call."""
    from napari_ptycho.engines import reconstruct

    t0, c0 = time.perf_counter(), time.process_time()
    res = reconstruct(data, method, **kw)
    return res, time.perf_counter() - t0, time.process_time() - c0


METHODS: dict[str, dict[str, Any]] = {
    "autophasenn_nn": {"method": "autophasenn", "iterations": 0},
    "cdinn_nn": {"method": "cdinn", "iterations": 0},
    "autophasenn+50er": {"method": "autophasenn", "iterations": 50},
    "autophasenn+50er_sw10": {"method": "autophasenn", "iterations": 50,
                              "shrinkwrap_every": 10},
    "autophasenn+50er_dil1": {"method": "autophasenn", "iterations": 50,
                              "support_dilation": 1},
    "autophasenn+50er_dil2": {"method": "autophasenn", "iterations": 50,
                              "support_dilation": 2},
    "autophasenn+50er_dil2_sw10": {"method": "autophasenn", "iterations": 50,
                                   "support_dilation": 2, "shrinkwrap_every": 10},
    "cdinn+ad100": {"method": "cdinn", "iterations": 100},
    "er_hio_600": {"method": "er_hio", "free_fraction": 0.0},
}


def simulated(n: int, skip: set[str]) -> list[dict[str, Any]]:
    """One row per crystal: χ², time and (networks alone) SSIM per method."""
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.physics.simulate import simulate_bragg

    warm = simulate_bragg(size=32, seed=10_000)
    for m in {"autophasenn", "cdinn"} - skip:
        _run(warm, m, iterations=2)  # load weights, first-call (autograd, FFT) overheads
    rows = []
    for seed in range(n):
        data = simulate_bragg(size=32, seed=seed)
        row: dict[str, Any] = {"seed": seed}
        for key, spec in METHODS.items():
            if spec["method"] in skip:
                continue
            kw = {k: v for k, v in spec.items() if k != "method"}
            res, seconds, cpu = _run(data, spec["method"], **kw)
            row[f"{key}_chi2"] = _chi2(res.object, data.intensity)
            nn_only = key.endswith("_nn")
            row[f"{key}_s"] = res.extras["nn_seconds"] if nn_only else seconds
            row[f"{key}_cpu"] = res.extras["nn_cpu_seconds"] if nn_only else cpu
            # fidelity against the truth: a looser support can lower χ² by fitting noise
            # with a wrong object, so χ² alone does not say a refinement is better
            fid = evaluate(res.object, data.truth_object, scale=True, ramp=True)
            row[f"{key}_nrmse"], row[f"{key}_phase_mae"] = fid["nrmse"], fid["mae_phase"]
            if key.endswith("_nn"):
                row[f"{key}_ssim"] = evaluate(res.object, data.truth_object)["ssim_amplitude"]
                row[f"{key}_ssim_box"] = evaluate(res.object, data.truth_object,
                                                  region=_crystal_box(data.truth_object)
                                                  )["ssim_amplitude"]
        rows.append(row)
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v
                          for k, v in row.items()}), flush=True)
    return rows


def real(skip: set[str]) -> dict[str, dict[str, float]]:
    """χ² and seconds of every 3D method on the 3D-CDI-NN example data."""
    from napari_ptycho import io
    from napari_ptycho.data import BraggData

    out: dict[str, dict[str, float]] = {}
    if not DATA.is_dir():
        print(f"skipping real data: {DATA} not found")
        return out
    vol64 = io.load(DATA / "ft_crop_64.tif")
    vol32 = BraggData(np.load(DATA / "ft_downsampled_32.npy").astype(np.float32) ** 2,
                      metadata={"name": "ft_downsampled_32"})
    runs = {"er": {}, "hio": {}, "raar_3d": {}, "er_hio": {"free_fraction": 0.0},
            "autophasenn": {}, "cdinn": {}}
    for label, data, resize in (("ft_crop_64", vol64, "bin"),
                                ("ft_downsampled_32", vol32, "none")):
        for method, kw in runs.items():
            if method in skip:
                continue
            if method in ("autophasenn", "cdinn"):
                kw = {"resize": resize}
            try:
                res, seconds, _ = _run(data, method, **kw)
            except ValueError as exc:
                print(f"{label} {method}: {exc}")
                continue
            out[f"{label}/{method}"] = {"chi2": _chi2(res.object, data.intensity),
                                        "seconds": seconds}
    return out


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Distributions and goal checks over the simulated crystals."""
    def stats(key: str) -> dict[str, float]:
        v = np.array([r[key] for r in rows])
        return {"median": float(np.median(v)), "p10": float(np.percentile(v, 10)),
                "p90": float(np.percentile(v, 90)), "mean": float(v.mean())}

    s: dict[str, Any] = {k: stats(k) for k in rows[0] if k != "seed"}
    keys = [k for k in METHODS if f"{k}_chi2" in rows[0]]
    if "er_hio_600_chi2" not in rows[0]:
        return s
    base = np.array([r["er_hio_600_chi2"] for r in rows])

    def ratio(key: str, clock: str) -> float:
        """Median over crystals of the method's time / the baseline's, same crystal."""
        return float(np.median(np.array([r[f"{key}_{clock}"] / r[f"er_hio_600_{clock}"]
                                         for r in rows])))

    for key in [k for k in keys if "+" in k]:
        s[f"{key}_beats_baseline_fraction"] = float(np.mean(
            np.array([r[f"{key}_chi2"] for r in rows]) <= base))
    for key in [k for k in keys if "+" in k or k.endswith("_nn")]:
        s[f"{key}_time_ratio_median"] = ratio(key, "s")
        s[f"{key}_cpu_ratio_median"] = ratio(key, "cpu")
    return s


def main() -> None:
    """Run, print the JSON and a Markdown table."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default="")
    parser.add_argument("--no-real", action="store_true")
    parser.add_argument("--skip", default="", help="comma-separated method names to leave out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    skip = {w for w in args.skip.split(",") if w}
    rows = simulated(args.crystals, skip)
    result = {"threads": args.threads, "crystals": args.crystals, "rows": rows,
              "summary": summarise(rows), "real": {} if args.no_real else real(skip)}
    print(json.dumps({"summary": result["summary"], "real": result["real"]}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    s = result["summary"]
    print("\n| method | χ² median [p10, p90] | amp. SSIM, whole box | amp. SSIM, crystal box "
          "| NRMSE median | phase MAE median | seconds median (wall) | CPU seconds median |")
    print("|---|---|---|---|---|---|---|---|")

    def fmt(d: dict[str, float] | None) -> str:
        return f"{d['median']:.3f} [{d['p10']:.3f}, {d['p90']:.3f}]" if d else "–"

    for key in [k for k in METHODS if f"{k}_chi2" in s]:
        c, t = s[f"{key}_chi2"], s[f"{key}_s"]
        print(f"| {key} | {c['median']:.4f} [{c['p10']:.4f}, {c['p90']:.4f}] | "
              f"{fmt(s.get(f'{key}_ssim'))} | {fmt(s.get(f'{key}_ssim_box'))} | "
              f"{s[f'{key}_nrmse']['median']:.3f} | {s[f'{key}_phase_mae']['median']:.3f} | "
              f"{t['median']:.4f} | {s[f'{key}_cpu']['median']:.4f} |")
    for key in [k for k in METHODS if f"{k}_beats_baseline_fraction" in s]:
        print(f"{key}: χ² <= baseline on {100 * s[f'{key}_beats_baseline_fraction']:.0f} % "
              f"of crystals")
    for key in [k for k in METHODS if f"{k}_cpu_ratio_median" in s]:
        print(f"{key}: time / 600 ER/HIO, CPU {s[f'{key}_cpu_ratio_median']:.4f}, wall "
              f"{s[f'{key}_time_ratio_median']:.4f}")
    if result["real"]:
        print("\n| real data / method | χ² | seconds |\n|---|---|---|")
        for key, v in result["real"].items():
            print(f"| {key} | {v['chi2']:.4f} | {v['seconds']:.2f} |")


if __name__ == "__main__":
    main()
