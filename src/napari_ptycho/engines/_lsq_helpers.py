"""Machinery shared by the LSQ-ML and automatic-differentiation engines.

State set-up (object, probe, positions, propagator on one device), mini-batching, the
detector-space likelihood update, the 2×2 step-length solve, position shifts, config checks
and snapshots. Pure torch; imported only when one of those engines runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from napari_ptycho.engines.base import EngineError, Snapshot, select_device
from napari_ptycho.physics.propagation import Propagator
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
@dataclass
class State:
    """Everything an iteration touches, as tensors on one device."""

    obj: torch.Tensor  # (H, W) complex64
    probe: torch.Tensor  # (M, h, w) complex64
    positions: torch.Tensor  # (N, 2) float64
    intensity: torch.Tensor  # (N, Hd, Wd) float32, measured counts
    amplitude: torch.Tensor  # sqrt(intensity)
    mask: torch.Tensor | None  # (Hd, Wd) float32 (1 valid, 0 ignored) or None
    prop: Propagator
    device: torch.device
    norm: float  # sum of valid counts, normalises the error
    max_corner: torch.Tensor  # largest allowed position (row, col)
    probe_window: tuple[int, int]


def initial_probe(intensity: torch.Tensor, prop: Propagator, mask: torch.Tensor | None
                  ) -> torch.Tensor:
    """Probe guess (1, h, w) from the data: the back-propagated root of the mean pattern.

    In the far field this is a compact, centred blob of the right size; in the near field
    it is roughly the probe itself. Scaled so that its energy equals the mean pattern energy
    (Parseval, with ``norm="ortho"``), which is right for a transmission near 1.
    """
    mean = intensity.mean(0)
    if mask is not None:
        mean = mean * mask
    guess = prop.backward(torch.sqrt(mean).to(torch.complex64)[None])
    if not prop.near_field:
        # a flat-phase spectrum back-propagates to a blob at the window's corner (DC of the
        # FFT); the probe sits in the middle of its window
        guess = torch.fft.fftshift(guess, dim=(-2, -1))
    energy = float(mean.sum())
    power = float((guess.abs() ** 2).sum())
    if power <= 0 or energy <= 0:
        raise ValueError("cannot guess a probe: the diffraction data are all zero")
    return (guess * math.sqrt(energy / power)).to(torch.complex64)


def add_modes(probe: torch.Tensor, modes: int, seed: int) -> torch.Tensor:
    """Pad ``probe`` (M, h, w) to ``modes`` modes (extra ones weak and random) or trim it."""
    if probe.shape[0] >= modes:
        return probe[:modes].clone()
    gen = torch.Generator().manual_seed(int(seed))
    extra = []
    envelope = probe[0].abs()
    for _ in range(modes - probe.shape[0]):
        noise = torch.randn(probe.shape[-2:], generator=gen, dtype=torch.complex64)
        extra.append((noise.to(probe.device) * envelope * 0.1))
    return orthogonalize_modes(torch.cat([probe, torch.stack(extra)]))


def orthogonalize_modes(probe: torch.Tensor) -> torch.Tensor:
    """Orthogonal modes with the same coherence (Σ_m P_m P_m^*), strongest first (SVD)."""
    m = probe.shape[0]
    flat = probe.reshape(m, -1)
    u, s, vh = torch.linalg.svd(flat, full_matrices=False)
    return (s[:, None].to(flat.dtype) * vh).reshape(probe.shape)


def prepare(data: Any, config: Any, init: Snapshot | None) -> State:
    """Move ``data`` to the chosen device and set up object, probe and positions."""
    from napari_ptycho.data import PtychoData

    if not isinstance(data, PtychoData):
        raise ValueError(f"data must be a PtychoData scan (got {type(data).__name__})")
    device = select_device(config.device)
    torch.manual_seed(int(config.seed))
    intensity = as_tensor(data.intensities(), device, torch.float32)
    if not torch.all(torch.isfinite(intensity)):
        raise ValueError("data.diffraction contains NaN or infinite values")
    intensity = torch.clamp(intensity, min=0.0)
    mask = None
    if data.mask is not None:
        mask = as_tensor(data.mask, device, torch.float32)
        intensity = intensity * mask
    det = data.detector_shape
    if init is not None and init.probe is not None:
        probe = as_tensor(np.asarray(init.probe), device, torch.complex64)
        probe = probe[None] if probe.ndim == 2 else probe
    elif data.probe is not None:
        probe = as_tensor(data.probe, device, torch.complex64)
    else:
        probe = None
    window = tuple(int(s) for s in (probe.shape[-2:] if probe is not None
                                    else data.probe_shape))
    prop = Propagator(window, det, data.geometry, device=device)
    if probe is None:
        probe = initial_probe(intensity, prop, mask)
    probe = add_modes(probe, int(config.probe_modes), config.seed)

    if init is not None and init.object is not None:
        obj = as_tensor(np.asarray(init.object), device, torch.complex64).clone()
    else:
        obj = torch.ones(tuple(data.object_shape), dtype=torch.complex64, device=device)
    if obj.ndim != 2:
        raise ValueError(f"initial object must be 2D (got shape {tuple(obj.shape)})")
    pos_src = init.positions if init is not None and init.positions is not None \
        else data.positions
    positions = as_tensor(np.asarray(pos_src, dtype=np.float64), device, torch.float64).clone()
    if positions.shape != (data.n_patterns, 2):
        raise ValueError(f"positions must have shape ({data.n_patterns}, 2); got "
                         f"{tuple(positions.shape)}")
    max_corner = torch.tensor([obj.shape[0] - window[0], obj.shape[1] - window[1]],
                              dtype=torch.float64, device=device)
    if bool(torch.any(positions < 0)) or bool(torch.any(positions > max_corner)):
        raise ValueError(f"positions put probe windows {window} outside the object "
                         f"{tuple(obj.shape)}: rows {float(positions[:, 0].min()):.1f}.."
                         f"{float(positions[:, 0].max()):.1f}, cols "
                         f"{float(positions[:, 1].min()):.1f}..{float(positions[:, 1].max()):.1f}")
    norm = float(intensity.sum())
    if norm <= 0:
        raise ValueError("data.diffraction holds no counts")
    return State(obj=obj, probe=probe, positions=positions, intensity=intensity,
                 amplitude=torch.sqrt(intensity), mask=mask, prop=prop, device=device,
                 norm=norm, max_corner=max_corner, probe_window=window)


# ------------------------------------------------------------------------------ batching
def make_batches(state: State, batching: str, batch_size: int, gen: np.random.Generator
                 ) -> list[torch.Tensor]:
    """Index batches for one pass: random chunks, or greedy sets of non-overlapping windows.

    Non-overlapping ("sparse") sets make the per-position LSQ-ML step lengths exact, since
    no two positions of a batch update the same object pixel.
    """
    n = state.positions.shape[0]
    order = gen.permutation(n)
    if batching == "random":
        size = batch_size if batch_size > 0 else n
        return [torch.as_tensor(order[i:i + size], device=state.device)
                for i in range(0, n, size)]
    pos = state.positions.cpu().numpy()[order]
    h, w = state.probe_window
    # two windows overlap when they are closer than a window in both directions
    d = np.abs(pos[:, None, :] - pos[None, :, :])
    overlap = (d[..., 0] < h) & (d[..., 1] < w)
    blocked: list[np.ndarray] = []
    members: list[list[int]] = []
    cap = batch_size if batch_size > 0 else n
    for j in range(n):
        for b in range(len(members)):
            if not blocked[b][j] and len(members[b]) < cap:
                members[b].append(j)
                blocked[b] |= overlap[j]
                break
        else:
            members.append([j])
            blocked.append(overlap[j].copy())
    return [torch.as_tensor(order[m], device=state.device) for m in members]


# ------------------------------------------------------------------ detector-space update
def detector_update(far: torch.Tensor, counts: torch.Tensor, mask: torch.Tensor | None,
                    noise_model: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Detector-space exit-wave change and the batch's amplitude error.

    Parameters
    ----------
    far : Tensor (B, M, H, W) complex
        Modelled detector waves of every mode.
    counts : Tensor (B, H, W)
        Measured intensities.
    mask : Tensor (H, W) or None
        1 where pixels are valid; invalid pixels keep the model (zero change).
    noise_model : str
        "gaussian": amplitude projection √d/√I − 1 (Gaussian noise on amplitudes).
        "poisson": the likelihood gradient (d/I − 1)Ψ with a per-pattern Newton step.

    Returns
    -------
    change : Tensor (B, M, H, W)
        Ψ' − Ψ.
    error : Tensor scalar float64
        Σ (√I − √d)² over valid pixels.
    """
    model = (far.real ** 2 + far.imag ** 2).sum(1)
    amp = torch.sqrt(model)
    root = torch.sqrt(counts)
    diff = amp - root
    if mask is not None:
        diff = diff * mask
    error = (diff.double() ** 2).sum()
    if noise_model == "gaussian":
        factor = root / (amp + 1e-12) - 1.0
    else:
        factor = _poisson_factor(model, counts)
    if mask is not None:
        factor = factor * mask
    return far * factor[:, None].to(far.dtype), error


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
    """Per-position (α_O, α_P) minimising ‖χ − α_O a − α_P b‖² (Tikhonov-damped), in [0, 1]."""
    la = 1e-6 * aa.mean() + 1e-30
    lb = 1e-6 * bb.mean() + 1e-30
    a11, a22 = aa + la, bb + lb
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

    Moving a position by δ shifts its (sub-pixel shifted) probe by δ, so to first order
    ψ changes by −δ·∇P·O; δ solves min ‖χ + δ·∇P·O‖² per position and axis.
    """
    dpy, dpx = _derivatives(probes)
    out = []
    for dp in (dpy, dpx):
        g = -dp * patches[:, None]
        num = (g.conj() * chi).real.sum((1, 2, 3))
        den = (g.real ** 2 + g.imag ** 2).sum((1, 2, 3))
        out.append(num / (den + 1e-12 * den.max() + 1e-30))
    return torch.stack(out, dim=1).to(torch.float64)


def apply_position_shifts(state: State, shifts: torch.Tensor, max_step: float) -> None:
    """Clip, remove the (unobservable) mean drift, apply and keep windows inside the object."""
    shifts = torch.clamp(shifts, -max_step, max_step)
    shifts = shifts - shifts.mean(0, keepdim=True)
    pos = state.positions + shifts
    state.positions = torch.minimum(torch.clamp(pos, min=0.0), state.max_corner)


# ------------------------------------------------------------------------------ reporting
def check_finite(state: State, error: float, iteration: int, method: str) -> None:
    """Raise EngineError naming the iteration when the run produced NaN or infinity."""
    if not math.isfinite(error) or not bool(torch.isfinite(state.obj).all()) \
            or not bool(torch.isfinite(state.probe).all()):
        raise EngineError(f"{method}: non-finite values at iteration {iteration}; try a "
                          "smaller step (learning rate / beta) or check the data")


def snapshot(state: State, iteration: int, total: int, errors: list[float], elapsed: float,
             method: str, done: bool, **extras: Any) -> Snapshot:
    """A numpy :class:`Snapshot` of ``state``."""
    return Snapshot(iteration=iteration, total=total,
                    object=state.obj.detach().cpu().numpy().astype(np.complex64),
                    probe=state.probe.detach().cpu().numpy().astype(np.complex64),
                    positions=state.positions.detach().cpu().numpy().astype(np.float64),
                    errors=list(errors), elapsed=elapsed, unit="iteration", method=method,
                    done=done, extras={"error_metric": "normalised amplitude error "
                                       "Σ(√I−√d)²/Σd", **extras})
