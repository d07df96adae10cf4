"""Illumination-adaptive final denoising of the diffusion engine's result (issue #9).

A reconstruction's noise is not uniform: where the probe windows overlap little, a pixel's
error variance grows roughly as 1 / (local illumination Σ_j |P(r − r_j)|²), and outside
every window the data say nothing at all. One denoising timestep for the whole object
(``final_denoise`` = t) therefore smooths the well-lit centre too much or the weakly lit
gaps too little. Here each pixel takes the prior's Tweedie estimate E[x₀ | x_t] at the
timestep whose diffusion noise σ_t = √((1 − ᾱ_t)/ᾱ_t) matches its own estimated noise

    σ(r) = σ₀ / √(I(r) / I₁),    I(r) = Σ_j |P(r − r_j)|²,    I₁ = max |P|²,

(σ₀ = ``final_noise``, in the prior's [-1, 1] amplitude units, is the noise of a pixel lit
as much as one probe's peak: a denser scan lights every pixel more and is denoised less),
interpolated in log σ between the estimates at a ladder of timesteps. Pixels less noisy
than the smallest rung blend towards the undenoised image; unlit pixels take the largest
rung, the prior's smooth guess. The phase channel's σ follows from the amplitude's: a
complex error of size s moves the amplitude by s and the phase by s/|O|, and the two
channels map their ranges onto [-1, 1] differently.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

#: timesteps whose Tweedie estimates are interpolated (σ_t ≈ 0.08 … 8.5 with the linear
#: schedule; the largest is the prior's guess where there are no data)
LADDER: tuple[int, ...] = (20, 50, 100, 200, 450, 650)


def phase_noise_ratio(config: Any) -> float:
    """σ_phase / σ_amplitude in the prior's units for a complex error of equal size."""
    a0, a1 = float(config.amplitude_min), float(config.amplitude_max)
    p0, p1 = float(config.phase_min), float(config.phase_max)
    mean_amp = max(0.5 * (a0 + a1), 1e-6)
    return (a1 - a0) / ((p1 - p0) * mean_amp)


def ladder_weights(sigma: torch.Tensor, ladder_sigma: np.ndarray) -> torch.Tensor:
    """Interpolation weights (K + 1, H, W) over [undenoised, rung 1 … rung K] for a noise
    map ``sigma`` (H, W): linear in log σ between the bracketing rungs; below the first
    rung towards the undenoised image (reached one e-fold below it); above the last rung
    all weight on it. Each pixel's weights sum to 1."""
    ls = np.log(np.asarray(ladder_sigma, dtype=np.float64))
    if ls.ndim != 1 or ls.size < 1 or np.any(np.diff(ls) <= 0):
        raise ValueError("ladder_sigma must be a strictly increasing 1D sequence")
    grid = torch.as_tensor(np.concatenate([[ls[0] - 1.0], ls]), dtype=torch.float64)
    s = torch.log(sigma.to(torch.float64).clamp_min(1e-12))
    pos = torch.clamp(s, float(grid[0]), float(grid[-1]))
    hi = torch.searchsorted(grid, pos.reshape(-1)).reshape(pos.shape).clamp(1, len(grid) - 1)
    lo = hi - 1
    frac = (pos - grid[lo]) / (grid[hi] - grid[lo])
    w = torch.zeros((len(grid), *sigma.shape), dtype=torch.float64)
    w.scatter_add_(0, lo.unsqueeze(0), (1 - frac).unsqueeze(0))
    w.scatter_add_(0, hi.unsqueeze(0), frac.unsqueeze(0))
    return w.to(sigma.dtype)


def noise_map(illumination: torch.Tensor, sigma0: float, reference: float) -> torch.Tensor:
    """σ(r) = σ₀ / √(I(r)/I₁) with I₁ = ``reference`` (one probe's peak intensity); unlit
    pixels get an effectively infinite σ."""
    if not reference > 0:
        raise ValueError(f"reference intensity must be positive (got {reference})")
    rel = illumination / float(reference)
    return sigma0 / rel.clamp_min(1e-12).sqrt()


def tweedie_mean(model: Any, x: torch.Tensor, t: int, patch: int, draws: int,
                 gen: torch.Generator, offsets: Any) -> torch.Tensor:
    """E[x_0 | x_t] of an image ``x`` (1, 2, H, W) in [-1, 1] noised to network timestep
    ``t`` of the linear schedule, averaged over ``draws`` draws of the noise (and of the
    tile offsets, ``offsets(gen)``); each estimate is clipped to [-1, 1]."""
    from napari_ptycho.engines.diffusion import denoise_tiled
    from napari_ptycho.nn.ddpm import Schedule

    full = Schedule.linear()
    ab = float(full.alpha_bar[t])
    acc = torch.zeros_like(x)
    for _ in range(int(draws)):
        noise = torch.randn(x.shape, generator=gen).to(x.device)
        xt = math.sqrt(ab) * x + math.sqrt(1 - ab) * noise
        eps = denoise_tiled(model, xt, t, patch, offsets(gen))
        acc = acc + full.predict_x0(xt, t, eps).clamp(-1, 1)
    return acc / int(draws)


def adaptive_denoise(model: Any, x: torch.Tensor, illumination: torch.Tensor, sigma0: float,
                     reference: float, phase_ratio: float, patch: int, draws: int,
                     gen: torch.Generator, offsets: Any) -> torch.Tensor:
    """Per-pixel-timestep Tweedie denoising of a 2-channel image ``x`` (1, 2, H, W) in
    [-1, 1] (``illumination`` (H, W), ``reference`` = one probe's peak intensity);
    ``offsets(gen)`` gives each draw's tile offsets. Returns (1, 2, H, W)."""
    from napari_ptycho.nn.ddpm import Schedule

    full = Schedule.linear()
    ladder_sigma = np.array([math.sqrt((1 - full.alpha_bar[t]) / full.alpha_bar[t])
                             for t in LADDER])
    estimates = [x[0]]
    for t in LADDER:
        estimates.append(tweedie_mean(model, x, t, patch, draws, gen, offsets)[0])
    stack = torch.stack(estimates)                                   # (K + 1, 2, H, W)
    sigma_amp = noise_map(illumination.to(x.device), float(sigma0), float(reference))
    out = []
    for ch, ratio in ((0, 1.0), (1, float(phase_ratio))):
        w = ladder_weights((sigma_amp * ratio).cpu(), ladder_sigma).to(x.device, x.dtype)
        out.append((w * stack[:, ch]).sum(dim=0))
    return torch.stack(out).unsqueeze(0)
