"""Detector noise models (numpy, seeded).

* ``poisson``: photon shot noise. Without ``alpha`` the intensities are taken as expected
  photon counts and replaced by Poisson draws. With ``alpha`` PtyINR's form is used:
  ``I_P = max(I)/α · Poisson(I/max(I) · α)``, i.e. the brightest pixel receives α photons
  and the result is rescaled back to the input's scale.
* ``gaussian``: additive read-out noise ``I_G = I + N(0, σ²)``.
* ``mixed``: Poisson then Gaussian.

Every result is clipped at 0 (detectors do not count negative photons).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

#: Noise kinds understood by :func:`add_noise`.
NOISE_KINDS: tuple[str, ...] = ("none", "poisson", "gaussian", "mixed")

#: Read-out noise (counts) used for "gaussian" / "mixed" when no ``sigma`` is given.
DEFAULT_SIGMA = 1.0


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _check_intensity(intensity: np.ndarray) -> np.ndarray:
    arr = np.asarray(intensity, dtype=np.float64)
    if np.iscomplexobj(intensity):
        raise ValueError("intensity must be real (got a complex array)")
    if not np.all(np.isfinite(arr)):
        raise ValueError("intensity contains NaN or infinite values")
    if arr.size and arr.min() < 0:
        raise ValueError(f"intensity must be >= 0 (minimum is {arr.min():g})")
    return arr


def check_alpha(alpha: float | None) -> float | None:
    """Validate PtyINR's photon level α (> 0, finite) and return it as float or None."""
    if alpha is None:
        return None
    if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
            or not (math.isfinite(alpha) and alpha > 0)):
        raise ValueError(f"alpha (photons at the brightest pixel) must be a positive finite "
                         f"number (got {alpha!r})")
    return float(alpha)


def check_sigma(sigma: float | None) -> float:
    """Validate the Gaussian noise σ (>= 0, finite); ``None`` gives DEFAULT_SIGMA."""
    if sigma is None:
        return DEFAULT_SIGMA
    if (isinstance(sigma, bool) or not isinstance(sigma, numbers.Real)
            or not (math.isfinite(sigma) and sigma >= 0)):
        raise ValueError(f"sigma (Gaussian noise standard deviation) must be a finite number "
                         f">= 0 (got {sigma!r})")
    return float(sigma)


def poisson_noise(intensity: np.ndarray, seed: int | np.random.Generator | None = None,
                  alpha: float | None = None) -> np.ndarray:
    """Shot noise: Poisson draws of the counts (or PtyINR's α-scaled form when ``alpha``).

    Parameters
    ----------
    intensity : ndarray
        Expected intensities, >= 0.
    seed : int or Generator, optional
    alpha : float, optional
        Photon count given to the brightest pixel (PtyINR). When set, the output is
        ``max(I)/α · Poisson(I/max(I)·α)``, on the same scale as the input.

    Returns
    -------
    ndarray, float32, same shape
    """
    arr = _check_intensity(intensity)
    alpha = check_alpha(alpha)
    rng = _rng(seed)
    if alpha is None:
        return rng.poisson(arr).astype(np.float32)
    peak = float(arr.max()) if arr.size else 0.0
    if peak == 0:
        return np.zeros(arr.shape, dtype=np.float32)
    return (peak / alpha * rng.poisson(arr / peak * alpha)).astype(np.float32)


def gaussian_noise(intensity: np.ndarray, sigma: float | None = None,
                   seed: int | np.random.Generator | None = None) -> np.ndarray:
    """Additive Gaussian noise ``max(I + N(0, σ²), 0)`` as float32."""
    arr = _check_intensity(intensity)
    sigma = check_sigma(sigma)
    rng = _rng(seed)
    return np.clip(arr + rng.normal(0.0, sigma, arr.shape), 0.0, None).astype(np.float32)


def add_noise(intensity: np.ndarray, kind: str = "poisson",
              seed: int | np.random.Generator | None = None, alpha: float | None = None,
              sigma: float | None = None) -> np.ndarray:
    """Apply the noise model ``kind`` (see module docstring) and return float32 counts.

    Raises ValueError for an unknown ``kind`` or a bad ``alpha`` / ``sigma``.
    """
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind {kind!r} is unknown; choose one of {NOISE_KINDS}")
    alpha = check_alpha(alpha)
    sig = check_sigma(sigma)
    rng = _rng(seed)
    if kind == "none":
        return _check_intensity(intensity).astype(np.float32)
    if kind == "poisson":
        return poisson_noise(intensity, rng, alpha)
    if kind == "gaussian":
        return gaussian_noise(intensity, sig, rng)
    return gaussian_noise(poisson_noise(intensity, rng, alpha), sig, rng)
