"""The 2D ptychographic forward model, shared by the simulator, every engine and the tests.

Positions are top-left corners ``(row, col)`` of the probe window in object pixels. A
position ``p`` is split into an integer part ``floor(p)`` (used to cut the object patch)
and a fractional part in [0, 1) applied as a Fourier sub-pixel shift of the probe: the
probe at ``p`` illuminates object pixel ``floor(p) + j`` with ``probe(j - frac)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from napari_ptycho.data import Geometry
from napari_ptycho.physics.propagation import Propagator


def as_tensor(x: Any, device: Any = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Convert numpy / dask / tensor input to a torch tensor on ``device``."""
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.from_numpy(np.ascontiguousarray(np.asarray(x)))
    if dtype is not None:
        t = t.to(dtype)
    if device is not None:
        t = t.to(device)
    return t


def fourier_shift(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Circularly shift images by (possibly sub-pixel) amounts via the Fourier shift theorem.

    Parameters
    ----------
    x : Tensor, complex, shape (..., h, w)
        Images; a leading batch axis may be broadcast against ``shift``.
    shift : Tensor, shape (..., 2)
        Shift ``(dy, dx)`` in pixels; positive moves content to larger indices. An integer
        shift equals ``torch.roll`` (to float rounding).

    Returns
    -------
    Tensor, complex, shape broadcast(x.shape[:-2], shift.shape[:-1]) + (h, w)
    """
    h, w = x.shape[-2:]
    fy = torch.fft.fftfreq(h, device=x.device, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, device=x.device, dtype=torch.float64)
    s = shift.to(device=x.device, dtype=torch.float64)
    phase = -2 * np.pi * (s[..., 0, None, None] * fy[:, None] + s[..., 1, None, None] * fx)
    ramp = torch.polar(torch.ones_like(phase), phase).to(x.dtype)
    return torch.fft.ifft2(torch.fft.fft2(x) * ramp)


def split_positions(positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split float positions (N, 2) into integer corners (long) and fractions in [0, 1)."""
    base = torch.floor(positions)
    return base.long(), (positions - base)


def patch_indices(corners: torch.Tensor, shape: tuple[int, int], object_shape: tuple[int, int]
                  ) -> torch.Tensor:
    """Flat object indices (N, h, w) of the windows whose top-left corners are ``corners``."""
    h, w = shape
    H, W = object_shape
    rows = corners[:, 0, None] + torch.arange(h, device=corners.device)  # (N, h)
    cols = corners[:, 1, None] + torch.arange(w, device=corners.device)  # (N, w)
    if (rows.min() < 0 or cols.min() < 0 or rows.max() >= H or cols.max() >= W):
        raise ValueError(f"probe windows reach outside the object {object_shape}: rows "
                         f"{int(rows.min())}..{int(rows.max())}, cols "
                         f"{int(cols.min())}..{int(cols.max())}")
    return rows[:, :, None] * W + cols[:, None, :]


def extract_patches(obj: torch.Tensor, corners: torch.Tensor, shape: tuple[int, int]
                    ) -> torch.Tensor:
    """Cut windows of ``shape`` from a 2D object at integer ``corners`` (N, 2).

    Returns (N, h, w). Raises ValueError when a window leaves the object.
    """
    idx = patch_indices(corners, shape, tuple(obj.shape[-2:]))
    return obj.reshape(-1)[idx]


def scatter_patches(values: torch.Tensor, corners: torch.Tensor,
                    object_shape: tuple[int, int]) -> torch.Tensor:
    """Adjoint of :func:`extract_patches`: sum windows (N, h, w) into an object array."""
    idx = patch_indices(corners, tuple(values.shape[-2:]), object_shape)
    out = torch.zeros(object_shape[0] * object_shape[1], dtype=values.dtype,
                      device=values.device)
    out.index_add_(0, idx.reshape(-1), values.reshape(-1))
    return out.reshape(object_shape)


def shifted_probes(probe: torch.Tensor, fractions: torch.Tensor) -> torch.Tensor:
    """Probe modes (M, h, w) shifted by each position's fraction (N, 2) → (N, M, h, w).

    When every fraction is zero the probe is broadcast without any FFT.
    """
    if not torch.any(fractions != 0):
        return probe.unsqueeze(0).expand(fractions.shape[0], *probe.shape)
    return fourier_shift(probe.unsqueeze(0), fractions[:, None, :])


def exit_waves(obj: torch.Tensor, probe: torch.Tensor, positions: torch.Tensor
               ) -> torch.Tensor:
    """Exit waves ψ_{n,m} = P_m(r − frac_n) · O(r + corner_n), shape (N, M, h, w)."""
    corners, frac = split_positions(positions)
    patches = extract_patches(obj, corners, tuple(probe.shape[-2:]))
    return shifted_probes(probe, frac) * patches[:, None]


def forward_intensity(obj: Any, probe: Any, positions: Any,
                      detector_shape: tuple[int, int] | None = None,
                      geometry: Geometry | None = None, device: Any = None) -> Any:
    """Detector intensities of a ptychographic scan (incoherent sum over probe modes).

    Parameters
    ----------
    obj : array_like or Tensor, complex, shape (H, W)
        Object transmission.
    probe : array_like or Tensor, complex, shape (M, h, w) or (h, w)
        Probe modes.
    positions : array_like or Tensor, shape (N, 2)
        Probe-window corners (row, col) in object pixels, sub-pixel allowed.
    detector_shape : tuple of int, optional
        Detector frame (H, W) >= (h, w); defaults to the probe window.
    geometry : Geometry, optional
        Near-field geometry selects the Fresnel propagator; default far field.
    device : torch.device, optional
        Computation device (default: that of ``obj`` if a tensor, else CPU).

    Returns
    -------
    ndarray or Tensor, float32, shape (N, H, W)
        Intensities, DC centred; a numpy array unless ``obj`` was a tensor.
    """
    as_numpy = not isinstance(obj, torch.Tensor)
    if device is None:
        device = obj.device if isinstance(obj, torch.Tensor) else torch.device("cpu")
    o = as_tensor(obj, device, torch.complex64)
    p = as_tensor(probe, device, torch.complex64)
    if o.ndim != 2:
        raise ValueError(f"obj must be a 2D complex array (H, W); got shape {tuple(o.shape)}")
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3:
        raise ValueError(f"probe must have shape (M, h, w) or (h, w); got {tuple(p.shape)}")
    pos = as_tensor(positions, device, torch.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise ValueError(f"positions must have shape (N, 2); got {tuple(pos.shape)}")
    if not torch.all(torch.isfinite(pos)):
        raise ValueError("positions contain NaN or infinite values")
    det = tuple(detector_shape) if detector_shape is not None else tuple(p.shape[-2:])
    prop = Propagator(tuple(p.shape[-2:]), det, geometry, device=device)
    waves = exit_waves(o, p, pos)
    intensity = (prop.forward(waves).abs() ** 2).sum(dim=1)
    return intensity.cpu().numpy() if as_numpy else intensity
