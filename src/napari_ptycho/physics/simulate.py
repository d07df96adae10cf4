"""Simulated data sets with ground truth: 2D far-field ptychography and 3D Bragg CDI.

Both simulators use the package's single forward models
(:func:`napari_ptycho.physics.ptycho.forward_intensity` and
:func:`napari_ptycho.physics.bragg.bragg_intensity`), so simulated data, engines and tests
agree on every convention (see ``docs/conventions.md``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.physics._checks import (
    check_complex_array,
    check_int,
    check_kind,
    check_real,
)
from napari_ptycho.physics.noise import NOISE_KINDS, add_noise, check_alpha, check_sigma
from napari_ptycho.physics.objects import OBJECT_KINDS, make_object
from napari_ptycho.physics.probes import PROBE_KINDS, make_probe
from napari_ptycho.physics.probes import probe_fwhm as measure_fwhm
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


def _check_photons(photons: Any) -> float:
    return check_real("photons", photons, 0.0, low_open=True)


def _user_probe(probe_array: Any) -> np.ndarray:
    """A caller's probe as complex64 (modes, h, w) with unit total power."""
    p = check_complex_array("probe_array", probe_array, (2, 3))
    p = p[None] if p.ndim == 2 else p
    power = float(np.sum(np.abs(p) ** 2))
    if not power > 0:
        raise ValueError("probe_array is zero everywhere")
    return (p / math.sqrt(power)).astype(np.complex64)


def _user_positions(positions: Any, obj_shape: tuple[int, int], probe_shape: tuple[int, int]
                    ) -> np.ndarray:
    """A caller's scan as float64 (N, 2), every window inside the object."""
    pos = np.asarray(positions, dtype=np.float64) if np.ndim(positions) == 2 else None
    if pos is None or pos.shape[1] != 2 or len(pos) < 1:
        raise ValueError(f"positions must have shape (N, 2); got {np.shape(positions)}")
    if not np.all(np.isfinite(pos)):
        raise ValueError("positions contain NaN or infinite values")
    last = np.floor(pos) + np.array(probe_shape) - 1
    if pos.min() < 0 or np.any(last > np.array(obj_shape) - 1):
        raise ValueError(f"positions put probe windows {probe_shape} outside the object "
                         f"{obj_shape}")
    return pos


def simulate_ptycho(object: str = "siemens", object_size: int = 128, probe_size: int = 64,
                    overlap: float = 0.7, photons: float = 1e6, noise: str = "poisson",
                    scan: str = "raster", seed: int = 0, probe: str = "focused",
                    probe_modes: int = 1, detector_size: int | None = None,
                    jitter: float = 0.0,
                    amplitude_range: tuple[float, float] = (0.8, 1.0),
                    phase_range: tuple[float, float] = (0.0, 1.0),
                    photons_mode: str = "total", alpha: float | None = None,
                    sigma: float | None = None, object_array: np.ndarray | None = None,
                    margin: int = 1, position_error: float = 0.0,
                    probe_array: np.ndarray | None = None,
                    positions: np.ndarray | None = None,
                    near_field_distance: float | None = None,
                    probe_fwhm: float | None = None) -> PtychoData:
    """Simulate a far-field ptychography scan with ground truth.

    Parameters
    ----------
    object : str
        Object kind, one of ``OBJECT_KINDS`` ("siemens", "lines", "grf",
        "large_features", "images"); ignored when ``object_array`` is given.
    object_size : int
        Object side length in pixels (ignored when ``object_array`` is given).
    probe_size : int
        Probe window side in pixels; must be smaller than the object (ignored when
        ``probe_array`` is given).
    overlap : float
        Requested overlap ``1 − step / FWHM`` in (0, 1) (ignored when ``positions`` is
        given).
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
        Standard deviation of random deviations from the regular scan in pixels (applied
        to the recorded *and* the true positions: the data stay self-consistent).
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
    probe_array : ndarray, optional
        A complex probe (h, w) or (modes, h, w) to use instead of a generated one; it is
        rescaled to the photon count.
    positions : ndarray, optional
        Explicit probe-window corners (N, 2) instead of a generated scan (e.g. PtychoPINN's
        grouped grids); ``overlap``, ``scan`` and ``jitter`` are then ignored.
    near_field_distance : float, optional
        Simulate near-field (Fresnel) ptychography over this propagation distance in
        metres instead of far field. The object pixel is kept at the far-field value
        (``Geometry.pixel_size_override``); Fresnel fringes need roughly
        ``λ z / Δx² >`` a few pixels, i.e. z of order 0.1 mm at the defaults.

    probe_fwhm : float, optional
        Amplitude FWHM of the generated probe in pixels (default: about
        ``probe_size / 4.5``, which keeps ~97 % of a focused probe's power in the central
        half of the window, i.e. far-field patterns oversampled about twice). Wider
        probes need fewer scan positions for the same overlap but sample the far field
        more coarsely.

    Returns
    -------
    PtychoData
        Intensities (float32, DC centred), positions, far-field geometry, ``probe`` =
        ``truth_probe`` (scaled to the photon count), ``truth_object`` and ``metadata``
        with every parameter under ``"simulation"``.
    """
    from napari_ptycho.physics.ptycho import forward_intensity

    obj_kind = "custom" if object_array is not None else check_kind("object", object,
                                                                    OBJECT_KINDS)
    probe_kind = "custom" if probe_array is not None else check_kind("probe", probe,
                                                                     PROBE_KINDS)
    scan = "custom" if positions is not None else check_kind("scan", scan, SCAN_KINDS)
    noise = check_kind("noise", noise, NOISE_KINDS)
    photons_mode = check_kind("photons_mode", photons_mode, PHOTONS_MODES)
    photons = _check_photons(photons)
    alpha, sigma = check_alpha(alpha), check_sigma(sigma)
    probe_modes = check_int("probe_modes", probe_modes, 1)
    margin = check_int("margin", margin, 0)
    position_error = check_real("position_error", position_error, 0.0)
    jitter = check_real("jitter", jitter, 0.0)
    overlap = check_real("overlap", overlap, 0.0, 1.0, low_open=True, high_open=True)
    seed = check_int("seed", seed, 0)
    unit_probe = _user_probe(probe_array) if probe_array is not None else None
    if unit_probe is not None:
        if unit_probe.shape[-1] != unit_probe.shape[-2]:
            raise ValueError(f"probe_array must be square; got shape {unit_probe.shape}")
        probe_size = unit_probe.shape[-1]
    probe_size = check_int("probe_size", probe_size, 4)
    detector_size = probe_size if detector_size is None else check_int(
        "detector_size", detector_size, 2)
    if detector_size < probe_size:
        raise ValueError(f"detector_size ({detector_size}) must be >= probe_size "
                         f"({probe_size})")
    if object_array is not None:
        truth_object = check_complex_array("object_array", object_array, (2,))
        obj_shape = tuple(truth_object.shape)
    else:
        object_size = check_int("object_size", object_size, 8)
        obj_shape = (object_size, object_size)
    if probe_size + 2 * margin >= min(obj_shape):
        raise ValueError(f"probe_size ({probe_size}) plus a {margin} px margin on both sides "
                         f"must be smaller than the object {obj_shape}")

    object_seq, scan_seq, noise_seq, error_seq = np.random.SeedSequence(seed).spawn(4)
    if object_array is None:
        truth_object = make_object(obj_kind, object_size, np.random.default_rng(object_seq),
                                   amplitude_range, phase_range)
    geometry = Geometry(energy=PTYCHO_ENERGY_EV, distance=PTYCHO_DISTANCE_M,
                        detector_pixel_size=PTYCHO_PIXEL_M,
                        detector_shape=(detector_size, detector_size))
    if near_field_distance is not None:
        distance = check_real("near_field_distance", near_field_distance, 0.0, low_open=True)
        geometry = Geometry(energy=PTYCHO_ENERGY_EV, distance=PTYCHO_DISTANCE_M,
                            detector_pixel_size=PTYCHO_PIXEL_M,
                            detector_shape=(detector_size, detector_size), near_field=True,
                            propagation_distance=distance,
                            pixel_size_override=geometry.object_pixel_size)
    if unit_probe is None:
        probe_kwargs: dict[str, float] = {}
        if probe_kind == "focused":
            probe_kwargs = {"wavelength": geometry.wavelength,
                            "pixel_size": geometry.object_pixel_size}
        unit_probe = make_probe(probe_kind, probe_size, probe_modes, fwhm=probe_fwhm,
                                **probe_kwargs)
    diameter = measure_fwhm(unit_probe)
    step = step_for_overlap(overlap, diameter)
    if positions is not None:
        true_positions = _user_positions(positions, obj_shape, (probe_size, probe_size))
    else:
        true_positions = make_scan(scan, obj_shape, (probe_size, probe_size), step,
                                   margin=margin, jitter=jitter,
                                   rng=np.random.default_rng(scan_seq))
        if len(true_positions) < 2:
            raise ValueError(f"only {len(true_positions)} scan position fits: enlarge "
                             f"object_size or raise the overlap ({overlap})")

    unit_intensity = forward_intensity(truth_object, unit_probe, true_positions,
                                       detector_shape=(detector_size, detector_size),
                                       geometry=geometry)
    if photons_mode == "total":
        scale = photons / float(unit_intensity.sum(axis=(1, 2)).mean())
    else:
        scale = photons / float(unit_intensity.max())
    truth_probe = (unit_probe * math.sqrt(scale)).astype(np.complex64)
    expected = unit_intensity.astype(np.float64) * scale
    diffraction = add_noise(expected, noise, np.random.default_rng(noise_seq), alpha, sigma)
    recorded = true_positions
    if position_error > 0:
        # recorded positions stay inside the object too, so engines can start from them
        high = np.array(obj_shape, dtype=np.float64) - probe_size - margin
        errors = np.random.default_rng(error_seq).normal(0.0, position_error,
                                                         true_positions.shape)
        recorded = np.clip(true_positions + errors, float(margin), high)

    params = {
        "object": obj_kind, "object_size": list(obj_shape), "probe_size": probe_size,
        "overlap": overlap if positions is None else None, "photons": photons,
        "photons_mode": photons_mode, "noise": noise, "scan": scan, "seed": seed,
        "probe": probe_kind, "probe_modes": int(truth_probe.shape[0]),
        "detector_size": detector_size, "jitter": jitter if positions is None else 0.0,
        "amplitude_range": [float(v) for v in amplitude_range],
        "phase_range": [float(v) for v in phase_range], "alpha": alpha,
        "sigma": sigma if noise in ("gaussian", "mixed") else None,
        "margin": margin, "position_error": position_error,
        "near_field_distance": geometry.propagation_distance,
        "probe_fwhm": probe_fwhm if probe_array is None else None,
    }
    measured = (measure_overlap(true_positions, unit_probe) if len(true_positions) > 1
                else None)
    label = f"{int(round(overlap * 100))} % overlap" if positions is None else "given scan"
    metadata = {
        "name": f"simulated {obj_kind} ({scan}, {label})",
        "source": "napari_ptycho.physics.simulate.simulate_ptycho",
        "simulation": params,
        "probe_fwhm_px": diameter,
        "step_px": step if positions is None else None,
        "measured_overlap": measured,
        "n_patterns": int(len(true_positions)),
        "mean_counts_per_pattern": float(diffraction.sum(axis=(1, 2)).mean()),
    }
    if position_error > 0:
        metadata["true_positions"] = true_positions.tolist()
    return PtychoData(diffraction=diffraction, positions=recorded, geometry=geometry,
                      probe=truth_probe.copy(), metadata=metadata, truth_object=truth_object,
                      truth_probe=truth_probe, object_shape=obj_shape)


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

    size = check_int("size", size, 16)
    seed = check_int("seed", seed, 0)
    photons = _check_photons(photons)
    noise = check_kind("noise", noise, NOISE_KINDS)
    alpha, sigma = check_alpha(alpha), check_sigma(sigma)
    oversampling = check_real("oversampling", oversampling, 2.0)
    crystal_seq, noise_seq = np.random.SeedSequence(seed).spawn(2)
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
