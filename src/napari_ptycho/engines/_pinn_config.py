"""Parameters of the PtychoPINN engines (one dataclass each: GUI form, CLI flags, cards)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from napari_ptycho.engines.config import BaseConfig

#: How inference may weight the stitched patches (see ``PinnInferConfig``).
STITCH_WEIGHTINGS = ("uniform", "probe")


@dataclass
class PinnConfig(BaseConfig):
    """PtychoPINN training parameters (``iterations`` counts epochs).

    Parameters
    ----------
    batch_size : int
        Groups per optimiser step.
    learning_rate : float
        Adam learning rate.
    pattern_size : int
        Model input side N (multiple of 8; patches are N/2).
    group_size : int
        Patterns per group K (nearest neighbours in the scan).
    filters : int
        Channels of the first encoder stage (×2 per stage).
    resize : str
        Patterns of another size than N: "refuse", "crop" or "bin" to N.
    probe_source : str
        "auto" (the scan's probe, else rPIE), "data" (must be in the scan) or "rpie"
        (estimate with a short rPIE run).
    probe_iterations : int
        rPIE iterations for the estimated probe.
    train_scale : bool
        Learn the global intensity scale (else fixed at its start value, the probe's
        photons per pattern).
    model_path : str
        Start from these weights (fine-tuning); empty = random initialisation.
    save_dir : str
        Folder for weights + JSON card, rewritten after each good epoch; empty = no save.
    max_groups : int
        Train on at most this many groups (random subset; 0 = all).
    phase_limit : float
        Phase activation bound of a new model: phase = phase_limit · tanh(·), in (0, π].
        π/2 by default: at π a network can park pixels at ±π (the same complex number)
        and stall at a flat object (docs/pinn.md).
    amplitude_max : float
        Amplitude range of a new model: amplitude = amplitude_max · sigmoid(·). Above 1
        the transmission 1 is reachable at a finite logit (docs/pinn.md).
    cpu_threads : int
        Torch threads while training on the CPU (restored afterwards; 0 = leave torch's
        setting). One is the default: the steps are small, and on a shared 2-core machine
        two threads made every step ~30x slower, waiting on each other (docs/pinn.md).
    """

    iterations: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    pattern_size: int = 64
    group_size: int = 4
    filters: int = 16
    resize: Literal["refuse", "crop", "bin"] = "refuse"
    probe_source: Literal["auto", "data", "rpie"] = "auto"
    probe_iterations: int = 30
    train_scale: bool = False
    model_path: str = ""
    save_dir: str = ""
    max_groups: int = 0
    phase_limit: float = math.pi / 2
    amplitude_max: float = 1.0
    cpu_threads: int = 1

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1 (got {self.batch_size})")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number (got "
                             f"{self.learning_rate})")
        for name in ("probe_iterations", "max_groups", "cpu_threads"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.model_path and not Path(self.model_path).exists():
            raise ValueError(f"model_path {self.model_path!r} does not exist")


@dataclass
class PinnInferConfig(BaseConfig):
    """Inference with a trained PtychoPINN model.

    Parameters
    ----------
    model_path : str
        Weights (.pt with its .json card) or a folder holding them; empty = shipped model.
    resize : str
        Patterns of another size than the model's N: "refuse", "crop" or "bin".
    tile_groups : int
        Groups predicted between two streamed snapshots.
    stitch_weighting : str
        "uniform" (eq. 1 of the paper: every patch pixel counts the same) or "probe"
        (patch pixels weighted by the scan's probe intensity, so guesses where no light
        reached count little; needs a probe in the scan, else uniform).
    """

    iterations: int = 1
    model_path: str = ""
    resize: Literal["refuse", "crop", "bin"] = "refuse"
    tile_groups: int = 256
    stitch_weighting: Literal["uniform", "probe"] = "uniform"

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        if int(self.tile_groups) < 1:
            raise ValueError(f"tile_groups must be >= 1 (got {self.tile_groups})")
        if self.stitch_weighting not in STITCH_WEIGHTINGS:
            raise ValueError(f"stitch_weighting must be one of {STITCH_WEIGHTINGS} (got "
                             f"{self.stitch_weighting!r})")
        if self.model_path and not Path(self.model_path).exists():
            raise ValueError(f"model_path {self.model_path!r} does not exist")
