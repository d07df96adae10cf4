"""3D-CDI-NN + automatic-differentiation refinement (Chan et al. 2021).

The network predicts shape and phase; the prediction (scaled to the data, restricted to the
voxels above ``support_threshold`` of its amplitude) then becomes the starting value of a
complex object tensor that Adam updates through the Bragg forward model
``|fftshift(fftn(ρ · S, norm="ortho"))|``. The loss is the amplitude misfit χ² =
Σ(|F| − √I)² / Σ I over the valid voxels, so its value is directly the χ² the other 3D
engines report. Optional shrink-wrap re-derives the support S from the current object.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from napari_ptycho.engines._bragg_nn import BraggNNConfig
from napari_ptycho.engines.base import EngineError, Snapshot, select_device


@dataclass
class CDINNConfig(BraggNNConfig):
    """Parameters of 3D-CDI-NN + AD refinement.

    Parameters
    ----------
    iterations : int
        Adam steps after the prediction (0 = prediction only).
    weights : str
        Weight file; empty = the shipped ``weights/cdinn_32.pt``.
    resize : str
        "none" (refuse another size with a message), "bin" or "crop" (see AutoPhaseNN).
    support_threshold : float
        Support = predicted amplitude above this fraction of its maximum.
    learning_rate : float
        Adam step, relative to the largest amplitude of the scaled prediction.
    shrinkwrap_every : int
        Re-derive the support (σ = 1 voxel) every this many steps (0 = fixed support).
    """

    iterations: int = 100
    update_every: int = 10
    learning_rate: float = 0.6

    def validate(self) -> None:
        """Refuse impossible values (ValueError naming the parameter)."""
        super().validate()
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be > 0 (got {self.learning_rate})")
        select_device(self.device)


class CDINNEngine:
    """3D-CDI-NN prediction refined by Adam through the forward model, streamed."""

    name: ClassVar[str] = "cdinn"
    description: ClassVar[str] = "3D-CDI-NN prediction + AD refinement (Chan et al. 2021)"
    dims: ClassVar[int] = 3
    unit: ClassVar[str] = "iteration"
    Config: ClassVar[type] = CDINNConfig

    def run(self, data: Any, config: CDINNConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield the prediction (iteration 0), then every ``update_every`` Adam steps.

        Parameters
        ----------
        data : BraggData or ndarray
            Intensity (D, H, W), peak centred; ``data.mask`` marks valid voxels.
        config : CDINNConfig
        init : Snapshot, optional
            Ignored: the network provides the start.
        """
        from napari_ptycho.engines.autophasenn import network_prediction

        config.validate()
        t0 = time.perf_counter()
        device = select_device(config.device)
        obj, support, extras = network_prediction(data, "cdinn", config.weights,
                                                  config.resize, device,
                                                  config.support_threshold)
        total = int(config.iterations)
        yield Snapshot(iteration=0, total=max(total, 1), object=obj, errors=[],
                       elapsed=time.perf_counter() - t0, method=self.name, done=total == 0,
                       extras=dict(extras))
        if total == 0:
            return
        for snap in refine_ad(obj, support, data, config, device):
            snap.method = self.name
            snap.elapsed = time.perf_counter() - t0
            snap.extras.update(nn_seconds=extras["nn_seconds"], prediction_chi2=extras["chi2"])
            yield snap


def refine_ad(obj: np.ndarray, support: np.ndarray, data: Any, config: CDINNConfig,
              device: Any) -> Iterator[Snapshot]:
    """Adam on the complex object through the Bragg forward model (see module doc).

    Parameters
    ----------
    obj : ndarray, complex
        Starting object on the measured grid, scaled to the data.
    support : ndarray of bool
        Starting support.
    data : BraggData or ndarray
        The measured intensity (and optional ``mask``).
    config : CDINNConfig
        ``iterations``, ``update_every``, ``learning_rate``, ``shrinkwrap_every``,
        ``support_threshold``.
    device : torch.device
    """
    import torch

    from napari_ptycho.physics.bragg import shrink_wrap

    total = int(config.iterations)
    t0 = time.perf_counter()
    intensity = np.asarray(getattr(data, "intensity", data), np.float32)
    mask = getattr(data, "mask", None)
    valid = np.ones(intensity.shape, bool) if mask is None else np.asarray(mask, bool)

    def shifted(a: np.ndarray, dtype: Any) -> Any:
        # work in unshifted frequency order: one fftn per step, no shifts
        return torch.from_numpy(np.ascontiguousarray(np.fft.ifftshift(a))).to(
            device=device, dtype=dtype)

    amp = shifted(np.sqrt(intensity), torch.float32)
    fit = shifted(valid, torch.float32)
    norm = float((amp.square() * fit).sum())
    rho = torch.tensor(obj, device=device, requires_grad=True)
    sup = torch.as_tensor(support, device=device)
    opt = torch.optim.Adam([rho], lr=config.learning_rate * float(np.abs(obj).max()))
    errors: list[float] = []
    for it in range(1, total + 1):
        model = torch.fft.fftn(rho * sup, norm="ortho").abs()
        loss = ((model - amp).square() * fit).sum() / norm
        opt.zero_grad()
        loss.backward()
        opt.step()
        errors.append(float(loss.detach()))
        if not np.isfinite(errors[-1]):
            raise EngineError(f"non-finite loss at step {it}; lower learning_rate")
        if config.shrinkwrap_every and it % config.shrinkwrap_every == 0 and it < total:
            new = shrink_wrap(rho.detach() * sup, 1.0, config.support_threshold)
            if bool(new.any()):
                sup = new
        if it % config.update_every == 0 or it == total:
            with torch.no_grad():
                current = (rho * sup).detach()
                chi2 = float(((torch.fft.fftn(current, norm="ortho").abs() - amp
                               ).square() * fit).sum() / norm)
            yield Snapshot(iteration=it, total=total, object=current.cpu().numpy(),
                           errors=list(errors), elapsed=time.perf_counter() - t0,
                           done=it == total,
                           extras={"support": sup.cpu().numpy(), "chi2": chi2,
                                   "prediction": False})
