"""Input validation shared by the metrics: clear ``ValueError``s that name the argument."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_complex_array(x: Any, name: str, attr: str | None = None) -> np.ndarray:
    """Return ``x`` (or ``x.<attr>``) as a finite complex128 array.

    Parameters
    ----------
    x : array_like or object
        An array, or an object carrying one in attribute ``attr`` (a Snapshot's
        ``object``, a PtychoData's ``truth_object``).
    name : str
        Argument name used in error messages.
    attr : str, optional
        Attribute to unwrap when ``x`` is not an array.

    Raises
    ------
    ValueError
        If the value is missing, not complex, empty or holds NaN / infinity.
    """
    if attr is not None and not isinstance(x, np.ndarray) and hasattr(x, attr):
        inner = getattr(x, attr)
        if inner is None:
            raise ValueError(f"{name} has no {attr} (it is None); pass a complex array "
                             "or an object that carries one")
        x = inner
    if x is None:
        raise ValueError(f"{name} is None; expected a complex array")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # e.g. ragged lists
        raise ValueError(f"{name} cannot be read as an array: {exc}") from exc
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric complex array (got dtype {arr.dtype})")
    if not np.iscomplexobj(arr):
        raise ValueError(f"{name} must be complex (got real dtype {arr.dtype}); the metrics "
                         "compare amplitude and phase of a complex object")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.complex128, copy=False)


def as_real_array(x: Any, name: str, nonnegative: bool = False) -> np.ndarray:
    """Return ``x`` as a finite float64 array (optionally required to be >= 0)."""
    if x is None:
        raise ValueError(f"{name} is None; expected a real array")
    arr = np.asarray(x)
    if arr.dtype == object or not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be a numeric array (got dtype {arr.dtype})")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real (got complex dtype {arr.dtype})")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if nonnegative and np.any(arr < 0):
        raise ValueError(f"{name} must be non-negative (minimum {arr.min():g})")
    return arr


def same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise a ValueError naming both arguments when their shapes differ."""
    if a.shape != b.shape:
        raise ValueError(f"{name_a} shape {a.shape} does not match {name_b} shape {b.shape}")


def as_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray | None:
    """Validate an optional boolean mask of ``shape``; ``None`` passes through."""
    if mask is None:
        return None
    m = np.asarray(mask)
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.number) or np.iscomplexobj(m):
            raise ValueError(f"{name} must be a boolean array (got dtype {m.dtype})")
        if not np.all(np.isin(m, (0, 1))):
            raise ValueError(f"{name} must be boolean (or 0/1); got other values")
        m = m.astype(bool)
    if m.shape != tuple(shape):
        raise ValueError(f"{name} shape {m.shape} does not match the data shape {tuple(shape)}")
    if not m.any():
        raise ValueError(f"{name} selects no element")
    return m


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
