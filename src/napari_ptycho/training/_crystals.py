"""Training data for the Bragg networks: the simulator's crystals, diffracted on the fly.

A *bank* holds noise-free complex crystals from :func:`simulate_bragg` (seeds
``TRAIN_SEED_OFFSET + i``; the benchmark and tests use seeds below 100 000, which training
never sees). Each batch applies one of the 48 symmetries of the cube to every crystal
(exact: permuting or flipping real-space axes does the same to the diffraction), draws a
photon count log-uniformly and Poisson noise, and returns the measured amplitude
normalised to a peak of 1 (the network input) together with the labels.

Also the shared loop pieces: optimiser steps under a wall-clock budget, weight files
loadable with ``torch.load(..., weights_only=True)`` and their JSON cards.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: Seeds of training crystals start here; validation crystals at VALID_SEED_OFFSET.
TRAIN_SEED_OFFSET = 100_000
VALID_SEED_OFFSET = 200_000


def make_bank(n: int, size: int, seed_offset: int, oversampling: tuple[float, float],
              cache: str | Path | None = None, log: Any = print) -> np.ndarray:
    """``n`` complex crystals ``(n, size, size, size)``, peak amplitude 1, global phase
    chosen so that the sum of the object is real and positive.

    The oversampling of crystal ``i`` is drawn uniformly in ``oversampling`` from a
    generator seeded by its seed, so a bank is reproducible. ``cache`` (an ``.npy`` path)
    is reused when it holds the same request.
    """
    from napari_ptycho.physics.simulate import simulate_bragg

    lo, hi = oversampling
    if not 2.0 <= lo <= hi:
        raise ValueError(f"oversampling range must satisfy 2 <= low <= high (got {oversampling})")
    if n < 1:
        raise ValueError(f"number of crystals must be >= 1 (got {n})")
    key = f"n{n}_s{size}_o{seed_offset}_os{lo:g}-{hi:g}"
    if cache is not None:
        path = Path(cache).with_suffix(f".{key}.npy")
        if path.exists():
            return np.load(path)
    bank = np.empty((n, size, size, size), np.complex64)
    t0 = time.perf_counter()
    for i in range(n):
        seed = seed_offset + i
        os_ = float(np.random.default_rng(seed).uniform(lo, hi))
        obj = simulate_bragg(size=size, seed=seed, oversampling=os_, noise="none",
                             photons=1.0).truth_object
        total = obj.sum()
        obj = obj * (np.conj(total) / max(abs(total), 1e-30))
        bank[i] = obj / np.abs(obj).max()
        if log and (i + 1) % 100 == 0:
            log(f"  simulated {i + 1}/{n} crystals ({time.perf_counter() - t0:.0f} s)")
    if cache is not None:
        np.save(path, bank)
    return bank


def _symmetry(x: torch.Tensor, code: int) -> torch.Tensor:
    """One of the 48 cube symmetries (6 axis permutations × 8 flips) of ``(B, n, n, n)``."""
    perms = [(0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0)]
    p = perms[code % 6]
    x = x.permute(0, 1 + p[0], 1 + p[1], 1 + p[2])
    flips = [1 + a for a in range(3) if (code // 6) >> a & 1]
    return x.flip(flips) if flips else x


def make_batch(bank: np.ndarray, indices: np.ndarray, rng: np.random.Generator,
               photons: tuple[float, float] = (1e5, 1e8), augment: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """(measured amplitude normalised to max 1, complex truth normalised to max 1)."""
    obj = torch.from_numpy(bank[indices])
    if augment:
        obj = _symmetry(obj, int(rng.integers(48)))
    obj = obj.contiguous()
    dims = (-3, -2, -1)
    intensity = torch.fft.fftshift(torch.fft.fftn(obj, dim=dims, norm="ortho"), dim=dims)
    intensity = intensity.abs().square()
    n_photons = np.exp(rng.uniform(math.log(photons[0]), math.log(photons[1]), len(indices)))
    scale = torch.tensor(n_photons, dtype=torch.float32) / intensity.flatten(1).sum(1)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    counts = torch.poisson(intensity * scale.view(-1, 1, 1, 1), generator=gen)
    amp = counts.sqrt()
    amp = amp / amp.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
    return amp, obj


def save_weights(model: torch.nn.Module, spec: dict[str, Any], path: Path,
                 card: dict[str, Any]) -> None:
    """Write ``{"spec", "state_dict"}`` (weights_only-loadable) and ``<path>.json``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    torch.save({"spec": spec, "state_dict": state}, path)
    card = {**card, "file": path.name, "file_bytes": path.stat().st_size,
            "parameters": int(sum(p.numel() for p in model.parameters()))}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")


def set_lr(opt: Any, lr: float, step: int, total_steps: int, elapsed: float,
           max_minutes: float, warmup: int = 20) -> None:
    """Warm-up then cosine decay; progress is the larger of steps done and wall time used,
    so a run cut short by its time budget still ends at a small learning rate."""
    progress = min(1.0, max(step / max(total_steps, 1), elapsed / (60.0 * max_minutes)))
    value = lr * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup:
        value *= (step + 1) / warmup
    for group in opt.param_groups:
        group["lr"] = max(value, lr * 1e-3)


def add_common_arguments(parser: Any, default_out: str, channels: int) -> None:
    """Flags shared by both training commands."""
    parser.add_argument("--crystals", type=int, default=600, help="training crystals")
    parser.add_argument("--valid", type=int, default=16, help="validation crystals")
    parser.add_argument("--size", type=int, default=32, help="volume side (voxels)")
    parser.add_argument("--channels", type=int, default=channels,
                        help="base channels (papers: 32)")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--max-minutes", type=float, default=50.0,
                        help="stop (and save) after this wall time")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="/tmp/napari_ptycho_crystals",
                        help="crystal bank cache prefix ('' = no cache)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("-o", "--output", default=default_out, help="weight file (.pt)")


def validation_ssim(model: torch.nn.Module, amp_in: torch.Tensor, truth: np.ndarray
                    ) -> list[float]:
    """Amplitude SSIM (after registration, twin and global phase) per validation crystal."""
    from napari_ptycho.metrics import evaluate

    model.eval()
    with torch.no_grad():
        amp, phase = model(amp_in[:, None])
    out = []
    for a, p, t in zip(amp.cpu().numpy(), phase.cpu().numpy(), truth, strict=True):
        try:
            out.append(evaluate(a * np.exp(1j * p), t)["ssim_amplitude"])
        except ValueError:
            out.append(float("nan"))
    return out


def start_run(args: Any, oversampling: tuple[float, float], size: int | None = None
              ) -> tuple[np.random.Generator, torch.device, np.ndarray, torch.Tensor,
                         torch.Tensor]:
    """Seed, pick the device and build the training bank and the validation batch
    (volumes of ``size``, default ``args.size``).

    Returns
    -------
    rng, device, bank, v_amp, v_obj
        The run's numpy generator, torch device, training crystal bank, and the fixed
        validation diffraction amplitudes with their true objects.
    """
    from napari_ptycho.engines.base import select_device

    torch.set_num_threads(max(1, int(args.threads)))
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = select_device(args.device)
    cache = args.cache or None
    size = int(size or args.size)
    bank = make_bank(args.crystals, size, TRAIN_SEED_OFFSET, oversampling, cache)
    vbank = make_bank(args.valid, size, VALID_SEED_OFFSET, oversampling, cache)
    v_amp, v_obj = make_batch(vbank, np.arange(len(vbank)), np.random.default_rng(1),
                              photons=(1e7, 1e7), augment=False)
    return rng, device, bank, v_amp, v_obj


def data_card(args: Any, oversampling: tuple[float, float]) -> dict[str, Any]:
    """The "data" entry of a weight card: generator, seeds, sampling, dose, augmentation."""
    return {"generator": "napari_ptycho.physics.simulate.simulate_bragg",
            "train_seeds": [TRAIN_SEED_OFFSET, TRAIN_SEED_OFFSET + args.crystals - 1],
            "valid_seeds": [VALID_SEED_OFFSET, VALID_SEED_OFFSET + args.valid - 1],
            "oversampling": list(oversampling), "photons": [1e5, 1e8],
            "augmentation": ("48 cube symmetries, " if getattr(args, "augment", True)
                             else "none (--no-augment), ") + "Poisson noise redrawn per batch"}
