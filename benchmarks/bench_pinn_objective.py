"""PtychoPINN diagnostics on ONE small scan: can the unsupervised objective be optimised?

Two experiments on a 128² Lines scan on PtychoPINN's grouped grid (25 groups of 4 × 64²,
1e9 photons), printed as JSON and a table (docs/benchmarks.md, "PtychoPINN"):

* **direct** — no network: Adam on the patches themselves (amplitude logits and phases)
  through the same overlap constraint, probe, far field and Poisson NLL. Reports the NLL
  next to the true patches' NLL and the stitched object's scores, uniform and probe-
  weighted. If the NLL reaches the truth's while the object stays poor, the loss itself
  does not pin the object down (a data/geometry limit, not an optimiser one).
* **gauge** — the network trained the same number of steps with and without the phase
  gauge (``PinnArch.gauge``): the constant phase per group each model settles on and the
  stitched scores.

Example::

    python benchmarks/bench_pinn_objective.py --steps 500 --net-steps 300 \\
        --out /tmp/pinn_objective.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _setup(seed: int, k: int = 4) -> tuple[Any, Any]:
    from napari_ptycho.engines._pinn_data import prepare_scan
    from napari_ptycho.training.pinn import simulate_scan

    data = simulate_scan("sim:lines", 128, "grouped", photons=1e9, seed=seed)
    return data, prepare_scan(data, 64, k)


def _nll(scan: Any, patches: Any) -> Any:
    import torch
    from torch.nn import functional as F

    from napari_ptycho.nn.pinn_model import overlap_constraint

    windows = overlap_constraint(patches, scan.offsets, scan.counts.shape[-1])
    fields = torch.fft.fftshift(torch.fft.fft2(windows * scan.probe, norm="ortho"),
                                dim=(-2, -1))
    pred = scan.probe_power * fields.abs().square()
    return F.poisson_nll_loss(pred, scan.counts[scan.groups], log_input=False, eps=1e-6)


def _scores(data: Any, scan: Any, patches: Any) -> dict[str, float]:
    from bench_pinn import score
    from napari_ptycho.nn.pinn_model import probe_weight, stitch

    flat = patches.reshape(-1, *patches.shape[-2:])
    pos = scan.positions[scan.groups.reshape(-1)]
    out = {}
    for name, weight in (("uniform", None), ("probe", probe_weight(scan.probe, 32))):
        obj, _, _ = stitch(flat, pos, scan.object_shape, 64, weight=weight)
        s = score(obj.numpy(), data)
        out.update({f"{name}_{k}": v for k, v in s.items()})
    return out


def direct(args: argparse.Namespace) -> dict[str, Any]:
    """Adam on the patches themselves through the PINN loss."""
    import torch

    from napari_ptycho.engines.pinn import truth_patches

    data, scan = _setup(args.seed, args.group_size)
    g = scan.groups
    true = truth_patches(scan, g.reshape(-1), 32).reshape(*g.shape, 32, 32)
    logit = torch.zeros(true.shape, requires_grad=True)
    phase = torch.zeros(true.shape, requires_grad=True)
    optimizer = torch.optim.Adam([logit, phase], lr=args.direct_lr)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = _nll(scan, torch.polar(torch.sigmoid(logit), phase))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        patches = torch.polar(torch.sigmoid(logit), phase)
        return {"steps": args.steps, "group_size": args.group_size,
                "seconds": time.perf_counter() - t0,
                "nll": float(_nll(scan, patches)), "nll_truth": float(_nll(scan, true)),
                "nll_flat": float(_nll(scan, torch.ones_like(true) * true.abs().mean())),
                **_scores(data, scan, patches)}


def gauge(args: argparse.Namespace) -> dict[str, Any]:
    """The network with and without the per-group phase gauge, same seed and steps."""
    import torch

    from napari_ptycho.engines.pinn import loss_of, truth_patches
    from napari_ptycho.nn.pinn_model import PinnArch, PinnNet

    data, scan = _setup(args.seed, args.group_size)
    g = scan.groups
    true = truth_patches(scan, g.reshape(-1), 32).reshape(*g.shape, 32, 32)
    out = {}
    for name in ("none", "group"):
        torch.manual_seed(args.seed)
        model = PinnNet(PinnArch(64, args.group_size, args.filters, name, args.phase_limit))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(args.seed)
        scale = torch.tensor(scan.probe_power)
        for _ in range(args.net_steps):
            idx = torch.randperm(len(g), generator=gen)[:16]
            loss = loss_of("pinn", model, scan, idx, scale)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            patches = model.patches(scan.inputs[g])
            # the constant phase of each group relative to the truth (what the loss ignores)
            offset = torch.angle((patches * true.conj()).sum(dim=(1, 2, 3))).numpy()
            out[name] = {"nll": float(_nll(scan, patches)),
                         "group_phase_offset_mean": float(np.mean(offset)),
                         "group_phase_offset_std": float(np.std(offset)),
                         "phase_saturated_fraction": float(
                             (patches.angle().abs() > 0.95 * np.pi).float().mean()),
                         **_scores(data, scan, patches)}
    out["nll_truth"] = float(_nll(scan, true))
    return {"steps": args.net_steps, "filters": args.filters,
            "phase_limit": args.phase_limit, **out}


def main() -> None:
    """Run both experiments; print JSON and a table."""
    import sys

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=500, help="direct optimisation steps")
    p.add_argument("--direct-lr", type=float, default=0.05)
    p.add_argument("--net-steps", type=int, default=300, help="network steps (batch 16)")
    p.add_argument("--filters", type=int, default=16)
    p.add_argument("--phase-limit", type=float, default=float(np.pi),
                   help="phase = limit * tanh(logit) of both networks")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--group-size", type=int, default=4,
                   help="patterns per group K (nearest neighbours; 4 = the 2x2 groups)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    res = {"direct": direct(args), "gauge": gauge(args)}
    text = json.dumps(res, indent=1)
    print(text)
    d = res["direct"]
    rows = [("direct patches", d), ("network, no gauge", res["gauge"]["none"]),
            ("network, group gauge", res["gauge"]["group"])]
    print("| fit | NLL (truth {:.0f}) | amp PSNR uniform / probe | phase PSNR uniform / probe "
          "| lit region: amp PSNR uniform / probe | phase PSNR uniform / probe | "
          "FRC50 phase uniform / probe |".format(d["nll_truth"]))
    print("|---|---|---|---|---|---|---|")
    for name, r in rows:
        cells = [f"{r['uniform_' + k]:.{f}f} / {r['probe_' + k]:.{f}f}" for k, f in (
            ("psnr_amplitude", 1), ("psnr_phase", 1), ("lit_psnr_amplitude", 1),
            ("lit_psnr_phase", 1), ("lit_frc50_phase", 3))]
        print(f"| {name} | {r['nll']:.0f} | " + " | ".join(cells) + " |")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
