"""Classic iterative 2D ptychography engines of the PIE family: ePIE and rPIE.

* **ePIE** (Maiden & Rodenburg 2009): per-position object/probe steps normalised by the
  maximum of the other factor's intensity.
* **rPIE** (Maiden, Johnson & Li 2017): the same with the regularised denominator
  ``(1 − α)|P|² + α max|P|²``, which takes larger steps in weakly lit areas.

DM and RAAR live in :mod:`napari_ptycho.engines.projections`.
The PIE family updates batches of positions: by default "compact sets" of windows that do
not overlap, so one batched FFT reproduces sequential updates within the set. Everything
that the engines share (error metric, probe guess, modes, windows, run loop) lives in
:mod:`napari_ptycho.engines.common`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from napari_ptycho.engines.base import EngineError
from napari_ptycho.engines.common import (
    IterativeEngine,
    Problem,
    PtychoConfig,
    abs2,
    batch_order,
    compact_sets,
    modulus_projection,
    position_step,
)


def _check_unit(name: str, value: float, low_open: bool = True) -> None:
    ok = (0 < value <= 1) if low_open else (0 <= value <= 1)
    if not (math.isfinite(value) and ok):
        interval = "(0, 1]" if low_open else "[0, 1]"
        raise ValueError(f"{name} must be in {interval} (got {value})")


@dataclass
class PIEConfig(PtychoConfig):
    """Fields the PIE family shares (plus :class:`~napari_ptycho.engines.common.PtychoConfig`).

    Parameters
    ----------
    sequential_iterations : int
        When the probe starts from the generic guess estimated from the data (and is being
        retrieved), the first this many iterations update one position at a time, whatever
        ``batch_size`` says: retrieving the probe from that guess needs the many small probe
        steps of sequential PIE, while batched steps are averaged over a set and, on dense
        scans, stall far above the noise floor. A probe that comes with the data or a warm
        start skips this; 0 batches from the start.
    """

    sequential_iterations: int = 10

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        if int(self.sequential_iterations) < 0:
            raise ValueError(f"sequential_iterations must be >= 0 "
                             f"(got {self.sequential_iterations})")


@dataclass
class EPIEConfig(PIEConfig):
    """ePIE parameters (plus :class:`~napari_ptycho.engines.common.PtychoConfig`).

    Parameters
    ----------
    alpha : float
        Object step size in (0, 1] (the paper's α; 1 is the full step).
    beta : float
        Probe step size in (0, 1] (the paper's β).
    """

    alpha: float = 1.0
    beta: float = 1.0

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        _check_unit("alpha", self.alpha)
        _check_unit("beta", self.beta)


@dataclass
class RPIEConfig(PIEConfig):
    """rPIE parameters (plus :class:`~napari_ptycho.engines.common.PtychoConfig`).

    Parameters
    ----------
    alpha : float
        Object regularisation α in [0, 1]: the denominator is ``(1 − α)|P|² + α max|P|²``;
        α = 1 is ePIE's full step, small α divides by the local illumination. Small values
        (≈ 0.1) suit a good probe; from a generic probe guess α = 0.1 ran away in weakly
        lit areas in our tests while 0.25–0.5 converged, hence the default 0.5.
    beta : float
        Probe regularisation in [0, 1], the same form with the object's intensity.
    """

    alpha: float = 0.5
    beta: float = 1.0

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        _check_unit("alpha", self.alpha, low_open=False)
        _check_unit("beta", self.beta, low_open=False)


class _PIE(IterativeEngine):
    """Batched PIE update shared by ePIE and rPIE.

    Object step per window: ``O += s_o Σ_m P_m* χ_m / ((1 − a)|P|² + a max|P|²)`` and the
    probe likewise with the object; ePIE is a = 1 with step s = α, rPIE is a = α with
    s = 1. Windows of one compact set do not overlap, so their object steps are exactly
    those of sequential PIE; overlapping mini-batches (``batch_size`` > 1) average the
    object steps where windows overlap. The probe step of a batch is the average of its
    windows' steps (numerators and denominators summed), which is why a probe retrieved
    from the generic data guess first gets ``sequential_iterations`` one-window sweeps.
    """

    #: (object regularisation, object step, probe regularisation, probe step)
    def weights(self, config: Any) -> tuple[float, float, float, float]:
        raise NotImplementedError

    def setup(self, problem: Problem, config: Any) -> None:
        self.sets = (compact_sets(problem.windows.positions, problem.windows.probe_shape,
                                  problem.generator) if config.batch_size == 0 else None)
        self.overlapping = config.batch_size > 1
        self.centroid = problem.windows.positions.mean(dim=0)
        if self.sets is not None:
            # measured amplitudes and gather indices laid out per set once, not per batch
            self.set_amps = [problem.amplitudes.index_select(0, s) for s in self.sets]
            self._index_sets(problem)

    def _index_sets(self, problem: Problem) -> None:
        self.set_flat = [problem.windows.flat.index_select(0, s).reshape(-1)
                         for s in self.sets]

    def _batches(self, problem: Problem, config: Any, sequential: bool
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if sequential:
            return [(idx, problem.windows.flat.index_select(0, idx).reshape(-1),
                     problem.amplitudes.index_select(0, idx))
                    for idx in batch_order(problem, 1, None)]
        if self.sets is not None:
            order = torch.randperm(len(self.sets), generator=problem.generator).tolist()
            return [(self.sets[i], self.set_flat[i], self.set_amps[i]) for i in order]
        return [(idx, problem.windows.flat.index_select(0, idx).reshape(-1),
                 problem.amplitudes.index_select(0, idx))
                for idx in batch_order(problem, config.batch_size, None)]

    def iterate(self, problem: Problem, config: Any, done: int) -> torch.Tensor:
        update_probe = config.update_probe and done >= config.probe_update_start
        refine = config.position_refinement and done >= config.position_refinement_start
        err = torch.zeros((), dtype=torch.float64, device=problem.device)
        sequential = (problem.probe_estimated and config.update_probe
                      and done < config.sequential_iterations)
        self.overlapping = config.batch_size > 1 and not sequential
        for idx, flat, amps in self._batches(problem, config, sequential):
            err += self._update(problem, config, idx, flat, amps, update_probe, refine)
        if refine:
            windows = problem.windows
            if not torch.isfinite(windows.positions).all():
                raise EngineError(f"non-finite positions at iteration {done + 1}")
            # the scan's centroid is unobservable: keep it where it was
            windows.positions += self.centroid - windows.positions.mean(dim=0)
            windows.refresh()
            if self.sets is not None:
                self._index_sets(problem)
        return err

    def _update(self, problem: Problem, config: Any, idx: torch.Tensor, flat: torch.Tensor,
                amps: torch.Tensor, update_probe: bool, refine: bool) -> torch.Tensor:
        a_o, s_o, a_p, s_p = self.weights(config)
        windows, obj, probe = problem.windows, problem.obj, problem.probe
        obj_flat = obj.view(-1)
        patches = obj_flat.index_select(0, flat).view(len(idx), *windows.probe_shape)
        probes = windows.probes(probe, idx)  # (1 or B, M, h, w)
        psi = probes * patches[:, None]
        fields = problem.detector.forward(psi)
        if refine:
            step = position_step(problem, fields, amps, patches, idx, config.position_max_step)
            windows.positions[idx] += step
        err = modulus_projection(fields, amps, problem.mask)
        chi = problem.detector.backward(fields).sub_(psi)
        del fields, psi

        p_int = abs2(probes).sum(dim=1)  # (1 or B, h, w)
        p_max = p_int.amax(dim=(-2, -1), keepdim=True)
        p_den = p_max if a_o == 1 else (1 - a_o) * p_int + a_o * p_max
        if self.overlapping:
            num = torch.zeros_like(obj_flat)
            den = torch.zeros(obj_flat.shape, dtype=p_den.dtype, device=obj.device)
            num.scatter_add_(0, flat, (chi * probes.conj()).sum(dim=1).view(-1))
            den.scatter_add_(0, flat, p_den.expand(len(idx), *windows.probe_shape).reshape(-1))
            obj_flat.add_(num.mul_(s_o / den.clamp(min=1e-12 * float(den.max()))))
        else:
            weight = probes.conj() * (s_o / p_den).unsqueeze(1)
            step_o = (chi[:, 0] * weight[:, 0] if probe.shape[0] == 1
                      else (chi * weight).sum(dim=1))
            obj_flat.scatter_add_(0, flat, step_o.view(-1))

        if update_probe:
            o_int = abs2(patches)
            o_max = o_int.amax(dim=(-2, -1), keepdim=True)
            o_den = (o_max.sum() if a_p == 1
                     else ((1 - a_p) * o_int + a_p * o_max).sum(dim=0))
            if windows.has_fraction:
                p_num = windows.unshift(patches.conj()[:, None] * chi, idx).sum(dim=0)
            elif probe.shape[0] == 1:
                p_num = (chi[:, 0] * patches.conj()).sum(dim=0, keepdim=True)
            else:
                p_num = (chi * patches.conj()[:, None]).sum(dim=0)
            probe.add_(p_num.mul_(s_p / o_den.clamp(min=1e-12 * float(o_den.max()))))
        return err


class EPIE(_PIE):
    """Extended ptychographic iterative engine (Maiden & Rodenburg 2009)."""

    name = "epie"
    description = "ePIE (Maiden & Rodenburg 2009)"
    Config = EPIEConfig

    def weights(self, config: EPIEConfig) -> tuple[float, float, float, float]:
        return 1.0, config.alpha, 1.0, config.beta


class RPIE(_PIE):
    """Regularised PIE (Maiden, Johnson & Li 2017)."""

    name = "rpie"
    description = "rPIE (Maiden, Johnson & Li 2017)"
    Config = RPIEConfig

    def weights(self, config: RPIEConfig) -> tuple[float, float, float, float]:
        return config.alpha, 1.0, config.beta, 1.0
