"""AutoPhaseNN + ER: a network's guess of the crystal, then ER iterations to refine it.

Yao et al. (2022) predict the complex crystal from the diffraction amplitude in one forward
pass and refine with 50 ER iterations, using the support from the prediction's amplitude
above 10 % of its maximum. The first snapshot (iteration 0) is the prediction itself,
scaled to the data; the following ones come from the ER engine started from it
(:class:`~napari_ptycho.engines.phase_retrieval.ER` with an ``init`` snapshot carrying
``extras["support"]``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from napari_ptycho.engines._bragg_nn import BraggNNConfig
from napari_ptycho.engines.base import Snapshot, select_device


@dataclass
class AutoPhaseNNConfig(BraggNNConfig):
    """Parameters of AutoPhaseNN + ER.

    Parameters
    ----------
    iterations : int
        ER iterations after the prediction (the paper: 50; 0 = prediction only).
    weights : str
        Weight file; empty = the shipped ``weights/autophasenn_32.pt``.
    resize : str
        What to do with a volume that is not the network's size: "none" (refuse with a
        message), "bin" (crop around the peak and bin) or "crop" (window around the peak).
        The refinement always runs on the full measured volume.
    support_threshold : float
        Support = predicted amplitude above this fraction of its maximum.
    shrinkwrap_every : int
        Shrink-wrap period during the refinement (0 = keep the predicted support).
    support_dilation : int
        Grow the predicted support by this many voxels (face neighbours) before the ER
        refinement (0 = the paper's thresholded support as it is).
    free_fraction : float
        Voxels held out of the ER fit for the free log-likelihood.
    """

    iterations: int = 50
    update_every: int = 10
    support_dilation: int = 0
    free_fraction: float = 0.0

    def validate(self) -> None:
        """Refuse impossible values (ValueError naming the parameter)."""
        super().validate()
        if not 0 <= int(self.support_dilation) <= 8:
            raise ValueError(f"support_dilation must be in [0, 8] voxels (got "
                             f"{self.support_dilation})")
        if not 0 <= self.free_fraction <= 0.5:
            raise ValueError(f"free_fraction must be in [0, 0.5] (got {self.free_fraction})")
        select_device(self.device)


def network_prediction(data: Any, kind: str, weights: str, resize: str, device: Any,
                       threshold: float, dilation: int = 0
                       ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(object scaled to the data, support, extras) from a network on the measured grid.

    The support is the predicted amplitude above ``threshold`` × its maximum, grown by
    ``dilation`` voxels; the object is zero outside the undilated support.
    """
    from napari_ptycho.engines import _bragg_nn as nn
    from napari_ptycho.engines.phase_retrieval import validate_intensity

    intensity = validate_intensity(getattr(data, "intensity", data))
    mask = getattr(data, "mask", None)
    mask = None if mask is None else np.asarray(mask, bool)
    t0, c0 = time.perf_counter(), time.process_time()
    model = nn.load_network(nn.weights_path(weights, kind), kind, str(device))
    inp = nn.network_input(intensity, mask, model.spec.size, resize)
    pred = nn.predict(model, inp, device)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    obj = nn.to_measured_grid(pred, inp)
    amp = np.abs(obj)
    support = amp >= threshold * amp.max()
    obj = np.where(support, obj, 0).astype(np.complex64)
    chi2, scale = nn.scaled_chi2(obj, intensity, mask)
    if dilation:
        from scipy.ndimage import binary_dilation

        support = binary_dilation(support, iterations=int(dilation))
    extras = {"support": support, "chi2": chi2, "nn_seconds": seconds,
              "nn_cpu_seconds": cpu_seconds, "prediction": True,
              "network_window": list(inp.window)}
    return (obj * scale).astype(np.complex64), support, extras


class AutoPhaseNNEngine:
    """AutoPhaseNN prediction followed by ER with the predicted support."""

    name: ClassVar[str] = "autophasenn"
    description: ClassVar[str] = "AutoPhaseNN prediction + 50 ER iterations (Yao et al. 2022)"
    dims: ClassVar[int] = 3
    unit: ClassVar[str] = "iteration"
    Config: ClassVar[type] = AutoPhaseNNConfig

    def run(self, data: Any, config: AutoPhaseNNConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield the prediction (iteration 0), then the ER snapshots.

        Parameters
        ----------
        data : BraggData or ndarray
            Intensity (D, H, W), peak centred.
        config : AutoPhaseNNConfig
        init : Snapshot, optional
            Ignored: the network provides the start (accepted for interface symmetry).
        """
        from napari_ptycho.engines.phase_retrieval import ER, ERConfig

        config.validate()
        t0 = time.perf_counter()
        device = select_device(config.device)
        obj, support, extras = network_prediction(data, "autophasenn", config.weights,
                                                  config.resize, device,
                                                  config.support_threshold,
                                                  config.support_dilation)
        total = int(config.iterations)
        first = Snapshot(iteration=0, total=max(total, 1), object=obj, errors=[],
                         elapsed=time.perf_counter() - t0, method=self.name,
                         done=total == 0, extras=dict(extras))
        yield first
        if total == 0:
            return
        er_config = ERConfig(iterations=total, update_every=config.update_every,
                             seed=config.seed, device=config.device,
                             shrinkwrap_every=config.shrinkwrap_every,
                             support_threshold=config.support_threshold,
                             free_fraction=config.free_fraction)
        start = Snapshot(iteration=0, total=total, object=obj, extras={"support": support})
        for snap in ER().run(data, er_config, start):
            snap.method = self.name
            snap.elapsed = time.perf_counter() - t0
            snap.extras.update(nn_seconds=extras["nn_seconds"],
                               nn_cpu_seconds=extras["nn_cpu_seconds"], prediction=False,
                               prediction_chi2=extras["chi2"])
            yield snap
