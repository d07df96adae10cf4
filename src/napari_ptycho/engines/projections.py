"""Projection-based 2D ptychography engines: difference map and RAAR.

* **DM** (Thibault et al. 2009): projections over all exit waves at once, the overlap
  projection solving object and probe together.
* **RAAR** (Luke 2004): relaxed averaged alternating reflections,
  ``psi <- [beta/2 (R_O R_F + I) + (1 - beta) P_F] psi``.

Both end with ``final_ap_fraction`` of plain alternating projections (neither has a fixed
point on noisy data, so their iterate never settles), and on a perfect raster scan both
fix the raster-grid ambiguity after every overlap projection
(:mod:`napari_ptycho.engines.raster_gauge`): from the generic probe guess they otherwise
fitted the data with an object covered by a pattern at the scan period (issue #4).

On noisy data both used to diverge to NaN: the overlap "projection" must never raise
‖ψ − P·O‖, but its per-pixel probe step overshoots under sub-pixel shifts and the raster
gauge aliased once the probe's band had widened. The probe step now takes its exact
line-search length (:meth:`_Projections.probe_step_length`), the gauge checks the current
band, and a scale gauge (:meth:`_Projections.scale_gauge`) holds the probe's power, so
that probe and object cannot run off along P → cP, O → O/c.

Everything the engines share (error metric, probe guess, modes, windows, run loop) lives
in :mod:`napari_ptycho.engines.common`.
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
    abs2,
    data_error,
    modulus_projection,
)
from napari_ptycho.engines.config import check_unit
from napari_ptycho.engines.raster_gauge import RUN_BAND_FRACTION, RasterGauge, probe_bandwidth


@dataclass
class DMConfig(PtychoConfig):
    """Difference-map parameters (plus :class:`~napari_ptycho.engines.common.PtychoConfig`;
    ``batch_size`` is ignored: every projection acts on all positions at once).

    Parameters
    ----------
    overlap_iterations : int
        Alternating object/probe solves inside each overlap projection.
    regularization : float
        Tikhonov weight, relative to the largest illumination, that pulls poorly lit
        object (or probe) pixels towards their previous value instead of dividing by ~0.
    raster_gauge : bool
        On a perfect raster scan, remove the scan-periodic factor that the data cannot
        tell apart between object and probe (the raster-grid pathology, see
        :mod:`napari_ptycho.engines.raster_gauge`) after every overlap projection that
        updates the probe. It leaves every exit wave, so the data fit, unchanged; without
        it DM and RAAR started from a generic probe guess return an object covered by a
        pattern at the scan period. No effect on scans that are not a raster.
    final_ap_fraction : float
        Fraction of the run's iterations, at its end, that use plain alternating
        projections ``ψ ← P_F(P_O ψ)`` instead of the engine's own update. DM and RAAR
        have no fixed point on noisy data: their iterate keeps moving (the χ² of DM on
        the noisy Siemens star went 1.8 → 2.8 × the noise floor between iterations 40 and
        60), while alternating projections descend to the nearest fit. 0 disables it.
    """

    overlap_iterations: int = 2
    regularization: float = 1e-3
    raster_gauge: bool = True
    final_ap_fraction: float = 0.3

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        if int(self.overlap_iterations) < 1:
            raise ValueError(f"overlap_iterations must be >= 1 (got {self.overlap_iterations})")
        if not (math.isfinite(self.regularization) and self.regularization > 0):
            raise ValueError(f"regularization must be a positive number "
                             f"(got {self.regularization})")
        if not (math.isfinite(self.final_ap_fraction) and 0 <= self.final_ap_fraction < 1):
            raise ValueError(f"final_ap_fraction must be in [0, 1) "
                             f"(got {self.final_ap_fraction})")
        if self.position_refinement:
            raise ValueError("position_refinement is not available for the projection "
                             "engines (dm, raar); use rpie or lsqml")


@dataclass
class RAARConfig(DMConfig):
    """RAAR parameters (plus :class:`DMConfig`).

    Parameters
    ----------
    beta : float
        Relaxation β in (0, 1]; β = 1 is the difference map with the projections swapped,
        smaller β leans towards the data projection (Luke 2004 uses 0.5–0.9). From the
        generic probe guess β = 0.75 (and 0.5) stalled at χ² ≈ 30–50 × the noise floor
        with the probe never leaving the guess, while 0.95 escaped like DM; hence 0.95.
    """

    beta: float = 0.95

    def validate(self) -> None:
        """Refuse impossible values (raises ValueError)."""
        super().validate()
        check_unit("beta", self.beta)


def descending_step_length(slope: float, curvature: float) -> float:
    """Length of a step along which the residual is ``r(t) = r(0) − 2t·slope + t²·curvature``.

    Returns 1 (the full step) when it lowers the residual, i.e. when the minimiser
    t* = slope / curvature exceeds 1/2; otherwise t*, the length that lowers it most; 0 when
    the step does not descend at all (slope ≤ 0) or the numbers are not usable.
    """
    if not (curvature > 0 and slope > 0 and math.isfinite(slope / curvature)):
        return 0.0
    t = slope / curvature
    return 1.0 if t > 0.5 else t


class _Projections(IterativeEngine):
    """Exit-wave iterates over all positions with a modulus and an overlap projection.

    Every pass runs over cache-sized chunks of windows: the iterate ψ (N, M, h, w) is far
    larger than the CPU cache, and whole-stack temporaries made these engines several
    times slower than the same arithmetic done chunk by chunk.
    """

    def setup(self, problem: Problem, config: Any) -> None:
        h, wd = problem.detector.detector_shape
        self.chunk = max(1, 2 ** 17 // (problem.probe.shape[0] * h * wd))
        self.chunks = [slice(i, min(i + self.chunk, problem.n_patterns))
                       for i in range(0, problem.n_patterns, self.chunk)]
        self.psi = torch.empty((problem.n_patterns, *problem.probe.shape),
                               dtype=torch.complex64, device=problem.device)
        for sl in self.chunks:
            self.psi[sl] = self.model_waves(problem, sl)
        self.buffer = torch.empty_like(self.psi)
        self.probe_power = float(abs2(problem.probe).sum())  # the scale gauge's reference
        # sub-pixel windows: the object solve's shifted probes, kept for the probe solve
        # that follows with the same probe (one Fourier-shift pass fewer per overlap
        # solve, which pays for the probe step's line search)
        self.shifted = (torch.empty_like(self.psi)
                        if problem.windows.has_fraction and config.update_probe else None)
        self.gauge = None
        if config.raster_gauge and config.update_probe:
            w = problem.windows
            # whole-pixel windows need no sub-pixel shift, so no band limit
            band = probe_bandwidth(problem.probe) if w.has_fraction else (0.0, 0.0)
            # the lattice of the windows as placed: with subpixel=False that is the
            # rounded corners (a non-integer raster step rounds to no lattice at all; the
            # gauge fitted to the unrounded one changed the exit waves and DM diverged)
            placed = w.positions if w.subpixel else w.corners.to(torch.float64)
            self.gauge = RasterGauge(placed.cpu().numpy(), w.probe_shape, w.object_shape,
                                     problem.device, bandwidth=band)
        n = int(config.iterations)
        self.ap_from = problem.start_iteration + n - int(round(config.final_ap_fraction * n))

    def modes_mixed(self, problem: Problem, u: torch.Tensor) -> None:
        for sl in self.chunks:
            self.psi[sl] = torch.einsum("km,nmhw->nkhw", u, self.psi[sl])

    def model_waves(self, problem: Problem, sl: slice) -> torch.Tensor:
        """Exit waves P · O of the current estimate for the windows ``sl``."""
        w = problem.windows
        return w.probes(problem.probe, sl) * w.gather(problem.obj, sl)[:, None]

    def overlap_projection(self, problem: Problem, config: Any, waves: torch.Tensor,
                           update_probe: bool) -> None:
        """Object and probe that best explain ``waves`` (alternating least squares with a
        small Tikhonov pull towards the previous estimate), updated in place."""
        w, reg = problem.windows, config.regularization
        for _ in range(config.overlap_iterations):
            num = torch.zeros_like(problem.obj)
            den = torch.zeros(problem.obj.shape, dtype=torch.float32, device=problem.device)
            for sl in self.chunks:
                probes = w.probes(problem.probe, sl)
                if self.shifted is not None:
                    self.shifted[sl] = probes
                w.scatter_add(num, (waves[sl] * probes.conj()).sum(dim=1), sl)
                n = sl.stop - sl.start
                w.scatter_add(den, abs2(probes).sum(dim=1).expand(n, *w.probe_shape), sl)
            r = reg * float(den.max())
            problem.obj = (num + r * problem.obj) / (den + r)
            if not update_probe:
                continue
            # a preconditioned step rather than the closed form: with sub-pixel shifts the
            # closed form is only approximate and makes DM diverge; for whole-pixel
            # positions both are the same
            p_num = torch.zeros_like(problem.probe)
            p_den = torch.zeros(problem.probe.shape[-2:], dtype=torch.float32,
                                device=problem.device)
            for sl in self.chunks:
                patches = w.gather(problem.obj, sl)
                probes = (self.shifted[sl] if self.shifted is not None
                          else w.probes(problem.probe, sl))
                resid = waves[sl] - probes * patches[:, None]
                p_num += w.unshift(resid * patches.conj()[:, None], sl).sum(dim=0)
                p_den += abs2(patches).sum(dim=0)
            r = reg * float(p_den.max())
            step = p_num / (p_den + r)
            if w.has_fraction:
                step = step * self.probe_step_length(problem, step, p_num)
            problem.probe = problem.probe + step
        if update_probe and self.gauge is not None:
            # the probe's band is measured now, not once: on noisy data it widens to
            # Nyquist, and harmonics allowed for the first guess then alias
            band = (probe_bandwidth(problem.probe, RUN_BAND_FRACTION) if w.has_fraction
                    else None)
            problem.obj, problem.probe = self.gauge.apply(problem.obj, problem.probe, band)
        if update_probe:
            self.scale_gauge(problem)

    def probe_step_length(self, problem: Problem, step: torch.Tensor,
                          p_num: torch.Tensor) -> float:
        """Length of the probe ``step``: 1 (the diagonal step) where that lowers
        ‖ψ − (P + t·step)·O‖², else the t ∈ [0, 1) that minimises it.

        Dividing the probe gradient ``p_num`` by Σ|O|² pixel by pixel is the exact least-
        squares step only for whole-pixel windows. With sub-pixel (Fourier) shifts the
        normal matrix Σ S_nᴴ|O_n|²S_n is no longer diagonal, and where Σ|O|² varies
        sharply between neighbouring probe pixels (an object drifting towards zero on a
        scan-periodic pattern, as DM does on noisy data) the diagonal step overshoots: it
        raised the residual it should lower, the exit waves grew geometrically and DM
        stopped on NaN after 20–40 iterations. The residual is quadratic in t, so the
        exact minimiser along the step is t* = ``Re⟨step, p_num⟩ / Σ‖S_n(step)·O_n‖²`` and
        every length in (0, 2t*) descends. The diagonal step is kept whenever it descends
        (t* > 1/2), so only overshooting steps are shortened: shortening descending steps
        too (min(1, t*)) changed DM's path on clean data, and from the data-derived probe
        of PtyINR's 64² noise-free 50 % scan it ended at 4.7 dB object-amplitude PSNR
        instead of 12.2.
        """
        w = problem.windows
        curvature = torch.zeros((), dtype=torch.float64, device=problem.device)
        for sl in self.chunks:
            curvature += abs2(w.probes(step, sl) * w.gather(problem.obj, sl)[:, None]).sum()
        slope = float((step.conj() * p_num).real.sum())
        return descending_step_length(slope, float(curvature))

    def scale_gauge(self, problem: Problem) -> None:
        """Hold the probe's total power at its starting value (P → cP, O → O/c).

        Exit waves P·O, and so the data fit, do not see c; neither does the next overlap
        projection (each of its solves is equivariant under this scaling), so the DM and
        RAAR iterates are unchanged. On noisy data the pair otherwise drifts along this
        ambiguity (the probe's peak grew from 7e2 to 5e19 while the object's amplitude
        fell to 1e-17) until float32 overflows; the start's power is the data-derived
        guess's, matched to the mean measured intensity, or that of a given probe.
        """
        power = float(abs2(problem.probe).sum())
        if power > 0 and math.isfinite(power):
            c = math.sqrt(self.probe_power / power)
            problem.probe = problem.probe * c
            problem.obj = problem.obj / c

    def fourier_projection(self, problem: Problem, waves: torch.Tensor, sl: slice
                           ) -> torch.Tensor:
        """P_F: exit waves ``waves`` (of windows ``sl``) whose propagated modulus matches
        the data."""
        fields = problem.detector.forward(waves)
        modulus_projection(fields, problem.amplitudes[sl], problem.mask)
        return problem.detector.backward(fields)

    def error(self, problem: Problem, waves: torch.Tensor, sl: slice) -> torch.Tensor:
        """Σ_valid (|Ψ| − √I)² of exit waves of the windows ``sl``."""
        return data_error(problem.detector.forward(waves), problem.amplitudes[sl],
                          problem.mask)

    def _update_probe(self, config: Any, done: int) -> bool:
        return bool(config.update_probe and done >= config.probe_update_start)

    def alternating_projections(self, problem: Problem, config: Any, done: int
                                ) -> torch.Tensor:
        """ψ ← P_F(P_O ψ), the descent step of the final iterations; returns the error of
        P_O ψ (the reported object and probe)."""
        self.overlap_projection(problem, config, self.psi, self._update_probe(config, done))
        err = torch.zeros((), dtype=torch.float64, device=problem.device)
        for sl in self.chunks:
            fields = problem.detector.forward(self.model_waves(problem, sl))
            err += modulus_projection(fields, problem.amplitudes[sl], problem.mask)
            self.psi[sl] = problem.detector.backward(fields)
        return err


class DM(_Projections):
    """Difference map (Thibault et al. 2009): ψ ← ψ + P_F(2 P_O ψ − ψ) − P_O ψ."""

    name = "dm"
    description = "Difference map (Thibault et al. 2009)"
    Config = DMConfig

    def iterate(self, problem: Problem, config: DMConfig, done: int) -> torch.Tensor:
        if done >= self.ap_from:
            return self.alternating_projections(problem, config, done)
        self.overlap_projection(problem, config, self.psi, self._update_probe(config, done))
        err = torch.zeros((), dtype=torch.float64, device=problem.device)
        for sl in self.chunks:
            phi = self.model_waves(problem, sl)
            err += self.error(problem, phi, sl)
            psi = self.psi[sl]
            psi += self.fourier_projection(problem, 2 * phi - psi, sl) - phi
        return err


class RAAR(_Projections):
    """RAAR (Luke 2004): ψ ← β/2 (R_O R_F + I) ψ + (1 − β) P_F ψ, i.e.
    ``β (ψ + P_O(2 P_F ψ − ψ) − P_F ψ) + (1 − β) P_F ψ``."""

    name = "raar"
    description = "RAAR (Luke 2004)"
    Config = RAARConfig

    def iterate(self, problem: Problem, config: RAARConfig, done: int) -> torch.Tensor:
        if done >= self.ap_from:
            return self.alternating_projections(problem, config, done)
        reflected = self.buffer  # R = 2 P_F ψ − ψ, so that P_F ψ = (R + ψ) / 2 later
        for sl in self.chunks:
            psi = self.psi[sl]
            torch.sub(2 * self.fourier_projection(problem, psi, sl), psi, out=reflected[sl])
        self.overlap_projection(problem, config, reflected,
                                self._update_probe(config, done))
        b = config.beta
        err = torch.zeros((), dtype=torch.float64, device=problem.device)
        for sl in self.chunks:
            phi = self.model_waves(problem, sl)
            err += self.error(problem, phi, sl)
            psi = self.psi[sl]
            pf = (reflected[sl] + psi) / 2
            psi.copy_(b * (psi + phi - pf) + (1 - b) * pf)
        return err
