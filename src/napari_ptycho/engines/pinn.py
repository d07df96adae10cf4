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
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_ptycho.engines._pinn_config import STITCH_WEIGHTINGS, PinnConfig, PinnInferConfig
from napari_ptycho.engines.base import EngineError, Snapshot, Timer, select_device

#: The constant phase each variant's loss cannot see (fixed in the network, PinnArch.gauge):
#: one per group with the overlap constraint, one per patch without it; the supervised
#: labels fix it.
GAUGE_OF_VARIANT = {"pinn": "group", "basic_pinn": "patch", "supervised": "none"}

#: The shipped model that serves the sample data (see ``weights/pinn_default.json``).
DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "weights" / "pinn_default.pt"


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


def predict_object(model: Any, scan: Any, batch: int = 32, out: Any = None,
                   start: int = 0, stop: int | None = None, weighting: str = "uniform"
                   ) -> tuple[Any, Any]:
    """Stitch the model's patches for groups ``start:stop`` into the object frame.

    ``weighting="uniform"`` is eq. 1's normalisation; ``"probe"`` weights every patch
    pixel by the probe intensity (:func:`~napari_ptycho.nn.pinn_model.probe_weight`;
    uniform when the scan has no probe). The network runs ``batch`` groups at a time
    (activations of 32 groups stay in cache: 2.8x faster than 256 at once on one CPU
    thread, docs/benchmarks.md) and all patches are stitched in one call.
    """
    if weighting not in STITCH_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {STITCH_WEIGHTINGS} (got {weighting!r})")
    import torch

    from napari_ptycho.nn.pinn_model import probe_weight, stitch

    n = scan.counts.shape[-1]
    stop = len(scan.groups) if stop is None else stop
    weight = probe_weight(scan.probe, n // 2) if weighting == "probe" else None
    groups = scan.groups[start:stop]
    with torch.inference_mode():
        patches = torch.cat([model.patches(scan.inputs[groups[lo:lo + batch]]
                                           .contiguous(memory_format=torch.channels_last))
                             for lo in range(0, len(groups), batch)])
        obj, *sums = stitch(patches.reshape(-1, *patches.shape[-2:]),
                            scan.positions[groups.reshape(-1)], scan.object_shape, n,
                            out=out, weight=weight)
    return obj, tuple(sums)


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
                            float(config.phase_limit), float(config.amplitude_max))
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
