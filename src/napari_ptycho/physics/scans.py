"""Scan trajectories (raster, Fermat spiral) at a requested overlap, and the overlap measure.

Overlap follows PtyINR's definition: ``overlap = 1 − step / D`` where ``D`` is the probe
diameter, taken as the FWHM of the probe amplitude (:func:`probe_fwhm`). For the Fermat
spiral, whose points have no single step, the step is the mean nearest-neighbour distance;
:func:`measure_overlap` uses that same step for any trajectory, so a raster measures its
grid step.
"""

from __future__ import annotations

import math

import numpy as np

from napari_ptycho.physics.probes import probe_fwhm

#: Scan kinds understood by :func:`make_scan`.
SCAN_KINDS: tuple[str, ...] = ("raster", "spiral")

_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))


def mean_nearest_neighbour_distance(positions: np.ndarray) -> float:
    """Mean distance from each position to its nearest other position (pixels)."""
    from scipy.spatial import cKDTree

    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] < 2:
        raise ValueError(f"positions must have shape (N, 2) with N >= 2; got {pos.shape}")
    dist, _ = cKDTree(pos).query(pos, k=2)
    return float(dist[:, 1].mean())


def measure_overlap(positions: np.ndarray, probe: np.ndarray) -> float:
    """Probe overlap ``1 − step / FWHM`` of a scan.

    Parameters
    ----------
    positions : ndarray, shape (N, 2)
        Scan positions in pixels (N >= 2).
    probe : ndarray, complex, shape (modes, h, w) or (h, w)
        Probe; its diameter is the FWHM of the mode-summed amplitude.

    Returns
    -------
    float
        Overlap ratio; negative when neighbouring probes do not touch.
    """
    return 1.0 - mean_nearest_neighbour_distance(positions) / probe_fwhm(probe)


def step_for_overlap(overlap: float, diameter: float) -> float:
    """Step (pixels) that gives ``overlap`` for a probe of ``diameter`` pixels."""
    if not 0 < overlap < 1:
        raise ValueError(f"overlap must be in (0, 1) (got {overlap})")
    if not (math.isfinite(diameter) and diameter > 0):
        raise ValueError(f"probe diameter must be positive (got {diameter})")
    return (1.0 - overlap) * diameter


def raster_scan(span: tuple[float, float], step: float) -> np.ndarray:
    """Square-grid positions (row, col) with spacing ``step`` filling ``[0, span]``,
    centred in it (row-major order, (N, 2) float64)."""
    axes = []
    for extent in span:
        n = int(math.floor(extent / step + 1e-9)) + 1
        start = (extent - (n - 1) * step) / 2
        axes.append(start + step * np.arange(n))
    rows, cols = np.meshgrid(axes[0], axes[1], indexing="ij")
    return np.stack([rows.ravel(), cols.ravel()], axis=1)


def _spiral(n: int, scale: float) -> np.ndarray:
    k = np.arange(n, dtype=np.float64)
    r = scale * np.sqrt(k)
    theta = k * _GOLDEN_ANGLE
    return np.stack([r * np.sin(theta), r * np.cos(theta)], axis=1)


def fermat_spiral_scan(span: tuple[float, float], step: float) -> np.ndarray:
    """Fermat-spiral positions centred in ``[0, span]`` whose mean nearest-neighbour
    distance equals ``step`` (points outside the rectangle are dropped)."""
    centre = np.array(span, dtype=np.float64) / 2
    half_diag = float(np.hypot(*centre))
    scale = step
    # the spiral's mean nearest-neighbour distance is proportional to its scale but the
    # clipping to the rectangle changes the set a little, so refine the scale a few times
    for _ in range(6):
        n = int(math.ceil((half_diag / scale) ** 2)) + 2
        pts = _spiral(n, scale) + centre
        inside = np.all((pts >= -1e-9) & (pts <= np.array(span) + 1e-9), axis=1)
        pts = pts[inside]
        if len(pts) < 2:
            return pts
        scale *= step / mean_nearest_neighbour_distance(pts)
    n = int(math.ceil((half_diag / scale) ** 2)) + 2
    pts = _spiral(n, scale) + centre
    return pts[np.all((pts >= 0) & (pts <= np.array(span)), axis=1)]


def make_scan(kind: str, object_shape: tuple[int, int], probe_shape: tuple[int, int],
              step: float, margin: int = 1, jitter: float = 0.0,
              rng: np.random.Generator | None = None) -> np.ndarray:
    """Probe-window corners (row, col) for a scan that keeps every window inside the object.

    Parameters
    ----------
    kind : {"raster", "spiral"}
    object_shape, probe_shape : tuple of int
        Object array and probe window shapes (pixels).
    step : float
        Grid step (raster) or mean nearest-neighbour distance (spiral) in pixels.
    margin : int
        Pixels kept free between every window and the object border.
    jitter : float
        Standard deviation (pixels) of Gaussian noise added to each position; jittered
        positions are clipped back into the allowed range.
    rng : Generator, optional
        Randomness for the jitter.

    Returns
    -------
    ndarray, float64, shape (N, 2)
    """
    if kind not in SCAN_KINDS:
        raise ValueError(f"scan kind {kind!r} is unknown; choose one of {SCAN_KINDS}")
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"scan step must be positive (got {step})")
    if not (math.isfinite(jitter) and jitter >= 0):
        raise ValueError(f"jitter must be >= 0 pixels (got {jitter})")
    # the last window pixel floor(p) + h - 1 must stay <= H - 1 - margin
    span = tuple(float(o - p - 2 * margin) for o, p in zip(object_shape, probe_shape,
                                                            strict=True))
    if min(span) < 0:
        raise ValueError(f"probe window {tuple(probe_shape)} plus a margin of {margin} px does "
                         f"not fit in the object {tuple(object_shape)}")
    pos = raster_scan(span, step) if kind == "raster" else fermat_spiral_scan(span, step)
    if jitter > 0:
        rng = rng if rng is not None else np.random.default_rng()
        pos = np.clip(pos + rng.normal(0.0, jitter, pos.shape), 0.0, np.array(span))
    return pos + margin
