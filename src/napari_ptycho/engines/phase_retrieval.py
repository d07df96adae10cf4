"""Classic 3D phase retrieval for Bragg CDI: ER, HIO, RAAR with shrink-wrap.

Forward model (the data model's convention): ``I = |fftshift(fftn(rho, norm="ortho"))|²``.
The measured amplitudes are ``ifftshift``-ed once at the start, so an iteration is just
one ``fftn``, the modulus projection, one ``ifftn`` and the support update; no shifts.

All three algorithms share one update ``rho ← c·rho + w·P_M(rho)`` with per-voxel weights
that depend only on the support S (recomputed when shrink-wrap changes S):

* ER:   ``w = S``,                ``c = 0``
* HIO:  ``w = S − β(1−S)``,       ``c = 1−S``          (Fienup 1982)
* RAAR: ``w = S + (1−2β)(1−S)``,  ``c = β(1−S)``       (Luke 2005)

Voxels that are masked (invalid) or held out for the free log-likelihood keep the model
amplitude in the modulus projection, so they never enter the fit. The free LLK is the
Poisson deviance per voxel on the held-out set, ``mean(I_c − I_o + I_o log(I_o/I_c))``;
χ² is the normalised amplitude misfit on the fitted voxels, ``Σ(|F|−√I)² / Σ I``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from napari_ptycho.engines.base import EngineError, Snapshot, Timer, select_device
from napari_ptycho.engines.config import BaseConfig
from napari_ptycho.engines.phase_retrieval_core import (
    MAX_VOXELS,
    MIN_SIDE,
    Problem,
    Weights,
    fast_abs,
    validate_intensity,
)
from napari_ptycho.engines.recipe import schedule
from napari_ptycho.physics.bragg import shrink_wrap

BASELINE_RECIPE = "(20ER+160HIO+20ER)*3"

__all__ = ["BASELINE_RECIPE", "ER", "ERHIO", "HIO", "MAX_VOXELS", "MIN_SIDE", "RAAR3D",
           "PhaseRetrievalConfig", "PhaseRetrievalEngine", "fast_abs", "validate_intensity"]


@dataclass
class PhaseRetrievalConfig(BaseConfig):
    """Parameters of the classic 3D engines.

    Parameters
    ----------
    recipe : str
        Algorithm cycle, e.g. ``"(20ER+160HIO+20ER)*3"``; cycled to ``iterations``.
    beta : float
        Feedback parameter of HIO and RAAR, in (0, 1].
    support_threshold : float
        Shrink-wrap threshold, as a fraction of the smoothed amplitude maximum.
    shrinkwrap_every : int
        Update the support every this many iterations (0 switches shrink-wrap off).
    sigma_start : float
        Gaussian width (voxels) of the shrink-wrap smoothing at the start of a run.
    sigma_end : float
        Width at the end; sigma shrinks linearly from sigma_start.
    autocorr_threshold : float
        Initial support = autocorrelation ``|IFFT(I)|`` above this fraction of its maximum
        (ignored when ``init`` brings a support).
    average_last : int
        Return the complex average (global phase aligned) of the last this many iterates.
    n_starts : int
        Independent random starts; the best by free LLK (χ² without free voxels) wins.
    free_fraction : float
        Fraction of valid voxels held out from the fit for the free LLK (0 = none).
    """

    iterations: int = 200
    update_every: int = 10
    recipe: str = "ER"
    beta: float = 0.9
    support_threshold: float = 0.1
    shrinkwrap_every: int = 20
    sigma_start: float = 2.0
    sigma_end: float = 1.0
    autocorr_threshold: float = 0.1
    average_last: int = 0
    n_starts: int = 1
    free_fraction: float = 0.05

    def validate(self) -> None:
        """Refuse impossible values (ValueError naming the parameter)."""
        super().validate()
        schedule(self.recipe, int(self.iterations))
        checks = [
            ("beta", 0 < self.beta <= 1, "in (0, 1]"),
            ("support_threshold", 0 < self.support_threshold < 1, "in (0, 1)"),
            ("shrinkwrap_every", self.shrinkwrap_every >= 0, ">= 0"),
            ("sigma_end", self.sigma_end > 0, "> 0"),
            ("sigma_start", self.sigma_start >= self.sigma_end, ">= sigma_end"),
            ("autocorr_threshold", 0 < self.autocorr_threshold < 1, "in (0, 1)"),
            ("average_last", 0 <= self.average_last <= self.iterations,
             "between 0 and iterations"),
            ("n_starts", self.n_starts >= 1, ">= 1"),
            ("free_fraction", 0 <= self.free_fraction <= 0.5, "in [0, 0.5]"),
        ]
        for name, ok, rule in checks:
            if not ok:
                raise ValueError(f"{name} must be {rule} (got {getattr(self, name)!r})")


@dataclass
class ERConfig(PhaseRetrievalConfig):
    """Error reduction (Gerchberg–Saxton–Fienup)."""

    recipe: str = "ER"


@dataclass
class HIOConfig(PhaseRetrievalConfig):
    """Hybrid input–output (Fienup 1982); the last 20 iterations are ER to settle."""

    recipe: str = "180HIO+20ER"


@dataclass
class RAARConfig(PhaseRetrievalConfig):
    """Relaxed averaged alternating reflections (Luke 2005)."""

    recipe: str = "180RAAR+20ER"
    beta: float = 0.8


@dataclass
class ERHIOConfig(PhaseRetrievalConfig):
    """The seeds' baseline: (20 ER + 160 HIO + 20 ER) × 3 = 600 iterations."""

    iterations: int = 600
    recipe: str = BASELINE_RECIPE


class PhaseRetrievalEngine:
    """ER / HIO / RAAR with shrink-wrap, averaging and multiple starts (see module doc)."""

    name: ClassVar[str] = "er_hio"
    description: ClassVar[str] = "ER/HIO cycles with shrink-wrap (seeds' 600-iteration baseline)"
    dims: ClassVar[int] = 3
    unit: ClassVar[str] = "iteration"
    Config: ClassVar[type] = ERHIOConfig

    def run(self, data: Any, config: PhaseRetrievalConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield snapshots; the final one holds the best start and the ranking in extras.

        Parameters
        ----------
        data : BraggData or ndarray
            Intensities (D, H, W), peak centred; ``data.mask`` marks valid voxels.
        config : PhaseRetrievalConfig
            Run parameters.
        init : Snapshot, optional
            Starting object (same shape) and optional ``extras["support"]`` (e.g. a
            network's prediction); only with ``n_starts == 1``.
        """
        config.validate()
        intensity = validate_intensity(getattr(data, "intensity", data))
        mask = getattr(data, "mask", None)
        if mask is not None and np.asarray(mask).shape != intensity.shape:
            raise ValueError(f"mask shape {np.asarray(mask).shape} does not match intensity "
                             f"{intensity.shape}")
        if init is not None:
            if config.n_starts != 1:
                raise ValueError("n_starts must be 1 when an init object is given")
            if np.shape(init.object) != intensity.shape:
                raise ValueError(f"init object shape {np.shape(init.object)} does not match "
                                 f"intensity {intensity.shape}")
            if not np.all(np.isfinite(init.object)):
                raise ValueError("init object contains NaN or infinite values")
        device = select_device(config.device)
        prob = Problem(intensity, mask, config.free_fraction, config.seed, device)
        plan = schedule(config.recipe, int(config.iterations))
        timer = Timer()
        total = len(plan) * config.n_starts
        results: list[dict[str, Any]] = []
        best: dict[str, Any] | None = None
        for start in range(config.n_starts):
            rho, support = self._initial(prob, config, init, start)
            for snap, final in self._iterate(prob, config, plan, rho, support, start, timer,
                                             total):
                if final is None:
                    yield snap
                    continue
                results.append(final)
                key = final["llk_free"] if math.isfinite(final["llk_free"]) else final["chi2"]
                if best is None or key < best["key"]:
                    best = {**final, "key": key, "snap": snap}
        assert best is not None
        ranking = sorted(({k: r[k] for k in ("start", "llk_free", "chi2")} for r in results),
                         key=lambda r: r["llk_free"] if math.isfinite(r["llk_free"])
                         else r["chi2"])
        snap = best["snap"]
        snap.iteration, snap.done, snap.elapsed = total, True, timer()
        snap.extras.update(ranking=ranking, best_start=best["start"])
        yield snap

    def _initial(self, prob: Problem, config: PhaseRetrievalConfig, init: Snapshot | None,
                 start: int) -> tuple[Any, Any]:
        """Starting object and support: from ``init``, else autocorrelation + random phases."""
        if init is not None:
            rho = torch.as_tensor(np.asarray(init.object, np.complex64), device=prob.device)
            sup = (init.extras or {}).get("support")
            if sup is not None:
                support = torch.as_tensor(np.asarray(sup, bool), device=prob.device)
            else:
                support = shrink_wrap(rho, config.sigma_start, config.support_threshold)
            rho = rho * support
            # a prediction's scale is arbitrary: match the measured energy (Parseval)
            model = torch.fft.fftn(rho, norm="ortho").abs().square_().mul_(prob.fit).sum()
            if not float(model) > 0:
                raise ValueError("init object is zero inside its support")
            return rho * torch.sqrt(prob.norm / model), support
        # only fitted voxels seed the start, so held-out and masked ones never steer the fit
        auto = torch.fft.ifftn(prob.amp_fit.square(), norm="ortho").abs()
        auto = torch.fft.fftshift(auto)  # the autocorrelation is centred at index 0
        support = auto > config.autocorr_threshold * auto.max()
        gen = torch.Generator(device="cpu").manual_seed(int(config.seed) * 1009 + start)
        phase = (torch.rand(prob.shape, generator=gen) * (2 * math.pi)).to(prob.device)
        rho = torch.fft.ifftn(prob.amp_fit * torch.polar(torch.ones_like(phase), phase),
                              norm="ortho")
        return rho * support, support

    def _iterate(self, prob: Problem, config: PhaseRetrievalConfig, plan: list[str],
                 rho: Any, support: Any, start: int, timer: Timer, total: int
                 ) -> Iterator[tuple[Snapshot, dict[str, Any] | None]]:
        n = len(plan)
        weights = Weights(support, config.beta)
        errors: list[Any] = []
        avg, avg_count = None, 0
        offset = start * n
        # work buffers reused every iteration: fresh multi-MB tensors would be mmapped and
        # page-faulted on every call by the CPU allocator
        rho = rho.clone()
        f, proj = torch.empty_like(rho), torch.empty_like(rho)
        abs_f = torch.empty(rho.shape, dtype=prob.amp.dtype, device=rho.device)
        for it, alg in enumerate(plan, start=1):
            torch.fft.fftn(rho, norm="ortho", out=f)
            fast_abs(f, out=abs_f)
            errors.append(prob.misfit(abs_f))
            # amp_fit is 0 where a voxel is not fitted, so adding `unfit` makes the ratio 1
            # there: masked and free voxels keep the model's amplitude
            ratio = torch.div(prob.amp_fit, abs_f.clamp_min_(1e-20), out=abs_f)
            if prob.has_unfit:
                ratio.add_(prob.unfit)
            torch.fft.ifftn(f.mul_(ratio), norm="ortho", out=proj)
            w, c = weights[alg]
            if c is None:
                torch.mul(proj, w, out=rho)
            else:
                rho.mul_(c).addcmul_(proj, w)
            if config.shrinkwrap_every and it % config.shrinkwrap_every == 0 and it < n:
                frac = it / n
                sigma = config.sigma_start + (config.sigma_end - config.sigma_start) * frac
                new = shrink_wrap(fast_abs(rho).mul_(weights.s), sigma,
                                  config.support_threshold)
                if bool(new.any()):
                    weights.set_support(new)
            if it > n - config.average_last:
                obj = rho * weights.s
                if avg is None:
                    avg = obj.clone()
                else:  # align the global phase before adding: the phase is a free gauge
                    rot = torch.sum(avg.conj() * obj)
                    avg += obj * (rot.conj() / rot.abs().clamp_min(1e-30))
                avg_count += 1
            last = it == n
            if it % config.update_every == 0 or last:
                errs = torch.stack(errors).cpu().numpy()
                bad = ~np.isfinite(errs)
                if bad.any():
                    raise EngineError(f"non-finite values at iteration {int(np.argmax(bad)) + 1}"
                                      f" of start {start} ({alg}); lower beta or check the "
                                      "data")
                obj = (avg / avg_count) if (last and avg is not None) else rho * weights.s
                chi2, llk = prob.evaluate(obj)
                snap = Snapshot(
                    iteration=offset + it, total=total, object=obj.cpu().numpy(),
                    errors=[float(e) for e in errs], elapsed=timer(), unit="iteration",
                    method=self.name,
                    extras={"support": weights.support.cpu().numpy(), "chi2": chi2,
                            "llk_free": llk, "algorithm": alg, "start": start})
                final = ({"start": start, "chi2": chi2, "llk_free": llk} if last else None)
                yield snap, final


class ER(PhaseRetrievalEngine):
    """Error reduction with shrink-wrap."""

    name: ClassVar[str] = "er"
    description: ClassVar[str] = "Error reduction with shrink-wrap (3D Bragg CDI)"
    Config: ClassVar[type] = ERConfig


class HIO(PhaseRetrievalEngine):
    """Hybrid input-output with shrink-wrap."""

    name: ClassVar[str] = "hio"
    description: ClassVar[str] = "Hybrid input-output (Fienup) with shrink-wrap"
    Config: ClassVar[type] = HIOConfig


class RAAR3D(PhaseRetrievalEngine):
    """RAAR with shrink-wrap."""

    name: ClassVar[str] = "raar_3d"
    description: ClassVar[str] = "RAAR (Luke 2005) with shrink-wrap, 3D"
    Config: ClassVar[type] = RAARConfig


class ERHIO(PhaseRetrievalEngine):
    """The 600-iteration (20 ER + 160 HIO + 20 ER) × 3 baseline."""
