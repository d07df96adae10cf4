"""``evaluate``: every image-quality score of a reconstruction against the truth, as JSON.

Also ``fit_metrics``: how well a 2D reconstruction (object, probe, positions) explains the
measured diffraction (χ², Poisson NLL and its free variant).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_ptycho.metrics import registration as _reg
from napari_ptycho.metrics._checks import as_complex_array, as_mask, same_shape
from napari_ptycho.metrics.frc import frc, frc_crossing
from napari_ptycho.metrics.region import bounding_slices, region_mask
from napari_ptycho.metrics.scores import (
    chi2,
    free_poisson_nll,
    mae,
    nrmse,
    poisson_nll,
    psnr,
    ssim,
    wrapped_phase_difference,
)

__all__ = ["evaluate", "fit_metrics"]


def _squeeze_to(arr: np.ndarray, dims: int | None, name: str) -> np.ndarray:
    """Drop leading length-1 axes (a (1, H, W) object is 2D) down to ``dims`` axes."""
    target = 2 if dims is None else dims
    while arr.ndim > target and arr.shape[0] == 1:
        arr = arr[0]
    if dims is None and arr.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D image or 3D volume; got shape {arr.shape}")
    if dims is not None and arr.ndim != dims:
        raise ValueError(f"{name} has shape {arr.shape}, which is not {dims}D as dims={dims} "
                         "asks")
    return arr


def _positive_range(values: np.ndarray, fallback: float) -> float:
    """Peak-to-peak of ``values``, or ``fallback`` when they are constant."""
    span = float(np.ptp(values)) if values.size else 0.0
    return span if span > 1e-12 else fallback


def evaluate(reconstruction: Any, truth: Any, *, region: Any = None, register: bool = True,
             dims: int | None = None, scale: bool = False, ramp: bool = False,
             twin: bool | None = None, phase_threshold: float = 0.1) -> dict[str, float]:
    """Score a complex reconstruction against the ground truth.

    Parameters
    ----------
    reconstruction : ndarray or object with ``.object``
        Complex 2D object or 3D crystal (a Snapshot / Result is accepted).
    truth : ndarray or object with ``.truth_object``
        Complex ground truth of the same shape (a PtychoData / BraggData is accepted).
    region : tuple of slice or ndarray of bool, optional
        Where to score (e.g. :func:`scanned_region`); registration fits this region only.
    register : bool
        Remove the translation (and in 3D the twin) before scoring. The global phase is
        removed in every case: it is part of the definition of each phase score.
    dims : {2, 3}, optional
        Dimensionality; inferred when omitted (leading length-1 axes are dropped).
    scale : bool
        Also fit a global amplitude scale (free-probe ptychography cannot fix it).
    ramp : bool
        Also remove a linear phase ramp.
    twin : bool, optional
        Try the conjugate-inverted twin; default: for 3D only.
    phase_threshold : float
        Phase scores use only pixels whose true amplitude exceeds this fraction of the
        maximum (phase is meaningless where there is no object, e.g. outside a crystal).

    Returns
    -------
    dict of str to float
        ``psnr_amplitude``, ``psnr_phase`` (dB), ``ssim_amplitude``, ``ssim_phase``,
        ``mae_amplitude``, ``mae_phase`` (rad), ``nrmse`` (complex, PMACE),
        ``nrmse_amplitude``, ``frc50``, ``frc_halfbit``, ``frc_onesevenths`` (cycles per
        pixel), ``shift`` (pixels, length of the translation that brings the
        reconstruction onto the truth) and ``shift_0``... per axis, ``global_phase``
        (rad), ``scale``, ``twin`` (1.0 if the twin was used), ``ramp_0``...
        (cycles/pixel, if ``ramp``), ``n_pixels`` (scored pixels). Every value is a finite float.
    """
    if dims not in (None, 2, 3):
        raise ValueError(f"dims must be None, 2 or 3 (got {dims!r})")
    if not (0 <= phase_threshold < 1):
        raise ValueError(f"phase_threshold must be in [0, 1) (got {phase_threshold!r})")
    rec = _squeeze_to(as_complex_array(reconstruction, "reconstruction", "object"), dims,
                      "reconstruction")
    tru = _squeeze_to(as_complex_array(truth, "truth", "truth_object"), dims, "truth")
    same_shape(rec, tru, "reconstruction", "truth")
    if min(tru.shape) < 4:
        raise ValueError(f"truth shape {tru.shape} is too small to score (need >= 4 pixels "
                         "per axis)")
    if not np.any(tru):
        raise ValueError("truth is zero everywhere; there is nothing to compare with")
    mask = region_mask(region, tru.shape)
    if twin is None:
        twin = tru.ndim == 3
    reg = _reg.register(rec, tru, mask=mask, shift=register, ramp=ramp and register,
                        scale=scale, twin=bool(twin) and register)

    mask = reg.mask  # mirrored if the twin won
    box = bounding_slices(mask) if mask is not None else (slice(None),) * tru.ndim
    x, t = reg.aligned[box], reg.reference[box]
    if min(t.shape) < 4:
        raise ValueError(f"region spans {t.shape} pixels; need at least 4 per axis to score")
    inner = None if mask is None or mask[box].all() else mask[box]
    m = np.ones(t.shape, dtype=bool) if inner is None else inner
    if not np.any(t[m]):
        raise ValueError("truth is zero everywhere inside region; there is nothing to score")

    amp_t, amp_x = np.abs(t), np.abs(x)
    amp_range = _positive_range(amp_t[m], float(amp_t[m].max()))
    pm = m & (amp_t > phase_threshold * amp_t[m].max())
    dphi = wrapped_phase_difference(x, t)
    # Express the reconstruction's phase relative to the truth's so wrapping cannot count
    # a 2π jump as an error; outside the phase mask both images are made equal.
    phi_t = np.angle(t)
    phi_x = np.where(pm, phi_t + dphi, phi_t)
    phase_range = _positive_range(phi_t[pm], 2 * np.pi)

    from skimage.metrics import normalized_root_mse

    freq, curve, halfbit, seventh = frc(np.where(m, x, 0), np.where(m, t, 0),
                                        window=region is not None)
    out: dict[str, float] = {
        "psnr_amplitude": psnr(amp_t, amp_x, amp_range, inner),
        "psnr_phase": psnr(phi_t, phi_x, phase_range, pm),
        "ssim_amplitude": ssim(amp_t, amp_x, amp_range, inner),
        "ssim_phase": ssim(phi_t, phi_x, phase_range, pm),
        "mae_amplitude": mae(amp_t, amp_x, inner),
        "mae_phase": float(np.mean(np.abs(dphi[pm]))),
        "nrmse": nrmse(x, t, inner),
        "nrmse_amplitude": float(normalized_root_mse(amp_t[m], amp_x[m],
                                                     normalization="euclidean")),
        "frc50": frc_crossing(freq, curve, 0.5),
        "frc_halfbit": frc_crossing(freq, curve, halfbit),
        "frc_onesevenths": frc_crossing(freq, curve, seventh),
        "shift": float(np.linalg.norm(reg.shift)),
    }
    out.update({f"shift_{i}": float(s) for i, s in enumerate(reg.shift)})
    out["global_phase"] = float(reg.phase)
    out["scale"] = float(reg.scale)
    out["twin"] = float(reg.twin)
    if ramp and register:
        out.update({f"ramp_{i}": float(k) for i, k in enumerate(reg.ramp)})
    out["n_pixels"] = float(m.sum())
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:  # e.g. an all-zero reconstruction: say so rather than emit NaN into JSON
        raise ValueError(f"reconstruction gives non-finite scores for {bad}")
    return out


def fit_metrics(reconstruction: Any, data: Any, *, free_mask: Any = None) -> dict[str, float]:
    """How well a 2D reconstruction explains the measured diffraction.

    Parameters
    ----------
    reconstruction : Snapshot or Result
        Needs ``object``, ``probe`` and (else the data's) ``positions``.
    data : PtychoData
        The measured scan (intensities, positions, geometry, detector mask).
    free_mask : ndarray of bool, shape (N, H, W) or (H, W), optional
        Held-out detector pixels; adds ``poisson_nll_free``.

    Returns
    -------
    dict of str to float
        ``chi2``, ``poisson_nll`` (per pixel, with the log Γ constant) and optionally
        ``poisson_nll_free``, over the valid detector pixels.
    """
    from napari_ptycho.physics.ptycho import forward_intensity

    obj = as_complex_array(reconstruction, "reconstruction", "object")
    probe = getattr(reconstruction, "probe", None)
    if probe is None:
        probe = getattr(data, "probe", None)
    if probe is None:
        raise ValueError("reconstruction has no probe and neither has data; cannot model "
                         "the diffraction")
    positions = getattr(reconstruction, "positions", None)
    if positions is None:
        positions = data.positions
    measured = data.intensities()
    model = forward_intensity(obj, probe, positions, detector_shape=data.detector_shape,
                              geometry=data.geometry)
    valid = None
    if getattr(data, "mask", None) is not None:
        valid = np.broadcast_to(data.mask, measured.shape)
    out = {"chi2": chi2(model, measured, valid),
           "poisson_nll": poisson_nll(model, measured, valid)}
    if free_mask is not None:
        free = np.asarray(free_mask)
        if free.ndim == 2:
            free = np.broadcast_to(free, measured.shape)
        free = as_mask(free, measured.shape, name="free_mask")
        if valid is not None:
            free = free & valid
        out["poisson_nll_free"] = free_poisson_nll(model, measured, free)
    return out
