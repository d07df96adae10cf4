"""What the Bragg networks cost on this CPU at the shipped and at the papers' sizes.

Issue #6 asks for two things at once: the network's prediction at ≤ 0.01 of the
600-iteration ER/HIO baseline's time (same machine, same run), and a prediction good enough
that 50 ER iterations from it reach the baseline's χ² on ≥ 80 % of crystals. This script
measures the first side for every size: for each network it reports the parameter count,
the forward pass (frozen for oneDNN on CPU, exactly as the engines predict; median of
``--repeats`` after a warm-up), its ratio to the baseline timed in the same run, and the
time of one training step (forward, the unsupervised Fourier loss, backward, Adam; batch
``--batch``). From that it gives the CPU hours the shipped AutoPhaseNN's number of
optimiser steps (``SHIPPED_STEPS``, from its card) would take at each size.

All times are process CPU seconds of one thread (``--threads``), steady on a shared
machine; wall seconds are printed beside them.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/bench_bragg_nn_sizes.py [--threads 1] \
        [--repeats 20] [--batch 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_bragg_nn import METHODS, _run  # noqa: E402  (the same baseline, the same clock)

#: Optimiser steps behind the shipped AutoPhaseNN weights (card: 171 epochs × 125 steps,
#: then 114 epochs × 250 steps, batch 8).
SHIPPED_STEPS = 171 * 125 + 114 * 250

#: (name, network kind, spec fields) — the shipped sizes first, then the papers'.
NETWORKS: list[tuple[str, str, dict[str, Any]]] = [
    ("AutoPhaseNN lean, 8 ch, 32³ (shipped)", "autophasenn",
     {"size": 32, "base_channels": 8, "variant": "lean"}),
    ("AutoPhaseNN lean, 16 ch, 32³", "autophasenn",
     {"size": 32, "base_channels": 16, "variant": "lean"}),
    ("AutoPhaseNN lean, 32 ch, 32³", "autophasenn",
     {"size": 32, "base_channels": 32, "variant": "lean"}),
    ("AutoPhaseNN plain, 4 ch, 32³ (shipped before)", "autophasenn",
     {"size": 32, "base_channels": 4, "variant": "plain"}),
    ("AutoPhaseNN plain, 32 ch, 32³", "autophasenn",
     {"size": 32, "base_channels": 32, "variant": "plain"}),
    ("AutoPhaseNN plain, 32 ch, 64³ in / 32³ box (paper)", "autophasenn",
     {"size": 64, "base_channels": 32, "variant": "plain"}),
    ("3D-CDI-NN, 4 ch, 32³ (shipped)", "cdinn", {"size": 32, "base_channels": 4}),
    ("3D-CDI-NN, 32 ch, 32³ (paper)", "cdinn", {"size": 32, "base_channels": 32}),
]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def baseline_seconds(size: int) -> tuple[float, float]:
    """(wall, CPU) seconds of ``bench_bragg_nn.py``'s 600-iteration ER/HIO baseline (its
    ``METHODS["er_hio_600"]``, timed by its ``_run``) on one simulated crystal."""
    from napari_ptycho.physics.simulate import simulate_bragg

    spec = dict(METHODS["er_hio_600"])
    method = spec.pop("method")
    data = simulate_bragg(size=size, seed=0)
    _run(data, method, **{**spec, "iterations": 20})  # first-call overheads
    _, wall, cpu = _run(data, method, **spec)
    return wall, cpu


def _build(kind: str, fields: dict[str, Any]) -> Any:
    if kind == "cdinn":
        from napari_ptycho.nn.cdinn import CDINN, CDINNSpec

        spec = CDINNSpec(**fields)
        spec.validate()
        return CDINN(spec), spec
    from napari_ptycho.nn.autophasenn import AutoPhaseNNSpec, build_network

    spec = AutoPhaseNNSpec(**fields)
    spec.validate()
    return build_network(spec), spec


def measure(kind: str, fields: dict[str, Any], repeats: int, batch: int) -> dict[str, Any]:
    """Parameters, frozen forward (median wall / CPU s) and one training step (CPU s)."""
    import torch

    from napari_ptycho.nn.autophasenn import fourier_amplitude_loss
    from napari_ptycho.nn.autophasenn_lean import inference_module

    model, spec = _build(kind, fields)
    n = spec.size
    params = sum(p.numel() for p in model.parameters())
    runner = inference_module(model, n, "cpu")
    x = torch.rand(1, 1, n, n, n)
    walls, cpus = [], []
    with torch.no_grad():
        runner(x)
        for _ in range(repeats):
            w0, c0 = _clock()
            runner(x)
            w1, c1 = _clock()
            walls.append(w1 - w0)
            cpus.append(c1 - c0)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    xb = torch.rand(batch, n, n, n)
    step_cpu = []
    for i in range(3):
        c0 = time.process_time()
        amp, phase = model(xb[:, None])
        # the shapes differ (AutoPhaseNN's box is padded to n³ inside forward): the loss
        # is the one AutoPhaseNN trains with; 3D-CDI-NN's own adds cheap MAE terms
        loss = fourier_amplitude_loss(amp, phase, xb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step allocates; keep the steady ones
            step_cpu.append(time.process_time() - c0)
    return {"parameters": params, "size": n, "forward_wall_s": statistics.median(walls),
            "forward_cpu_s": statistics.median(cpus), "train_step_cpu_s": min(step_cpu),
            "batch": batch}


def main() -> None:
    """Run every size, print the JSON and a Markdown table."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--json", default="")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    base = {n: baseline_seconds(n) for n in (32, 64)}
    rows = []
    for name, kind, fields in NETWORKS:
        row = {"network": name, **measure(kind, fields, args.repeats, args.batch)}
        row["ratio_cpu"] = row["forward_cpu_s"] / base[row["size"]][1]
        row["hours_for_shipped_steps"] = row["train_step_cpu_s"] * SHIPPED_STEPS / 3600
        rows.append(row)
        print(json.dumps(row), flush=True)
    result = {"threads": args.threads, "baseline_wall_cpu_s": base, "rows": rows,
              "shipped_steps": SHIPPED_STEPS}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"\nbaseline 600 ER/HIO, CPU s: 32³ {base[32][1]:.3f}, 64³ {base[64][1]:.3f} "
          f"(wall {base[32][0]:.3f}, {base[64][0]:.3f})")
    print("\n| network | parameters | forward, CPU ms (wall) | forward / baseline | train "
          f"step, batch {args.batch}, CPU s | CPU h for {SHIPPED_STEPS} steps |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['parameters']:,} | {1e3 * r['forward_cpu_s']:.1f} "
              f"({1e3 * r['forward_wall_s']:.1f}) | {r['ratio_cpu']:.4f} | "
              f"{r['train_step_cpu_s']:.2f} | {r['hours_for_shipped_steps']:.1f} |")


if __name__ == "__main__":
    main()
