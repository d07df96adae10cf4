"""Machinery shared by the 2D iterative ptychography engines (ePIE, rPIE, DM, RAAR, LSQML).

What lives here, so every engine agrees on it:

* :class:`PtychoConfig` — the config fields all 2D engines share (probe modes, probe update
  on/off and start, mini-batches, position refinement, orthogonalisation).
* :func:`prepare` → :class:`Problem` — validation, device choice, measured amplitudes moved
  once to the FFT's native (unshifted) layout, the object (ones), the probe (given, from a
  warm start, or estimated from the data) and the scan :class:`Windows`.
* :class:`Detector` — exit wave ↔ detector propagation in the native layout; numerically the
  same as :class:`~napari_ptycho.physics.propagation.Propagator` up to a fixed ``ifftshift``
  of the detector frame (tested), so no ``fftshift`` runs inside the hot loop.
* :func:`modulus_projection` and :func:`data_error` — the one error metric of all engines,
  ``E = Σ_valid (|Ψ| − √I)² / Σ_valid I`` (normalised amplitude χ²).
* :func:`orthogonalize_modes`, :func:`compact_sets`, :func:`position_step`.
* :class:`IterativeEngine` — the run loop (warm start, snapshots, probe orthogonalisation,
  finite checks) that an engine fills with one ``iterate`` method.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from napari_ptycho.engines.base import EngineError, Snapshot, Timer, select_device
from napari_ptycho.engines.config import BaseConfig
from napari_ptycho.physics.propagation import Propagator, _crop_center, _pad_center
from napari_ptycho.physics.ptycho import as_tensor, fourier_shift

#: Upper limit on incoherent probe modes (more are never physically meaningful here).
MAX_PROBE_MODES = 10


@dataclass
class PtychoConfig(BaseConfig):
    """Parameters every 2D iterative engine shares.

    Parameters
    ----------
    probe_modes : int
        Number of incoherent probe modes (1..10, and not more than the patterns).
    update_probe : bool
        Retrieve the probe (False keeps the initial probe fixed).
    probe_update_start : int
        Iterations completed before the probe starts being updated.
    probe_init : str
        "auto" (the data's probe when it has one, else estimated from the diffraction),
        "data" (always estimate from the diffraction) or "given" (the data's probe).
    batch_size : int
        Positions updated together. 0 = "compact sets" of non-overlapping windows (each set
        updated in parallel, same result as sequential updates within the set); 1 =
        classic sequential; N >= len(data) = all at once. Ignored by DM and RAAR.
    position_refinement : bool
        Refine the scan positions (gradient step of Zhang et al. 2013 / Odstrčil 2018).
    position_refinement_start : int
        Iterations completed before positions start moving.
    position_max_step : float
        Largest position change per iteration, in object pixels.
    orthogonalize_every : int
        Orthogonalise the probe modes every this many iterations (multi-mode only).
    subpixel : bool
        Apply fractional positions as Fourier sub-pixel probe shifts (exact but slower);
        False rounds windows to whole pixels (fast path).
    """

    probe_modes: int = 1
    update_probe: bool = True
    probe_update_start: int = 0
    probe_init: str = "auto"
    batch_size: int = 0
    position_refinement: bool = False
    position_refinement_start: int = 5
    position_max_step: float = 0.5
    orthogonalize_every: int = 1
    subpixel: bool = True

    def validate(self) -> None:
        """Refuse impossible values before a run starts (raises ValueError)."""
        super().validate()
        if not 1 <= int(self.probe_modes) <= MAX_PROBE_MODES:
            raise ValueError(f"probe_modes must be in 1..{MAX_PROBE_MODES} "
                             f"(got {self.probe_modes})")
        for name in ("probe_update_start", "position_refinement_start", "batch_size"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)})")
        if int(self.orthogonalize_every) < 1:
            raise ValueError(f"orthogonalize_every must be >= 1 (got {self.orthogonalize_every})")
        if not (math.isfinite(self.position_max_step) and self.position_max_step > 0):
            raise ValueError(f"position_max_step must be a positive number "
                             f"(got {self.position_max_step})")
        if self.probe_init not in ("auto", "data", "given"):
            raise ValueError(f"probe_init must be 'auto', 'data' or 'given' "
                             f"(got {self.probe_init!r})")


class Detector:
    """Exit waves (..., h, w) ↔ detector fields (..., H, W) in the FFT's native layout.

    Far field: ``fft2`` of the centred zero-padded wave, DC at index (0, 0), i.e.
    ``ifftshift(Propagator.forward(x))``. Near field: the Fresnel propagator itself (its
    output is a real-space image, already native). Measured data go through
    :meth:`to_native` once, so the hot loop never shifts.
    """

    def __init__(self, probe_shape: tuple[int, int], detector_shape: tuple[int, int],
                 geometry: Any = None, device: Any = None) -> None:
        self.propagator = Propagator(probe_shape, detector_shape, geometry, device=device)
        self.probe_shape = self.propagator.probe_shape
        self.detector_shape = self.propagator.detector_shape
        self.near_field = self.propagator.near_field
        self.padded = self.probe_shape != self.detector_shape

    def forward(self, wave: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Exit waves → detector fields (native layout).

        ``out``, a preallocated tensor of the result's shape, is written in place for the
        unpadded far field (fresh multi-megabyte results are page-faulted in on every
        call on CPU, which costs as much as the FFT); otherwise it is ignored.
        """
        if self.near_field:
            return self.propagator.forward(wave)
        if self.padded:
            wave = _pad_center(wave, self.detector_shape)
            out = None
        return torch.fft.fft2(wave, norm="ortho", out=out)

    def backward(self, fields: torch.Tensor, out: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """Adjoint of :meth:`forward`: detector fields (native) → exit waves (..., h, w);
        ``out`` as in :meth:`forward`."""
        if self.near_field:
            return self.propagator.backward(fields)
        if self.padded:
            return _crop_center(torch.fft.ifft2(fields, norm="ortho"), self.probe_shape)
        return torch.fft.ifft2(fields, norm="ortho", out=out)

    def to_native(self, frames: torch.Tensor) -> torch.Tensor:
        """Stored (DC-centred) detector frames → native layout (far field: ``ifftshift``)."""
        return frames if self.near_field else torch.fft.ifftshift(frames, dim=(-2, -1))

    def from_native(self, frames: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_native`."""
        return frames if self.near_field else torch.fft.fftshift(frames, dim=(-2, -1))


class Windows:
    """Probe windows of a scan in the object: positions, integer corners, sub-pixel parts.

    Parameters
    ----------
    positions : Tensor, float64, shape (N, 2)
        Top-left corners (row, col) in object pixels.
    probe_shape, object_shape : tuple of int
        Window and object frame.
    subpixel : bool
        Keep fractional parts as Fourier probe shifts; False rounds to whole pixels.
    """

    def __init__(self, positions: torch.Tensor, probe_shape: tuple[int, int],
                 object_shape: tuple[int, int], subpixel: bool = True) -> None:
        self.positions = positions.to(torch.float64).clone()
        self.probe_shape = tuple(probe_shape)
        self.object_shape = tuple(object_shape)
        self.subpixel = subpixel
        self._rows = torch.arange(self.probe_shape[0], device=positions.device)
        self._cols = torch.arange(self.probe_shape[1], device=positions.device)
        self.upper = torch.tensor([self.object_shape[0] - self.probe_shape[0],
                                   self.object_shape[1] - self.probe_shape[1]],
                                  dtype=torch.float64, device=positions.device)
        self.refresh()

    def refresh(self) -> None:
        """Recompute corners, fractions and flat gather indices after positions moved."""
        pos = torch.minimum(self.positions.clamp(min=0), self.upper)
        self.positions = pos
        base = torch.floor(pos) if self.subpixel else torch.round(pos)
        self.corners = base.long()
        self.fractions = (pos - base).to(torch.float32) if self.subpixel else None
        self.has_fraction = bool(self.subpixel and torch.any(self.fractions != 0))
        W = self.object_shape[1]
        rows = self.corners[:, 0, None] + self._rows
        cols = self.corners[:, 1, None] + self._cols
        self.flat = (rows[:, :, None] * W + cols[:, None, :]).reshape(len(pos), -1)

    def select(self, values: torch.Tensor, idx: torch.Tensor | slice | None) -> torch.Tensor:
        """Rows of a per-window tensor: all (None), a slice (a view) or an index tensor."""
        if idx is None:
            return values
        if isinstance(idx, slice):
            return values[idx]
        return values.index_select(0, idx)

    def gather(self, obj: torch.Tensor, idx: torch.Tensor | slice | None = None
               ) -> torch.Tensor:
        """Object patches (B, h, w) under the windows ``idx`` (all when None)."""
        flat = self.select(self.flat, idx)
        return obj.view(-1).index_select(0, flat.reshape(-1)).view(-1, *self.probe_shape)

    def scatter_add(self, target: torch.Tensor, values: torch.Tensor,
                    idx: torch.Tensor | slice | None = None) -> None:
        """Add window values (B, h, w) into ``target`` (object frame) in place."""
        flat = self.select(self.flat, idx)
        target.view(-1).scatter_add_(0, flat.reshape(-1), values.reshape(-1))

    def probes(self, probe: torch.Tensor, idx: torch.Tensor | slice | None = None
               ) -> torch.Tensor:
        """Probe modes as seen by each window: (B, M, h, w), or (1, M, h, w) without shifts."""
        if not self.has_fraction:
            return probe.unsqueeze(0)
        frac = self.select(self.fractions, idx)
        return fourier_shift(probe.unsqueeze(0), frac[:, None, :])

    def unshift(self, grads: torch.Tensor, idx: torch.Tensor | slice | None = None
                ) -> torch.Tensor:
        """Adjoint of :meth:`probes`: undo each window's sub-pixel shift of (B, M, h, w)."""
        if not self.has_fraction:
            return grads
        frac = self.select(self.fractions, idx)
        return fourier_shift(grads, -frac[:, None, :])


@dataclass
class Problem:
    """Everything an engine needs, on one device.

    Attributes
    ----------
    amplitudes : Tensor (N, H, W) float32
        √I in the detector's native layout.
    mask : Tensor (H, W) bool or None
        Valid detector pixels (native layout); None when all are valid.
    total_intensity : float
        Σ of valid measured intensity (the error metric's denominator).
    obj : Tensor (H, W) complex64
    probe : Tensor (M, h, w) complex64
    windows : Windows
    detector : Detector
    generator : torch.Generator
        CPU generator seeded from the config (random draws are moved to ``device``).
    start_iteration : int
        Iterations already done by a warm-start snapshot (0 for a cold start).
    start_errors : list of float
        The warm start's error history.
    probe_estimated : bool
        True when the probe is the generic guess from the diffraction data (no probe came
        with the data or the warm start).
    """

    amplitudes: torch.Tensor
    mask: torch.Tensor | None
    total_intensity: float
    obj: torch.Tensor
    probe: torch.Tensor
    windows: Windows
    detector: Detector
    generator: torch.Generator
    device: Any
    start_iteration: int = 0
    start_errors: list[float] = field(default_factory=list)
    probe_estimated: bool = False

    @property
    def n_patterns(self) -> int:
        """Number of diffraction patterns."""
        return int(self.amplitudes.shape[0])

    def snapshot(self, iteration: int, total: int, errors: list[float], elapsed: float,
                 method: str, done: bool = False) -> Snapshot:
        """Numpy copies of the current state (the only device → host transfer)."""
        return Snapshot(iteration=iteration, total=total,
                        object=self.obj.detach().cpu().numpy().copy(),
                        probe=self.probe.detach().cpu().numpy().copy(),
                        positions=self.windows.positions.cpu().numpy().copy(),
                        errors=list(errors), elapsed=elapsed, method=method, done=done)


def abs2(x: torch.Tensor) -> torch.Tensor:
    """|x|² of a complex tensor, contiguous (several times faster than ``x.abs() ** 2`` on
    CPU; contiguous because reductions over a strided ``.real`` view are slow)."""
    return torch.mul(x, x.conj()).real.contiguous()


def modulus_projection(fields: torch.Tensor, amplitudes: torch.Tensor,
                       mask: torch.Tensor | None = None, eps: float = 1e-12) -> torch.Tensor:
    """Replace the modulus of detector fields by the measured one, in place.

    Incoherent modes share one ratio: ``Ψ_m ← Ψ_m · √I / sqrt(Σ_m |Ψ_m|²)``. Masked
    (invalid) pixels keep the model's amplitude.

    Parameters
    ----------
    fields : Tensor, complex, shape (B, M, H, W)
        Detector fields (native layout); modified in place.
    amplitudes : Tensor, float, shape (B, H, W)
        Measured √I.
    mask : Tensor of bool, shape (H, W), optional
        Valid pixels.

    Returns
    -------
    Tensor (0-d)
        ``Σ_valid (|Ψ| − √I)²`` of the fields *before* projection (see :func:`data_error`).
    """
    if fields.shape[1] == 1:
        model = abs2(fields[:, 0]).sqrt()
    else:
        model = abs2(fields).sum(dim=1).sqrt_()
    if mask is None:
        err = torch.nn.functional.mse_loss(model, amplitudes, reduction="sum")
        ratio = model.add_(eps).reciprocal_().mul_(amplitudes)
    else:
        err = (model - amplitudes).mul_(mask).square_().sum()
        ratio = torch.where(mask, amplitudes / (model + eps),
                            torch.ones((), dtype=model.dtype, device=model.device))
    # through the real view: a real ratio times a complex tensor would first be promoted
    # to a complex copy of the ratio
    torch.view_as_real(fields).mul_(ratio.unsqueeze(1).unsqueeze(-1))
    return err


def data_error(fields: torch.Tensor, amplitudes: torch.Tensor,
               mask: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ_valid (|Ψ| − √I)²`` of detector fields (B, M, H, W) against amplitudes (B, H, W).

    Divide by :attr:`Problem.total_intensity` (``Σ_valid I``) for the normalised error
    ``E`` every engine reports.
    """
    diff = abs2(fields).sum(dim=1).sqrt_().sub_(amplitudes)
    if mask is not None:
        diff = diff.mul_(mask)
    return diff.square_().sum()


def orthogonalize_modes(probe: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Make incoherent probe modes orthogonal, strongest first.

    The modes are mixed by the unitary ``U`` that diagonalises their overlap matrix
    ``S_ij = <P_i, P_j>``, which leaves the incoherent sum Σ_m |P_m|² (and so the model
    intensities) unchanged.

    Returns
    -------
    probe : Tensor (M, h, w)
        Orthogonal modes sorted by decreasing power.
    U : Tensor (M, M) or None
        The mixing matrix (``new_k = Σ_m U_km old_m``), to apply to anything linear in the
        modes (e.g. stored exit waves); None for a single mode.
    """
    m = probe.shape[0]
    if m == 1:
        return probe, None
    flat = probe.reshape(m, -1).to(torch.complex128)
    overlap = flat @ flat.conj().T
    _, vecs = torch.linalg.eigh(overlap)
    u = vecs.conj().T.flip(0)  # eigh sorts ascending; strongest mode first
    new = (u @ flat).to(probe.dtype).reshape(probe.shape)
    return new, u.to(probe.dtype)


def estimate_probe(amplitudes: torch.Tensor, detector: Detector,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """A probe guess from the data: √(mean I) with a flat phase, back-propagated.

    In the far field a flat-phase pupil focuses to a spot, which is centred in the window
    by a linear phase; the near-field back-propagation of the mean image gives the probe's
    footprint. The energy matches the mean total intensity (Parseval, ortho FFTs).

    Parameters
    ----------
    amplitudes : Tensor (N, H, W)
        Measured √I, native layout.
    detector : Detector
    mask : Tensor of bool (H, W), optional

    Returns
    -------
    Tensor, complex64, shape (1, h, w)
    """
    mean_int = amplitudes.square().mean(dim=0)
    valid_fraction = 1.0
    if mask is not None:
        mean_int = mean_int * mask
        valid_fraction = max(float(mask.float().mean()), 1e-6)
    field = mean_int.sqrt().to(torch.complex64)
    if not detector.near_field:
        H, W = detector.detector_shape
        fy = torch.fft.fftfreq(H, d=1.0 / H, dtype=torch.float64, device=field.device)
        fx = torch.fft.fftfreq(W, d=1.0 / W, dtype=torch.float64, device=field.device)
        phase = -2 * math.pi * (fy[:, None] * (H // 2) / H + fx[None, :] * (W // 2) / W)
        field = field * torch.polar(torch.ones_like(phase), phase).to(torch.complex64)
    probe = detector.backward(field[None])
    target = float(mean_int.sum()) / valid_fraction
    power = float(probe.abs().square().sum())
    if not power > 0:
        raise ValueError("cannot estimate a probe: the diffraction data hold no signal")
    return (probe * math.sqrt(target / power)).to(torch.complex64)


def add_modes(probe: torch.Tensor, modes: int, generator: torch.Generator,
              power_fraction: float = 0.05) -> torch.Tensor:
    """Extend (or cut) probe modes to ``modes``; new modes are the first one times low-order
    polynomials plus seeded noise, each holding ``power_fraction`` of its power."""
    if probe.shape[0] >= modes:
        return probe[:modes].clone()
    h, w = probe.shape[-2:]
    y = torch.linspace(-1, 1, h, device=probe.device)[:, None]
    x = torch.linspace(-1, 1, w, device=probe.device)[None, :]
    shapes = [y + 0 * x, x + 0 * y, x * y, y * y - x * x, y * y + x * x - 0.5]
    base = probe[0]
    base_power = float(base.abs().square().sum())
    new = [probe]
    for k in range(modes - probe.shape[0]):
        noise = torch.randn((2, h, w), generator=generator).to(probe.device)
        mode = base * (shapes[k % len(shapes)] + 0.1 * (noise[0] + 1j * noise[1]))
        scale = math.sqrt(power_fraction * base_power / max(float(mode.abs().square().sum()),
                                                            1e-30))
        new.append((mode * scale).to(probe.dtype)[None])
    out = torch.cat(new)
    return out * math.sqrt(float(probe.abs().square().sum()) / float(out.abs().square().sum()))


def compact_sets(positions: torch.Tensor, probe_shape: tuple[int, int],
                 generator: torch.Generator) -> list[torch.Tensor]:
    """Group positions into sets of mutually non-overlapping windows (greedy, seeded order).

    Updating one set in parallel equals updating its members one after another, which is
    what lets the PIE family run as a few large batched FFTs instead of N small ones.
    """
    pos = positions.detach().cpu().numpy()
    h, w = probe_shape
    order = torch.randperm(len(pos), generator=generator).numpy()
    members: list[list[int]] = []
    corners: list[np.ndarray] = []
    counts: list[int] = []
    for i in order:
        p = pos[i]
        for s in range(len(members)):
            c = corners[s][:counts[s]]
            if not np.any((np.abs(c[:, 0] - p[0]) < h) & (np.abs(c[:, 1] - p[1]) < w)):
                break
        else:
            members.append([])
            corners.append(np.empty((len(pos), 2)))
            counts.append(0)
            s = len(members) - 1
        members[s].append(int(i))
        corners[s][counts[s]] = p
        counts[s] += 1
    device = positions.device
    return [torch.tensor(sorted(m), dtype=torch.long, device=device) for m in members]


def batch_order(problem: Problem, batch_size: int, sets: list[torch.Tensor] | None
                ) -> list[torch.Tensor]:
    """This iteration's batches: the compact sets in a seeded random order, or a seeded
    permutation cut into chunks of ``batch_size``."""
    g = problem.generator
    if sets is not None:
        return [sets[i] for i in torch.randperm(len(sets), generator=g).tolist()]
    n = problem.n_patterns
    perm = torch.randperm(n, generator=g).to(problem.device)
    size = max(1, min(batch_size, n))
    return list(torch.split(perm, size))


def probe_gradient(probe: torch.Tensor) -> torch.Tensor:
    """Spatial derivatives (∂/∂row, ∂/∂col) of probe modes (M, h, w) → (2, M, h, w), taken
    in Fourier space so that they match the Fourier sub-pixel shift model exactly."""
    h, w = probe.shape[-2:]
    fy = torch.fft.fftfreq(h, device=probe.device)[:, None]
    fx = torch.fft.fftfreq(w, device=probe.device)[None, :]
    spec = torch.fft.fft2(probe)
    ramps = torch.stack([(2j * math.pi * fy).expand(h, w), (2j * math.pi * fx).expand(h, w)])
    return torch.fft.ifft2(spec.unsqueeze(0) * ramps[:, None].to(spec.dtype))


def position_step(problem: Problem, fields: torch.Tensor, amplitudes: torch.Tensor,
                  patches: torch.Tensor, idx: torch.Tensor, max_step: float) -> torch.Tensor:
    """Gauss-Newton position correction of each window from the amplitude residual (in the
    spirit of Zhang et al. 2013 and Odstrčil et al. 2018's position gradient).

    The window is fixed in the object and the probe moves inside it: with
    ψ = P(r − p) · O(r), a shift changes the exit wave by ∂ψ/∂p = −O ∇P. Its effect on
    the modelled amplitude is ``J = Σ_m Re(Ψ_m* F∂ψ_m) / |Ψ|``, and the step per axis is
    ``Δp = Σ (√I − |Ψ|) J / Σ J²`` (least squares on the amplitudes). Projecting ∂ψ on the
    exit-wave change instead underestimates the step several-fold, because most of ∂ψ
    changes only phases.

    Parameters
    ----------
    problem : Problem
    fields : Tensor (B, M, H, W)
        Detector fields of the current model, *before* the modulus projection.
    amplitudes : Tensor (B, H, W)
        Measured √I of these windows.
    patches : Tensor (B, h, w)
        Object under the windows.
    idx : Tensor (B,)
        Window indices (for their sub-pixel shifts).
    max_step : float
        Clip on |Δp| per axis (pixels).

    Returns
    -------
    Tensor (B, 2) float64
    """
    grad = probe_gradient(problem.probe)
    b = len(idx)
    dpsi = torch.cat([problem.windows.probes(g, idx).expand(b, *g.shape) for g in grad])
    dfields = problem.detector.forward(dpsi * (-patches).repeat(2, 1, 1)[:, None])
    model = abs2(fields).sum(dim=1).sqrt_().clamp_(min=1e-12)
    jac = (fields.conj().repeat(2, 1, 1, 1) * dfields).real.sum(dim=1) / model.repeat(2, 1, 1)
    resid = (amplitudes - model).repeat(2, 1, 1)
    if problem.mask is not None:
        jac = jac * problem.mask
    num = (resid * jac).sum(dim=(-2, -1)).view(2, b)
    den = jac.square().sum(dim=(-2, -1)).view(2, b)
    step = num / (den + 1e-12 * den.max().clamp(min=1e-30))
    return step.T.to(torch.float64).clamp(-max_step, max_step)


def _init_array(init: Snapshot | None, name: str) -> np.ndarray | None:
    value = None if init is None else getattr(init, name, None)
    return None if value is None else np.asarray(value)


def prepare(data: Any, config: PtychoConfig, init: Snapshot | None = None) -> Problem:
    """Validate inputs and build the :class:`Problem` an engine iterates on.

    Raises
    ------
    ValueError
        Wrong data type, non-finite or empty data, more probe modes than patterns,
        positions outside the object frame ``data.object_shape``, or a warm start whose
        arrays do not fit the data.
    """
    from napari_ptycho.data import PtychoData

    if not isinstance(data, PtychoData):
        raise ValueError(f"data must be a PtychoData scan (got {type(data).__name__})")
    config.validate()
    n = data.n_patterns
    if config.probe_modes > n:
        raise ValueError(f"probe_modes ({config.probe_modes}) exceeds the number of "
                         f"patterns ({n})")
    device = select_device(config.device)
    generator = torch.Generator().manual_seed(int(config.seed))
    intensities = as_tensor(data.intensities(), device, torch.float32)
    if not torch.isfinite(intensities).all():
        raise ValueError("data.diffraction contains NaN or infinite values")

    init_probe = _init_array(init, "probe")
    data_probe = data.probe if config.probe_init != "data" else None
    if config.probe_init == "given" and data.probe is None:
        raise ValueError("probe_init='given' but the data carry no probe")
    given = init_probe if init_probe is not None else data_probe
    if given is not None and given.ndim == 2:
        given = given[None]
    probe_shape = tuple(given.shape[-2:]) if given is not None else data.probe_shape
    detector = Detector(probe_shape, data.detector_shape, data.geometry, device=device)

    object_shape = tuple(int(s) for s in data.object_shape)
    positions = _init_array(init, "positions")
    positions = data.positions if positions is None else positions
    if positions.shape != (n, 2):
        raise ValueError(f"init positions have shape {positions.shape}; expected {(n, 2)}")
    upper = np.array(object_shape) - np.array(probe_shape)
    if np.any(positions < 0) or np.any(positions > upper + 1e-6):
        raise ValueError(f"positions place probe windows {probe_shape} outside the object "
                         f"frame data.object_shape={object_shape}: rows "
                         f"{positions[:, 0].min():.1f}..{positions[:, 0].max():.1f}, cols "
                         f"{positions[:, 1].min():.1f}..{positions[:, 1].max():.1f} (allowed "
                         f"0..{upper[0]}, 0..{upper[1]})")
    windows = Windows(as_tensor(positions, device, torch.float64), probe_shape, object_shape,
                      subpixel=config.subpixel)

    mask = None
    if data.mask is not None and not np.all(data.mask):
        if not np.any(data.mask):
            raise ValueError("data.mask marks every detector pixel invalid")
        mask = detector.to_native(as_tensor(data.mask, device, torch.bool))
    amplitudes = detector.to_native(intensities.clamp(min=0).sqrt())
    del intensities
    total = float((amplitudes.square() * (mask if mask is not None else 1)).sum())
    if not total > 0:
        raise ValueError("the diffraction data hold no signal (all valid pixels are zero)")

    obj0 = _init_array(init, "object")
    if obj0 is not None and tuple(obj0.shape) != object_shape:
        raise ValueError(f"init object has shape {obj0.shape}; the data's object frame is "
                         f"{object_shape}")
    obj = (as_tensor(obj0, device, torch.complex64).clone() if obj0 is not None
           else torch.ones(object_shape, dtype=torch.complex64, device=device))
    if given is not None:
        probe = as_tensor(given, device, torch.complex64).clone()
    else:
        probe = estimate_probe(amplitudes, detector, mask)
    probe = add_modes(probe, int(config.probe_modes), generator)
    probe, _ = orthogonalize_modes(probe)
    return Problem(amplitudes=amplitudes, mask=mask, total_intensity=total, obj=obj,
                   probe=probe, windows=windows, detector=detector, generator=generator,
                   device=device,
                   start_iteration=int(getattr(init, "iteration", 0) or 0),
                   start_errors=list(getattr(init, "errors", []) or []),
                   probe_estimated=given is None)


class IterativeEngine:
    """Run loop shared by the 2D iterative engines.

    Subclasses set ``name``, ``description``, ``Config`` and implement :meth:`iterate`
    (one iteration; returns Σ_valid (|Ψ| − √I)²), optionally :meth:`setup` and
    :meth:`modes_mixed`. The loop handles warm starts (iteration count and error history
    continue), probe-mode orthogonalisation, finite checks and snapshots.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    dims: ClassVar[int] = 2
    unit: ClassVar[str] = "iteration"
    Config: ClassVar[type] = PtychoConfig

    def setup(self, problem: Problem, config: Any) -> None:
        """Prepare engine state before the first iteration."""

    def iterate(self, problem: Problem, config: Any, done: int) -> torch.Tensor | float:
        """Run one iteration; ``done`` iterations are complete before it."""
        raise NotImplementedError

    def modes_mixed(self, problem: Problem, u: torch.Tensor) -> None:
        """Called after the probe modes were mixed by ``u`` (orthogonalisation)."""

    def run(self, data: Any, config: Any, init: Snapshot | None = None
            ) -> Iterator[Snapshot]:
        """Yield snapshots every ``config.update_every`` iterations and at the end."""
        if not isinstance(config, self.Config):
            raise ValueError(f"config must be a {self.Config.__name__} for method "
                             f"{self.name!r} (got {type(config).__name__})")
        problem = prepare(data, config, init)
        timer = Timer()
        self.setup(problem, config)
        errors = list(problem.start_errors)
        start = problem.start_iteration
        total = start + int(config.iterations)
        for done in range(start, total):
            err = float(self.iterate(problem, config, done)) / problem.total_intensity
            it = done + 1
            if problem.probe.shape[0] > 1 and it % config.orthogonalize_every == 0:
                problem.probe, u = orthogonalize_modes(problem.probe)
                self.modes_mixed(problem, u)
            check_finite(problem, err, it)
            errors.append(err)
            if (it - start) % config.update_every == 0 or it == total:
                yield problem.snapshot(it, total, errors, timer(), self.name, done=it == total)


def check_finite(problem: Problem, error: float, iteration: int) -> None:
    """Raise :class:`EngineError` naming ``iteration`` when the state became non-finite."""
    bad = [name for name, value in (
        ("error", error),
        ("object", float(problem.obj.abs().sum())),
        ("probe", float(problem.probe.abs().sum())),
        ("positions", float(problem.windows.positions.sum()))) if not math.isfinite(value)]
    if bad:
        raise EngineError(f"non-finite values in {', '.join(bad)} at iteration {iteration}")
