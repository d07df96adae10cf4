"""A tiny strained test crystal with its Bragg intensities (shared by the Bragg tests)."""

from __future__ import annotations

import numpy as np


def toy_crystal(n: int = 32, radius: int = 6, photons: float = 1e6, seed: int = 0,
                noise: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """An asymmetric faceted crystal with a smooth non-centrosymmetric phase field.

    Returns the complex object (n, n, n) and Poisson intensities
    ``|fftshift(fftn(obj, norm="ortho"))|²`` scaled to ``photons`` in total.
    """
    z, y, x = (np.mgrid[:n, :n, :n] - n // 2).astype(float)
    shape = ((np.abs(z) <= radius) & (np.abs(y + 1) <= radius - 1)
             & (np.abs(x + 0.5 * y) <= radius + 1) & (x + y + z <= 1.6 * radius))
    phase = 0.9 * np.sin(2 * np.pi * (x + 0.5 * y) / (3 * radius)) + 0.02 * z**2 / radius
    obj = (shape * np.exp(1j * phase)).astype(np.complex64)
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(obj, norm="ortho"))) ** 2
    intensity *= photons / intensity.sum()
    if noise:
        intensity = np.random.default_rng(seed).poisson(intensity)
    return obj, intensity.astype(np.float32)
