"""Synthetic 2D test objects (complex transmission functions) for the simulator.

Every generator first draws real "thickness" maps in [0, 1]; :func:`make_object` then maps
them to an amplitude range and a phase range chosen by the caller. Thicker material
absorbs more, so amplitude *decreases* with thickness while phase increases with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

#: Object kinds understood by :func:`make_object`.
OBJECT_KINDS: tuple[str, ...] = ("siemens", "lines", "grf", "large_features", "images")


def _rng(seed: int | np.random.Generator | None) -> np.random.Generator:
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def _normalise(x: np.ndarray) -> np.ndarray:
    """Stretch ``x`` linearly onto [0, 1] (a constant map becomes zeros)."""
    lo, hi = float(x.min()), float(x.max())
    if hi - lo <= 0:
        return np.zeros_like(x, dtype=np.float64)
    return (x - lo) / (hi - lo)


def _pair(name: str, value: object) -> tuple[float, float]:
    """A ``(min, max)`` pair of finite floats, or a ValueError naming ``name``."""
    try:
        lo, hi = (float(v) for v in value)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers (got {value!r})"
                         ) from None
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} must be finite (got {value!r})")
    return lo, hi


def siemens_star(size: int, spokes: int = 16, radius: float = 0.45,
                 rotation: float = 0.0, supersample: int = 4) -> np.ndarray:
    """Siemens star thickness map in [0, 1], anti-aliased by supersampling.

    Parameters
    ----------
    size : int
        Side length in pixels.
    spokes : int
        Number of opaque spokes (angular period 2π / spokes).
    radius : float
        Star radius as a fraction of ``size``.
    rotation : float
        Angular offset of the spokes in radians.
    supersample : int
        Sub-pixels per pixel and axis used to anti-alias the sharp edges.
    """
    from skimage.transform import downscale_local_mean

    n = size * supersample
    c = (np.arange(n) + 0.5) / supersample - size / 2
    y, x = np.meshgrid(c, c, indexing="ij")
    r = np.hypot(y, x)
    theta = np.arctan2(y, x) + rotation
    fine = ((np.sin(spokes * theta) > 0) & (r < radius * size)).astype(np.float64)
    return downscale_local_mean(fine, (supersample, supersample))


def random_lines(size: int, rng: np.random.Generator, n_lines: int | None = None
                 ) -> np.ndarray:
    """Randomly oriented sharp (anti-aliased, one pixel wide) lines, as in PtychoPINN's
    ``lines`` data set; overlapping lines add and the map is clipped to [0, 1]."""
    from skimage.draw import line_aa

    n_lines = n_lines if n_lines is not None else max(8, size // 2)
    canvas = np.zeros((size, size), dtype=np.float64)
    for _ in range(n_lines):
        y0, x0 = rng.uniform(0, size - 1, 2)
        angle = rng.uniform(0, math.pi)
        length = rng.uniform(0.1, 0.6) * size
        y1 = np.clip(y0 + length * math.sin(angle), 0, size - 1)
        x1 = np.clip(x0 + length * math.cos(angle), 0, size - 1)
        rr, cc, val = line_aa(int(round(y0)), int(round(x0)), int(round(y1)), int(round(x1)))
        canvas[rr, cc] += val
    return np.clip(canvas, 0.0, 1.0)


def gaussian_random_field(size: int, rng: np.random.Generator,
                          correlation_length: float | None = None) -> np.ndarray:
    """Gaussian random field in [0, 1] with a Gaussian covariance of the given correlation
    length (pixels): white noise low-pass filtered in Fourier space."""
    ell = float(correlation_length) if correlation_length is not None else size / 16
    if not ell > 0:
        raise ValueError(f"correlation_length must be positive (got {correlation_length})")
    noise = rng.standard_normal((size, size))
    f = np.fft.fftfreq(size)
    f2 = f[:, None] ** 2 + f[None, :] ** 2
    # covariance exp(-r²/(2ℓ²)) ↔ spectrum ∝ exp(-2π²ℓ²f²); the filter is its square root
    field = np.fft.ifft2(np.fft.fft2(noise) * np.exp(-math.pi ** 2 * ell ** 2 * f2)).real
    return _normalise(field)


def large_features(size: int, rng: np.random.Generator, n_blobs: int | None = None
                   ) -> np.ndarray:
    """Smooth large blobs: a sum of randomly placed anisotropic Gaussians a quarter to an
    eighth of the field wide, normalised to [0, 1]."""
    n_blobs = n_blobs if n_blobs is not None else int(rng.integers(4, 9))
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    out = np.zeros((size, size))
    for _ in range(n_blobs):
        cy, cx = rng.uniform(0.15, 0.85, 2) * size
        sy, sx = rng.uniform(size / 16, size / 6, 2)
        angle = rng.uniform(0, math.pi)
        ca, sa = math.cos(angle), math.sin(angle)
        u = ca * (x - cx) + sa * (y - cy)
        v = -sa * (x - cx) + ca * (y - cy)
        out += rng.uniform(0.5, 1.0) * np.exp(-0.5 * ((u / sx) ** 2 + (v / sy) ** 2))
    return _normalise(out)


def _bundled_image(name: str, size: int) -> np.ndarray:
    """A gray scikit-image bundled image (shipped with the package, offline) resized."""
    import skimage.data
    from skimage.color import rgb2gray
    from skimage.transform import resize

    img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
    if img.ndim == 3:
        img = rgb2gray(img[..., :3])
    return _normalise(resize(img, (size, size), anti_aliasing=True))


def images_pair(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Thickness maps from two unrelated bundled images: ``camera`` for the amplitude and
    ``astronaut`` (gray) for the phase, so that cross-talk between them is visible."""
    return _bundled_image("camera", size), _bundled_image("astronaut", size)


def make_object(kind: str = "siemens", size: int = 128, seed: int | np.random.Generator |
                None = 0, amplitude_range: tuple[float, float] = (0.8, 1.0),
                phase_range: tuple[float, float] = (0.0, 1.0),
                correlation_length: float | None = None) -> np.ndarray:
    """Complex64 test object of ``kind``.

    Parameters
    ----------
    kind : {"siemens", "lines", "grf", "large_features", "images"}
        Pattern family.
    size : int
        Side length in pixels (>= 8).
    seed : int or Generator, optional
        Randomness (spoke rotation, line/blob placement, field realisation).
    amplitude_range : (float, float)
        ``(min, max)`` transmission amplitude, ``0 <= min <= max``.
    phase_range : (float, float)
        ``(min, max)`` phase in radians.
    correlation_length : float, optional
        Correlation length of the ``"grf"`` field in pixels (default ``size / 16``).

    Returns
    -------
    ndarray, complex64, shape (size, size)
    """
    if kind not in OBJECT_KINDS:
        raise ValueError(f"object kind {kind!r} is unknown; choose one of {OBJECT_KINDS}")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"object size must be an integer >= 8 (got {size})")
    size = int(size)
    a0, a1 = _pair("amplitude_range", amplitude_range)
    if not 0 <= a0 <= a1:
        raise ValueError(f"amplitude_range must satisfy 0 <= min <= max (got {amplitude_range})")
    p0, p1 = _pair("phase_range", phase_range)
    if not p0 <= p1:
        raise ValueError(f"phase_range must satisfy min <= max (got {phase_range})")
    rng = _rng(seed)
    makers: dict[str, Callable[[], np.ndarray]] = {
        "siemens": lambda: siemens_star(size, rotation=rng.uniform(0, 2 * math.pi)),
        "lines": lambda: random_lines(size, rng),
        "grf": lambda: gaussian_random_field(size, rng, correlation_length),
        "large_features": lambda: large_features(size, rng),
    }
    if kind == "images":
        amp_map, phase_map = images_pair(size)
    elif kind == "grf":
        # independent amplitude and phase fields make the object less trivially coupled
        amp_map, phase_map = makers[kind](), makers[kind]()
    else:
        amp_map = phase_map = makers[kind]()
    amplitude = a1 - (a1 - a0) * amp_map
    phase = p0 + (p1 - p0) * phase_map
    return (amplitude * np.exp(1j * phase)).astype(np.complex64)
