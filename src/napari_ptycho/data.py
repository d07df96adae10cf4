"""The one data model shared by readers, simulator, engines, widgets and writers.

Conventions (the single place they are written down; ``docs/conventions.md`` repeats them
for users):

* **Diffraction** is stored as *measured intensities* (photon counts, not amplitudes),
  shape ``(N, H, W)`` for ptychography and ``(D, H, W)`` for Bragg CDI, with the zero
  spatial frequency (DC) at the array centre, index ``H // 2, W // 2`` (``fftshift``
  convention). Readers that meet amplitudes (PtychoPINN's NPZ) square them.
* **FFT normalisation** is ``norm="ortho"`` everywhere, so the total energy of an exit
  wave equals the total detector intensity (Parseval).
* **Positions** are ``(N, 2)`` floats ``(row, col)`` in object pixels: the top-left corner
  of the probe window in the object array. Sub-pixel values are allowed. The object pixel
  size in metres is ``Geometry.object_pixel_size``.
* **Object and probe** are complex64: object ``(H, W)`` (2D) or ``(D, H, W)`` (3D), probe
  ``(modes, h, w)`` with incoherent modes whose intensities add at the detector.
* When the detector is larger than the probe window the exit wave is zero-padded,
  centred, to the detector shape before propagation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

#: Planck constant times speed of light, in eV·m (CODATA 2018).
HC_EV_M = 1.239841984e-6


def energy_to_wavelength(energy_ev: float) -> float:
    """Convert a photon energy in eV to a wavelength in metres."""
    if not energy_ev > 0:
        raise ValueError(f"energy must be positive (got {energy_ev} eV)")
    return HC_EV_M / energy_ev


def wavelength_to_energy(wavelength_m: float) -> float:
    """Convert a wavelength in metres to a photon energy in eV."""
    if not wavelength_m > 0:
        raise ValueError(f"wavelength must be positive (got {wavelength_m} m)")
    return HC_EV_M / wavelength_m


@dataclass
class Geometry:
    """Experiment geometry, SI units throughout (metres, eV).

    Parameters
    ----------
    wavelength : float, optional
        X-ray wavelength in metres. Give this or ``energy``.
    energy : float, optional
        Photon energy in eV. Give this or ``wavelength``.
    distance : float, optional
        Sample-to-detector distance in metres.
    detector_pixel_size : float, optional
        Detector pixel pitch in metres (square pixels assumed).
    detector_shape : tuple of int, optional
        Detector frame shape ``(H, W)`` in pixels.
    near_field : bool
        ``True`` for Fresnel (near-field) ptychography, ``False`` for far field.
    propagation_distance : float, optional
        Effective Fresnel propagation distance in metres (near field only). For a
        cone-beam set-up this is the defocus distance divided by the magnification.
    pixel_size_override : float, optional
        Object pixel size in metres when it is known directly (near field, or a file that
        states it); takes precedence over the far-field formula.
    """

    wavelength: float | None = None
    energy: float | None = None
    distance: float | None = None
    detector_pixel_size: float | None = None
    detector_shape: tuple[int, int] | None = None
    near_field: bool = False
    propagation_distance: float | None = None
    pixel_size_override: float | None = None

    def __post_init__(self) -> None:
        if self.wavelength is None and self.energy is not None:
            self.wavelength = energy_to_wavelength(float(self.energy))
        elif self.energy is None and self.wavelength is not None:
            self.energy = wavelength_to_energy(float(self.wavelength))
        for name in ("wavelength", "energy", "distance", "detector_pixel_size",
                     "propagation_distance", "pixel_size_override"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"Geometry.{name} must be a positive finite number "
                                 f"(got {value!r})")
        if self.detector_shape is not None:
            shape = tuple(int(s) for s in self.detector_shape)
            if len(shape) != 2 or min(shape) < 2:
                raise ValueError(f"Geometry.detector_shape must be (H, W) with H, W >= 2 "
                                 f"(got {self.detector_shape!r})")
            self.detector_shape = shape  # type: ignore[assignment]

    @property
    def object_pixel_size(self) -> float | None:
        """Object (reconstruction) pixel size in metres, or ``None`` if unknown.

        Far field: ``λ z / (N · p)`` with ``N`` the detector width in pixels and ``p`` the
        detector pixel size. Near field: the detector pixel size (unit magnification)
        unless ``pixel_size_override`` is set.
        """
        if self.pixel_size_override is not None:
            return self.pixel_size_override
        if self.near_field:
            return self.detector_pixel_size
        if None in (self.wavelength, self.distance, self.detector_pixel_size,
                    self.detector_shape):
            return None
        n = self.detector_shape[1]  # type: ignore[index]
        return self.wavelength * self.distance / (n * self.detector_pixel_size)  # type: ignore[operator]

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary of the geometry (for metadata and result files)."""
        return {
            "wavelength": self.wavelength,
            "energy": self.energy,
            "distance": self.distance,
            "detector_pixel_size": self.detector_pixel_size,
            "detector_shape": list(self.detector_shape) if self.detector_shape else None,
            "near_field": self.near_field,
            "propagation_distance": self.propagation_distance,
            "pixel_size_override": self.pixel_size_override,
            "object_pixel_size": self.object_pixel_size,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Geometry:
        """Inverse of :meth:`to_dict` (ignores derived keys)."""
        keys = ("wavelength", "energy", "distance", "detector_pixel_size", "detector_shape",
                "near_field", "propagation_distance", "pixel_size_override")
        kw = {k: d.get(k) for k in keys if d.get(k) is not None}
        if "detector_shape" in kw:
            kw["detector_shape"] = tuple(kw["detector_shape"])
        if "near_field" in kw:
            kw["near_field"] = bool(kw["near_field"])
        return cls(**kw)


def _shape_of(array: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in getattr(array, "shape", ()))


@dataclass
class PtychoData:
    """A 2D ptychography scan: diffraction stack, positions, geometry and extras.

    Parameters
    ----------
    diffraction : array_like, shape (N, H, W)
        Measured intensities (counts), DC centred. numpy or dask (lazy) array.
    positions : ndarray, shape (N, 2)
        Probe-window top-left corners ``(row, col)`` in object pixels, float.
    geometry : Geometry
        Experiment geometry.
    probe : ndarray, shape (modes, h, w), optional
        Complex probe guess (or truth for simulated data).
    mask : ndarray of bool, shape (H, W), optional
        ``True`` where detector pixels are valid.
    metadata : dict
        Free-form provenance (source file, simulation parameters, ...).
    truth_object, truth_probe : ndarray, optional
        Ground truth when the data were simulated.
    object_shape : tuple of int, optional
        Shape of the object array the positions refer to. Derived from the positions
        and the probe window when not given.
    """

    diffraction: Any
    positions: np.ndarray
    geometry: Geometry = field(default_factory=Geometry)
    probe: np.ndarray | None = None
    mask: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    truth_object: np.ndarray | None = None
    truth_probe: np.ndarray | None = None
    object_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        shape = _shape_of(self.diffraction)
        if len(shape) != 3:
            raise ValueError(f"diffraction must be a 3D stack (N, H, W); got shape {shape}")
        n, h, w = shape
        if n < 1 or h < 2 or w < 2:
            raise ValueError(f"diffraction shape {shape} is too small: need N >= 1 patterns "
                             "of at least 2x2 pixels")
        if np.iscomplexobj(np.empty(0, dtype=getattr(self.diffraction, "dtype", float))):
            raise ValueError("diffraction must hold real intensities, not complex values")
        pos = np.asarray(self.positions, dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] != 2:
            raise ValueError(f"positions must have shape (N, 2); got {pos.shape}")
        if pos.shape[0] != n:
            raise ValueError(f"positions has {pos.shape[0]} rows but diffraction has {n} "
                             "patterns")
        if not np.all(np.isfinite(pos)):
            raise ValueError("positions contain NaN or infinite values")
        self.positions = pos
        if self.probe is not None:
            probe = np.asarray(self.probe)
            if probe.ndim == 2:
                probe = probe[None]
            if probe.ndim != 3:
                raise ValueError(f"probe must have shape (modes, h, w); got {probe.shape}")
            if probe.shape[-2] > h or probe.shape[-1] > w:
                raise ValueError(f"probe window {probe.shape[-2:]} is larger than the "
                                 f"detector frame {(h, w)}")
            self.probe = probe.astype(np.complex64)
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.shape != (h, w):
                raise ValueError(f"mask shape {mask.shape} does not match the detector frame "
                                 f"{(h, w)}")
            self.mask = mask
        if self.geometry.detector_shape is None:
            self.geometry.detector_shape = (h, w)
        if self.object_shape is None:
            self.object_shape = self.minimal_object_shape()
        else:
            self.object_shape = tuple(int(s) for s in self.object_shape)  # type: ignore[assignment]

    @property
    def n_patterns(self) -> int:
        """Number of diffraction patterns N."""
        return int(self.diffraction.shape[0])

    @property
    def detector_shape(self) -> tuple[int, int]:
        """Detector frame shape (H, W)."""
        return int(self.diffraction.shape[1]), int(self.diffraction.shape[2])

    @property
    def probe_shape(self) -> tuple[int, int]:
        """Probe window shape: the probe's if one is given, else the detector frame."""
        if self.probe is not None:
            return int(self.probe.shape[-2]), int(self.probe.shape[-1])
        return self.detector_shape

    @property
    def is_lazy(self) -> bool:
        """True when the diffraction stack is a dask array (not yet read)."""
        return type(self.diffraction).__module__.startswith("dask")

    def minimal_object_shape(self, margin: int = 0) -> tuple[int, int]:
        """Smallest object array that holds every probe window (plus ``margin`` pixels)."""
        ph, pw = self.probe_shape
        top = np.ceil(self.positions.max(axis=0)).astype(int)
        return int(top[0] + ph + 1 + margin), int(top[1] + pw + 1 + margin)

    def intensities(self) -> np.ndarray:
        """The diffraction stack as a float32 numpy array (computes a dask array)."""
        return np.asarray(self.diffraction, dtype=np.float32)

    def subset(self, index: Any) -> PtychoData:
        """A new PtychoData with only the patterns selected by ``index`` (same object frame)."""
        idx = np.arange(self.n_patterns)[index]
        return replace(self, diffraction=self.diffraction[idx], positions=self.positions[idx],
                       metadata={**self.metadata, "subset_of": self.metadata.get("name")},
                       geometry=replace(self.geometry))


@dataclass
class BraggData:
    """A 3D Bragg coherent diffraction volume.

    Parameters
    ----------
    intensity : array_like, shape (D, H, W)
        Measured intensities (counts), Bragg peak centred (DC at the array centre).
    geometry : Geometry
        Experiment geometry (energy, distance, detector pixel size).
    mask : ndarray of bool, optional
        ``True`` where voxels are valid measurements.
    metadata : dict
        Free-form provenance.
    truth_object : ndarray, optional
        Complex ground-truth crystal for simulated data (same shape as ``intensity``).
    oversampling : tuple of float, optional
        Oversampling ratio per axis when known.
    q_direction : tuple of float
        Unit scattering vector direction in array axes (for strain maps).
    """

    intensity: Any
    geometry: Geometry = field(default_factory=Geometry)
    mask: np.ndarray | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    truth_object: np.ndarray | None = None
    oversampling: tuple[float, float, float] | None = None
    q_direction: tuple[float, float, float] = (1.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        shape = _shape_of(self.intensity)
        if len(shape) != 3:
            raise ValueError(f"intensity must be a 3D volume (D, H, W); got shape {shape}")
        if min(shape) < 4:
            raise ValueError(f"intensity volume {shape} is too small: need at least 4 voxels "
                             "per axis")
        if np.iscomplexobj(np.empty(0, dtype=getattr(self.intensity, "dtype", float))):
            raise ValueError("intensity must hold real values, not complex ones")
        if self.mask is not None:
            mask = np.asarray(self.mask).astype(bool)
            if mask.shape != shape:
                raise ValueError(f"mask shape {mask.shape} does not match intensity {shape}")
            self.mask = mask
        if self.truth_object is not None and tuple(self.truth_object.shape) != shape:
            raise ValueError(f"truth_object shape {self.truth_object.shape} does not match "
                             f"intensity {shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Volume shape (D, H, W)."""
        return tuple(int(s) for s in self.intensity.shape)  # type: ignore[return-value]

    def intensities(self) -> np.ndarray:
        """The volume as a float32 numpy array (computes a dask array)."""
        return np.asarray(self.intensity, dtype=np.float32)
