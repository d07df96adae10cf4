"""Fidelity of the forward models and the simulator against independent references.

Prints one JSON object and Markdown tables: agreement with Tike's simulated data set,
energy conservation of the propagators, requested vs measured scan overlap, noise
statistics, Friedel symmetry of Bragg patterns and the facet counts of random crystals.

Usage: ``python benchmarks/bench_simulator_fidelity.py [--crystals 40]``
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

TIKE = Path(__file__).resolve().parents[2] / "shared" / "data" / "ptycho_sim_tike" / \
    "ptycho_setup.npz"


def tike_agreement() -> float | None:
    """Max relative difference between our far-field model and Tike's patterns."""
    from napari_ptycho.physics.ptycho import forward_intensity

    if not TIKE.is_file():
        return None
    d = np.load(TIKE)
    ours = forward_intensity(d["psi"][0], d["probe"][0, 0], d["scan"], detector_shape=(32, 32))
    ref = np.fft.fftshift(d["data"], axes=(-2, -1))
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def parseval_errors() -> dict[str, float]:
    """Relative energy change of each propagator on random complex waves."""
    from napari_ptycho.data import Geometry
    from napari_ptycho.physics.propagation import Propagator, farfield, fresnel_propagate

    g = torch.Generator().manual_seed(0)
    wave = torch.complex(torch.randn(8, 48, 48, generator=g), torch.randn(8, 48, 48, generator=g))
    def energy_of(x: torch.Tensor) -> float:
        # float64 sums, so the figure measures the transform and not the summation
        return float(x.to(torch.complex128).abs().square().sum())

    energy = energy_of(wave)
    near = Geometry(energy=12000, distance=1.0, detector_pixel_size=50e-6,
                    detector_shape=(64, 64), near_field=True, propagation_distance=2e-3)
    outputs = {
        "farfield": farfield(wave),
        "farfield_padded": farfield(wave, (64, 64)),
        "fresnel": fresnel_propagate(wave, 50e-9, 1e-10, 1e-3),
        "propagator_near_padded": Propagator((48, 48), (64, 64), near).forward(wave),
    }
    return {k: abs(energy_of(v) / energy - 1) for k, v in outputs.items()}


def overlap_table() -> list[dict[str, float]]:
    """Requested vs measured overlap with the default 64-pixel focused probe, 256² object."""
    from napari_ptycho.physics.probes import make_probe, probe_fwhm
    from napari_ptycho.physics.scans import make_scan, measure_overlap

    probe = make_probe("focused", 64)
    fwhm = probe_fwhm(probe)
    rows = []
    for scan in ("raster", "spiral"):
        for overlap in (0.2, 0.3, 0.5, 0.7, 0.9):
            pos = make_scan(scan, (256, 256), (64, 64), (1 - overlap) * fwhm)
            rows.append({"scan": scan, "requested": overlap, "patterns": len(pos),
                         "measured": measure_overlap(pos, probe)})
    return rows


def noise_statistics() -> dict[str, float]:
    """Variance / expected variance of each noise model on a flat 40-count field."""
    from napari_ptycho.physics.noise import add_noise

    flat = np.full(400_000, 40.0)
    flat[0] = 160.0  # maximum for PtyINR's form: variance I · max / α
    body = slice(1, None)
    return {
        "poisson_var_over_mean": float(add_noise(flat, "poisson", 0)[body].var() / 40),
        "ptyinr_alpha20_var_over_expected": float(
            add_noise(flat, "poisson", 1, alpha=20)[body].var() / (40 * 160 / 20)),
        "gaussian_sigma3_std_over_sigma": float(
            add_noise(flat, "gaussian", 2, sigma=3.0)[body].std() / 3.0),
        "mixed_var_over_expected": float(
            add_noise(flat, "mixed", 3, sigma=3.0)[body].var() / (40 + 9)),
    }


def bragg_checks(n_crystals: int) -> dict[str, float]:
    """Friedel symmetry error (real crystal), asymmetry (strained), facet statistics."""
    from napari_ptycho.physics.bragg import bragg_intensity
    from napari_ptycho.physics.crystals import make_crystal

    def asymmetry(intensity: np.ndarray) -> float:
        mirrored = np.roll(np.flip(intensity), 1, axis=(0, 1, 2))
        return float(np.abs(intensity - mirrored).sum() / intensity.sum())

    real, _ = make_crystal(64, seed=0, strained=False)
    strained, _ = make_crystal(64, seed=0, strained=True)
    facets, oversampling = [], []
    for seed in range(n_crystals):
        _, info = make_crystal(32, seed=seed, oversampling=2.0)
        facets.append(info["facets"])
        oversampling.append(min(info["oversampling"]))
    return {
        "friedel_asymmetry_real": asymmetry(bragg_intensity(real)),
        "friedel_asymmetry_strained": asymmetry(bragg_intensity(strained)),
        "facets_min": int(min(facets)), "facets_max": int(max(facets)),
        "facets_mean": float(np.mean(facets)),
        "oversampling_min_requested_2": float(min(oversampling)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", type=int, default=40)
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = {"tike_max_relative_error": tike_agreement(), "parseval": parseval_errors(),
              "overlap": overlap_table(), "noise": noise_statistics(),
              "bragg": bragg_checks(args.crystals)}
    print(json.dumps(result))
    print("\n| check | value |\n|---|---|")
    tike = result["tike_max_relative_error"]
    print(f"| far field vs Tike (max relative error) | "
          f"{'data absent' if tike is None else f'{tike:.1e}'} |")
    for name, err in result["parseval"].items():
        print(f"| energy change, {name} | {err:.1e} |")
    for name, value in result["noise"].items():
        print(f"| noise: {name} | {value:.3f} |")
    for name, value in result["bragg"].items():
        print(f"| Bragg: {name} | {value:.3g} |")
    print("\n| scan | requested overlap | measured | patterns (256² object, 64² probe) |")
    print("|---|---|---|---|")
    for row in result["overlap"]:
        print(f"| {row['scan']} | {row['requested']:.2f} | {row['measured']:.4f} "
              f"| {row['patterns']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
