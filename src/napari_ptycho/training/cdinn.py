"""``napari-ptycho train cdinn``: staged supervised training of 3D-CDI-NN.

Reproduces ``weights/cdinn_32.pt`` (the command is also on its JSON card)::

    napari-ptycho train cdinn --crystals 1000 --epochs 40 --channels 4 --threads 1 \\
        --max-minutes 28 --twin-invariant -o src/napari_ptycho/weights/cdinn_32.pt

The wall-time limit makes a run on a busy CPU stop earlier than on an idle one (the card
records the epochs actually run); ``--max-minutes 1e9`` trains the full epoch count.

Stages (our reading of Chan et al. 2021): the first ``--stage1`` fraction of the steps
fits the supervised shape and phase MAE terms; afterwards the physics term (MAE between
the input magnitude and |FFT| of the recombined prediction) is added with weight
``--physics``, so the network first learns the labels and is then pulled towards
predictions consistent with the measurement.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from napari_ptycho.training._crystals import (
    add_common_arguments,
    data_card,
    make_batch,
    save_weights,
    set_lr,
    start_run,
    validation_ssim,
)

DEFAULT_OUT = str(Path(__file__).resolve().parents[1] / "weights" / "cdinn_32.pt")
OVERSAMPLING = (2.1, 3.6)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training flags (see the module docstring for the shipped run)."""
    add_common_arguments(parser, DEFAULT_OUT, channels=4)
    parser.add_argument("--dropout", type=float, default=0.1, help="decoder dropout (paper)")
    parser.add_argument("--stage1", type=float, default=0.6,
                        help="fraction of the run with supervised terms only")
    parser.add_argument("--physics", type=float, default=1.0,
                        help="weight of the physics term in stage 2")
    parser.add_argument("--twin-invariant", action="store_true",
                        help="score the supervised terms against the label or its twin "
                             "(conjugate inversion), whichever fits better")
    parser.add_argument("--no-augment", dest="augment", action="store_false",
                        help="feed the crystals as simulated (no random cube symmetry per "
                             "batch); Poisson noise is still redrawn every step")


def _labels(obj: Any) -> tuple[Any, Any]:
    return obj.abs(), obj.angle()


def main(args: argparse.Namespace) -> int:
    """Train, validate, write the weights and their card; returns 0."""
    import torch

    from napari_ptycho.nn.cdinn import CDINN, CDINNSpec, LossWeights, cdinn_loss

    if not 0 <= args.stage1 <= 1:
        raise ValueError(f"--stage1 must be in [0, 1] (got {args.stage1})")
    spec = CDINNSpec(size=args.size, base_channels=args.channels, dropout=args.dropout)
    spec.validate()
    rng, device, bank, v_amp, v_obj = start_run(args, OVERSAMPLING)
    v_true_amp, v_true_phase = _labels(v_obj.to(device))
    model = CDINN(spec).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = max(1, len(bank) // args.batch)
    total = args.epochs * steps_per_epoch
    budget = 60.0 * args.max_minutes
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    stopped_early = False
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(bank))
        losses = []
        stage = 1
        for step in range(steps_per_epoch):
            done = epoch * steps_per_epoch + step
            elapsed = time.perf_counter() - t0
            stage = 2 if max(done / total, elapsed / budget) >= args.stage1 else 1
            weights = LossWeights(physics=args.physics if stage == 2 else 0.0)
            # stage 2 restarts the cosine at a third of the rate over the remaining run
            if stage == 1:
                set_lr(opt, args.lr, done, int(total * args.stage1), elapsed,
                       args.max_minutes * args.stage1)
            else:
                set_lr(opt, args.lr / 3, done - int(total * args.stage1),
                       int(total * (1 - args.stage1)), elapsed - budget * args.stage1,
                       args.max_minutes * (1 - args.stage1))
            idx = np.sort(order[step * args.batch:(step + 1) * args.batch])
            amp_in, obj = make_batch(bank, idx, rng, augment=args.augment)
            amp_in, obj = amp_in.to(device), obj.to(device)
            true_amp, true_phase = _labels(obj)
            amp, phase = model(amp_in[:, None])
            loss, _ = cdinn_loss(amp, phase, true_amp, true_phase, amp_in, weights,
                                 args.twin_invariant)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            amp, phase = model(v_amp[:, None].to(device))
            _, vterms = cdinn_loss(amp, phase, v_true_amp, v_true_phase, v_amp.to(device),
                                   LossWeights(physics=1.0), args.twin_invariant)
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "stage": stage,
                        "train_loss": float(np.mean(losses)),
                        **{f"valid_{k}": v for k, v in vterms.items()},
                        "seconds": round(elapsed, 1)})
        print(f"epoch {epoch + 1}/{args.epochs} stage {stage} loss {np.mean(losses):.4f} "
              f"valid {vterms} ({elapsed:.0f} s)", flush=True)
        if elapsed > budget:
            stopped_early = epoch + 1 < args.epochs
            break
    ssim = validation_ssim(model, v_amp.to(device), v_obj.numpy())
    card = {
        "network": "3D-CDI-NN (Chan et al. 2021), supervised + physics term",
        "spec": spec.to_dict(),
        "command": "napari-ptycho train cdinn " + " ".join(sys.argv[3:]),
        "data": data_card(args, OVERSAMPLING),
        "training": {"epochs_run": len(history), "epochs_planned": args.epochs,
                     "stopped_by_time_limit": stopped_early, "batch": args.batch,
                     "lr": args.lr, "stage1_fraction": args.stage1,
                     "physics_weight": args.physics,
                     "twin_invariant": args.twin_invariant,
                     "optimizer": "Adam, warm-up + cosine per stage (stage 2 at lr/3)",
                     "seconds": round(time.perf_counter() - t0), "device": str(device),
                     "threads": args.threads},
        "metrics": {"final_train_loss": history[-1]["train_loss"],
                    **{k: v for k, v in history[-1].items() if k.startswith("valid_")},
                    "valid_ssim_amplitude_mean": float(np.nanmean(ssim)),
                    "valid_ssim_amplitude_min": float(np.nanmin(ssim))},
        "history": history,
    }
    save_weights(model, spec.to_dict(), Path(args.output), card)
    print(f"wrote {args.output} (valid amplitude SSIM mean {np.nanmean(ssim):.3f})")
    return 0
