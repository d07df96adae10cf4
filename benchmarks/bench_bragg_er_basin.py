"""How good must a start be for 50 ER iterations to reach the noise floor? (issue #6)

On the benchmark's test crystals ``simulate_bragg(size=32, seed=s)``, 50 ER iterations
(fixed support, no shrink-wrap, the same engine as ``autophasenn``) start from the truth
degraded in one controlled way at a time:

* smooth phase errors (Gaussian-filtered noise, σ = 2 voxels) of a given mean absolute
  value inside the crystal, true support;
* a flat amplitude inside the true support (only the phase kept, with 0.2 rad error);
* the true amplitude blurred (σ = 1 voxel), with 0.2 rad error;
* the support eroded, dilated or shifted by one voxel (0.2 rad phase error).

It prints, per case, the median and worst χ² after 50 ER (χ² of the truth itself is the
Poisson floor, about 8e-5 at 10⁸ photons) as JSON and a Markdown table.

``--network N`` also scores the shipped AutoPhaseNN's predictions on crystals 0…N−1: the
truth is brought into the prediction's frame (twin or not, integer shift within ±4 voxels,
best amplitude correlation), then the fraction of the true support (amplitude > 10 %)
inside the predicted support, grown by 0, 1, 2 voxels, and whether the complex field
prefers the other twin than the amplitude does (``metrics.evaluate``).

Usage::

    python benchmarks/bench_bragg_er_basin.py [--crystals 8] [--threads 1] [--network 20]
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def _er50(data: Any, obj: np.ndarray, support: np.ndarray) -> float:
    from napari_ptycho.engines.base import Snapshot
    from napari_ptycho.engines.phase_retrieval import ER, ERConfig
    from napari_ptycho.metrics import chi2
    from napari_ptycho.physics.bragg import bragg_intensity

    cfg = ERConfig(iterations=50, update_every=50, free_fraction=0.0, shrinkwrap_every=0)
    start = Snapshot(iteration=0, total=50, object=(obj * support).astype(np.complex64),
                     extras={"support": support})
    final = list(ER().run(data, cfg, start))[-1]
    return chi2(bragg_intensity(final.object), data.intensity)


def cases(truth: np.ndarray, rng: np.random.Generator) -> dict[str, tuple[np.ndarray, Any]]:
    """Degraded starts ``{name: (object, support)}`` of one crystal."""
    from scipy import ndimage as ndi

    amp = np.abs(truth)
    sup = amp > 0.1 * amp.max()

    def phase_error(mae: float) -> np.ndarray:
        noise = ndi.gaussian_filter(rng.standard_normal(truth.shape), 2.0)
        return noise * (mae / np.abs(noise[sup]).mean())

    out: dict[str, tuple[np.ndarray, Any]] = {}
    for mae in (0.1, 0.2, 0.3, 0.5):
        out[f"phase error {mae} rad, true support"] = (truth * np.exp(1j * phase_error(mae)),
                                                        sup)
    e = np.exp(1j * phase_error(0.2))
    out["flat amplitude, 0.2 rad"] = (sup * np.exp(1j * np.angle(truth)) * e, sup)
    out["amplitude blurred σ=1, 0.2 rad"] = (ndi.gaussian_filter(amp, 1.0)
                                              * np.exp(1j * np.angle(truth)) * e, sup)
    out["support eroded 1 voxel, 0.2 rad"] = (truth * e, ndi.binary_erosion(sup))
    out["support dilated 1 voxel, 0.2 rad"] = (truth * e, ndi.binary_dilation(sup))
    out["support shifted 1 voxel, 0.2 rad"] = (truth * e, np.roll(sup, 1, 0))
    return out


def support_coverage(seed: int) -> dict[str, Any]:
    """How the shipped AutoPhaseNN's support and twin relate to the truth (module doc)."""
    from scipy import ndimage as ndi

    from napari_ptycho.engines.autophasenn import network_prediction
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.physics.simulate import simulate_bragg

    data = simulate_bragg(size=32, seed=seed)
    truth = data.truth_object
    obj, sup, _ = network_prediction(data, "autophasenn", "", "none", "cpu", 0.1)
    pa = np.abs(obj)
    best = (-1.0, 0, np.zeros(1))
    for twin in (0, 1):
        ta = np.abs(np.roll(truth[::-1, ::-1, ::-1], 1, axis=(0, 1, 2)) if twin else truth)
        for sh in np.ndindex(9, 9, 9):
            r = np.roll(ta, tuple(np.array(sh) - 4), axis=(0, 1, 2))
            c = float(np.sum(r * pa) / np.sqrt(np.sum(r * r) * np.sum(pa * pa)))
            if c > best[0]:
                best = (c, twin, r)
    corr, twin, r = best
    true_sup = r > 0.1 * r.max()
    cover = [float((true_sup & (ndi.binary_dilation(sup, iterations=k) if k else sup)).sum()
                   / true_sup.sum()) for k in (0, 1, 2)]
    return {"seed": seed, "amplitude_corr": corr, "true_support": int(true_sup.sum()),
            "predicted_support": int(sup.sum()), "covered": cover,
            "twin_mixed": bool(int(evaluate(obj, truth)["twin"]) != twin)}


def main() -> None:
    """Run every case on every crystal; print JSON and a table."""
    import torch

    from napari_ptycho.metrics import chi2
    from napari_ptycho.physics.bragg import bragg_intensity
    from napari_ptycho.physics.simulate import simulate_bragg

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--network", type=int, default=0,
                        help="also score the shipped AutoPhaseNN on this many crystals")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    res: dict[str, list[float]] = {"truth (no ER)": []}
    for seed in range(args.crystals):
        data = simulate_bragg(size=32, seed=seed)
        res["truth (no ER)"].append(chi2(bragg_intensity(data.truth_object), data.intensity))
        for name, (obj, sup) in cases(data.truth_object, rng).items():
            res.setdefault(name, []).append(_er50(data, obj, sup))
    summary = {k: {"median": float(np.median(v)), "max": float(np.max(v))}
               for k, v in res.items()}
    print(json.dumps(summary, indent=1))
    print("\n| start of 50 ER | χ² median | χ² worst |\n|---|---|---|")
    for k, v in summary.items():
        print(f"| {k} | {v['median']:.1e} | {v['max']:.1e} |")
    if args.network:
        rows = [support_coverage(seed) for seed in range(args.network)]
        print(json.dumps(rows))
        print("\n| seed | amplitude corr. | true / predicted support | covered (dil 0/1/2) "
              "| twin mixed |\n|---|---|---|---|---|")
        for r in rows:
            cov = " / ".join(f"{c:.2f}" for c in r["covered"])
            print(f"| {r['seed']} | {r['amplitude_corr']:.3f} | {r['true_support']} / "
                  f"{r['predicted_support']} | {cov} | {'yes' if r['twin_mixed'] else ''} |")


if __name__ == "__main__":
    main()
