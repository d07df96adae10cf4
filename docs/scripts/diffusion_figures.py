"""Figures of docs/diffusion.md: the prior's own samples next to training samples, and one
20 %-overlap held-out object reconstructed by AWF, plain DPS, DPS with data consistency,
with the AWF polish and with the longer polish plus the final Tweedie denoising.

    python docs/scripts/diffusion_figures.py   # writes docs/images/diffusion_*.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "images"


def prior_samples() -> None:
    """Eight unconditional 100-step samples of the shipped prior over eight training
    samples (amplitude channel on top, phase below)."""
    import matplotlib.pyplot as plt
    import torch

    from napari_ptycho.nn.ddpm import Schedule, sample
    from napari_ptycho.nn.unet import load_prior
    from napari_ptycho.training._diffusion_data import training_batch

    model, patch, _ = load_prior()
    drawn = sample(model, (8, 2, patch, patch), Schedule.linear().respaced(100),
                   torch.Generator().manual_seed(0)).numpy()
    train = training_batch(8, patch, np.random.default_rng(5))
    fig, ax = plt.subplots(4, 8, figsize=(8, 4.4))
    for j in range(8):
        for r, img in enumerate((drawn[j, 0], drawn[j, 1], train[j, 0], train[j, 1])):
            ax[r, j].imshow(img, cmap="gray", vmin=-1, vmax=1)
            ax[r, j].axis("off")
    for r, label in enumerate(("prior: amplitude", "prior: phase", "training: amplitude",
                               "training: phase")):
        ax[r, 0].set_title(label, fontsize=7, loc="left")
    fig.tight_layout()
    fig.savefig(OUT / "diffusion_prior_samples.png", dpi=70)


def low_overlap_comparison() -> None:
    """Held-out object 0 of the benchmark at 20 % overlap."""
    import matplotlib.pyplot as plt

    from napari_ptycho.engines import reconstruct
    from napari_ptycho.physics.simulate import simulate_ptycho
    from napari_ptycho.training._diffusion_data import heldout_objects

    obj = heldout_objects(10, 128, seed=1000)[0]
    data = simulate_ptycho(object_array=obj, probe_size=32, overlap=0.2, photons=1e5,
                           photons_mode="max", noise="poisson", seed=0, probe_fwhm=20.0)
    common = {"device": "cpu", "seed": 0, "probe_init": "given"}
    diff = {"iterations": 50, "time_travel": 5, "travel_every": 10, "update_every": 10 ** 6}
    images = {"truth": obj,
              "AWF (300 it.)": reconstruct(data, "awf", iterations=300, **common).object,
              "plain DPS": reconstruct(data, "diffusion", zeta=0.2, dc_steps=0, polish=0,
                                       **diff, **common).object,
              "DPS + data consistency": reconstruct(data, "diffusion", polish=0, **diff,
                                                    **common).object,
              "+ AWF polish (100)": reconstruct(data, "diffusion", polish=100, final_denoise=0,
                                                **diff, **common).object,
              "polish 200 + denoise t=50": reconstruct(data, "diffusion", polish=200,
                                                       final_denoise=50, **diff,
                                                       **common).object}
    fig, ax = plt.subplots(2, len(images), figsize=(2.2 * len(images), 4.6))
    for j, (name, o) in enumerate(images.items()):
        o = np.asarray(o)
        o = o * np.exp(1j * np.angle(np.vdot(o, obj)))  # remove the global phase
        ax[0, j].imshow(np.abs(o), cmap="gray", vmin=0.75, vmax=1.05)
        ax[1, j].imshow(np.angle(o), cmap="gray", vmin=-0.2, vmax=1.2)
        ax[0, j].set_title(name, fontsize=8)
        ax[0, j].axis("off")
        ax[1, j].axis("off")
    fig.tight_layout()
    fig.savefig(OUT / "diffusion_overlap20.png", dpi=70)


if __name__ == "__main__":
    import torch

    torch.set_num_threads(1)
    prior_samples()
    low_overlap_comparison()
