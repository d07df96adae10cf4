"""Argument checks shared by the simulators: each raises a ValueError naming the argument."""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np


def check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum`` (integral floats and numpy scalars accepted)."""
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def check_real(name: str, value: Any, low: float, high: float = math.inf,
               low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval from ``low`` to ``high``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    v = float(value)
    if (v < low or (low_open and v == low)) or (v > high or (high_open and v == high)):
        interval = (("(" if low_open else "[") + f"{low:g}, {high:g}"
                    + (")" if high_open or high == math.inf else "]"))
        raise ValueError(f"{name} must be in {interval} (got {value!r})")
    return v


def check_kind(name: str, value: Any, kinds: tuple[str, ...]) -> str:
    """``value`` when it is one of ``kinds``; the error lists the kinds."""
    if not isinstance(value, str) or value not in kinds:
        raise ValueError(f"{name} {value!r} is unknown; choose one of {kinds}")
    return value


def check_complex_array(name: str, value: Any, ndims: tuple[int, ...]) -> np.ndarray:
    """A finite complex64 copy of ``value`` with one of the allowed numbers of axes."""
    arr = np.asarray(value)
    if arr.ndim not in ndims or min(arr.shape, default=0) < 2:
        raise ValueError(f"{name} must have {' or '.join(map(str, ndims))} axes of length "
                         f">= 2; got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be numeric (got dtype {arr.dtype})")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr.astype(np.complex64)
