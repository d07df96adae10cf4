"""Classic iterative 2D ptychography engines of the PIE family: ePIE and rPIE.

* **ePIE** (Maiden & Rodenburg 2009): per-position object/probe steps normalised by the
  maximum of the other factor's intensity.
* **rPIE** (Maiden, Johnson & Li 2017): the same with the regularised denominator
  ``(1 − α)|P|² + α max|P|²``, which takes larger steps in weakly lit areas.

DM and RAAR live in :mod:`napari_ptycho.engines.projections`.

The PIE family updates batches of positions. By default (``batch_size`` > 1) every batch
is a *parallel* (Jacobi) step: the windows' object steps are summed and divided by the
regularised summed illumination ``(1 − a) Σ_j |P_j|² + a max Σ_j |P_j|²`` (the probe's
likewise with the objects), the mini-batch form of PIE also used by LSQML-style solvers.
A few large batched FFTs per pass keep the Python overhead per pattern small, which is
what makes it fast on dense scans (on a 5-px-step 64² scan a compact set holds only ~5
windows). ``batch_size=0`` gives "compact sets" of windows that do not overlap (one
batched FFT reproduces sequential updates within a set) and ``batch_size=1`` the classic
sequential engine. Everything that the engines share (error metric, probe guess, modes,
windows, run loop) lives in :mod:`napari_ptycho.engines.common`.
"""

from __future__ import annotations

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
from napari_ptycho.engines.config import check_unit


@dataclass
class PIEConfig(PtychoConfig):
    """Fields the PIE family shares (plus :class:`~napari_ptycho.engines.common.PtychoConfig`).

    Parameters
    ----------
    batch_size : int
        Positions per parallel step (default 32); 0 = compact sets of non-overlapping
        windows, 1 = sequential PIE. Small parallel batches retrieve the probe from the
        generic guess sooner (more probe steps per pass), large ones cost less per pass.
    sequential_iterations : int
        When the probe starts from the generic guess estimated from the data (and is being
        retrieved), the first this many iterations update one position at a time, whatever
        ``batch_size`` says. ePIE needs this (default 10): its object step, divided by the
        *largest* illumination, barely moves the weakly lit object around a focused probe
        guess, and batched ePIE then stalls far above the noise floor. rPIE with a small α
        leaves the guess on its own in parallel batches (default 0). A probe that comes
        with the data or a warm start skips the warm-up.
    final_step_fraction : float
        The object and probe steps of parallel batches decay linearly to this fraction of
        their full size over the second half of the run (1 disables the decay): full steps
        on noisy data keep the iterate hopping around the optimum, smaller late steps
        average that out (the same device as LSQML's ``final_beta_fraction``).
    """

    batch_size: int = 32
    sequential_iterations: int = 0
    final_step_fraction: float = 0.2

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        if int(self.sequential_iterations) < 0:
            raise ValueError(f"sequential_iterations must be >= 0 "
                             f"(got {self.sequential_iterations})")
        check_unit("final_step_fraction", self.final_step_fraction)


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
    sequential_iterations: int = 10

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        check_unit("alpha", self.alpha)
        check_unit("beta", self.beta)


@dataclass
class RPIEConfig(PIEConfig):
    """rPIE parameters (plus :class:`~napari_ptycho.engines.common.PtychoConfig`).

    Parameters
    ----------
    alpha : float
        Object regularisation α in [0, 1]: the denominator is ``(1 − α)|P|² + α max|P|²``
        (summed over the batch's windows in parallel batches); α = 1 is ePIE's full step,
        small α divides by the local illumination. A small α is what lets parallel batches
        leave the generic probe guess: with α ≥ 0.1 the object barely changes where the
        guess is dim and the run stalls at NRMSE ≈ 0.4 on the benchmark star. On the
        benchmark scans α = 0.02 left it after 10–30 passes, 0.01 after 10–20 and 0.005
        within 10 (ending slightly noisier), hence the default 0.01. For sequential PIE
        (``batch_size=1``) from a generic guess use 0.25–0.5: single-window steps with
        α ≈ 0.1 ran away in weakly lit areas.
    beta : float
        Probe regularisation in [0, 1], the same form with the object's intensity.
    """

    alpha: float = 0.01
    beta: float = 1.0

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        check_unit("alpha", self.alpha, low_open=False)
        check_unit("beta", self.beta, low_open=False)


class _PIE(IterativeEngine):
    """Batched PIE update shared by ePIE and rPIE.

    Object step per window: ``O += s_o Σ_m P_m* χ_m / ((1 − a)|P|² + a max|P|²)`` and the
    probe likewise with the object; ePIE is a = 1 with step s = α, rPIE is a = α with
    s = 1. Windows of one compact set do not overlap, so their object steps are exactly
    those of sequential PIE; the probe step of a set is the average of its windows' steps.
    Parallel batches (``batch_size`` > 1) sum numerators and illuminations over the batch
    before dividing (:meth:`_parallel_update`).
    """

    #: (object regularisation, object step, probe regularisation, probe step)
    def weights(self, config: Any) -> tuple[float, float, float, float]:
        raise NotImplementedError

    def setup(self, problem: Problem, config: Any) -> None:
        if config.batch_size == 0:
            self.sets = compact_sets(problem.windows.positions, problem.windows.probe_shape,
                                     problem.generator)
        else:
            # one seeded partition, visited in a fresh order every pass: the batches'
            # amplitudes and gather indices are laid out once, not per batch
            self.sets = batch_order(problem, config.batch_size, None)
        self.centroid = problem.windows.positions.mean(dim=0)
        self.first = problem.start_iteration
        # object-sized accumulators of the parallel step, reused by every batch
        self.num = torch.empty_like(problem.obj)
        self.den = torch.empty(problem.obj.shape, dtype=torch.float32, device=problem.device)
        self.set_amps = [problem.amplitudes.index_select(0, s) for s in self.sets]
        self._index_sets(problem)

    def _index_sets(self, problem: Problem) -> None:
        self.set_flat = [problem.windows.flat.index_select(0, s).reshape(-1)
                         for s in self.sets]

    def _batches(self, problem: Problem, sequential: bool
                 ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        if sequential:
            return [(idx, problem.windows.flat.index_select(0, idx).reshape(-1),
                     problem.amplitudes.index_select(0, idx))
                    for idx in batch_order(problem, 1, None)]
        order = torch.randperm(len(self.sets), generator=problem.generator).tolist()
        return [(self.sets[i], self.set_flat[i], self.set_amps[i]) for i in order]

    def iterate(self, problem: Problem, config: Any, done: int) -> torch.Tensor:
        update_probe = config.update_probe and done >= config.probe_update_start
        refine = config.position_refinement and done >= config.position_refinement_start
        err = torch.zeros((), dtype=torch.float64, device=problem.device)
        sequential = (problem.probe_estimated and config.update_probe
                      and done < config.sequential_iterations)
        parallel = config.batch_size > 1 and not sequential
        progress = (done - self.first) / max(int(config.iterations) - 1, 1)
        self.decay = (1.0 - (1.0 - config.final_step_fraction) * max(0.0, 2 * progress - 1)
                      if parallel else 1.0)
        update = self._parallel_update if parallel else self._update
        for idx, flat, amps in self._batches(problem, sequential):
            err += update(problem, config, idx, flat, amps, update_probe, refine)
        if refine:
            windows = problem.windows
            if not torch.isfinite(windows.positions).all():
                raise EngineError(f"non-finite positions at iteration {done + 1}")
            # the scan's centroid is unobservable: keep it where it was
            windows.positions += self.centroid - windows.positions.mean(dim=0)
            windows.refresh()
            self._index_sets(problem)
        return err

    def _exit_wave_change(self, problem: Problem, config: Any, idx: torch.Tensor,
                          flat: torch.Tensor, amps: torch.Tensor, refine: bool,
                          buf: dict[str, torch.Tensor] | None = None
                          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Patches, window probes, χ = P_F(ψ) − ψ and the batch's error sum, written into
        the work arrays ``buf`` (see :meth:`_buffers`) when given."""
        windows, det = problem.windows, problem.detector
        buf = buf or {}
        obj_flat = problem.obj.view(-1)
        if "patches" in buf:
            patches = buf["patches"]
            torch.index_select(obj_flat, 0, flat, out=patches.view(-1))
        else:
            patches = obj_flat.index_select(0, flat).view(len(idx), *windows.probe_shape)
        probes = windows.probes(problem.probe, idx)  # (1 or B, M, h, w)
        psi = torch.mul(probes, patches.unsqueeze(1), out=buf.get("psi"))
        fields = det.forward(psi, out=buf.get("fields"))
        if refine:
            step = position_step(problem, fields, amps, patches, idx, config.position_max_step)
            windows.positions[idx] += step
        err = modulus_projection(fields, amps, problem.mask)
        chi = det.backward(fields, out=buf.get("chi")).sub_(psi)
        return patches, probes, chi, err

    def _probe_numerator(self, problem: Problem, patches: torch.Tensor, chi: torch.Tensor,
                         idx: torch.Tensor) -> torch.Tensor:
        """Σ_j O_j* χ_j over the batch, each window's sub-pixel shift undone: (M, h, w)."""
        if problem.windows.has_fraction:
            return problem.windows.unshift(patches.conj()[:, None] * chi, idx).sum(dim=0)
        # reduced over the batch without a (B, M, h, w) temporary
        return torch.linalg.vecdot(patches.unsqueeze(1), chi, dim=0)

    def _buffers(self, problem: Problem, b: int) -> dict[str, torch.Tensor]:
        """Work arrays of the parallel step for ``b`` windows (views of ones made once for
        the largest batch): fresh multi-megabyte temporaries in every batch cost, on CPU,
        about as much as the arithmetic itself."""
        m, (h, w) = problem.probe.shape[0], problem.windows.probe_shape
        H, W = problem.detector.detector_shape
        if getattr(self, "_work", None) is None or self._work["patches"].shape[0] < b:
            dev = problem.device
            self._work = {
                "patches": torch.empty((b, h, w), dtype=torch.complex64, device=dev),
                "psi": torch.empty((b, m, h, w), dtype=torch.complex64, device=dev),
                "fields": torch.empty((b, m, H, W), dtype=torch.complex64, device=dev),
                "chi": torch.empty((b, m, h, w), dtype=torch.complex64, device=dev),
                "illum": torch.empty((b, h, w), dtype=torch.float32, device=dev)}
        return {k: v[:b] for k, v in self._work.items()}

    def _parallel_update(self, problem: Problem, config: Any, idx: torch.Tensor,
                         flat: torch.Tensor, amps: torch.Tensor, update_probe: bool,
                         refine: bool) -> torch.Tensor:
        """One parallel PIE step over a batch of (possibly overlapping) windows.

        ``O += s_o Σ_j P_j* χ_j / ((1 − a) Σ_j |P_j|² + a max Σ_j |P_j|²)`` and
        ``P += s_p Σ_j O_j* χ_j / ((1 − a_p) Σ_j |O_j|² + a_p max Σ_j |O_j|²)``: where k
        windows overlap, the step is their illumination-weighted mean rather than k
        sequential steps, so large batches neither overshoot nor dilute the probe step.
        """
        a_o, s_o, a_p, s_p = self.weights(config)
        s_o, s_p = s_o * self.decay, s_p * self.decay
        probe = problem.probe
        b, modes = len(idx), probe.shape[0]
        buf = self._buffers(problem, b)
        obj_flat = problem.obj.view(-1)
        patches, probes, chi, err = self._exit_wave_change(problem, config, idx, flat, amps,
                                                           refine, buf)
        if update_probe:
            # Σ_j O_j* χ_j and Σ_j |O_j|², before the object step overwrites χ
            p_num = self._probe_numerator(problem, patches, chi, idx)
            o_den = torch.linalg.vecdot(patches, patches, dim=0).real
        # object: Σ_j P_j* χ_j over the batch ÷ the regularised summed illumination
        if modes == 1:
            step = chi[:, 0].mul_(probes[:, 0].conj().resolve_conj())
            illum = abs2(probes[:, 0])
        else:
            step = (chi * probes.conj()).sum(dim=1)
            illum = abs2(probes).sum(dim=1)
        num, den = self.num.view(-1).zero_(), self.den.view(-1).zero_()
        num.scatter_add_(0, flat, step.reshape(-1))
        if illum.shape[0] != b:
            illum = buf["illum"].copy_(illum.expand(b, -1, -1))
        den.scatter_add_(0, flat, illum.view(-1))
        _regularise(den, a_o)
        torch.view_as_real(num).mul_(den.reciprocal_().unsqueeze(-1))
        obj_flat.add_(num, alpha=s_o)

        if update_probe:
            _regularise(o_den, a_p)
            torch.view_as_real(p_num).mul_(o_den.reciprocal_().unsqueeze(-1))
            probe.add_(p_num, alpha=s_p)
        return err

    def _update(self, problem: Problem, config: Any, idx: torch.Tensor, flat: torch.Tensor,
                amps: torch.Tensor, update_probe: bool, refine: bool) -> torch.Tensor:
        """Sequential PIE applied to a compact set (or one window): per-window steps."""
        a_o, s_o, a_p, s_p = self.weights(config)
        obj, probe = problem.obj, problem.probe
        patches, probes, chi, err = self._exit_wave_change(problem, config, idx, flat, amps,
                                                           refine)
        p_int = abs2(probes).sum(dim=1)  # (1 or B, h, w)
        p_max = p_int.amax(dim=(-2, -1), keepdim=True)
        p_den = p_max if a_o == 1 else (1 - a_o) * p_int + a_o * p_max
        weight = probes.conj() * (s_o / p_den).unsqueeze(1)
        step_o = (chi[:, 0] * weight[:, 0] if probe.shape[0] == 1
                  else (chi * weight).sum(dim=1))
        obj.view(-1).scatter_add_(0, flat, step_o.view(-1))

        if update_probe:
            o_int = abs2(patches)
            o_max = o_int.amax(dim=(-2, -1), keepdim=True)
            o_den = (o_max.sum() if a_p == 1
                     else ((1 - a_p) * o_int + a_p * o_max).sum(dim=0))
            p_num = self._probe_numerator(problem, patches, chi, idx)
            probe.add_(p_num.mul_(s_p / o_den.clamp(min=1e-12 * float(o_den.max()))))
        return err


def _regularise(den: torch.Tensor, a: float) -> None:
    """``den ← (1 − a) den + a max(den)`` in place, kept above a tiny floor so that unlit
    pixels (zero numerator) divide to zero rather than NaN."""
    peak = den.max()  # a tensor: no device-to-host sync per batch on a GPU
    den.mul_(1 - a).add_(peak * (a + 1e-12)).add_(1e-30)


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
