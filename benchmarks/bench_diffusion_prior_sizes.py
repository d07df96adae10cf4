"""What training the diffusion prior costs on this CPU, at the shipped and at larger sizes.

The shipped prior (``weights/diffusion_prior.json``) is a 0.45 M-parameter U-Net on 32²
patches that had 11 419 optimiser steps of batch 16 (107 CPU minutes). This script times
one training step (noise-prediction MSE, backward, AdamW; ``--batch``) of that U-Net and of
larger ones — on the 32² patches, and on whole 128² objects (the issue's object size, so
no tiling) — and one noise prediction over a 128² object (the work of one reverse
diffusion step; 32² patches tile it, see docs/diffusion.md). It then gives the CPU hours
of ``--steps`` optimiser steps at each size (default 800 000 at batch 128 scaled to
``--batch``: the CIFAR-10 schedule of Ho et al. 2020, the DDPM paper the prior follows).

Times are process CPU seconds of ``--threads`` threads.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_diffusion_prior_sizes.py [--threads 1] \
        [--batch 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

#: (name, patch side, U-Net fields)
PRIORS: list[tuple[str, int, dict[str, Any]]] = [
    ("shipped: 32² patches, base 24", 32,
     {"base": 24, "mults": (1, 2, 2), "attention_levels": (2,)}),
    ("32² patches, base 64", 32, {"base": 64, "mults": (1, 2, 2), "attention_levels": (2,)}),
    ("128² objects, base 32, 5 levels", 128,
     {"base": 32, "mults": (1, 1, 2, 2, 4), "attention_levels": (3, 4)}),
    ("128² objects, base 64, 5 levels (DDPM-like)", 128,
     {"base": 64, "mults": (1, 1, 2, 2, 4), "attention_levels": (3, 4)}),
]


def measure(size: int, fields: dict[str, Any], batch: int) -> dict[str, Any]:
    """Parameters, one training step and one 128²-object noise prediction (CPU s)."""
    import torch

    from napari_ptycho.nn.ddpm import Schedule, training_loss
    from napari_ptycho.nn.unet import UNet, UNetConfig

    model = UNet(UNetConfig(**fields))
    params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    schedule = Schedule.linear()
    x0 = torch.rand(batch, 2, size, size) * 2 - 1
    steps = []
    for i in range(3):
        c0 = time.process_time()
        loss = training_loss(model, x0, schedule)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:
            steps.append(time.process_time() - c0)
    model.eval()
    # a 128² object: 16 non-overlapping 32² tiles for the patch priors, one image otherwise
    x = torch.rand(16, 2, 32, 32) if size == 32 else torch.rand(1, 2, 128, 128)
    t = torch.full((x.shape[0],), 500)
    with torch.no_grad():
        model(x, t)
        c0 = time.process_time()
        model(x, t)
        predict = time.process_time() - c0
    return {"size": size, "parameters": params, "train_step_cpu_s": min(steps),
            "predict_128_cpu_s": predict, "batch": batch}


def main() -> None:
    """Time every size, print the JSON and a Markdown table."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=0,
                        help="optimiser steps to cost (0: 800 000 × 128 / batch)")
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    steps = args.steps or 800_000 * 128 // args.batch
    rows = []
    for name, size, fields in PRIORS:
        row = {"prior": name, **measure(size, fields, args.batch)}
        row["cpu_hours"] = row["train_step_cpu_s"] * steps / 3600
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": args.threads, "steps": steps,
                                               "rows": rows}, indent=1))
    print(f"\n| prior | parameters | train step, batch {args.batch}, CPU s | one noise "
          f"prediction over 128², CPU s | CPU h for {steps:,} steps |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prior']} | {r['parameters']:,} | {r['train_step_cpu_s']:.2f} | "
              f"{r['predict_128_cpu_s']:.3f} | {r['cpu_hours']:,.0f} |")


if __name__ == "__main__":
    main()
