"""PtychoPINN (Hoidn, Mishra & Mehta, Sci. Rep. 13:22789, 2023) as streaming engines.

* ``pinn`` — train the encoder–decoder *on this scan*, without labels: patches → overlap
  constraint (eq. 1–2) → × probe → far field → Poisson NLL against the photon counts.
  One snapshot per epoch holds the loss history and the stitched object.
* ``basic_pinn`` — the ablation without the overlap constraint (each patch alone).
* ``supervised`` — the PtychoNN-style baseline: same network, L1 on ground-truth patches
  (needs a simulated scan with ``truth_object``).
* ``pinn_infer`` — a trained model (the shipped one by default) predicts every group and
  the patches are stitched, streaming a snapshot per tile of groups.

Cancelling a run (closing the generator) keeps the last weights saved to ``save_dir``:
they are written after every epoch whose loss was finite.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np

from napari_ptycho.engines.base import EngineError, Snapshot, Timer, select_device
from napari_ptycho.engines.config import BaseConfig

#: The constant phase each variant's loss cannot see (fixed in the network, PinnArch.gauge):
#: one per group with the overlap constraint, one per patch without it; the supervised
#: labels fix it.
GAUGE_OF_VARIANT = {"pinn": "group", "basic_pinn": "patch", "supervised": "none"}

STITCH_WEIGHTINGS = ("uniform", "probe")

#: The shipped model that serves the sample data (see ``weights/pinn_default.json``).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "pinn_default.pt"


@dataclass
class PinnConfig(BaseConfig):
    """PtychoPINN training parameters (``iterations`` counts epochs).

    Parameters
    ----------
    batch_size : int
        Groups per optimiser step.
    learning_rate : float
        Adam learning rate.
    pattern_size : int
        Model input side N (multiple of 8; patches are N/2).
    group_size : int
        Patterns per group K (nearest neighbours in the scan).
    filters : int
        Channels of the first encoder stage (×2 per stage).
    resize : str
        Patterns of another size than N: "refuse", "crop" or "bin" to N.
    probe_source : str
        "auto" (the scan's probe, else rPIE), "data" (must be in the scan) or "rpie"
        (estimate with a short rPIE run).
    probe_iterations : int
        rPIE iterations for the estimated probe.
    train_scale : bool
        Learn the global intensity scale (else fixed at its start value, the probe's
        photons per pattern).
    model_path : str
        Start from these weights (fine-tuning); empty = random initialisation.
    save_dir : str
        Folder for weights + JSON card, rewritten after each good epoch; empty = no save.
    max_groups : int
        Train on at most this many groups (random subset; 0 = all).
    phase_limit : float
        Phase activation bound of a new model: phase = phase_limit · tanh(·), in (0, π].
        π/2 by default: at π a network can park pixels at ±π (the same complex number)
        and stall at a flat object (docs/pinn.md).
    cpu_threads : int
        Torch threads while training on the CPU (restored afterwards; 0 = leave torch's
        setting). One is the default: the steps are small, and on a shared 2-core machine
        two threads made every step ~30x slower, waiting on each other (docs/pinn.md).
    """

    iterations: int = 20
    batch_size: int = 16
    learning_rate: float = 1e-3
    pattern_size: int = 64
    group_size: int = 4
    filters: int = 16
    resize: Literal["refuse", "crop", "bin"] = "refuse"
    probe_source: Literal["auto", "data", "rpie"] = "auto"
    probe_iterations: int = 30
    train_scale: bool = False
    model_path: str = ""
    save_dir: str = ""
    max_groups: int = 0
    phase_limit: float = math.pi / 2
    cpu_threads: int = 1

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        if int(self.batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1 (got {self.batch_size})")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise ValueError(f"learning_rate must be a positive number (got "
                             f"{self.learning_rate})")
        for name in ("probe_iterations", "max_groups", "cpu_threads"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if self.model_path and not Path(self.model_path).exists():
            raise ValueError(f"model_path {self.model_path!r} does not exist")


@dataclass
class PinnInferConfig(BaseConfig):
    """Inference with a trained PtychoPINN model.

    Parameters
    ----------
    model_path : str
        Weights (.pt with its .json card) or a folder holding them; empty = shipped model.
    resize : str
        Patterns of another size than the model's N: "refuse", "crop" or "bin".
    tile_groups : int
        Groups predicted between two streamed snapshots.
    stitch_weighting : str
        "uniform" (eq. 1 of the paper: every patch pixel counts the same) or "probe"
        (patch pixels weighted by the scan's probe intensity, so guesses where no light
        reached count little; needs a probe in the scan, else uniform).
    """

    iterations: int = 1
    model_path: str = ""
    resize: Literal["refuse", "crop", "bin"] = "refuse"
    tile_groups: int = 256
    stitch_weighting: Literal["uniform", "probe"] = "uniform"

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        if int(self.tile_groups) < 1:
            raise ValueError(f"tile_groups must be >= 1 (got {self.tile_groups})")
        if self.stitch_weighting not in STITCH_WEIGHTINGS:
            raise ValueError(f"stitch_weighting must be one of {STITCH_WEIGHTINGS} (got "
                             f"{self.stitch_weighting!r})")
        if self.model_path and not Path(self.model_path).exists():
            raise ValueError(f"model_path {self.model_path!r} does not exist")


def predicted_counts(model: Any, scan: Any, idx: Any, scale: Any, overlap: bool) -> Any:
    """Photon counts the model predicts for groups ``idx`` (B, K, N, N)."""
    import torch

    from napari_ptycho.nn.pinn_model import overlap_constraint, pad_center

    n = scan.counts.shape[-1]
    groups = scan.groups[idx]
    patches = model.patches(scan.inputs[groups])
    if overlap:
        windows = overlap_constraint(patches, scan.offsets[idx], n)
    else:
        windows = pad_center(patches, n)
    fields = torch.fft.fft2(windows * scan.probe, norm="ortho")
    fields = torch.fft.fftshift(fields, dim=(-2, -1))
    return scale * (fields.real.square() + fields.imag.square())


def truth_patches(scan: Any, patterns: Any, size: int) -> Any:
    """Ground-truth patches (M, n, n) at the centre of the windows of ``patterns``."""
    import torch
    from torch.nn import functional as F

    from napari_ptycho.nn.pinn_model import translate

    n = scan.counts.shape[-1]
    pos = scan.positions[patterns] + (n - size) // 2
    base = torch.floor(pos)
    frac = (pos - base).to(torch.float32)
    obj = F.pad(scan.truth, (0, 2, 0, 2))
    rows = base[:, 0, None].long() + torch.arange(size + 2, device=obj.device)
    cols = base[:, 1, None].long() + torch.arange(size + 2, device=obj.device)
    cut = obj[rows[:, :, None], cols[:, None, :]]
    return translate(cut[:, None], -frac[:, None])[:, 0, :size, :size]


def loss_of(variant: str, model: Any, scan: Any, idx: Any, scale: Any) -> Any:
    """Training loss of a batch of groups ``idx`` for ``variant``."""
    import torch
    from torch.nn import functional as F

    if variant == "supervised":
        groups = scan.groups[idx]
        amp, phase = model(scan.inputs[groups])
        true = truth_patches(scan, groups.reshape(-1), amp.shape[-1]).reshape(amp.shape)
        dphi = torch.atan2(torch.sin(phase - true.angle()), torch.cos(phase - true.angle()))
        return (amp - true.abs()).abs().mean() + dphi.abs().mean()
    pred = predicted_counts(model, scan, idx, scale, overlap=variant == "pinn")
    counts = scan.counts[scan.groups[idx]]
    nll = F.poisson_nll_loss(pred, counts, log_input=False, full=False, eps=1e-6,
                             reduction="none")
    if scan.mask is not None:
        return (nll * scan.mask).sum() / (scan.mask.sum() * nll.shape[0] * nll.shape[1])
    return nll.mean()


def predict_object(model: Any, scan: Any, batch: int = 256, out: Any = None,
                   start: int = 0, stop: int | None = None, weighting: str = "uniform"
                   ) -> tuple[Any, Any]:
    """Stitch the model's patches for groups ``start:stop`` into the object frame.

    ``weighting="uniform"`` is eq. 1's normalisation; ``"probe"`` weights every patch
    pixel by the probe intensity (:func:`~napari_ptycho.nn.pinn_model.probe_weight`;
    uniform when the scan has no probe).
    """
    if weighting not in STITCH_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {STITCH_WEIGHTINGS} (got {weighting!r})")
    import torch

    from napari_ptycho.nn.pinn_model import probe_weight, stitch

    n = scan.counts.shape[-1]
    stop = len(scan.groups) if stop is None else stop
    obj = None
    weight = probe_weight(scan.probe, n // 2) if weighting == "probe" else None
    with torch.no_grad():
        for lo in range(start, stop, batch):
            groups = scan.groups[lo:min(lo + batch, stop)]
            patches = model.patches(scan.inputs[groups])
            obj, *sums = stitch(patches.reshape(-1, *patches.shape[-2:]),
                                scan.positions[groups.reshape(-1)], scan.object_shape, n,
                                out=out, weight=weight)
            out = tuple(sums)
    return obj, out


class _PinnTrainer:
    """Shared training loop; subclasses pick the loss ``variant``."""

    description: ClassVar[str] = ""
    dims: ClassVar[int] = 2
    unit: ClassVar[str] = "epoch"
    Config: ClassVar[type] = PinnConfig
    variant: ClassVar[str] = "pinn"
    name: ClassVar[str] = "pinn"

    def run(self, data: Any, config: PinnConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Train for ``config.iterations`` epochs, yielding the stitched object per epoch.

        On the CPU, torch runs with ``config.cpu_threads`` threads until the generator
        finishes or is closed, then gets its previous setting back.
        """
        import torch

        if not isinstance(config, PinnConfig):
            raise ValueError(f"config must be a PinnConfig (got {type(config).__name__})")
        config.validate()
        device = select_device(config.device)
        before = torch.get_num_threads()
        try:
            if device.type == "cpu" and int(config.cpu_threads) > 0:
                torch.set_num_threads(int(config.cpu_threads))
            yield from self._train(data, config, init, device)
        finally:
            torch.set_num_threads(before)

    def _train(self, data: Any, config: PinnConfig, init: Snapshot | None, device: Any
               ) -> Iterator[Snapshot]:
        import torch

        from napari_ptycho.engines._pinn_data import prepare_scan
        from napari_ptycho.nn.pinn_model import PinnArch, PinnNet, load_model, save_model

        torch.manual_seed(int(config.seed))
        if config.model_path:
            model, card = load_model(config.model_path, device)
            arch = model.arch
        else:
            arch = PinnArch(int(config.pattern_size), int(config.group_size),
                            int(config.filters), GAUGE_OF_VARIANT[self.variant],
                            float(config.phase_limit))
            arch.validate()
            model = PinnNet(arch).to(device)
        supervised = self.variant == "supervised"
        scan = prepare_scan(data, arch.n, arch.k, config.resize, config.probe_source,
                            config.probe_iterations, config.seed, device,
                            need_probe=not supervised)
        if supervised and scan.truth is None:
            raise ValueError("the supervised baseline needs ground truth: a simulated scan "
                             "with truth_object at the model's pattern size")
        timer = Timer()
        log_scale = torch.tensor(math.log(scan.probe_power), device=device,
                                 requires_grad=bool(config.train_scale))
        params = list(model.parameters()) + ([log_scale] if config.train_scale else [])
        optimizer = torch.optim.Adam(params, lr=float(config.learning_rate))
        gen = torch.Generator().manual_seed(int(config.seed))
        chosen = torch.randperm(len(scan.groups), generator=gen)
        if config.max_groups:
            chosen = chosen[:int(config.max_groups)]
        start = int(getattr(init, "iteration", 0) or 0) if init is not None else 0
        errors = list(getattr(init, "errors", []) or []) if init is not None else []
        total = start + int(config.iterations)
        good = {k: v.detach().clone() for k, v in model.state_dict().items()}
        for epoch in range(start, total):
            model.train()
            order = chosen[torch.randperm(len(chosen), generator=gen)].to(device)
            losses = []
            for lo in range(0, len(order), int(config.batch_size)):
                idx = order[lo:lo + int(config.batch_size)]
                loss = loss_of(self.variant, model, scan, idx, log_scale.exp())
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
            epoch_loss = float(np.mean(losses))
            if not math.isfinite(epoch_loss):
                model.load_state_dict(good)
                raise EngineError(f"{self.name}: loss became non-finite at epoch "
                                  f"{epoch + 1}; the last good weights were kept")
            good = {k: v.detach().clone() for k, v in model.state_dict().items()}
            errors.append(epoch_loss)
            it = epoch + 1
            saved = ""
            if config.save_dir:
                card = {"variant": self.variant, "epochs": it, "loss": epoch_loss,
                        "config": dataclasses.asdict(config),
                        "groups": int(len(chosen)), "patterns": int(len(scan.counts)),
                        "intensity_scale": float(log_scale.exp()),
                        "train_seconds": timer(), "saved": time.strftime("%Y-%m-%d %H:%M:%S")}
                saved = str(save_model(model, Path(config.save_dir) / f"{self.variant}.pt",
                                       card))
            if (it - start) % int(config.update_every) == 0 or it == total:
                model.eval()
                obj, _ = predict_object(model, scan)
                yield self._snapshot(obj, scan, it, total, errors, timer(), it == total,
                                     saved, float(log_scale.exp()))
        self.model = model

    def _snapshot(self, obj: Any, scan: Any, it: int, total: int, errors: list[float],
                  elapsed: float, done: bool, saved: str, scale: float) -> Snapshot:
        probe = None
        if scan.probe is not None:
            probe = (scan.probe * math.sqrt(scan.probe_power)).cpu().numpy()[None]
        return Snapshot(iteration=it, total=total, object=obj.cpu().numpy(), probe=probe,
                        positions=scan.positions.cpu().numpy(), errors=list(errors),
                        elapsed=elapsed, unit="epoch", method=self.name, done=done,
                        extras={"model_path": saved, "loss": errors[-1],
                                "groups": int(len(scan.groups)), "intensity_scale": scale,
                                "resized": scan.resized})


class PINN(_PinnTrainer):
    """Unsupervised PtychoPINN trained on the scan itself."""

    name = "pinn"
    variant = "pinn"
    description = "PtychoPINN: train on this scan (Hoidn et al. 2023)"


class BasicPINN(_PinnTrainer):
    """Ablation: the same physics loss without the overlap constraint."""

    name = "basic_pinn"
    variant = "basic_pinn"
    description = "PtychoPINN ablation without the overlap constraint"


class Supervised(_PinnTrainer):
    """PtychoNN-style baseline: L1 on ground-truth patches (simulated scans only)."""

    name = "supervised"
    variant = "supervised"
    description = "Supervised encoder-decoder baseline (needs ground truth)"


class PinnInfer:
    """Predict every group with a trained model and stitch, streaming tiles."""

    name: ClassVar[str] = "pinn_infer"
    description: ClassVar[str] = "PtychoPINN inference with a trained model"
    dims: ClassVar[int] = 2
    unit: ClassVar[str] = "step"
    Config: ClassVar[type] = PinnInferConfig

    def run(self, data: Any, config: PinnInferConfig, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield the partially stitched object after every ``tile_groups`` groups."""
        from napari_ptycho.engines._pinn_data import prepare_scan
        from napari_ptycho.nn.pinn_model import load_model

        if not isinstance(config, PinnInferConfig):
            raise ValueError(f"config must be a PinnInferConfig (got {type(config).__name__})")
        config.validate()
        device = select_device(config.device)
        path = config.model_path or str(DEFAULT_MODEL)
        if not config.model_path and not DEFAULT_MODEL.is_file():
            raise ValueError("no model_path given and the shipped model is missing; train "
                             "one with `napari-ptycho train pinn`")
        model, card = load_model(path, device)
        timer = Timer()
        # only probe weighting needs the scan's own probe; never an rPIE run here
        want = config.stitch_weighting == "probe" and getattr(data, "probe", None) is not None
        scan = prepare_scan(data, model.arch.n, model.arch.k, config.resize, "data",
                            0, config.seed, device, need_probe=want)
        tile = int(config.tile_groups)
        total = math.ceil(len(scan.groups) / tile)
        sums = None
        for step in range(total):
            lo = step * tile
            obj, sums = predict_object(model, scan, out=sums, start=lo,
                                       weighting=config.stitch_weighting,
                                       stop=min(lo + tile, len(scan.groups)))
            yield Snapshot(iteration=step + 1, total=total, object=obj.cpu().numpy(),
                           probe=data.probe if scan.resized == "none" else None,
                           positions=scan.positions.cpu().numpy(), elapsed=timer(),
                           unit="step", method=self.name, done=step + 1 == total,
                           extras={"model_path": str(path), "model_card": card,
                                   "groups": int(len(scan.groups))})
