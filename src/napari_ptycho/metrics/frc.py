"""Fourier ring (2D) and shell (3D) correlation with the usual resolution thresholds.

``FRC(r) = Re Σ_{|k|∈r} A(k) B*(k) / sqrt(Σ|A|² Σ|B|²)`` over rings of width one
frequency sample of the smallest axis. The real part (rather than the modulus) keeps the
FRC of independent noise centred on zero instead of biased upwards.

Thresholds: the half-bit curve of van Heel & Schatz (J. Struct. Biol. 151, 250 (2005)),
``(0.2071 + 1.9102/√n) / (1.2071 + 0.9102/√n)`` with ``n`` the number of pixels (voxels)
in the ring (shell), and the constant 1/7 of Rosenthal & Henderson (2003). FRC50 (as used
by PtychoPINN) is the frequency where the FRC first drops below 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_ptycho.metrics._checks import same_shape

__all__ = ["frc", "frc_crossing", "halfbit_threshold", "ONE_SEVENTH"]

#: The 1/7 FSC criterion (Rosenthal & Henderson 2003).
ONE_SEVENTH = 1.0 / 7.0

# A ring whose mean power per pixel is below this fraction of the image's mean is empty:
# float32 rounding noise (~1e-14) beyond an object's band limit must not score as signal.
_EMPTY_RING = 1e-12


def halfbit_threshold(n_pixels: Any) -> np.ndarray:
    """Half-bit information threshold for rings (shells) holding ``n_pixels`` samples."""
    n = np.maximum(np.asarray(n_pixels, dtype=np.float64), 1.0)
    root = np.sqrt(n)
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def _as_image(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array (got dtype {arr.dtype})")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D image or 3D volume; got shape {arr.shape}")
    if min(arr.shape) < 4:
        raise ValueError(f"{name} shape {arr.shape} is too small for a ring correlation "
                         "(need at least 4 pixels per axis)")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.complex128)


def _taper(shape: tuple[int, ...], fraction: float = 0.25) -> np.ndarray:
    """Separable Tukey window: flat centre, cosine edges over ``fraction`` of each axis."""
    from scipy.signal.windows import tukey

    w = np.ones(shape)
    for axis, n in enumerate(shape):
        view = [1] * len(shape)
        view[axis] = n
        w = w * tukey(n, fraction).reshape(view)
    return w


def frc(a: Any, b: Any, *, window: bool = False, ring_width: float = 1.0
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Fourier ring / shell correlation of two images or volumes.

    Parameters
    ----------
    a, b : array_like, shape (H, W) or (D, H, W)
        Real or complex images of the same shape (already registered).
    window : bool
        Subtract each image's mean and apply a Tukey taper first. Use it for crops that
        are not periodic, whose shared edges would otherwise correlate at high frequency.
    ring_width : float
        Ring width in frequency samples of the smallest axis (default 1).

    Returns
    -------
    freq : ndarray
        Ring centres in cycles per pixel, from 0 to the Nyquist frequency 0.5.
    frc : ndarray
        Correlation per ring, in [-1, 1]; 0 for rings where either image has no power.
    halfbit : ndarray
        Half-bit threshold curve per ring.
    one_seventh : float
        The constant 1/7 threshold.
    """
    a = _as_image(a, "a")
    b = _as_image(b, "b")
    same_shape(a, b, "a", "b")
    if not (np.isfinite(ring_width) and ring_width > 0):
        raise ValueError(f"ring_width must be a positive number (got {ring_width!r})")
    if window:
        taper = _taper(a.shape)
        a = (a - a.mean()) * taper
        b = (b - b.mean()) * taper
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    step = ring_width / min(a.shape)
    radius = np.sqrt(sum(np.fft.fftfreq(n).reshape([-1 if i == j else 1
                                                    for i in range(a.ndim)]) ** 2
                         for j, n in enumerate(a.shape)))
    index = np.rint(radius / step).astype(np.int64).ravel()
    n_rings = int(np.floor(0.5 / step)) + 1  # up to Nyquist of the smallest axis
    keep = index < n_rings
    index = index[keep]
    cross = np.bincount(index, (fa * np.conj(fb)).real.ravel()[keep], n_rings)
    pa = np.bincount(index, (np.abs(fa) ** 2).ravel()[keep], n_rings)
    pb = np.bincount(index, (np.abs(fb) ** 2).ravel()[keep], n_rings)
    counts = np.bincount(index, minlength=n_rings)
    denom = np.sqrt(pa * pb)
    per_pixel = np.maximum(counts, 1)
    full = (pa / per_pixel > _EMPTY_RING * pa.sum() / counts.sum()) & (
        pb / per_pixel > _EMPTY_RING * pb.sum() / counts.sum())
    curve = np.where(full & (denom > 0), cross / np.where(denom > 0, denom, 1.0), 0.0)
    freq = np.arange(n_rings) * step
    return freq, np.clip(curve, -1.0, 1.0), halfbit_threshold(counts), ONE_SEVENTH


def frc_crossing(freq: Any, curve: Any, threshold: Any) -> float:
    """Frequency where ``curve`` first falls below ``threshold`` (linear interpolation).

    The zero-frequency ring is skipped. When the curve never falls below the threshold the
    highest frequency is returned: the resolution is then limited by the sampling.

    Parameters
    ----------
    freq, curve : array_like, 1D, same length
        Output of :func:`frc`.
    threshold : float or array_like
        A constant (0.5, 1/7) or a curve (the half-bit threshold).
    """
    f = np.asarray(freq, dtype=np.float64)
    c = np.asarray(curve, dtype=np.float64)
    if f.ndim != 1 or c.shape != f.shape or f.size < 2:
        raise ValueError(f"freq and curve must be 1D of equal length >= 2; got {f.shape} and "
                         f"{c.shape}")
    t = np.broadcast_to(np.asarray(threshold, dtype=np.float64), f.shape)
    margin = c - t
    below = np.flatnonzero(margin[1:] < 0)
    if below.size == 0:
        return float(f[-1])
    i = int(below[0]) + 1
    m0, m1 = margin[i - 1], margin[i]
    frac = m0 / (m0 - m1) if m0 > 0 else 0.0
    return float(f[i - 1] + frac * (f[i] - f[i - 1]))
