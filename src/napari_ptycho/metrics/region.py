"""Where to score: the scanned area of a ptychography scan, or any region or mask."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_ptycho.metrics._checks import as_mask

__all__ = ["bounding_slices", "illuminated_region", "region_mask", "scanned_region"]


def scanned_region(positions: Any, probe_shape: Any, object_shape: Any) -> tuple[slice, slice]:
    """Bounding box of the object area covered by at least one probe window.

    Parameters
    ----------
    positions : array_like, shape (N, 2)
        Probe-window top-left corners ``(row, col)`` in object pixels.
    probe_shape : tuple of int
        Probe window ``(h, w)``.
    object_shape : tuple of int
        Object array ``(H, W)``; the box is clipped to it.

    Returns
    -------
    tuple of slice
        ``(rows, cols)`` to index the object with.
    """
    pos = np.asarray(positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] < 1:
        raise ValueError(f"positions must have shape (N, 2) with N >= 1; got {pos.shape}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or infinite values")
    ph = tuple(int(s) for s in np.atleast_1d(probe_shape))[-2:]
    if len(ph) != 2 or min(ph) < 1:
        raise ValueError(f"probe_shape must be (h, w) with h, w >= 1; got {probe_shape!r}")
    oh = tuple(int(s) for s in np.atleast_1d(object_shape))
    if len(oh) != 2 or min(oh) < 1:
        raise ValueError(f"object_shape must be (H, W) with H, W >= 1; got {object_shape!r}")
    # The forward model cuts each patch at floor(position) and shifts the probe by the
    # fraction inside it (physics.ptycho), so a window covers floor(p) .. floor(p) + h - 1.
    lo = np.floor(pos.min(axis=0)).astype(int)
    hi = np.floor(pos.max(axis=0)).astype(int) + np.array(ph)
    lo = np.clip(lo, 0, np.array(oh))
    hi = np.clip(hi, 0, np.array(oh))
    if np.any(hi <= lo):
        raise ValueError(f"the probe windows at positions {pos.min(axis=0)}..{pos.max(axis=0)} "
                         f"do not overlap the object of shape {oh}")
    return slice(int(lo[0]), int(hi[0])), slice(int(lo[1]), int(hi[1]))


def illuminated_region(positions: Any, probe: Any, object_shape: Any,
                       fraction: float = 0.1) -> np.ndarray:
    """Object pixels whose summed illumination ``Σ_j Σ_modes |P|²`` reaches ``fraction`` of
    its peak.

    Tighter than :func:`scanned_region` for a focused probe: the box would also score the
    dark corners of the probe windows, where no method is constrained by the data.

    Parameters
    ----------
    positions : array_like, shape (N, 2)
        Probe-window top-left corners ``(row, col)`` in object pixels (floored, as the
        forward model cuts its patches).
    probe : array_like, shape (h, w) or (modes, h, w)
        The probe (complex); incoherent modes add their intensities.
    object_shape : tuple of int
        Object array ``(H, W)``.
    fraction : float
        Threshold relative to the peak, in (0, 1].

    Returns
    -------
    ndarray of bool, shape ``object_shape``
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}")
    power = np.abs(np.asarray(probe)) ** 2
    if power.ndim == 3:
        power = power.sum(axis=0)
    if power.ndim != 2:
        raise ValueError(f"probe must have shape (h, w) or (modes, h, w); got {power.shape}")
    scanned_region(positions, power.shape, object_shape)  # validates positions and shapes
    h, w = power.shape
    oh, ow = (int(s) for s in object_shape)
    cover = np.zeros((oh, ow))
    for r, c in np.floor(np.asarray(positions, dtype=np.float64)).astype(int):
        r0, c0 = max(r, 0), max(c, 0)
        r1, c1 = min(r + h, oh), min(c + w, ow)
        if r1 > r0 and c1 > c0:
            cover[r0:r1, c0:c1] += power[r0 - r:r1 - r, c0 - c:c1 - c]
    return cover >= fraction * cover.max()


def region_mask(region: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Turn ``region`` (None, a tuple of slices, or a boolean mask) into a boolean mask.

    Raises
    ------
    ValueError
        If ``region`` is neither, has the wrong number of slices, or selects nothing.
    """
    if region is None:
        return None
    if isinstance(region, slice):
        region = (region,)
    if isinstance(region, (tuple, list)) and all(isinstance(s, slice) for s in region):
        if len(region) != len(shape):
            raise ValueError(f"region has {len(region)} slice(s) but the object has "
                             f"{len(shape)} dimension(s) {tuple(shape)}")
        for s in region:
            if s.step not in (None, 1):
                raise ValueError(f"region slices must have step 1 (got {s})")
        mask = np.zeros(shape, dtype=bool)
        mask[tuple(region)] = True
        if not mask.any():
            raise ValueError(f"region {tuple(region)} selects no pixel of shape {tuple(shape)}")
        return mask
    if isinstance(region, np.ndarray) or hasattr(region, "__array__"):
        return as_mask(region, shape, name="region")
    raise ValueError("region must be None, a tuple of slices (one per axis) or a boolean "
                     f"mask; got {type(region).__name__}")


def bounding_slices(mask: np.ndarray) -> tuple[slice, ...]:
    """Smallest box (tuple of slices) holding every True element of ``mask``."""
    slices = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        slices.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(slices)
