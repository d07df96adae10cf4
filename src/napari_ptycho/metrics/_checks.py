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
