"""``napari-ptycho train diffusion [IMAGES...] -o prior/``: train a DDPM object prior.

Without IMAGES the bundled scikit-image pictures (training columns only, see
:mod:`napari_ptycho.training._diffusion_data`) plus the simulator's synthetic families are
used. The shipped ``weights/diffusion_prior.pt`` is two runs::

    napari-ptycho train diffusion -o src/napari_ptycho/weights --size 32 --base 24 \\
        --batch 16 --threads 1 --max-minutes 52 --seed 0          # stopped at step 1947
    napari-ptycho train diffusion -o /tmp/issue9_prior --init src/napari_ptycho/weights \\
        --size 32 --batch 16 --threads 1 --max-minutes 86 --seed 1  # stopped at step 11419

(both stopped by hand at a checkpoint to free the shared CPU; see the card's ``note``)

``--init PRIOR`` continues a trained prior (its architecture and EMA weights; the step
count, minutes and loss history carry on in the card; AdamW's moments restart).

IMAGES may be complex reconstructions (``.npy``/``.npz``, result ``.h5`` files: amplitude
and phase are kept together) or gray pictures (``.tif``, ``.png``...: amplitude and phase
drawn from two different pictures). The loss is the noise-prediction MSE of Ho et al.;
the weights saved are an exponential moving average of the trained ones.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "weights"
PRIOR_NAME = "diffusion_prior"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Training flags (see the module docstring for the shipped run)."""
    parser.add_argument("images", nargs="*", help="training images (default: bundled set)")
    parser.add_argument("-o", "--output", default=str(DEFAULT_DIR),
                        help="output folder for diffusion_prior.pt and its JSON card")
    parser.add_argument("--size", type=int, default=32, help="patch side (multiple of 4)")
    parser.add_argument("--base", type=int, default=24, help="U-Net channels at full size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200_000, help="maximum optimiser steps")
    parser.add_argument("--max-minutes", type=float, default=55.0, help="wall-time budget")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--ema", type=float, default=0.995, help="EMA decay of the weights")
    parser.add_argument("--synthetic-fraction", type=float, default=0.2,
                        help="fraction of simulator objects in each batch")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--save-every", type=float, default=5.0, help="checkpoint minutes")
    parser.add_argument("--init", default=None,
                        help="continue from this prior (.pt or folder): its architecture and "
                             "weights; steps, minutes and loss history carry on from its card")


def _unit(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / max(hi - lo, 1e-9)


def load_training_image(path: str | Path) -> np.ndarray:
    """A gray map (H, W) or an (amplitude, phase) pair (2, H, W), each in [0, 1].

    Raises
    ------
    ValueError
        If the file holds no 2D image.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"images: {str(p)!r} is not a file")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        arr = np.load(p)
    elif suffix == ".npz":
        with np.load(p) as z:
            arr = z[z.files[0]]
    elif suffix in (".h5", ".hdf5", ".cxi"):
        from napari_ptycho.io import load_result

        arr = np.asarray(load_result(p).object)
    elif suffix in (".tif", ".tiff"):
        import tifffile

        arr = tifffile.imread(p)
    else:
        from skimage.io import imread

        arr = imread(p)
    arr = np.squeeze(np.asarray(arr))
    if np.iscomplexobj(arr) and arr.ndim == 2:
        return np.stack([_unit(np.abs(arr)), _unit(np.angle(arr))])
    if arr.ndim == 3 and arr.shape[-1] in (3, 4):
        from skimage.color import rgb2gray

        arr = rgb2gray(arr[..., :3])
    if arr.ndim != 2 or min(arr.shape) < 16:
        raise ValueError(f"images: {str(p)!r} holds no 2D image of at least 16x16 "
                         f"(shape {arr.shape})")
    return _unit(arr.astype(np.float64))


def save_prior(model: Any, folder: Path, card: dict[str, Any]) -> Path:
    """Write ``diffusion_prior.pt`` (architecture + weights) and its JSON card."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{PRIOR_NAME}.pt"
    state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
    torch.save({"unet": model.config.as_dict(), "size": card["patch_size"],
                "state_dict": state}, path)
    (folder / f"{PRIOR_NAME}.json").write_text(json.dumps(card, indent=2))
    return path


def _initial_model(args: argparse.Namespace, device: Any) -> tuple[Any, dict[str, Any]]:
    """A fresh U-Net, or (``--init``) a trained prior and its card to carry on from.

    The optimiser state is not stored with a prior, so a continued run restarts AdamW's
    moments; the EMA decay carries on from the card's step count (it is already at
    ``--ema`` for any prior past a few hundred steps).
    """
    from napari_ptycho.nn.unet import UNet, UNetConfig, load_prior

    if not args.init:
        return UNet(UNetConfig(base=args.base)).to(device), {}
    model, size, card = load_prior(args.init, device)
    if size != args.size:
        raise ValueError(f"--init: that prior has {size}-px patches, --size is {args.size}")
    return model.train().requires_grad_(True), card


def main(args: argparse.Namespace) -> int:
    """Train until ``--steps`` or ``--max-minutes``; checkpoints along the way."""
    import copy

    import torch

    from napari_ptycho.engines.base import select_device
    from napari_ptycho.nn.ddpm import Schedule, training_loss
    from napari_ptycho.training._diffusion_data import training_batch

    if args.size < 16 or args.size % 4:
        raise ValueError(f"--size must be a multiple of 4 and >= 16 (got {args.size})")
    torch.set_num_threads(max(1, int(args.threads)))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = select_device(args.device)
    images = tuple(load_training_image(p) for p in args.images) or None
    model, done = _initial_model(args, device)
    ema = copy.deepcopy(model).eval()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    schedule = Schedule.linear()
    n_params = sum(p.numel() for p in model.parameters())
    folder = Path(args.output)
    start = time.perf_counter()
    last_save = start
    history: list[list[float]] = [list(h) for h in done.get("loss_history", [])]
    running = done.get("final_loss_ema100")
    step = int(done.get("steps", 0))
    first_step = step
    minutes_before = float(done.get("minutes", 0.0))

    def card() -> dict[str, Any]:
        return {"command": "napari-ptycho train diffusion " + (
                    " ".join(args.images) if args.images else "") +
                f" -o {args.output} --size {args.size} --base {args.base} "
                f"--batch {args.batch} --max-minutes {args.max_minutes} --lr {args.lr} "
                f"--ema {args.ema} --seed {args.seed} --threads {args.threads}" +
                (f" --init {args.init}" if args.init else ""),
                "data": ("user images: " + ", ".join(args.images)) if args.images else
                "scikit-image bundled pictures (training columns only) + "
                f"{args.synthetic_fraction:.0%} simulator objects; random rotation, "
                "scaling 0.75-1.5, flips, inversion, stretch",
                "channels": ["amplitude", "phase"], "range": [-1, 1],
                "patch_size": args.size, "timesteps": len(schedule),
                "schedule": "linear beta 1e-4..0.02", "unet": model.config.as_dict(),
                "parameters": n_params, "steps": step, "batch": args.batch,
                "minutes": round(minutes_before + (time.perf_counter() - start) / 60, 2),
                "final_loss_ema100": None if running is None else round(running, 5),
                "loss_history": history, "device": str(device),
                "threads": args.threads,
                **({"init": {"from": args.init, "steps": first_step,
                             "minutes": minutes_before, "command": done.get("command")}}
                   if args.init else {})}

    while (step - first_step < args.steps
           and time.perf_counter() - start < args.max_minutes * 60):
        x0 = torch.from_numpy(training_batch(args.batch, args.size, rng, images,
                                             args.synthetic_fraction)).to(device)
        loss = training_loss(model, x0, schedule)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
                pe.lerp_(pm, 1 - decay)
        value = float(loss.detach())
        running = value if running is None else 0.99 * running + 0.01 * value
        if step % 50 == 0:
            elapsed = minutes_before * 60 + time.perf_counter() - start
            history.append([step, round(elapsed, 1), round(running, 5)])
            print(f"step {step} t={elapsed:.0f}s loss={running:.4f}", flush=True)
        if time.perf_counter() - last_save > args.save_every * 60:
            save_prior(ema, folder, card())
            last_save = time.perf_counter()
    path = save_prior(ema, folder, card())
    print(f"wrote {path} after {step} steps", flush=True)
    return 0
