"""Can the Bragg networks' phase paths fit a few fixed crystals? (issue #6 bug hunt)

3D-CDI-NN's validation phase MAE stayed at the flat-phase value (0.368 rad) in every epoch
of the shipped training. If the phase path were broken (no gradient, wrong mask, labels
undefined, saturated tanh), no data set could be fitted. This script overfits:

* ``cdinn``: a fresh 3D-CDI-NN (32³, ``--channels`` base channels) on the first
  ``--crystals`` validation-bank crystals (seeds 200 000…), supervised shape + phase MAE,
  Adam 2e-3, ``--steps`` steps, batch = all crystals, one variant at a time:
  ``plain`` (fixed input, 10⁸ photons), ``twin`` (+ twin-invariant loss), ``drop`` (+ the
  shipped 10 % channel dropout), ``noise,twin`` (Poisson noise redrawn per step at
  10⁵–10⁸ photons), ``sym,twin`` (one of the 48 cube symmetries per step, as in training).
  Reports the last training-step phase MAE, the eval-mode shape / phase MAE and the
  spread of the predicted phase inside the crystal (0 = flat).
* ``autophasenn``: the shipped AutoPhaseNN fine-tuned with its own unsupervised loss on
  the benchmark's test crystals 0…n−1 (batch norm frozen, Adam ``--apn-lr``): loss,
  complex NRMSE and phase MAE against the truth (``metrics.evaluate(scale=True,
  ramp=True)``) before and after. A diagnosis only; nothing here is shipped.

Usage::

    python benchmarks/bench_bragg_phase_overfit.py [--crystals 4] [--steps 200] \
        [--variants plain,twin,drop,noise+twin,sym+twin] [--skip-apn]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import numpy as np
import torch


def cdinn_variant(opts: set[str], n: int, steps: int, channels: int) -> dict[str, Any]:
    """Overfit a fresh 3D-CDI-NN on ``n`` fixed crystals; see the module doc."""
    from napari_ptycho.nn.cdinn import CDINN, CDINNSpec, LossWeights, cdinn_loss
    from napari_ptycho.training._crystals import VALID_SEED_OFFSET, make_bank, make_batch

    torch.manual_seed(0)
    bank = make_bank(n, 32, VALID_SEED_OFFSET, (2.1, 3.6), cache=None, log=None)
    fixed = make_batch(bank, np.arange(n), np.random.default_rng(0), photons=(1e8, 1e8),
                       augment=False)
    model = CDINN(CDINNSpec(base_channels=channels, dropout=0.1 if "drop" in opts else 0.0))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    rng, twin = np.random.default_rng(1), "twin" in opts
    c0 = time.process_time()
    grads: list[float] = []  # phase head's weight-gradient norm per step
    for _ in range(steps):
        if "sym" in opts or "noise" in opts:
            photons = (1e8, 1e8) if "sym" in opts else (1e5, 1e8)
            amp_in, obj = make_batch(bank, np.arange(n), rng, photons, augment="sym" in opts)
        else:
            amp_in, obj = fixed
        model.train()
        amp, phase = model(amp_in[:, None])
        loss, train_terms = cdinn_loss(amp, phase, obj.abs(), obj.angle(), amp_in,
                                       LossWeights(), twin)
        opt.zero_grad()
        loss.backward()
        grads.append(float(model.phase.head.weight.grad.norm()))
        opt.step()
    amp_in, obj = fixed
    model.eval()
    with torch.no_grad():
        amp, phase = model(amp_in[:, None])
        _, terms = cdinn_loss(amp, phase, obj.abs(), obj.angle(), amp_in, LossWeights(), twin)
    inside = obj.abs() > 0.1
    return {"variant": "+".join(sorted(opts)), "steps": steps,
            "flat_phase_mae": float(obj.angle()[inside].abs().mean()),
            "train_phase_mae": train_terms["phase"], "eval_phase_mae": terms["phase"],
            "eval_shape_mae": terms["shape"],
            "phase_spread_inside": float(phase[inside].std()),
            "phase_head_grad_first": grads[0],
            "phase_head_grad_last_10": float(np.mean(grads[-10:])),
            "cpu_s": round(time.process_time() - c0, 1)}


def autophasenn_finetune(n: int, steps: int, lr: float) -> dict[str, Any]:
    """Fine-tune the shipped AutoPhaseNN on test crystals 0…n−1 with its own loss."""
    from napari_ptycho.engines._bragg_nn import weights_path
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.nn.autophasenn import (
        AutoPhaseNNSpec,
        build_network,
        fourier_amplitude_loss,
        thresholded,
    )
    from napari_ptycho.physics.simulate import simulate_bragg

    torch.manual_seed(0)
    datas = [simulate_bragg(size=32, seed=s) for s in range(n)]
    x = torch.stack([torch.from_numpy(np.sqrt(d.intensity)) for d in datas]).float()
    x = x / x.flatten(1).amax(1).view(-1, 1, 1, 1)
    blob = torch.load(weights_path("", "autophasenn"), weights_only=True)
    model = build_network(AutoPhaseNNSpec(**blob["spec"]))
    model.load_state_dict(blob["state_dict"])
    model.eval()  # batch norm frozen at its running statistics: a batch of n is tiny
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def score() -> dict[str, Any]:
        with torch.no_grad():
            a, p = model(x[:, None])
            a = thresholded(a)
            loss = float(fourier_amplitude_loss(a, p, x))
        ev = [evaluate(o, d.truth_object, scale=True, ramp=True)
              for o, d in zip(torch.polar(a, p).numpy(), datas, strict=True)]
        return {"loss": round(loss, 5), "nrmse": [round(e["nrmse"], 3) for e in ev],
                "phase_mae": [round(e["mae_phase"], 3) for e in ev]}

    before = score()
    for _ in range(steps):
        a, p = model(x[:, None])
        loss = fourier_amplitude_loss(a, p, x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    truth_loss = [float(fourier_amplitude_loss(
        torch.from_numpy(np.abs(d.truth_object))[None].float(),
        torch.from_numpy(np.angle(d.truth_object))[None].float(), xi[None], 0.0))
        for d, xi in zip(datas, x, strict=True)]
    return {"seeds": list(range(n)), "steps": steps, "lr": lr, "before": before,
            "after": score(), "truth_loss": round(float(np.mean(truth_loss)), 5)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crystals", type=int, default=4)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--channels", type=int, default=4)
    parser.add_argument("--variants", default="plain,twin,drop,noise+twin,sym+twin")
    parser.add_argument("--apn-lr", type=float, default=1e-3)
    parser.add_argument("--skip-apn", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"cdinn": []}
    for v in args.variants.split(","):
        opts = set(v.split("+")) - {"plain"}
        row = cdinn_variant(opts, args.crystals, args.steps, args.channels)
        out["cdinn"].append(row)
        print(json.dumps(row), flush=True)
    if not args.skip_apn:
        out["autophasenn"] = autophasenn_finetune(args.crystals, args.steps, args.apn_lr)
        print(json.dumps(out["autophasenn"]), flush=True)
    print("\n| 3D-CDI-NN variant | train phase MAE | eval phase MAE | eval shape MAE | "
          "phase spread | flat-phase MAE | head grad (first / last 10) |\n"
          "|---|---|---|---|---|---|---|")
    for r in out["cdinn"]:
        print(f"| {r['variant'] or 'plain'} | {r['train_phase_mae']:.3f} | "
              f"{r['eval_phase_mae']:.3f} | {r['eval_shape_mae']:.4f} | "
              f"{r['phase_spread_inside']:.3f} | {r['flat_phase_mae']:.3f} | "
              f"{r['phase_head_grad_first']:.2f} / {r['phase_head_grad_last_10']:.3f} |")
    if "autophasenn" in out:
        a = out["autophasenn"]
        print(f"\nAutoPhaseNN fine-tune: loss {a['before']['loss']} -> {a['after']['loss']} "
              f"(truth {a['truth_loss']}); NRMSE {a['before']['nrmse']} -> "
              f"{a['after']['nrmse']}; phase MAE {a['before']['phase_mae']} -> "
              f"{a['after']['phase_mae']}")


if __name__ == "__main__":
    main()
