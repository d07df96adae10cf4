"""LSQ-ML: least-squares maximum-likelihood ptychography (Odstrčil, Menzel & Guizar-Sicairos,
Opt. Express 26, 3108 (2018)).

One iteration visits the scan in mini-batches. For every batch:

1. the detector-space likelihood gradient gives an exit-wave update χ (Gaussian noise on the
   amplitudes: the modulus projection; Poisson noise: the scaled gradient ``(d/I − 1)Ψ``
   with a per-pattern Newton step),
2. χ is split into a preconditioned object direction ΔO (illumination-normalised) and a
   probe direction ΔP (object-normalised, shared by the batch),
3. per position j the step lengths (α_O,j, α_P,j) minimise ‖χ_j − α_O ΔO_j P − α_P O_j ΔP‖²,
   a 2×2 real linear system,
4. the object takes each position's own step (exact when the batch holds non-overlapping
   positions, which is the default batching), the probe the batch-mean step,
5. optionally, positions move by the least-squares shift that explains χ_j with the
   derivative of the exit wave with respect to the position.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from napari_ptycho.engines import _lsq_helpers as pc
from napari_ptycho.engines.base import EngineError, Snapshot, Timer
from napari_ptycho.engines.config import BaseConfig

NOISE_MODELS = ("gaussian", "poisson")
BATCHINGS = ("sparse", "random")


@dataclass
class LSQMLConfig(BaseConfig):
    """Parameters of :class:`LSQML`.

    Parameters
    ----------
    iterations, seed, device, update_every
        See :class:`~napari_ptycho.engines.config.BaseConfig`.
    probe_modes : int
        Incoherent probe modes (kept orthogonal).
    batch_size : int
        Largest mini-batch; 0 lets the batching decide (all non-overlapping positions).
    batching : str
        "sparse" (sets of mutually non-overlapping positions, where the per-position step
        lengths are exact) or "random" (random chunks of ``batch_size``).
    noise_model : str
        "gaussian" (amplitude least squares) or "poisson" (photon-counting likelihood).
    update_probe : bool
        Retrieve the probe (False keeps the initial probe).
    probe_start : int
        First iteration (1-based) that updates the probe.
    beta_object, beta_probe : float
        Relaxation of the object and probe steps, in (0, 1].
    regularization : float
        Preconditioner damping relative to the largest illumination / object intensity.
    position_refinement : bool
        Refine the scan positions (gradient-based shift of the paper).
    position_start : int
        First iteration (1-based) that refines positions.
    max_position_step : float
        Largest position change per iteration, in object pixels.
    """

    iterations: int = 100
    probe_modes: int = 1
    batch_size: int = 0
    batching: str = "sparse"
    noise_model: str = "gaussian"
    update_probe: bool = True
    probe_start: int = 1
    beta_object: float = 0.9
    beta_probe: float = 0.9
    regularization: float = 0.1
    position_refinement: bool = False
    position_start: int = 10
    max_position_step: float = 0.5

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        pc.check_int(self, "probe_modes", 1, 16)
        pc.check_int(self, "batch_size", 0)
        pc.check_int(self, "probe_start", 1)
        pc.check_int(self, "position_start", 1)
        pc.check_choice(self, "noise_model", NOISE_MODELS)
        pc.check_choice(self, "batching", BATCHINGS)
        for name in ("beta_object", "beta_probe"):
            pc.check_float(self, name, 0.0, 1.0, low_open=True)
        pc.check_float(self, "regularization", 0.0, 1.0)
        pc.check_float(self, "max_position_step", 0.0, 10.0, low_open=True)


class LSQML:
    """Least-squares maximum-likelihood ptychography (Odstrčil et al. 2018)."""

    name: ClassVar[str] = "lsqml"
    description: ClassVar[str] = "LSQ-ML (Odstrcil et al. 2018)"
    dims: ClassVar[int] = 2
    unit: ClassVar[str] = "iteration"
    Config: ClassVar[type] = LSQMLConfig

    def run(self, data: Any, config: LSQMLConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield snapshots while reconstructing ``data`` (a PtychoData) with ``config``."""
        import torch

        config.validate()
        state = pc.prepare(data, config, init)
        timer = Timer()
        gen = np.random.default_rng(config.seed)
        errors: list[float] = list(init.errors) if init is not None else []
        for it in range(1, config.iterations + 1):
            update_probe = config.update_probe and it >= config.probe_start
            refine = config.position_refinement and it >= config.position_start
            batches = pc.make_batches(state, config.batching, config.batch_size, gen)
            total = torch.zeros((), dtype=torch.float64, device=state.device)
            shifts = torch.zeros_like(state.positions) if refine else None
            for idx in batches:
                total += self._batch(state, config, idx, update_probe, shifts)
            if refine:
                pc.apply_position_shifts(state, shifts, config.max_position_step)
            if state.probe.shape[0] > 1 and update_probe:
                state.probe = pc.orthogonalize_modes(state.probe)
            err = float(total) / state.norm
            pc.check_finite(state, err, it, self.name)
            errors.append(err)
            if it % config.update_every == 0 or it == config.iterations:
                yield pc.snapshot(state, it, config.iterations, errors, timer(), self.name,
                                  done=it == config.iterations)

    @staticmethod
    def _batch(state: pc.State, config: LSQMLConfig, idx: Any, update_probe: bool,
               shifts: Any) -> Any:
        """One LSQ-ML update over the positions ``idx``; returns the batch's error sum."""
        import torch

        from napari_ptycho.physics.ptycho import (
            extract_patches,
            fourier_shift,
            scatter_patches,
            shifted_probes,
            split_positions,
        )

        obj, probe = state.obj, state.probe
        shape = tuple(probe.shape[-2:])
        corners, frac = split_positions(state.positions[idx])
        has_frac = bool(torch.any(frac != 0))
        patches = extract_patches(obj, corners, shape)  # (B, h, w)
        probes = shifted_probes(probe, frac)  # (B, M, h, w)
        psi = probes * patches[:, None]
        far = state.prop.forward(psi)
        chi_far, err = pc.detector_update(far, state.intensity[idx], state.mask,
                                          config.noise_model)
        chi = state.prop.backward(chi_far)  # (B, M, h, w)

        # object direction, preconditioned by the batch illumination
        illum = (probes.real ** 2 + probes.imag ** 2).sum(1)
        num_o = (chi * probes.conj()).sum(1)
        den_o = scatter_patches(illum.to(obj.dtype), corners, tuple(obj.shape)).real
        den_o = den_o + config.regularization * den_o.max() + 1e-12
        d_obj = extract_patches(scatter_patches(num_o, corners, tuple(obj.shape)) / den_o,
                                corners, shape)
        a = d_obj[:, None] * probes
        aa = (a.real ** 2 + a.imag ** 2).sum((1, 2, 3))
        ac = (a.conj() * chi).real.sum((1, 2, 3))

        if update_probe:
            obj_int = patches.real ** 2 + patches.imag ** 2
            num_p = chi * patches.conj()[:, None]
            if has_frac:  # gradient lives in the shifted frame: shift it back
                num_p = fourier_shift(num_p, -frac[:, None, :])
            den_p = obj_int.sum(0)
            d_probe = num_p.sum(0) / (den_p + config.regularization * den_p.max() + 1e-12)
            b = shifted_probes(d_probe, frac) * patches[:, None]
            bb = (b.real ** 2 + b.imag ** 2).sum((1, 2, 3))
            ab = (a.conj() * b).real.sum((1, 2, 3))
            bc = (b.conj() * chi).real.sum((1, 2, 3))
            alpha_o, alpha_p = pc.solve_steps(aa, ab, bb, ac, bc)
        else:
            alpha_o = torch.clamp(ac / (aa + 1e-12 * aa.max() + 1e-30), 0.0, 1.0)

        if shifts is not None:
            shifts[idx] = pc.position_gradient_shift(probes, patches, chi)

        weighted = num_o * alpha_o[:, None, None].to(num_o.dtype)
        step = scatter_patches(weighted, corners, tuple(obj.shape)) / den_o
        state.obj = obj + config.beta_object * step
        if update_probe:
            state.probe = probe + config.beta_probe * alpha_p.mean().to(probe.dtype) * d_probe
        return err
