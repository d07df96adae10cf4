"""The state and the training step of the PtyINR engine (see :mod:`.ptyinr`).

Kept apart from the engine's run loop so that the loop (snapshots, divergence checks)
reads in one screen. Pure torch; imported only when PtyINR runs.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any

import numpy as np
import torch

from napari_ptycho.engines.common import PtychoConfig, prepare
from napari_ptycho.nn.hashgrid import ProbeField
from napari_ptycho.nn.siren import ObjectField

#: Pixels per chunk when the whole object is rendered for a snapshot.
RENDER_CHUNK = 65536
#: Pixels per step when the object field is pre-fitted to an array.
PREFIT_PIXELS = 8192
#: Amplitude floor (fraction of the largest measured amplitude) inside √I_pred: keeps the
#: gradient of the square root finite where the model is dark.
AMPLITUDE_FLOOR = 1e-3
#: Adam's ε. The default 1e-8 sat above the gradients of the probe's phase head (1e-9 and
#: below at the start of a fit), which turned Adam there into a tiny fixed-step SGD.
ADAM_EPS = 1e-15


def _unit_peak(p: torch.Tensor) -> torch.Tensor:
    return p / p.abs().max().clamp(min=1e-30)


class Fit:
    """Networks, optimisers and data of one PtyINR run.

    Parameters
    ----------
    data : PtychoData
    config : PtyINRConfig
    init : Snapshot, optional
        Warm start: its saved network state when compatible, else its arrays (pre-fit).
    searched : (Tensor, dict), optional
        The ``search`` of an earlier start on the same data (its "defocus" probe and
        record), reused instead of searching again: the search reads the data only, so
        every restart would find the same probe.
    """

    def __init__(self, data: Any, config: Any, init: Any = None,
                 searched: tuple[torch.Tensor, dict[str, Any]] | None = None) -> None:
        proxy = PtychoConfig(iterations=1, seed=config.seed, device=config.device,
                             probe_init="given" if config.probe == "known" else "data")
        self.problem = p = prepare(data, proxy, init)
        self.config = config
        # the searched start replaces only a probe the data did not give (not a warm
        # start's or a known one); near-field data have no pupil to search, so they keep
        # the flat guess
        self.defocus: dict[str, Any] = {}
        self.search: tuple[torch.Tensor, dict[str, Any]] | None = None
        if (config.probe == "learn" and config.probe_guess == "defocus"
                and p.probe_estimated and not p.detector.near_field):
            if searched is None:
                from napari_ptycho.engines.probe_search import search_defocus

                phases = config.defocus_phases()
                probe, errors, chosen = search_defocus(p, phases, config.defocus_iterations)
                searched = (probe.to(p.probe.dtype),
                            {"defocus_edge_phase": chosen, "defocus_phases": phases,
                             "defocus_errors": errors})
            self.search = searched
            p.probe = searched[0].clone()
            self.defocus = searched[1]
        self.first_loss: float | None = None  # for the engine's divergence check
        self.device = dev = p.device
        torch.manual_seed(int(config.seed))  # the MLP heads use torch's default init
        gen = torch.Generator().manual_seed(int(config.seed))
        self.object_shape = tuple(p.obj.shape)
        self.probe_shape = tuple(p.probe.shape[-2:])
        # one length scale for both axes, so circles stay circles in coordinate space
        self.norm = float(max(*self.object_shape, *self.probe_shape) - 1)
        width, layers, pwidth, players = config.sizes()
        self.arch = {"object": [width, layers, config.first_omega, config.hidden_omega],
                     "probe": [config.probe, "signed-amplitude", pwidth, players, 16, 2, 15,
                               16, 1.5],
                     "object_shape": list(self.object_shape),
                     "probe_shape": list(self.probe_shape)}
        self.object_field = ObjectField(width, layers, config.first_omega,
                                        config.hidden_omega, generator=gen).to(dev)
        self.learn_probe = config.probe == "learn"
        h, w = self.probe_shape
        jj = torch.stack(torch.meshgrid(torch.arange(h, device=dev), torch.arange(w, device=dev),
                                        indexing="ij"), dim=-1).reshape(-1, 2).float()
        self.window_offsets = jj  # (h·w, 2) pixel offsets inside a window
        self.probe_coords = jj / float(max(h, w) - 1)
        self.fixed_probe = _unit_peak(p.probe[0])
        self.probe_field = (ProbeField(pwidth, players, generator=gen).to(dev)
                            if self.learn_probe else None)
        self.log_scale = torch.zeros((), device=dev, requires_grad=True)
        self.amax = float(p.amplitudes.max())
        # the data term is divided by its value for an all-dark model (SmoothL1) or by the
        # mean measured intensity (Poisson deviance), so it starts near 1 whatever the
        # photon count, detector size or β (λ of the regulariser is relative)
        self.loss_kind = config.loss
        if self.loss_kind == "poisson":
            norm = _masked_mean((p.amplitudes / self.amax).square(), p.mask)
        else:
            zero = torch.zeros((), device=dev)
            norm = _smooth_l1(zero.expand_as(p.amplitudes), p.amplitudes / self.amax,
                              p.mask, config.beta)
        self.loss_norm = 1.0 / max(float(norm), 1e-30)
        self.positions = p.windows.positions.cpu().numpy().copy()
        self._evaluate = self.object_field
        if config.compile:
            self._evaluate = torch.compile(self.object_field, dynamic=True)

        self.restored = restored = self._restore(init)
        if not restored:
            self._prefit(init)
            self._fit_scale()
        lr_o, lr_p = config.learning_rates()
        self.opt_object = torch.optim.Adam(self.object_field.parameters(), lr=lr_o,
                                           eps=ADAM_EPS)
        groups = [{"params": [self.log_scale], "lr": 1e-2}]
        if self.probe_field is not None:
            groups.append({"params": list(self.probe_field.parameters()), "lr": lr_p})
        self.opt_probe = torch.optim.Adam(groups, eps=ADAM_EPS)
        self._base_lrs = [[g["lr"] for g in opt.param_groups]
                          for opt in (self.opt_object, self.opt_probe)]
        self.batch_gen = torch.Generator().manual_seed(int(config.seed) + 1)
        self._queue: list[torch.Tensor] = []
        self._all = torch.arange(p.n_patterns, device=dev)
        self._all_union = (torch.unique(p.windows.flat, return_inverse=True)
                           if config.sampling == "grid" else None)

    # ------------------------------------------------------------------ field evaluation
    def _autocast(self) -> Any:
        if self.config.precision == "bfloat16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def object_at(self, coords: torch.Tensor) -> torch.Tensor:
        """Complex object at coordinates (..., 2) in object pixels (row, col)."""
        with self._autocast():
            return self._evaluate(coords / self.norm)

    def object_at_pixels(self, flat: torch.Tensor) -> torch.Tensor:
        """Complex object at flat pixel indices of the object array."""
        width = self.object_shape[1]
        coords = torch.stack([torch.div(flat, width, rounding_mode="floor"), flat % width],
                             dim=-1).float()
        return self.object_at(coords)

    def probe(self, anchored: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Peak-normalised probe (h, w) and its amplitude before normalisation (or None).

        The value divides by max|P| (P / max|P|, as in the paper), but the gradient is
        that of dividing by the RMS amplitude: through max() the brightest pixel's own
        value could never change (it is 1 whatever the network does), which froze the
        central spike of the data-derived estimate and made the object carry a dot grid
        at the scan period to compensate (issue #8: object amplitude 11 dB at 50 %
        overlap, 36 dB after). Dividing by a norm with its gradient still removes the
        probe's overall scale (the learned scale s holds it), which keeps the fit stable;
        dividing by a detached max did not. ``anchored`` (the first ``anchor_steps``)
        keeps the gradient through max|P|: pinning one pixel steadies the start of a
        sparse fit (at 30 % overlap the fit failed without it).
        """
        if self.probe_field is None:
            return self.fixed_probe, None
        field, amp = self.probe_field(self.probe_coords)
        magnitude = field.abs()
        rms = magnitude.square().mean().sqrt().clamp(min=1e-30)
        peak = magnitude.max().clamp(min=1e-30)
        if not anchored:
            peak = rms * (peak / rms).detach()
        return (field / peak).reshape(self.probe_shape), amp / peak

    def exit_waves(self, idx: torch.Tensor, probe: torch.Tensor,
                   union: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Exit waves (B, 1, h, w) of the windows ``idx``."""
        win = self.problem.windows
        h, w = self.probe_shape
        if self.config.sampling == "exact":
            pos = win.positions.index_select(0, idx).float()
            coords = pos[:, None, :] + self.window_offsets[None]
            patches = self.object_at(coords).reshape(len(idx), h, w)
            return (probe[None] * patches)[:, None]
        if union is None:
            union = torch.unique(win.flat.index_select(0, idx), return_inverse=True)
        pixels, inverse = union
        patches = self.object_at_pixels(pixels)[inverse].reshape(len(idx), h, w)
        return win.probes(probe[None], idx) * patches[:, None]

    def model_amplitudes(self, idx: torch.Tensor, probe: torch.Tensor,
                         union: Any = None) -> torch.Tensor:
        """Predicted √I (B, H, W) in the detector's native layout."""
        far = self.problem.detector.forward(self.exit_waves(idx, probe, union))
        inten = torch.view_as_real(far).square().sum(dim=(1, -1)) * torch.exp(
            2 * self.log_scale)
        return torch.sqrt(inten + (AMPLITUDE_FLOOR * self.amax) ** 2)

    # ---------------------------------------------------------------------- training
    def _batch(self) -> tuple[torch.Tensor, Any]:
        n = self.problem.n_patterns
        size = self.config.batch_size
        if size == 0 or size >= n:
            return self._all, self._all_union
        if not self._queue:
            perm = torch.randperm(n, generator=self.batch_gen).to(self.device)
            self._queue = list(torch.split(perm, size))
        return self._queue.pop(0), None

    def step(self, k: int) -> tuple[float, float]:
        """One Adam step (``k`` steps done before it); returns (loss, normalised error)."""
        p, cfg = self.problem, self.config
        self._schedule(k)
        idx, union = self._batch()
        probe, amp = self.probe(anchored=k < cfg.anchor_steps)
        pred = self.model_amplitudes(idx, probe, union)
        meas = p.amplitudes.index_select(0, idx)
        loss = self.loss_norm * _data_loss(pred / self.amax, meas / self.amax, p.mask,
                                           cfg.beta, self.loss_kind)
        if amp is not None and k < cfg.probe_reg_steps and cfg.probe_reg > 0:
            loss = loss + cfg.probe_reg * amp.mean()
        self.opt_object.zero_grad(set_to_none=True)
        self.opt_probe.zero_grad(set_to_none=True)
        loss.backward()
        self.opt_object.step()
        if k >= cfg.probe_start:
            self.opt_probe.step()
        with torch.no_grad():
            err = _normalised_error(pred, meas, p.mask)
        return float(loss.detach()), err

    def data_error(self) -> float:
        """Normalised error Σ(|model| − √I)² / Σ I of the current fields on every
        pattern, without a step (ranks restarts: it uses the measured data only)."""
        p = self.problem
        with torch.no_grad():
            pred = self.model_amplitudes(self._all, self.probe()[0], self._all_union)
            return _normalised_error(pred, p.amplitudes, p.mask)

    def _schedule(self, k: int) -> None:
        """Cosine decay of every learning rate to ``final_lr_fraction`` over the run."""
        low = self.config.final_lr_fraction
        frac = min(k / max(self.config.iterations - 1, 1), 1.0)
        factor = low + (1 - low) * 0.5 * (1 + math.cos(math.pi * frac))
        for opt, bases in zip((self.opt_object, self.opt_probe), self._base_lrs, strict=True):
            for group, base in zip(opt.param_groups, bases, strict=True):
                group["lr"] = base * factor

    def loss(self) -> float:
        """Data loss of the current fields on every pattern, without a step."""
        p = self.problem
        with torch.no_grad():
            pred = self.model_amplitudes(self._all, self.probe()[0], self._all_union)
            return self.loss_norm * float(_data_loss(pred / self.amax,
                                                     p.amplitudes / self.amax, p.mask,
                                                     self.config.beta, self.loss_kind))

    # ------------------------------------------------------------------- init & state
    def _fit_scale(self) -> None:
        """Least-squares global scale s² = Σ I / Σ |F(P·O)|² over up to 64 patterns."""
        p = self.problem
        idx = torch.linspace(0, p.n_patterns - 1, min(64, p.n_patterns),
                             device=self.device).round().long().unique()
        with torch.no_grad():
            self.log_scale.zero_()
            pred = self.model_amplitudes(idx, self.probe()[0]).square()
            ratio = float(p.amplitudes.index_select(0, idx).square().sum() / pred.sum())
            self.log_scale.fill_(0.5 * math.log(max(ratio, 1e-30)))

    def _prefit(self, init: Any) -> None:
        """Fit the probe field to the initial probe and, on a warm start, the object field
        to the initial object (a few Adam steps of complex least squares)."""
        steps = self.config.prefit_steps
        if self.probe_field is not None and steps:
            target = self.fixed_probe.reshape(-1)
            opt = torch.optim.Adam(self.probe_field.parameters(), lr=1e-2)
            for _ in range(steps):
                field, _ = self.probe_field(self.probe_coords)
                loss = (field - target).abs().square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        if init is None or getattr(init, "object", None) is None or not steps:
            return
        target = self.problem.obj.reshape(-1)
        opt = torch.optim.Adam(self.object_field.parameters(),
                               lr=self.config.learning_rates()[0])
        gen = torch.Generator().manual_seed(int(self.config.seed) + 2)
        n = target.numel()
        for _ in range(steps):
            pix = torch.randint(0, n, (min(PREFIT_PIXELS, n),), generator=gen).to(self.device)
            loss = (self.object_at_pixels(pix) - target[pix]).abs().square().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    def _tensors(self) -> dict[str, torch.Tensor]:
        named = {f"object.{k}": v for k, v in self.object_field.state_dict().items()}
        if self.probe_field is not None:
            named.update({f"probe.{k}": v for k, v in self.probe_field.state_dict().items()})
        named["log_scale"] = self.log_scale
        return named

    def state_extras(self) -> dict[str, Any]:
        """Network state as one float32 vector plus its layout (HDF5-friendly extras)."""
        named = self._tensors()
        flat = torch.cat([v.detach().reshape(-1).float().cpu() for v in named.values()])
        return {"ptyinr_state": flat.numpy(),
                "ptyinr_layout": [[k, list(v.shape)] for k, v in named.items()],
                "ptyinr_arch": dict(self.arch)}

    def _restore(self, init: Any) -> bool:
        """Load the networks from ``init.extras`` when they match this run's architecture."""
        extras = getattr(init, "extras", None) or {}
        state = extras.get("ptyinr_state")
        if state is None or _plain(extras.get("ptyinr_arch")) != _plain(self.arch):
            return False
        named = self._tensors()
        layout = [[k, list(v.shape)] for k, v in named.items()]
        if _plain(extras.get("ptyinr_layout")) != _plain(layout):
            return False
        flat = torch.as_tensor(np.asarray(state, dtype=np.float32))
        if flat.numel() != sum(v.numel() for v in named.values()):
            return False
        with torch.no_grad():
            for tensor, chunk in zip(named.values(),
                                     torch.split(flat, [v.numel() for v in named.values()]),
                                     strict=True):
                tensor.copy_(chunk.reshape(tensor.shape).to(tensor.device, tensor.dtype))
        return True

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        """Whole object (H, W) and the probe (1, h, w) scaled to the data, as complex64."""
        n = self.object_shape[0] * self.object_shape[1]
        with torch.no_grad():
            parts = [self.object_at_pixels(torch.arange(i, min(i + RENDER_CHUNK, n),
                                                        device=self.device))
                     for i in range(0, n, RENDER_CHUNK)]
            obj = torch.cat(parts).reshape(self.object_shape)
            probe = self.probe()[0] * torch.exp(self.log_scale)
        return (obj.to(torch.complex64).cpu().numpy(),
                probe[None].to(torch.complex64).cpu().numpy())


def _plain(value: Any) -> Any:
    """Nested lists/tuples/numpy values → plain Python, for comparing saved metadata."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _data_loss(pred: torch.Tensor, meas: torch.Tensor, mask: torch.Tensor | None,
               beta: float, kind: str = "smoothl1") -> torch.Tensor:
    """Data term between predicted and measured amplitudes (mean over valid pixels).

    "smoothl1": SmoothL1(β) of the amplitudes (the paper's loss). "poisson": the Poisson
    deviance of the intensities, ``I_p − I_m − I_m log(I_p / I_m)`` (zero for a perfect
    model). It is the negative log-likelihood of photon counts minus its minimum, and its
    minimiser does not change when counts and model are rescaled by one factor, so the
    photon scale need not be known.
    """
    if kind == "poisson":
        model, data = pred.square(), meas.square()
        log_ratio = torch.log(model) - torch.log(data.clamp(min=1e-30))
        per_pixel = model - data - data * torch.where(data > 0, log_ratio,
                                                      torch.zeros_like(log_ratio))
        return _masked_mean(per_pixel, mask)
    return _smooth_l1(pred, meas, mask, beta)


def _normalised_error(pred: torch.Tensor, meas: torch.Tensor,
                      mask: torch.Tensor | None) -> float:
    """Σ (pred − meas)² / Σ meas² over the valid pixels (the engines' error metric)."""
    diff = pred - meas
    if mask is not None:
        diff = diff * mask
        meas = meas * mask
    return float(diff.square().sum() / meas.square().sum().clamp(min=1e-30))


def _masked_mean(per_pixel: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return per_pixel.mean()
    return (per_pixel * mask).sum() / (mask.sum() * per_pixel.shape[0])


def _smooth_l1(pred: torch.Tensor, meas: torch.Tensor, mask: torch.Tensor | None,
               beta: float) -> torch.Tensor:
    per_pixel = torch.nn.functional.smooth_l1_loss(pred, meas, beta=beta, reduction="none")
    return _masked_mean(per_pixel, mask)
