"""Accelerated Wirtinger flow (Xu, Soltanolkotabi, Haldar et al. 2018) for 2D ptychography.

Gradient descent on the amplitude misfit ``f(O) = ½ Σ_valid (|F(P·O_j)| − √I_j)²`` with
Nesterov momentum and a known probe. The Wirtinger gradient of ``f`` with respect to
``conj(O)`` is ``Σ_j S_jᵀ Σ_m P_m* (ψ_jm − F⁻¹ Π(Ψ_j)_m)`` where ``Π`` replaces the modulus
by the measured one (the same projection every PIE engine uses), so each iteration costs
one forward and one backward propagation of all patterns. The step is ``step_size / L``
with ``L = max_r Σ_j |P(r − r_j)|²`` (the largest illumination), the Lipschitz bound of
the amplitude loss' smooth part; the momentum is Nesterov's ``(k − 1)/(k + 2)`` with a
restart whenever the misfit grows (O'Donoghue & Candès 2015), which keeps the run monotone
in practice.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from napari_ptycho.engines.common import (
    IterativeEngine,
    Problem,
    PtychoConfig,
    modulus_projection,
)


@dataclass
class AWFConfig(PtychoConfig):
    """AWF parameters (plus :class:`~napari_ptycho.engines.common.PtychoConfig`; the probe
    is known, so ``update_probe`` and ``position_refinement`` must stay off and
    ``batch_size`` is unused: every step uses all patterns).

    Parameters
    ----------
    step_size : float
        Step relative to ``1 / L`` (L: largest illumination), in (0, 2].
    momentum : bool
        Nesterov acceleration (False gives plain Wirtinger flow on the amplitude loss).
    restart : bool
        Reset the momentum when the misfit increases.
    """

    iterations: int = 300
    update_probe: bool = False
    step_size: float = 1.0
    momentum: bool = True
    restart: bool = True

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        if not (math.isfinite(self.step_size) and 0 < self.step_size <= 2):
            raise ValueError(f"step_size must be in (0, 2] (got {self.step_size})")
        if self.update_probe:
            raise ValueError("update_probe must be False: AWF reconstructs the object with "
                             "a known probe")
        if self.position_refinement:
            raise ValueError("position_refinement must be False for AWF")


class AWF(IterativeEngine):
    """Accelerated Wirtinger flow with a known probe."""

    name = "awf"
    description = "Accelerated Wirtinger flow (Xu et al. 2018)"
    Config = AWFConfig

    def setup(self, problem: Problem, config: Any) -> None:
        w = problem.windows
        probes = w.probes(problem.probe)
        power = probes.abs().square().sum(dim=1).expand(problem.n_patterns, -1, -1)
        illum = torch.zeros(w.object_shape, dtype=torch.float32, device=problem.device)
        w.scatter_add(illum, power.contiguous())
        self.step = float(config.step_size) / max(float(illum.max()), 1e-12)
        self.previous = problem.obj.clone()
        self.k = 0
        self.last_error = math.inf

    @staticmethod
    def gradient(problem: Problem, obj: torch.Tensor) -> tuple[torch.Tensor, float]:
        """Wirtinger gradient of the amplitude misfit at ``obj`` and the misfit Σ(|Ψ|−√I)²."""
        w = problem.windows
        probes = w.probes(problem.probe)
        waves = probes * w.gather(obj).unsqueeze(1)
        fields = problem.detector.forward(waves)
        err = modulus_projection(fields, problem.amplitudes, problem.mask)
        resid = (waves - problem.detector.backward(fields)) * probes.conj()
        grad = torch.zeros_like(obj)
        w.scatter_add(grad, resid.sum(dim=1))
        return grad, float(err)

    def iterate(self, problem: Problem, config: Any, done: int) -> float:
        obj = problem.obj
        if config.momentum:
            beta = (self.k - 1) / (self.k + 2) if self.k > 0 else 0.0
            look = obj + beta * (obj - self.previous)
        else:
            look = obj
        grad, err = self.gradient(problem, look)
        if config.momentum and config.restart and err > self.last_error:
            # momentum overshot: restart from the current iterate without it
            self.k = 0
            look = obj
            grad, err = self.gradient(problem, look)
        self.previous = obj
        problem.obj = look - self.step * grad
        self.k += 1
        self.last_error = err
        return err
