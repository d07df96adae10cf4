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

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from napari_ptycho.engines import _lsq_helpers as pc
from napari_ptycho.engines.base import Snapshot, Timer
from napari_ptycho.engines.common import PtychoConfig, orthogonalize_modes

NOISE_MODELS = ("gaussian", "poisson")


@dataclass
class LSQMLConfig(PtychoConfig):
    """Parameters of :class:`LSQML`.

    Parameters
    ----------
    iterations, seed, device, update_every
        See :class:`~napari_ptycho.engines.config.BaseConfig`.
    probe_modes, update_probe, probe_update_start, probe_init, batch_size,
    position_refinement, position_refinement_start, position_max_step,
    orthogonalize_every, subpixel
        See :class:`~napari_ptycho.engines.common.PtychoConfig`. ``batch_size`` 0 (default)
        uses sets of mutually non-overlapping positions, where the per-position step lengths
        are exact; k > 0 uses random chunks of k positions.
    noise_model : str
        "gaussian" (amplitude least squares) or "poisson" (photon-counting likelihood).
    beta_object, beta_probe : float
        Relaxation of the object and probe steps, in (0, 1].
    regularization : float
        Preconditioner damping, relative to the largest illumination (object step) or
        object intensity (probe step); small values amplify noise at the probe's edges.
    final_beta_fraction : float
        The relaxations decay linearly to this fraction of ``beta_object``/``beta_probe``
        over the second half of the run: full steps on small non-overlapping sets leave
        the iterate hopping around the noisy optimum (χ² stalls near 2× the Poisson noise
        floor); smaller late steps average that out. 1 disables the decay.
    """

    iterations: int = 100
    noise_model: str = "gaussian"
    beta_object: float = 0.9
    beta_probe: float = 0.9
    regularization: float = 0.01
    final_beta_fraction: float = 0.2

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        pc.check_choice(self, "noise_model", NOISE_MODELS)
        for name in ("beta_object", "beta_probe"):
            pc.check_float(self, name, 0.0, 1.0, low_open=True)
        pc.check_float(self, "regularization", 0.0, 1.0)
        pc.check_float(self, "final_beta_fraction", 0.0, 1.0, low_open=True)


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

        if not isinstance(config, LSQMLConfig):
            raise ValueError(f"config must be an LSQMLConfig (got {type(config).__name__})")
        config.validate()
        problem = pc.prepare(data, config, init)
        timer = Timer()
        gen = np.random.default_rng(config.seed)
        errors = list(problem.start_errors)
        start = problem.start_iteration
        total_its = start + config.iterations
        for it in range(start + 1, total_its + 1):
            update_probe = config.update_probe and it > config.probe_update_start
            refine = config.position_refinement and it > config.position_refinement_start
            total = torch.zeros((), dtype=torch.float32, device=problem.device)
            shifts = torch.zeros_like(problem.windows.positions) if refine else None
            done = (it - start - 1) / max(config.iterations - 1, 1)
            decay = 1.0 - (1.0 - config.final_beta_fraction) * max(0.0, 2.0 * done - 1.0)
            for idx in pc.make_batches(problem, config.batch_size, gen):
                total += self._batch(problem, config, idx, update_probe, shifts, decay)
            if refine:
                pc.apply_position_shifts(problem, shifts, config.position_max_step)
            if (problem.probe.shape[0] > 1 and update_probe
                    and it % config.orthogonalize_every == 0):
                problem.probe = orthogonalize_modes(problem.probe)[0]
            err = float(total) / problem.total_intensity
            pc.check_finite(problem, err, it, self.name)
            errors.append(err)
            if it % config.update_every == 0 or it == total_its:
                snap = problem.snapshot(it, total_its, errors, timer(), self.name,
                                        done=it == total_its)
                snap.extras["error_metric"] = "sum (|model| - sqrt(I))^2 / sum I"
                yield snap

    @staticmethod
    def _batch(problem: Any, config: LSQMLConfig, idx: Any, update_probe: bool, shifts: Any,
               decay: float = 1.0) -> Any:
        """One LSQ-ML update of object (and probe) over the positions ``idx``.

        Writes the positions' least-squares shifts into ``shifts`` (when not None) and
        returns the batch's error sum.
        """
        import torch

        win, det = problem.windows, problem.detector
        obj, probe = problem.obj, problem.probe
        n = len(idx)
        patches = win.gather(obj, idx)  # (B, h, w)
        probes = win.probes(probe, idx)  # (B or 1, M, h, w)
        far = det.forward(probes * patches[:, None])
        chi_far, err = pc.detector_update(far, problem.amplitudes[idx], problem.mask,
                                          config.noise_model)
        chi = det.backward(chi_far)  # (B, M, h, w)

        # object direction, preconditioned by the batch's illumination
        illum = torch.view_as_real(probes).square().sum(dim=(1, -1)).expand(n, -1, -1)
        num_o = (chi * probes.conj()).sum(1)
        den_o = torch.zeros(obj.shape, dtype=illum.dtype, device=obj.device)
        win.scatter_add(den_o, illum.contiguous(), idx)
        den_o += config.regularization * den_o.max() + 1e-12
        acc = torch.zeros_like(obj)
        win.scatter_add(acc, num_o, idx)
        a = win.gather(acc / den_o, idx)[:, None] * probes
        aa = torch.view_as_real(a).square().sum(dim=(1, 2, 3, 4))
        ac = (a.conj() * chi).real.sum((1, 2, 3))

        if update_probe:
            num_p = win.unshift(chi * patches.conj()[:, None], idx).sum(0)
            den_p = torch.view_as_real(patches).square().sum(dim=(0, -1))
            d_probe = num_p / (den_p + config.regularization * den_p.max() + 1e-12)
            b = win.probes(d_probe, idx) * patches[:, None]
            bb = torch.view_as_real(b).square().sum(dim=(1, 2, 3, 4))
            ab = (a.conj() * b).real.sum((1, 2, 3))
            bc = (b.conj() * chi).real.sum((1, 2, 3))
            alpha_o, alpha_p = pc.solve_steps(aa, ab, bb, ac, bc)
        else:
            alpha_o = torch.clamp(ac / (aa + 1e-12 * aa.max() + 1e-30), 0.0, 1.0)

        if shifts is not None:
            shifts[idx] = pc.position_gradient_shift(probes.expand(n, -1, -1, -1), patches,
                                                     chi)
        acc.zero_()
        win.scatter_add(acc, num_o * alpha_o[:, None, None], idx)
        problem.obj = obj + (config.beta_object * decay) * (acc / den_o)
        if update_probe:
            problem.probe = probe + (config.beta_probe * decay * alpha_p.mean()) * d_probe
        return err
