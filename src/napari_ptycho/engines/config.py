"""Fields every engine config shares; each engine's Config dataclass subclasses this."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class BaseConfig:
    """Common run parameters.

    Parameters
    ----------
    iterations : int
        Length of the run in the engine's unit (iterations, epochs, steps, timesteps).
    seed : int
        Random seed: the same seed on the same data gives the same result.
    device : str
        "auto" (CUDA when present, else CPU), "cpu" or "cuda".
    update_every : int
        Yield a snapshot every this many units (the last one is always yielded).
    """

    iterations: int = 100
    seed: int = 0
    device: str = "auto"
    update_every: int = 1

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        if int(self.iterations) < 1:
            raise ValueError(f"iterations must be >= 1 (got {self.iterations})")
        if int(self.update_every) < 1:
            raise ValueError(f"update_every must be >= 1 (got {self.update_every})")
        if str(self.device).lower() not in ("auto", "cpu") and not str(
                self.device).lower().startswith("cuda"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda' (got {self.device!r})")


def check_unit(name: str, value: float, low_open: bool = True) -> None:
    """Refuse a fraction outside (0, 1] (or [0, 1] when ``low_open`` is False).

    Parameters
    ----------
    name : str
        The parameter's name, for the message.
    value : float
        The value to check; NaN and infinities are refused too.
    low_open : bool
        Whether 0 itself is refused (step sizes and relaxations: 0 would freeze the run).

    Raises
    ------
    ValueError
        If ``value`` lies outside the interval.
    """
    ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not (math.isfinite(value) and ok):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval} (got {value})")
