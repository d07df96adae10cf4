"""Wave propagators (torch, batched, device-agnostic).

All transforms use ``norm="ortho"`` so that energy is conserved (Parseval). Far-field
detector waves are DC-centred (``fftshift`` applied); exit waves smaller than the detector
are zero-padded at the centre of the detector frame.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from napari_ptycho.data import Geometry


def _pad_center(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Zero-pad the last two axes of ``x`` to ``shape``, content centred."""
    h, w = x.shape[-2:]
    H, W = shape
    if (h, w) == (H, W):
        return x
    if h > H or w > W:
        raise ValueError(f"cannot pad a {(h, w)} wave into a smaller {(H, W)} frame")
    top, left = (H - h) // 2, (W - w) // 2
    return torch.nn.functional.pad(x, (left, W - w - left, top, H - h - top))


def _crop_center(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Crop the last two axes of ``x`` to ``shape`` around the centre (inverse of padding)."""
    H, W = x.shape[-2:]
    h, w = shape
    if (h, w) == (H, W):
        return x
    top, left = (H - h) // 2, (W - w) // 2
    return x[..., top:top + h, left:left + w]


def farfield(wave: torch.Tensor, detector_shape: tuple[int, int] | None = None) -> torch.Tensor:
    """Propagate exit waves to the far-field detector (Fraunhofer).

    Parameters
    ----------
    wave : Tensor, complex, shape (..., h, w)
        Exit waves.
    detector_shape : tuple of int, optional
        Detector frame (H, W) >= (h, w); the wave is zero-padded centred to it.

    Returns
    -------
    Tensor, complex, shape (..., H, W)
        Detector wave, DC at ``(H // 2, W // 2)``, orthonormal FFT.
    """
    if detector_shape is not None:
        wave = _pad_center(wave, tuple(detector_shape))
    return torch.fft.fftshift(torch.fft.fft2(wave, norm="ortho"), dim=(-2, -1))


def farfield_inverse(field: torch.Tensor, probe_shape: tuple[int, int] | None = None
                     ) -> torch.Tensor:
    """Back-propagate DC-centred detector waves to the sample plane (adjoint of
    :func:`farfield`), cropping to ``probe_shape`` when given."""
    wave = torch.fft.ifft2(torch.fft.ifftshift(field, dim=(-2, -1)), norm="ortho")
    if probe_shape is not None:
        wave = _crop_center(wave, tuple(probe_shape))
    return wave


def fresnel_transfer(shape: tuple[int, int], pixel_size: float, wavelength: float,
                     distance: float, device: Any = None) -> torch.Tensor:
    """Paraxial Fresnel transfer function ``exp(-i π λ z (fx² + fy²))`` (unit modulus).

    The constant phase ``exp(i k z)`` is dropped. Frequencies follow ``torch.fft.fftfreq``
    (unshifted), so the kernel multiplies ``fft2`` output directly.
    """
    for name, v in (("pixel_size", pixel_size), ("wavelength", wavelength)):
        if not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive finite number (got {v})")
    if not math.isfinite(distance):
        raise ValueError(f"distance must be finite (got {distance})")
    fy = torch.fft.fftfreq(shape[0], d=pixel_size, dtype=torch.float64, device=device)
    fx = torch.fft.fftfreq(shape[1], d=pixel_size, dtype=torch.float64, device=device)
    f2 = fy[:, None] ** 2 + fx[None, :] ** 2
    phase = -math.pi * wavelength * distance * f2
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


def fresnel_propagate(wave: torch.Tensor, pixel_size: float, wavelength: float,
                      distance: float) -> torch.Tensor:
    """Propagate ``wave`` (..., h, w) by ``distance`` metres in the near field
    (angular-spectrum form of the Fresnel propagator; energy conserving)."""
    kernel = fresnel_transfer(tuple(wave.shape[-2:]), pixel_size, wavelength, distance,
                              device=wave.device)
    return torch.fft.ifft2(torch.fft.fft2(wave, norm="ortho") * kernel, norm="ortho")


class Propagator:
    """Sample-plane ↔ detector-plane propagation for one geometry.

    Parameters
    ----------
    probe_shape : tuple of int
        Exit-wave (probe window) shape (h, w).
    detector_shape : tuple of int
        Detector frame (H, W).
    geometry : Geometry, optional
        When ``geometry.near_field`` is True a Fresnel propagator over
        ``geometry.propagation_distance`` is used (object pixel size from the geometry);
        otherwise the far-field transform.
    device : torch.device, optional
        Where the Fresnel kernel lives.
    """

    def __init__(self, probe_shape: tuple[int, int], detector_shape: tuple[int, int],
                 geometry: Geometry | None = None, device: Any = None) -> None:
        self.probe_shape = tuple(int(s) for s in probe_shape)
        self.detector_shape = tuple(int(s) for s in detector_shape)
        if (self.probe_shape[0] > self.detector_shape[0]
                or self.probe_shape[1] > self.detector_shape[1]):
            raise ValueError(f"probe window {self.probe_shape} is larger than the detector "
                             f"{self.detector_shape}")
        self.near_field = bool(geometry is not None and geometry.near_field)
        self.kernel: torch.Tensor | None = None
        if self.near_field:
            assert geometry is not None
            if geometry.propagation_distance is None or geometry.wavelength is None:
                raise ValueError("near-field geometry needs wavelength and "
                                 "propagation_distance")
            px = geometry.object_pixel_size
            if px is None:
                raise ValueError("near-field geometry needs an object pixel size")
            # near field: kernel on the (padded) detector frame, DC at the corner
            self.kernel = fresnel_transfer(self.detector_shape, px, geometry.wavelength,
                                           geometry.propagation_distance, device=device)

    def to(self, device: Any) -> Propagator:
        """Move the kernel (if any) to ``device``; returns self."""
        if self.kernel is not None:
            self.kernel = self.kernel.to(device)
        return self

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """Exit waves (..., h, w) → detector waves (..., H, W), DC centred in far field."""
        if not self.near_field:
            return farfield(wave, self.detector_shape)
        wave = _pad_center(wave, self.detector_shape)
        return torch.fft.ifft2(torch.fft.fft2(wave, norm="ortho") * self.kernel, norm="ortho")

    def backward(self, field: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`forward`: detector waves → exit waves (..., h, w)."""
        if not self.near_field:
            return farfield_inverse(field, self.probe_shape)
        wave = torch.fft.ifft2(torch.fft.fft2(field, norm="ortho") * self.kernel.conj(),
                               norm="ortho")
        return _crop_center(wave, self.probe_shape)
