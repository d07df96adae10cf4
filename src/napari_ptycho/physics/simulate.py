"""Simulated data sets with ground truth: 2D far-field ptychography and 3D Bragg CDI.

Both simulators use the package's single forward models
(:func:`napari_ptycho.physics.ptycho.forward_intensity` and
:func:`napari_ptycho.physics.bragg.bragg_intensity`), so simulated data, engines and tests
agree on every convention (see ``docs/conventions.md``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.physics.noise import NOISE_KINDS, add_noise, check_alpha, check_sigma
from napari_ptycho.physics.objects import OBJECT_KINDS, make_object
from napari_ptycho.physics.probes import PROBE_KINDS, make_probe, probe_fwhm
from napari_ptycho.physics.scans import SCAN_KINDS, make_scan, measure_overlap, step_for_overlap

#: Plausible far-field set-up: 8 keV, 2 m to a 75 µm-pixel photon-counting detector.
PTYCHO_ENERGY_EV = 8000.0
PTYCHO_DISTANCE_M = 2.0
PTYCHO_PIXEL_M = 75e-6
#: Bragg set-up: 9 keV, 1.5 m, 55 µm pixels.
BRAGG_ENERGY_EV = 9000.0
BRAGG_DISTANCE_M = 1.5
BRAGG_PIXEL_M = 55e-6

PHOTONS_MODES = ("total", "max")


def _check_int(name: str, value: Any, minimum: int) -> int:
    """``value`` as an int >= ``minimum``; ValueError naming ``name`` otherwise."""
    ok = isinstance(value, (numbers.Integral, numbers.Real)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or int(value) != value or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum} (got {value!r})")
    return int(value)


def _check_real(name: str, value: Any, low: float, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a finite float in the interval; ValueError naming ``name`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number (got {value!r})")
    v = float(value)
    if (v < low or (low_open and v == low)) or (v > high or (high_open and v == high)):
        interval = (("(" if low_open else "[") + f"{low:g}, {high:g}"
                    + (")" if high_open or high == math.inf else "]"))
        raise ValueError(f"{name} must be in {interval} (got {value!r})")
    return v


def _check_photons(photons: Any) -> float:
    return _check_real("photons", photons, 0.0, low_open=True)


def _check_kind(name: str, value: Any, kinds: tuple[str, ...]) -> str:
    if value not in kinds:
        raise ValueError(f"{name} {value!r} is unknown; choose one of {kinds}")
    return str(value)


def simulate_ptycho(object: str = "siemens", object_size: int = 128, probe_size: int = 64,
                    overlap: float = 0.7, photons: float = 1e6, noise: str = "poisson",
                    scan: str = "raster", seed: int = 0, probe: str = "focused",
                    probe_modes: int = 1, detector_size: int | None = None,
                    jitter: float = 0.0,
                    amplitude_range: tuple[float, float] = (0.8, 1.0),
                    phase_range: tuple[float, float] = (0.0, 1.0),
                    photons_mode: str = "total", alpha: float | None = None,
                    sigma: float | None = None, object_array: np.ndarray | None = None,
                    margin: int = 1, position_error: float = 0.0) -> PtychoData:
    """Simulate a far-field ptychography scan with ground truth.

    Parameters
    ----------
    object : str
        Object kind, one of ``OBJECT_KINDS`` ("siemens", "lines", "grf",
        "large_features", "images"); ignored when ``object_array`` is given.
    object_size : int
        Object side length in pixels (ignored when ``object_array`` is given).
    probe_size : int
        Probe window side in pixels; must be smaller than the object.
    overlap : float
        Requested overlap ``1 − step / FWHM`` in (0, 1).
    photons : float
        ``photons_mode="total"``: expected counts per pattern, averaged over the scan.
        ``"max"``: expected counts in the brightest detector pixel of the whole scan.
    noise : {"none", "poisson", "gaussian", "mixed"}
        Noise model (:mod:`napari_ptycho.physics.noise`).
    scan : {"raster", "spiral"}
        Trajectory.
    seed : int
        Seeds the object, the position jitter and the noise (independent streams).
    probe : {"focused", "gaussian"}
        Probe kind; "focused" is a defocused zone-plate probe with rings.
    probe_modes : int
        Number of incoherent probe modes (orthogonal, decreasing power).
    detector_size : int, optional
        Detector side (>= probe_size); the exit wave is zero-padded to it. Default
        ``probe_size``.
    jitter : float
        Standard deviation of random position errors in pixels (applied to the recorded
        *and* the true positions: the data stay self-consistent).
    amplitude_range, phase_range : (float, float)
        Object amplitude and phase (radians) ranges.
    photons_mode : {"total", "max"}
        Meaning of ``photons``.
    alpha : float, optional
        PtyINR photon level for Poisson noise (brightest pixel gets α photons).
    sigma : float, optional
        Gaussian noise σ in counts (default 1) for "gaussian" and "mixed".
    object_array : ndarray, optional
        A complex 2D object to use instead of a generated one.
    margin : int
        Pixels kept between every probe window and the object border.
    position_error : float
        Standard deviation (pixels) of errors in the *recorded* positions: the data are
        simulated at the true positions (kept in ``metadata["true_positions"]``) and the
        returned ``positions`` are those plus Gaussian errors, as a test case for position
        refinement. 0 (default) records the true positions.

    Returns
    -------
    PtychoData
        Intensities (float32, DC centred), positions, far-field geometry, ``probe`` =
        ``truth_probe`` (scaled to the photon count), ``truth_object`` and ``metadata``
        with every parameter under ``"simulation"``.
    """
    from napari_ptycho.physics.ptycho import forward_intensity

    obj_kind = "custom" if object_array is not None else _check_kind("object", object,
                                                                     OBJECT_KINDS)
    probe_kind = _check_kind("probe", probe, PROBE_KINDS)
    scan = _check_kind("scan", scan, SCAN_KINDS)
    noise = _check_kind("noise", noise, NOISE_KINDS)
    photons_mode = _check_kind("photons_mode", photons_mode, PHOTONS_MODES)
    photons = _check_photons(photons)
    alpha, sigma = check_alpha(alpha), check_sigma(sigma)
    probe_size = _check_int("probe_size", probe_size, 4)
    probe_modes = _check_int("probe_modes", probe_modes, 1)
    margin = _check_int("margin", margin, 0)
    position_error = _check_real("position_error", position_error, 0.0)
    jitter = _check_real("jitter", jitter, 0.0)
    overlap = _check_real("overlap", overlap, 0.0, 1.0, low_open=True, high_open=True)
    seed = _check_int("seed", seed, 0)
    detector_size = probe_size if detector_size is None else _check_int(
        "detector_size", detector_size, 2)
    if detector_size < probe_size:
        raise ValueError(f"detector_size ({detector_size}) must be >= probe_size "
                         f"({probe_size})")
    if object_array is not None:
        truth_object = np.asarray(object_array)
        if truth_object.ndim != 2:
            raise ValueError(f"object_array must be 2D (H, W); got shape {truth_object.shape}")
        if not np.all(np.isfinite(truth_object)):
            raise ValueError("object_array contains NaN or infinite values")
        truth_object = truth_object.astype(np.complex64)
    else:
        object_size = _check_int("object_size", object_size, 8)
    obj_shape = truth_object.shape if object_array is not None else (object_size,) * 2
    if probe_size + 2 * margin >= min(obj_shape):
        raise ValueError(f"probe_size ({probe_size}) plus a {margin} px margin on both sides "
                         f"must be smaller than the object {tuple(obj_shape)}")

    object_seq, scan_seq, noise_seq, error_seq = np.random.SeedSequence(int(seed)).spawn(4)
    if object_array is None:
        truth_object = make_object(obj_kind, object_size, np.random.default_rng(object_seq),
                                   amplitude_range, phase_range)
    geometry = Geometry(energy=PTYCHO_ENERGY_EV, distance=PTYCHO_DISTANCE_M,
                        detector_pixel_size=PTYCHO_PIXEL_M,
                        detector_shape=(detector_size, detector_size))
    probe_kwargs: dict[str, float] = {}
    if probe_kind == "focused":
        probe_kwargs = {"wavelength": geometry.wavelength,
                        "pixel_size": geometry.object_pixel_size}
    unit_probe = make_probe(probe_kind, probe_size, probe_modes, **probe_kwargs)
    diameter = probe_fwhm(unit_probe)
    step = step_for_overlap(overlap, diameter)
    positions = make_scan(scan, obj_shape, (probe_size, probe_size), step, margin=margin,
                          jitter=jitter, rng=np.random.default_rng(scan_seq))
    if len(positions) < 2:
        raise ValueError(f"only {len(positions)} scan position fits: enlarge object_size or "
                         f"lower the overlap ({overlap})")

    unit_intensity = forward_intensity(truth_object, unit_probe, positions,
                                       detector_shape=(detector_size, detector_size))
    if photons_mode == "total":
        scale = photons / float(unit_intensity.sum(axis=(1, 2)).mean())
    else:
        scale = photons / float(unit_intensity.max())
    truth_probe = (unit_probe * math.sqrt(scale)).astype(np.complex64)
    expected = unit_intensity.astype(np.float64) * scale
    diffraction = add_noise(expected, noise, np.random.default_rng(noise_seq), alpha, sigma)
    recorded = positions
    if position_error > 0:
        # recorded positions stay inside the object too, so engines can start from them
        low = float(margin)
        high = np.array(obj_shape, dtype=np.float64) - probe_size - margin
        errors = np.random.default_rng(error_seq).normal(0.0, position_error, positions.shape)
        recorded = np.clip(positions + errors, low, high)

    params = {
        "object": obj_kind, "object_size": list(obj_shape), "probe_size": probe_size,
        "overlap": float(overlap), "photons": photons, "photons_mode": photons_mode,
        "noise": noise, "scan": scan, "seed": int(seed), "probe": probe_kind,
        "probe_modes": probe_modes, "detector_size": detector_size, "jitter": float(jitter),
        "amplitude_range": [float(v) for v in amplitude_range],
        "phase_range": [float(v) for v in phase_range], "alpha": alpha,
        "sigma": sigma if noise in ("gaussian", "mixed") else None,
        "margin": margin, "position_error": float(position_error),
    }
    metadata = {
        "name": f"simulated {obj_kind} ({scan}, {int(round(overlap * 100))} % overlap)",
        "source": "napari_ptycho.physics.simulate.simulate_ptycho",
        "simulation": params,
        "probe_fwhm_px": diameter,
        "step_px": step,
        "measured_overlap": measure_overlap(positions, unit_probe),
        "n_patterns": int(len(positions)),
        "mean_counts_per_pattern": float(diffraction.sum(axis=(1, 2)).mean()),
    }
    if position_error > 0:
        metadata["true_positions"] = positions.tolist()
    return PtychoData(diffraction=diffraction, positions=recorded, geometry=geometry,
                      probe=truth_probe.copy(), metadata=metadata, truth_object=truth_object,
                      truth_probe=truth_probe, object_shape=tuple(obj_shape))


def simulate_bragg(size: int = 64, seed: int = 0, photons: float = 1e8,
                   oversampling: float = 3.0, strained: bool = True, noise: str = "poisson",
                   phase_range: tuple[float, float] = (-1.0, 1.0), rotate: bool = True,
                   alpha: float | None = None, sigma: float | None = None) -> BraggData:
    """Simulate a 3D Bragg CDI measurement of a random faceted crystal.

    Parameters
    ----------
    size : int
        Box side in voxels (>= 16; typically 32 or 64).
    seed : int
        Seeds the crystal shape and strain and (independently) the noise.
    photons : float
        Expected total counts in the whole 3D intensity volume.
    oversampling : float
        The crystal fits in ``size / oversampling`` voxels per axis (>= 2).
    strained : bool
        Smooth strain phase field (True) or a real, unstrained crystal.
    noise : {"none", "poisson", "gaussian", "mixed"}
        Noise model (:mod:`napari_ptycho.physics.noise`).
    phase_range : (float, float)
        Strain phase span over the crystal, radians.
    rotate : bool
        Randomly rotate the crystal with respect to the array axes.
    alpha, sigma : float, optional
        PtyINR Poisson photon level and Gaussian σ (see :func:`add_noise`).

    Returns
    -------
    BraggData
        Intensity (float32, peak centred), ``truth_object`` (complex64, scaled so that
        ``bragg_intensity(truth_object)`` is the noise-free expected intensity), actual
        ``oversampling`` per axis and metadata (parameters, facet count, base shape).
    """
    from napari_ptycho.physics.bragg import bragg_intensity
    from napari_ptycho.physics.crystals import make_crystal

    size = _check_int("size", size, 16)
    seed = _check_int("seed", seed, 0)
    photons = _check_photons(photons)
    noise = _check_kind("noise", noise, NOISE_KINDS)
    alpha, sigma = check_alpha(alpha), check_sigma(sigma)
    oversampling = _check_real("oversampling", oversampling, 2.0)
    crystal_seq, noise_seq = np.random.SeedSequence(int(seed)).spawn(2)
    crystal, info = make_crystal(int(size), np.random.default_rng(crystal_seq),
                                 float(oversampling), bool(strained), phase_range,
                                 bool(rotate))
    # Parseval: sum(I) = sum(|ρ|²), so scaling ρ by sqrt(photons / sum|ρ|²) sets the total
    crystal = (crystal * math.sqrt(photons / float(np.sum(np.abs(crystal) ** 2)))
               ).astype(np.complex64)
    expected = bragg_intensity(crystal).astype(np.float64)
    intensity = add_noise(expected, noise, np.random.default_rng(noise_seq), alpha, sigma)
    geometry = Geometry(energy=BRAGG_ENERGY_EV, distance=BRAGG_DISTANCE_M,
                        detector_pixel_size=BRAGG_PIXEL_M, detector_shape=(size, size))
    params = {"size": int(size), "seed": int(seed), "photons": photons,
              "oversampling": float(oversampling), "strained": bool(strained),
              "noise": noise, "phase_range": [float(v) for v in phase_range],
              "rotate": bool(rotate), "alpha": alpha,
              "sigma": sigma if noise in ("gaussian", "mixed") else None}
    metadata = {
        "name": f"simulated {'strained' if strained else 'unstrained'} crystal "
                f"({info['facets']} facets)",
        "source": "napari_ptycho.physics.simulate.simulate_bragg",
        "simulation": params,
        "facets": info["facets"],
        "base_shape": info["base_shape"],
        "total_counts": float(intensity.sum()),
    }
    return BraggData(intensity=intensity, geometry=geometry, metadata=metadata,
                     truth_object=crystal, oversampling=tuple(info["oversampling"]))
