"""Automatic-differentiation ptychography: pixel arrays as torch parameters, Adam.

The object (and optionally the probe modes and the scan positions) are leaves of the
differentiable forward model of :mod:`napari_ptycho.physics` (patch gather → sub-pixel
shifted probes → propagation → incoherent mode sum). Each mini-batch takes one Adam step on
one of three data losses:

* ``"amplitude"``: Σ (|Ψ| − √I)² (Gaussian noise on amplitudes, robust default),
* ``"gaussian"``: Σ (|Ψ|² − I)² (intensity least squares),
* ``"poisson"``: Σ (|Ψ|² − I log |Ψ|²) (photon-counting negative log-likelihood).

Adam's step is in the units of its parameter, so the probe is optimised as
``probe / scale`` (scale = its initial peak amplitude) and its learning rate is relative;
positions move in object pixels through the Fourier sub-pixel shift of the probe, which is
differentiable in the shift.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from napari_ptycho.engines import _lsq_helpers as pc
from napari_ptycho.engines.base import Snapshot, Timer
from napari_ptycho.engines.common import PtychoConfig, orthogonalize_modes

LOSSES = ("amplitude", "gaussian", "poisson")


@dataclass
class ADConfig(PtychoConfig):
    """Parameters of :class:`AD`.

    Parameters
    ----------
    iterations, seed, device, update_every
        See :class:`~napari_ptycho.engines.config.BaseConfig`; one iteration is one pass
        (epoch) over all patterns.
    probe_modes, update_probe, probe_update_start, probe_init, batch_size,
    position_refinement, position_refinement_start, position_max_step, subpixel
        See :class:`~napari_ptycho.engines.common.PtychoConfig`. ``batch_size`` 0 (default)
        takes one Adam step per set of mutually non-overlapping positions; k > 0 per random
        chunk of k positions. ``position_max_step`` bounds the total drift of each position
        from its start, in pixels (×10: refinement may travel further than one step).
        ``orthogonalize_every`` is unused: modes are orthogonalised in the snapshots, which
        leaves the loss unchanged and Adam's moment estimates intact.
    loss : str
        "amplitude", "gaussian" or "poisson".
    learning_rate : float
        Adam step size of the object (transmission units).
    probe_learning_rate : float
        Adam step size of the probe, relative to its initial peak amplitude.
    position_learning_rate : float
        Adam step size of the positions, in object pixels.
    schedule : str
        "cosine" (learning rates decay to ``final_lr_fraction`` of their value over the run;
        Adam at a constant rate keeps hopping around the noisy optimum) or "constant".
    final_lr_fraction : float
        Learning-rate fraction reached at the last iteration of a cosine schedule.
    """

    iterations: int = 100
    loss: str = "amplitude"
    learning_rate: float = 0.02
    probe_learning_rate: float = 0.02
    position_learning_rate: float = 0.05
    schedule: str = "cosine"
    final_lr_fraction: float = 0.05

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        pc.check_choice(self, "loss", LOSSES)
        pc.check_choice(self, "schedule", ("cosine", "constant"))
        pc.check_float(self, "final_lr_fraction", 0.0, 1.0)
        for name in ("learning_rate", "probe_learning_rate", "position_learning_rate"):
            pc.check_float(self, name, 0.0, 10.0, low_open=True)


def data_loss(intensity: Any, amplitudes: Any, mask: Any, loss: str) -> Any:
    """Summed data loss of modelled intensities (B, H, W) against measured √I.

    Parameters
    ----------
    intensity : Tensor
        Model intensities Σ_m |Ψ_m|².
    amplitudes : Tensor
        Measured √I.
    mask : Tensor of bool or None
        Valid pixels.
    loss : str
        "amplitude", "gaussian" or "poisson" (see the module docstring).
    """
    import torch

    counts = amplitudes.square()
    # keeps √ and log finite where the model is dark, far below one photon
    eps = 1e-6
    if loss == "amplitude":
        per_pixel = (torch.sqrt(intensity + eps) - amplitudes).square()
    elif loss == "gaussian":
        per_pixel = (intensity - counts).square() / (counts.mean() + 1.0)
    else:
        per_pixel = intensity - counts * torch.log(intensity + eps)
    if mask is not None:
        per_pixel = per_pixel * mask
    return per_pixel.sum()


class AD:
    """Gradient-descent ptychography with automatic differentiation and Adam."""

    name: ClassVar[str] = "ad"
    description: ClassVar[str] = "Automatic differentiation with Adam"
    dims: ClassVar[int] = 2
    unit: ClassVar[str] = "iteration"
    Config: ClassVar[type] = ADConfig

    def run(self, data: Any, config: ADConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield snapshots while reconstructing ``data`` (a PtychoData) with ``config``."""
        import torch

        if not isinstance(config, ADConfig):
            raise ValueError(f"config must be an ADConfig (got {type(config).__name__})")
        config.validate()
        problem = pc.prepare(data, config, init)
        timer = Timer()
        gen = np.random.default_rng(config.seed)
        win = problem.windows
        scale = float(problem.probe.abs().max())
        obj = problem.obj.clone().requires_grad_(True)
        probe_n = (problem.probe / scale).clone().requires_grad_(True)
        pos0 = win.positions.clone()
        pos = pos0.clone().requires_grad_(True)
        opt_obj = torch.optim.Adam([obj], lr=config.learning_rate)
        opt_probe = torch.optim.Adam([probe_n], lr=config.probe_learning_rate)
        opt_pos = torch.optim.Adam([pos], lr=config.position_learning_rate)
        optimizers = (opt_obj, opt_probe, opt_pos)
        base_lrs = [o.param_groups[0]["lr"] for o in optimizers]
        max_drift = 10.0 * config.position_max_step

        errors = list(problem.start_errors)
        start = problem.start_iteration
        total_its = start + config.iterations
        for it in range(start + 1, total_its + 1):
            update_probe = config.update_probe and it > config.probe_update_start
            refine = config.position_refinement and it > config.position_refinement_start
            if config.schedule == "cosine":
                frac_done = (it - start - 1) / max(config.iterations - 1, 1)
                factor = config.final_lr_fraction + (1 - config.final_lr_fraction) * 0.5 * (
                    1 + math.cos(math.pi * frac_done))
                for opt, lr in zip(optimizers, base_lrs, strict=True):
                    opt.param_groups[0]["lr"] = lr * factor
            err_sum = torch.zeros((), dtype=torch.float32, device=problem.device)
            for idx in pc.make_batches(problem, config.batch_size, gen):
                probe = probe_n * scale
                if refine:
                    far = self._far_refined(problem, obj, probe, pos, idx)
                else:
                    far = problem.detector.forward(win.probes(probe, idx)
                                                   * win.gather(obj, idx)[:, None])
                model = torch.view_as_real(far).square().sum(dim=(1, -1))
                amps = problem.amplitudes[idx]
                loss = data_loss(model, amps, problem.mask, config.loss) / len(idx)
                with torch.no_grad():
                    diff = model.sqrt() - amps
                    if problem.mask is not None:
                        diff = diff * problem.mask
                    err_sum += diff.square().sum()
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                loss.backward()
                opt_obj.step()
                if update_probe:
                    opt_probe.step()
                if refine:
                    opt_pos.step()
                    with torch.no_grad():
                        self._constrain_positions(pos, pos0, win.upper, max_drift)
            problem.obj = obj.detach()
            problem.probe = (probe_n.detach() * scale)
            if config.position_refinement:
                win.positions = pos.detach().clone()
                win.refresh()
            err = float(err_sum) / problem.total_intensity
            pc.check_finite(problem, err, it, self.name)
            errors.append(err)
            if it % config.update_every == 0 or it == total_its:
                snap = problem.snapshot(it, total_its, errors, timer(), self.name,
                                        done=it == total_its)
                if snap.probe.shape[0] > 1:
                    snap.probe = orthogonalize_modes(problem.probe)[0].cpu().numpy()
                snap.extras["error_metric"] = "sum (|model| - sqrt(I))^2 / sum I"
                snap.extras["loss"] = config.loss
                yield snap

    @staticmethod
    def _far_refined(problem: Any, obj: Any, probe: Any, pos: Any, idx: Any) -> Any:
        """Detector fields with positions as differentiable leaves (always Fourier-shifted)."""
        import torch

        from napari_ptycho.physics.ptycho import extract_patches, fourier_shift

        p = pos[idx]
        corners = torch.floor(p.detach())
        frac = (p - corners).to(torch.float32)
        patches = extract_patches(obj, corners.long(), tuple(probe.shape[-2:]))
        probes = fourier_shift(probe.unsqueeze(0), frac[:, None, :])
        return problem.detector.forward(probes * patches[:, None])

    @staticmethod
    def _constrain_positions(pos: Any, pos0: Any, upper: Any, max_drift: float) -> None:
        """Remove the unobservable common drift, bound each drift, stay inside the object."""
        import torch

        drift = pos - pos0
        drift -= drift.mean(0, keepdim=True)
        drift.clamp_(-max_drift, max_drift)
        pos.copy_(torch.minimum((pos0 + drift).clamp(min=0.0), upper))
