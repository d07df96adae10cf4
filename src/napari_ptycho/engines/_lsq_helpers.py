"""Machinery shared by the LSQ-ML and automatic-differentiation engines.

Set-up of a :class:`~.common.Problem` (object, probe, windows, detector on one device),
mini-batching, the detector-space likelihood update, the 2×2 step-length solve, position
shifts and config checks. Pure torch; imported only when one of those engines runs.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from napari_ptycho.engines.base import EngineError, Snapshot, select_device
from napari_ptycho.engines.common import (
    Detector,
    Problem,
    Windows,
    add_modes,
    estimate_probe,
    orthogonalize_modes,
)
from napari_ptycho.physics.ptycho import as_tensor


# --------------------------------------------------------------------------- config checks
def check_int(cfg: Any, name: str, low: int, high: int | None = None) -> None:
    """Raise ValueError unless ``cfg.name`` is an integer in [low, high]."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer (got {value!r})")
    if value < low or (high is not None and value > high):
        rng = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {rng} (got {value})")


def check_float(cfg: Any, name: str, low: float, high: float, low_open: bool = False) -> None:
    """Raise ValueError unless ``cfg.name`` is a finite number in [low, high] (or (low, high])."""
    value = getattr(cfg, name)
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number (got {value!r})") from None
    bad_low = v <= low if low_open else v < low
    if not math.isfinite(v) or bad_low or v > high:
        lo = "(" if low_open else "["
        raise ValueError(f"{name} must be in {lo}{low}, {high}] (got {value!r})")


def check_choice(cfg: Any, name: str, choices: tuple[str, ...]) -> None:
    """Raise ValueError unless ``cfg.name`` is one of ``choices``."""
    value = getattr(cfg, name)
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)} (got {value!r})")


# --------------------------------------------------------------------------------- state
def prepare(data: Any, config: Any, init: Snapshot | None) -> Problem:
    """Validate ``data`` against ``config`` and set up a :class:`~.common.Problem`.

    Object: ones, or the warm start's. Probe: the warm start's, the data's (``probe_init``
    "auto"/"given") or estimated from the data; padded to ``probe_modes`` orthogonal modes.
    """
    from napari_ptycho.data import PtychoData

    if not isinstance(data, PtychoData):
        raise ValueError(f"data must be a PtychoData scan (got {type(data).__name__})")
    if int(config.probe_modes) > data.n_patterns:
        raise ValueError(f"probe_modes ({config.probe_modes}) exceeds the number of "
                         f"patterns ({data.n_patterns})")
    device = select_device(config.device)
    generator = torch.Generator().manual_seed(int(config.seed))
    torch.manual_seed(int(config.seed))
    intensity = np.asarray(data.intensities(), dtype=np.float32)
    if not np.all(np.isfinite(intensity)):
        raise ValueError("data.diffraction contains NaN or infinite values")
    det_shape = data.detector_shape
    probe = None
    if init is not None and init.probe is not None:
        probe = as_tensor(np.asarray(init.probe), device, torch.complex64)
    elif data.probe is not None and config.probe_init in ("auto", "given"):
        probe = as_tensor(data.probe, device, torch.complex64)
    elif config.probe_init == "given":
        raise ValueError("probe_init='given' but the data carry no probe")
    if probe is not None and probe.ndim == 2:
        probe = probe[None]
    window = tuple(int(s) for s in (probe.shape[-2:] if probe is not None
                                    else data.probe_shape))
    detector = Detector(window, det_shape, data.geometry, device=device)
    amplitudes = detector.to_native(torch.sqrt(as_tensor(np.clip(intensity, 0, None),
                                                         device, torch.float32)))
    mask = None
    if data.mask is not None and not bool(np.all(data.mask)):
        mask = detector.to_native(as_tensor(data.mask, device, torch.bool))
        amplitudes = amplitudes * mask
    total = float(amplitudes.square().sum())
    if not total > 0:
        raise ValueError("data.diffraction holds no counts")
    if probe is None:
        probe = estimate_probe(amplitudes, detector, mask)
    probe = add_modes(probe, int(config.probe_modes), generator)
    if probe.shape[0] > 1:
        probe = orthogonalize_modes(probe)[0]

    if init is not None and init.object is not None:
        obj = as_tensor(np.asarray(init.object), device, torch.complex64).clone()
    else:
        obj = torch.ones(tuple(data.object_shape), dtype=torch.complex64, device=device)
    if obj.ndim != 2:
        raise ValueError(f"initial object must be 2D (got shape {tuple(obj.shape)})")
    use_init_pos = init is not None and init.positions is not None
    pos = np.asarray(init.positions if use_init_pos else data.positions, dtype=np.float64)
    if pos.shape != (data.n_patterns, 2):
        raise ValueError(f"positions must have shape ({data.n_patterns}, 2); got {pos.shape}")
    upper = np.array(obj.shape) - np.array(window)
    if np.any(pos < 0) or np.any(pos > upper):
        raise ValueError(f"positions put probe windows {window} outside the object "
                         f"{tuple(obj.shape)}: rows {pos[:, 0].min():.1f}..{pos[:, 0].max():.1f}"
                         f", cols {pos[:, 1].min():.1f}..{pos[:, 1].max():.1f}")
    windows = Windows(as_tensor(pos, device, torch.float64), window, tuple(obj.shape),
                      subpixel=bool(config.subpixel))
    start_it = int(init.iteration) if init is not None else 0
    start_err = list(init.errors) if init is not None else []
    return Problem(amplitudes=amplitudes, mask=mask, total_intensity=total, obj=obj,
                   probe=probe, windows=windows, detector=detector, generator=generator,
                   device=device, start_iteration=start_it, start_errors=start_err)


# ------------------------------------------------------------------------------ batching
#: Smallest useful mean size of the non-overlapping sets (else random chunks are used).
MIN_SET = 4


def make_batches(problem: Problem, batch_size: int, gen: np.random.Generator
                 ) -> list[torch.Tensor]:
    """Index batches for one pass, in a fresh random order.

    ``batch_size`` 0: greedy sets of mutually non-overlapping windows, which make the
    per-position LSQ-ML step lengths exact (no two positions of a set touch the same object
    pixel); when such sets would hold fewer than ``MIN_SET`` positions on average, random
    chunks of about √N positions instead. ``batch_size`` k > 0: random chunks of k.
    """
    n = problem.n_patterns
    order = gen.permutation(n)
    device = problem.device
    if batch_size > 0:
        return _chunks(order, batch_size, device)
    pos = problem.windows.positions.cpu().numpy()[order]
    h, w = problem.windows.probe_shape
    d = np.abs(pos[:, None, :] - pos[None, :, :])
    overlap = (d[..., 0] < h) & (d[..., 1] < w)
    blocked: list[np.ndarray] = []
    members: list[list[int]] = []
    for j in range(n):
        for b in range(len(members)):
            if not blocked[b][j]:
                members[b].append(j)
                blocked[b] |= overlap[j]
                break
        else:
            members.append([j])
            blocked.append(overlap[j].copy())
    if n / len(members) < MIN_SET:  # a dense scan on a small object: sets of one or two
        return _chunks(order, max(MIN_SET, math.ceil(math.sqrt(n))), device)
    return [torch.as_tensor(order[m], device=device) for m in members]


def _chunks(order: np.ndarray, size: int, device: Any) -> list[torch.Tensor]:
    return [torch.as_tensor(order[i:i + size], device=device)
            for i in range(0, len(order), size)]


# ------------------------------------------------------------------ detector-space update
def detector_update(far: torch.Tensor, amplitudes: torch.Tensor, mask: torch.Tensor | None,
                    noise_model: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Detector-space exit-wave change and the batch's amplitude error.

    Parameters
    ----------
    far : Tensor (B, M, H, W) complex
        Modelled detector fields of every mode.
    amplitudes : Tensor (B, H, W)
        Measured √I.
    mask : Tensor of bool (H, W) or None
        Valid pixels; invalid ones keep the model (zero change).
    noise_model : str
        "gaussian": the amplitude projection, change (√d/√I − 1)Ψ (Gaussian noise on the
        amplitudes). "poisson": the likelihood gradient direction (d/I − 1)Ψ with a
        per-pattern Newton step length.

    Returns
    -------
    change : Tensor (B, M, H, W)
        Ψ' − Ψ.
    error : Tensor, 0-d
        Σ_valid (√I − √d)² (divide by Σ d for the normalised error of all engines).
    """
    model = torch.view_as_real(far).square().sum(dim=(1, -1))
    amp = torch.sqrt(model)
    diff = amp - amplitudes
    if noise_model == "gaussian":
        factor = amplitudes / (amp + 1e-12) - 1.0
    else:
        factor = _poisson_factor(model, amplitudes.square())
    if mask is not None:
        diff = diff * mask
        factor = factor * mask
    return far * factor[:, None], diff.square().sum()


def _poisson_factor(model: torch.Tensor, counts: torch.Tensor, steps: int = 4
                    ) -> torch.Tensor:
    """β_j r with r = d/I − 1 and β_j minimising the Poisson NLL of I (1 + β r)² per pattern."""
    eps = 1e-9 * float(model.mean()) + 1e-20
    r = counts / (model + eps) - 1.0
    beta = torch.full((model.shape[0], 1, 1), 0.5, dtype=model.dtype, device=model.device)
    for _ in range(steps):
        g1 = 1.0 + beta * r
        grad = (2 * model * g1 * r - 2 * counts * r / g1).sum((1, 2), keepdim=True)
        hess = (2 * model * r ** 2 + 2 * counts * r ** 2 / g1 ** 2).sum((1, 2), keepdim=True)
        beta = torch.clamp(beta - grad / (hess + 1e-30), 0.0, 0.95)
    return beta * r


def solve_steps(aa: torch.Tensor, ab: torch.Tensor, bb: torch.Tensor, ac: torch.Tensor,
                bc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position (α_O, α_P) minimising ‖χ − α_O a − α_P b‖² + λ(α_O² + α_P²), in [0, 1].

    ``aa = ‖a‖², bb = ‖b‖², ab = Re<a, b>, ac = Re<a, χ>, bc = Re<b, χ>``, each (B,).
    λ = 0.1 · mean(‖a‖², ‖b‖²) per position: when the object and probe directions explain χ
    equally well (nearly collinear, e.g. a batch of one position) the system is singular,
    and the damping splits the step evenly instead of giving it all to one of them.
    """
    lam = 0.05 * (aa + bb) + 1e-30
    a11 = aa + lam
    a22 = bb + lam
    det = a11 * a22 - ab ** 2
    alpha_o = (a22 * ac - ab * bc) / det
    alpha_p = (a11 * bc - ab * ac) / det
    return torch.clamp(alpha_o, 0.0, 1.0), torch.clamp(alpha_p, 0.0, 1.0)


# ------------------------------------------------------------------------------ positions
def _derivatives(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fourier derivatives ∂x/∂row, ∂x/∂col of images (..., h, w)."""
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device).to(torch.float32)
    fx = torch.fft.fftfreq(w, device=x.device).to(torch.float32)
    spec = torch.fft.fft2(x)
    dy = torch.fft.ifft2(spec * (2j * math.pi * fy[:, None]))
    dx = torch.fft.ifft2(spec * (2j * math.pi * fx[None, :]))
    return dy, dx


def position_gradient_shift(probes: torch.Tensor, patches: torch.Tensor, chi: torch.Tensor
                            ) -> torch.Tensor:
    """Least-squares position change (B, 2) that explains the exit-wave update ``chi``.

    Moving a position by δ shifts its probe by δ over the object, so to first order the exit
    wave changes by −δ·∇P·O; δ solves min ‖χ + δ·∇P·O‖² per position and axis.
    """
    dpy, dpx = _derivatives(probes)
    out = []
    for dp in (dpy, dpx):
        g = -dp * patches[:, None]
        num = (g.conj() * chi).real.sum((1, 2, 3))
        den = torch.view_as_real(g).square().sum((1, 2, 3, 4))
        out.append(num / (den + 1e-12 * den.max() + 1e-30))
    return torch.stack(out, dim=1).to(torch.float64)


def apply_position_shifts(problem: Problem, shifts: torch.Tensor, max_step: float) -> None:
    """Clip, remove the (unobservable) mean drift, apply; windows stay inside the object."""
    shifts = torch.clamp(shifts, -max_step, max_step)
    shifts = shifts - shifts.mean(0, keepdim=True)
    problem.windows.positions = problem.windows.positions + shifts
    problem.windows.refresh()


# ------------------------------------------------------------------------------ reporting
def check_finite(problem: Problem, error: float, iteration: int, method: str) -> None:
    """Raise EngineError naming the iteration when the run produced NaN or infinity."""
    if not math.isfinite(error) or not bool(torch.isfinite(problem.obj).all()) \
            or not bool(torch.isfinite(problem.probe).all()):
        raise EngineError(f"{method}: non-finite values at iteration {iteration}; try a "
                          "smaller step (learning rate / beta) or check the data")
