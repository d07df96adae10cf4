"""``napari-ptycho train autophasenn``: unsupervised training of AutoPhaseNN.

Reproduces ``weights/autophasenn_32.pt`` (the command is also on its JSON card)::

    napari-ptycho train autophasenn --variant lean --crystals 1000 --epochs 400 \\
        --channels 8 --threads 1 --max-minutes 55 -o src/napari_ptycho/weights/autophasenn_32.pt

The wall-time limit makes a run on a busy CPU stop earlier than on an idle one (the card
records the epochs actually run); ``--max-minutes 1e9`` trains the full epoch count.

``--init WEIGHTS`` continues training from an AutoPhaseNN weight file (its spec is used,
the size flags are ignored) and records the file and its card's command on the new card,
so that the chain of commands reproduces the result.

Only diffraction amplitudes enter the loss (mean |√I_est − √I_meas| of the thresholded,
box-padded prediction); the simulated crystals' real-space values are used for the
validation SSIM on the card, never for the gradient.
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

DEFAULT_OUT = str(Path(__file__).resolve().parents[1] / "weights" / "autophasenn_32.pt")
OVERSAMPLING = (2.1, 3.6)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training flags (see the module docstring for the shipped run)."""
    add_common_arguments(parser, DEFAULT_OUT, channels=4)
    parser.add_argument("--box-ratio", type=int, default=2,
                        help="object box = size / box_ratio (paper: 2)")
    parser.add_argument("--threshold", type=float, default=0.1,
                        help="support threshold on the predicted amplitude")
    parser.add_argument("--variant", choices=("plain", "lean"), default="plain",
                        help="network layout: the paper's ('plain') or the compute-lean one "
                             "of nn/autophasenn_lean.py (the shipped weights)")
    parser.add_argument("--init", default=None,
                        help="continue from this weight file (its spec replaces the size "
                             "flags)")
    parser.add_argument("--oversampling", type=float, nargs=2, default=OVERSAMPLING,
                        metavar=("LOW", "HIGH"),
                        help="range of the training crystals' oversampling")


def _initial_model(args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(spec, network, init record): fresh, or the weights of ``--init`` to go on from."""
    import json

    import torch

    from napari_ptycho.nn.autophasenn import AutoPhaseNNSpec, build_network

    if not args.init:
        spec = AutoPhaseNNSpec(size=args.size, base_channels=args.channels,
                               box_ratio=args.box_ratio, variant=args.variant)
        spec.validate()
        return spec, build_network(spec), {}
    path = Path(args.init)
    if not path.is_file():
        raise ValueError(f"--init: weight file {str(path)!r} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    try:
        spec = AutoPhaseNNSpec(**blob["spec"])
        spec.validate()
        model = build_network(spec)
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise ValueError(f"--init: {str(path)!r} is not an AutoPhaseNN weight file: {exc}"
                         ) from exc
    card_path = path.with_suffix(".json")
    previous = json.loads(card_path.read_text()) if card_path.is_file() else {}
    record = {"from": str(path), "command": previous.get("command"),
              "epochs_run": previous.get("training", {}).get("epochs_run"),
              "seconds": previous.get("training", {}).get("seconds")}
    return spec, model, record


def main(args: argparse.Namespace) -> int:
    """Train, validate, write the weights and their card; returns 0."""
    import torch

    from napari_ptycho.nn.autophasenn import fourier_amplitude_loss, thresholded

    oversampling = (float(args.oversampling[0]), float(args.oversampling[1]))
    spec, model, init = _initial_model(args)
    rng, device, bank, v_amp, v_obj = start_run(args, oversampling, spec.size)
    model = model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    steps_per_epoch = max(1, len(bank) // args.batch)
    t0 = time.perf_counter()
    history: list[dict[str, Any]] = []
    stopped_early = False
    for epoch in range(args.epochs):
        model.train()
        order = rng.permutation(len(bank))
        losses = []
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * args.batch:(step + 1) * args.batch])
            amp_in, _ = make_batch(bank, idx, rng)
            amp_in = amp_in.to(device)
            amp, phase = model(amp_in[:, None])
            loss = fourier_amplitude_loss(amp, phase, amp_in, args.threshold)
            set_lr(opt, args.lr, epoch * steps_per_epoch + step,
                   args.epochs * steps_per_epoch, time.perf_counter() - t0, args.max_minutes)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        model.eval()
        with torch.no_grad():
            amp, phase = model(v_amp[:, None].to(device))
            vloss = float(fourier_amplitude_loss(amp, phase, v_amp.to(device),
                                                 args.threshold))
        elapsed = time.perf_counter() - t0
        history.append({"epoch": epoch + 1, "train_loss": float(np.mean(losses)),
                        "valid_loss": vloss, "seconds": round(elapsed, 1)})
        print(f"epoch {epoch + 1}/{args.epochs} loss {np.mean(losses):.5f} valid {vloss:.5f}"
              f" ({elapsed:.0f} s)", flush=True)
        if elapsed > 60 * args.max_minutes:
            stopped_early = epoch + 1 < args.epochs
            break

    class _Thresholded(torch.nn.Module):
        """The network as the engine uses it: amplitude cut at the support threshold."""

        def forward(self, x: Any) -> Any:
            a, p = model(x)
            return thresholded(a, args.threshold), p

    ssim = validation_ssim(_Thresholded(), v_amp.to(device), v_obj.numpy())
    card = {
        "network": "AutoPhaseNN (Yao et al. 2022), unsupervised",
        "spec": spec.to_dict(),
        "command": "napari-ptycho train autophasenn " + " ".join(sys.argv[3:]),
        "data": data_card(args, oversampling),
        "training": {"epochs_run": len(history), "epochs_planned": args.epochs,
                     "stopped_by_time_limit": stopped_early, "batch": args.batch,
                     "lr": args.lr,
                     "optimizer": "Adam, warm-up + cosine decay over steps or wall time",
                     "threshold": args.threshold, "seconds": round(time.perf_counter() - t0),
                     "device": str(device), "threads": args.threads},
        "metrics": {"final_train_loss": history[-1]["train_loss"],
                    "final_valid_loss": history[-1]["valid_loss"],
                    "valid_ssim_amplitude_mean": float(np.nanmean(ssim)),
                    "valid_ssim_amplitude_min": float(np.nanmin(ssim))},
        "history": history,
        **({"init": init} if init else {}),
    }
    save_weights(model, spec.to_dict(), Path(args.output), card)
    print(f"wrote {args.output} (valid amplitude SSIM mean {np.nanmean(ssim):.3f})")
    return 0
