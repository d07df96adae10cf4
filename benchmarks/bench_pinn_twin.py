"""PtychoPINN ablation check: are a model's patches the truth or its inversion twin?

Without the overlap constraint (``basic_pinn``) each pattern alone cannot tell an object
patch from its twin, the complex conjugate inverted about the probe centre (for a
centrosymmetric probe both give the same diffraction). On a held-out grouped-grid Lines
scan this compares every predicted patch with the true patch and with its twin
(probe-weighted mean absolute error after removing each patch's constant phase, which the
loss cannot see; the twin is tried with and without a one-pixel shift, the inversion
centre of an even grid) and prints the fraction of patches closer to the twin.

Example (docs/benchmarks.md, "PtychoPINN")::

    python benchmarks/bench_pinn_twin.py MODEL.pt [MODEL.pt ...]
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def twin_check(model_path: str, seed: int = 100) -> dict[str, Any]:
    """Mean patch errors against the truth and the twin, and the fraction nearer the twin."""
    import torch

    from napari_ptycho.engines._pinn_data import prepare_scan
    from napari_ptycho.engines.pinn import truth_patches
    from napari_ptycho.nn.pinn_model import load_model, probe_weight
    from napari_ptycho.training.pinn import simulate_scan

    data = simulate_scan("sim:lines", 128, "grouped", photons=1e9, seed=seed)
    model, _ = load_model(model_path)
    n = model.arch.n
    scan = prepare_scan(data, n, model.arch.k)
    w = probe_weight(scan.probe, n // 2)
    g = scan.groups
    with torch.no_grad():
        pred = model.patches(scan.inputs[g]).reshape(-1, n // 2, n // 2)
    true = truth_patches(scan, g.reshape(-1), n // 2)

    def err(a: Any, b: Any) -> Any:
        c = (a * b.conj() * w).sum(dim=(-2, -1), keepdim=True)
        a = a * torch.exp(-1j * torch.angle(c))
        return ((a - b).abs() * w).sum(dim=(-2, -1)) / w.sum()

    e_true = err(pred, true)
    flipped = torch.flip(true, dims=(-2, -1)).conj()
    e_twin = torch.minimum(err(pred, flipped),
                           err(pred, torch.roll(flipped, (1, 1), dims=(-2, -1))))
    return {"model": model_path, "patches": int(len(pred)),
            "error_vs_truth": float(e_true.mean()), "error_vs_twin": float(e_twin.mean()),
            "fraction_closer_to_twin": float((e_twin < e_true).float().mean())}


def main() -> None:
    """Print one JSON line per model."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+")
    p.add_argument("--seed", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    for path in args.models:
        print(json.dumps(twin_check(path, args.seed)), flush=True)


if __name__ == "__main__":
    main()
