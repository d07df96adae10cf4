"""Accuracy and speed of napari_ptycho.metrics (registration, evaluate, FRC, fit metrics).

Prints one JSON object and a Markdown table:

* registration accuracy: worst |estimated − true| shift (pixels) over random sub-pixel
  shifts of a smooth 128² complex object with added complex Gaussian noise of several
  levels (σ per real/imaginary part, the object's mean amplitude being ~0.75);
* evaluate() wall time for 2D (256², with and without a region) and 3D (64³, twin check);
* frc() wall time on 512²;
* fit_metrics χ² of the Tike test set's own truth through our forward model (an
  independent check that the data scores are wired to the right conventions).

The shared 2-core machine is noisy: times are the minimum of the repeats.

Usage: ``python benchmarks/bench_metrics.py [--repeats 3] [--trials 8]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from napari_ptycho.metrics import apply_shift, estimate_shift, evaluate, fit_metrics, frc

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def smooth_object(shape: tuple[int, ...], seed: int, cutoff: float = 0.15) -> np.ndarray:
    """Band-limited complex object with amplitude ~0.75 ± 0.2 and ~1.2 rad of phase."""
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.fft.fftfreq(n) for n in shape], indexing="ij")
    inside = np.sqrt(sum(g ** 2 for g in grids)) < cutoff
    amp = np.fft.ifftn(rng.normal(size=shape) * inside).real
    phase = np.fft.ifftn(rng.normal(size=shape) * inside).real
    obj = (0.75 + 0.2 * amp / np.abs(amp).max()) * np.exp(1.2j * phase / np.abs(phase).max())
    return np.fft.ifftn(np.fft.fftn(obj) * inside).astype(np.complex64)


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up (imports, FFT plans)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def registration_accuracy(trials: int) -> dict[str, float]:
    truth = smooth_object((128, 128), seed=0)
    rng = np.random.default_rng(1)
    out = {}
    for sigma in (0.0, 0.1, 0.3, 1.0):
        worst = 0.0
        for _ in range(trials):
            shift = rng.uniform(-6, 6, size=2)
            noise = sigma * (rng.normal(size=truth.shape) + 1j * rng.normal(size=truth.shape))
            rec = apply_shift(truth, shift) + noise
            worst = max(worst, float(np.abs(estimate_shift(truth, rec) - shift).max()))
        out[f"shift_error_px_sigma_{sigma:g}"] = worst
    return out


def timings(repeats: int) -> dict[str, float]:
    t2 = smooth_object((256, 256), seed=2)
    r2 = apply_shift(t2, (2.3, -1.7)) * np.exp(0.5j)
    region = (slice(32, 224), slice(40, 216))
    t3 = smooth_object((64, 64, 64), seed=3, cutoff=0.2)
    r3 = apply_shift(np.conj(t3[::-1, ::-1, ::-1]), (1.5, -0.5, 2.25))
    big = np.random.default_rng(4).normal(size=(2, 512, 512))
    return {
        "evaluate_2d_256_s": best_time(lambda: evaluate(r2, t2), repeats),
        "evaluate_2d_256_region_s": best_time(lambda: evaluate(r2, t2, region=region),
                                              repeats),
        "evaluate_2d_256_ramp_scale_s": best_time(
            lambda: evaluate(r2, t2, ramp=True, scale=True), repeats),
        "evaluate_3d_64_twin_s": best_time(lambda: evaluate(r3, t3), repeats),
        "frc_2d_512_s": best_time(lambda: frc(big[0], big[1]), repeats),
        "psnr_phase_3d_twin_db": evaluate(r3, t3)["psnr_phase"],
    }


def tike_fit() -> dict[str, float]:
    path = DATA / "ptycho_sim_tike" / "ptycho_setup.npz"
    if not path.is_file():
        return {}
    import torch

    from napari_ptycho import io

    torch.set_num_threads(2)
    data = io.load(path)
    truth = SimpleNamespace(object=data.truth_object, probe=data.truth_probe,
                            positions=data.positions)
    return {f"tike_truth_{k}": v for k, v in fit_metrics(truth, data).items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    results = {**registration_accuracy(args.trials), **timings(args.repeats), **tike_fit()}
    print(json.dumps(results, indent=2))
    print("\n| quantity | value |\n|---|---|")
    for key, value in results.items():
        print(f"| {key} | {value:.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
