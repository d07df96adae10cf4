"""Align a reconstruction to the ground truth before scoring it.

Ptychography and Bragg CDI recover the object only up to ambiguities that carry no
information about quality: a rigid (sub-pixel) translation, a global phase, an amplitude
scale when the probe is free, a linear phase ramp (a probe offset in reciprocal space) and,
in 3D, the twin ``conj(x(-r))``. :func:`register` removes the requested ones by least
squares so that the metrics measure only what the data could have decided.

The sub-pixel shift is first estimated by cross-correlation
(:func:`skimage.registration.phase_cross_correlation`, upsampled) and then refined by maximising the
overlap ``|<truth, shift(rec, s)>|`` over continuous ``s`` (an exact trigonometric
polynomial in ``s``), which makes the registration exact for band-limited objects rather
than limited to the upsampling grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_ptycho.metrics._checks import as_mask, same_shape

__all__ = ["Registration", "apply_shift", "estimate_shift", "remove_phase_ramp",
           "global_phase_and_scale", "register"]


@dataclass
class Registration:
    """A reconstruction aligned to the truth, and the ambiguities that were removed.

    Attributes
    ----------
    aligned : ndarray, complex
        The reconstruction after the phase ramp, global phase, scale and twin corrections.
    reference : ndarray, complex
        The truth translated onto the reconstruction; compare ``aligned`` with it.
    shift : ndarray, float, shape (ndim,)
        Translation that would bring the reconstruction onto the truth, in pixels
        (positive = towards larger indices); the truth was moved by ``-shift``.
    phase : float
        Global phase (radians) the reconstruction was multiplied by.
    scale : float
        Amplitude factor applied (1.0 unless scaling was requested).
    ramp : ndarray, float, shape (ndim,)
        Linear phase ramp removed, in cycles per pixel per axis (zeros if not requested).
    twin : bool
        True when the conjugate-inverted twin matched the truth better and was used.
    mask : ndarray of bool or None
        The scoring mask in the frame of ``aligned`` (mirrored when the twin was used).
    """

    aligned: np.ndarray
    reference: np.ndarray
    shift: np.ndarray
    phase: float = 0.0
    scale: float = 1.0
    ramp: np.ndarray = field(default_factory=lambda: np.zeros(0))
    twin: bool = False
    mask: np.ndarray | None = None


def apply_shift(x: np.ndarray, shift: Any) -> np.ndarray:
    """Circularly translate ``x`` by a (sub-pixel) ``shift`` with the Fourier shift theorem."""
    x = np.asarray(x)
    s = np.asarray(shift, dtype=np.float64).reshape(-1)
    if s.size != x.ndim:
        raise ValueError(f"shift has {s.size} component(s) but x has {x.ndim} dimension(s)")
    if not np.any(s):
        return x.copy()
    from scipy import ndimage  # lazily: widgets import this package at napari start-up

    return np.fft.ifftn(ndimage.fourier_shift(np.fft.fftn(x), s))


def _refine_peak(coeffs: np.ndarray, coords: list[np.ndarray], start: np.ndarray,
                 half_width: np.ndarray) -> np.ndarray:
    """Maximise ``|sum_u C_u exp(-2πi Σ_j coords_j[u] s_j)|`` over ``s`` near ``start``.

    ``coords`` are open-grid axis vectors (broadcastable against ``coeffs``). The search is
    bounded to ``start ± half_width`` because the coarse estimate is already within a
    fraction of a sample, and a bounded search cannot run off to an aliased peak.
    """
    from scipy import optimize

    norm = np.abs(coeffs).sum() ** 2
    if norm == 0:
        return start

    def cost(s: np.ndarray) -> tuple[float, np.ndarray]:
        ph = 1.0
        for c, sj in zip(coords, s, strict=True):
            ph = ph * np.exp(-2j * np.pi * c * sj)
        terms = coeffs * ph
        g = terms.sum()
        grad = np.array([np.sum(-2j * np.pi * c * terms) for c in coords])
        # d|g|^2/ds = 2 Re(conj(g) dg/ds)
        return -abs(g) ** 2 / norm, -2 * np.real(np.conj(g) * grad) / norm

    bounds = list(zip(start - half_width, start + half_width, strict=True))
    res = optimize.minimize(cost, start, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-15, "gtol": 1e-12, "maxiter": 200})
    return res.x if res.fun <= cost(start)[0] else start


def _open_grid(values: list[np.ndarray]) -> list[np.ndarray]:
    """Axis vectors reshaped so that they broadcast to an n-dimensional grid."""
    n = len(values)
    return [v.reshape([-1 if i == j else 1 for i in range(n)]) for j, v in enumerate(values)]


def estimate_shift(moving: np.ndarray, reference: np.ndarray,
                   mask: np.ndarray | None = None, refine: bool = True) -> np.ndarray:
    """Translation that best maps ``moving`` onto ``reference`` (least squares).

    Parameters
    ----------
    moving, reference : ndarray, complex, same shape
        Images or volumes.
    mask : ndarray of bool, optional
        Only this region of ``reference`` is matched (e.g. the scanned area).
    refine : bool
        Refine the phase-correlation estimate to the continuous optimum.

    Returns
    -------
    ndarray, float, shape (ndim,)
        Shift to pass to :func:`apply_shift` to bring ``moving`` into register.
    """
    same_shape(moving, reference, "moving", "reference")
    freqs = _open_grid([np.fft.fftfreq(n) for n in reference.shape])
    if mask is None:
        # Subtracting the mean stops a bright background (|t| ~ 1 in ptychography) from
        # dominating the correlation.
        ref, mov = reference - reference.mean(), moving - moving.mean()
        if not np.any(np.abs(ref) > 0) or not np.any(np.abs(mov) > 0):
            return np.zeros(reference.ndim)  # featureless: no translation is measurable
        coarse = _phase_correlation(ref, mov)
        if not refine:
            return coarse
        coeffs = np.conj(np.fft.fftn(reference)) * np.fft.fftn(moving)
        return _refine_peak(coeffs, freqs, coarse, np.full(reference.ndim, 1.0))
    w = as_mask(mask, reference.shape).astype(float)
    coarse = _masked_coarse_shift(w * reference, moving, w)
    if not refine:
        return coarse
    return _refine_masked(np.fft.fftn(moving), w * reference, w, freqs, coarse)


def _masked_coarse_shift(weighted_ref: np.ndarray, moving: np.ndarray, w: np.ndarray
                         ) -> np.ndarray:
    """Best integer shift by the masked least-squares criterion, for every shift at once.

    Phase correlation of two masked images locks onto their shared mask edges; instead
    ``|<w·ref, S_u m>|² / <w, |S_u m|²>`` (maximal at the true shift by Cauchy-Schwarz)
    is evaluated for all circular integer shifts ``u`` with FFT correlations.
    """
    overlap = np.fft.fftn(np.conj(np.fft.fftn(weighted_ref)) * np.fft.fftn(moving))
    energy = np.fft.fftn(np.conj(np.fft.fftn(w)) * np.fft.fftn(np.abs(moving) ** 2)).real
    ratio = np.where(energy > 1e-12 * energy.max(), np.abs(overlap) ** 2
                     / np.maximum(energy, 1e-300), 0.0)
    peak = np.unravel_index(np.argmax(ratio), ratio.shape)
    return np.array([i - n if i > n // 2 else i for i, n in zip(peak, ratio.shape,
                                                                 strict=True)], dtype=float)


def _refine_masked(moving_ft: np.ndarray, weighted_ref: np.ndarray, w: np.ndarray,
                   freqs: list[np.ndarray], start: np.ndarray) -> np.ndarray:
    """Refine a shift inside a mask: maximise ``|<w·ref, S_u m>|² / <w, |S_u m|²>``.

    Inside a mask the energy of the shifted image depends on ``u``, so the plain overlap
    of :func:`_refine_peak` is biased; this ratio is the exact least-squares criterion
    (with a free complex scale) and needs one inverse FFT per evaluation.
    """
    from scipy import optimize

    norm = float(np.vdot(weighted_ref, weighted_ref).real)

    def cost(u: np.ndarray) -> float:
        ph = 1.0
        for c, uj in zip(freqs, u, strict=True):
            ph = ph * np.exp(-2j * np.pi * c * uj)
        moved = np.fft.ifftn(moving_ft * ph)
        energy = float(np.sum(w * np.abs(moved) ** 2))
        if energy <= 0:
            return 0.0
        return -abs(np.vdot(weighted_ref, moved)) ** 2 / (energy * norm)

    bounds = [(s - 1.0, s + 1.0) for s in start]
    res = optimize.minimize(cost, start, method="L-BFGS-B", bounds=bounds,
                            options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 100})
    return res.x if res.fun <= cost(start) else start


def _phase_correlation(reference: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """skimage's cross-correlation at 1/20 pixel, without spectral whitening.

    Whitening ("phase" normalisation) lifts the noise outside a smooth object's band to
    the level of its signal and buries the peak; the plain cross-correlation is the
    maximum-likelihood estimate under white noise.
    """
    from skimage.registration import phase_cross_correlation

    with np.errstate(divide="ignore", invalid="ignore"):
        shift, _, _ = phase_cross_correlation(reference, moving, upsample_factor=20,
                                               normalization=None)
    return np.asarray(shift, dtype=np.float64)


def remove_phase_ramp(reconstruction: np.ndarray, truth: np.ndarray,
                      mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Remove the linear phase ramp of ``reconstruction`` relative to ``truth``.

    The ramp ``exp(2πi k·r)`` that maximises ``|<truth, rec·exp(-2πi k·r)>|`` is found
    from the peak of the Fourier transform of ``conj(truth)·rec`` and refined continuously;
    positions ``r`` are measured from the array centre so the ramp pivots there.

    Returns
    -------
    corrected : ndarray, complex
        ``reconstruction * exp(-2πi k·r)``.
    ramp : ndarray, float, shape (ndim,)
        ``k`` in cycles per pixel along each axis.
    """
    same_shape(reconstruction, truth, "reconstruction", "truth")
    w = np.ones(truth.shape) if mask is None else as_mask(mask, truth.shape).astype(float)
    d = w * np.conj(truth) * reconstruction
    if not np.any(d):
        return reconstruction.copy(), np.zeros(truth.ndim)
    peak = np.unravel_index(np.argmax(np.abs(np.fft.fftn(d))), d.shape)
    coarse = np.array([np.fft.fftfreq(n)[i] for n, i in zip(d.shape, peak, strict=True)])
    coords = _open_grid([np.arange(n) - n // 2 for n in d.shape])
    k = _refine_peak(d, coords, coarse, 1.0 / np.array(d.shape, dtype=float))
    ramp = 1.0
    for c, kj in zip(coords, k, strict=True):
        ramp = ramp * np.exp(-2j * np.pi * c * kj)
    return reconstruction * ramp, k


def global_phase_and_scale(reconstruction: np.ndarray, truth: np.ndarray,
                           mask: np.ndarray | None = None, scale: bool = False
                           ) -> tuple[float, float]:
    """Least-squares global phase (and optionally amplitude scale) of ``reconstruction``.

    The phase ``φ = arg <rec, truth>`` minimises ``||rec·e^{iφ} − truth||``; with
    ``scale=True`` the amplitude ``a = |<rec, truth>| / ||rec||²`` is fitted too (the
    ambiguity of ptychography when the probe intensity is free).

    Returns
    -------
    phase, amplitude : float
        Multiply the reconstruction by ``amplitude * exp(1j * phase)``.
    """
    sel = (slice(None),) if mask is None else mask
    r, t = reconstruction[sel], truth[sel]
    inner = np.vdot(r, t)  # sum(conj(r) * t)
    phase = float(np.angle(inner)) if inner != 0 else 0.0
    amplitude = 1.0
    if scale:
        energy = float(np.vdot(r, r).real)
        if energy > 0 and inner != 0:
            amplitude = float(abs(inner) / energy)
    return phase, amplitude


def _nrmse(x: np.ndarray, truth: np.ndarray, mask: np.ndarray | None) -> float:
    sel = (slice(None),) if mask is None else mask
    denom = np.linalg.norm(truth[sel])
    return float(np.linalg.norm(x[sel] - truth[sel]) / denom) if denom > 0 else float("inf")


def _register_one(rec: np.ndarray, truth: np.ndarray, mask: np.ndarray | None, shift: bool,
                  ramp: bool, scale: bool) -> Registration:
    ref = truth
    moved = np.zeros(truth.ndim)
    k = np.zeros(truth.ndim)
    # A ramp moves the spectrum and so biases the shift estimate (and vice versa):
    # alternate until both settle (a few passes for the small ramps met in practice).
    for _ in range(4 if (shift and ramp) else 1):
        ds = dk = np.zeros(truth.ndim)
        if shift:
            # The truth, not the reconstruction, is moved: a reconstruction's unscanned
            # border is not smooth, and Fourier-shifting it would ring into the region.
            ds = estimate_shift(ref, rec, mask)
            moved += ds
            ref = apply_shift(truth, moved)
        if ramp:
            rec, dk = remove_phase_ramp(rec, ref, mask)
            k += dk
        if np.all(np.abs(ds) < 1e-6) and np.all(np.abs(dk) < 1e-9):
            break
    phase, amp = global_phase_and_scale(rec, ref, mask, scale)
    return Registration(rec * (amp * np.exp(1j * phase)), ref, -moved, phase, amp, k, False)


def register(reconstruction: np.ndarray, truth: np.ndarray, *, mask: np.ndarray | None = None,
             shift: bool = True, ramp: bool = False, scale: bool = False,
             twin: bool = False) -> Registration:
    """Bring a complex reconstruction and the truth into register.

    The truth is translated onto the reconstruction (so ``mask`` is in the
    reconstruction's frame, like scan positions); the phase ramp, global phase, scale and
    twin are corrections of the reconstruction.

    Parameters
    ----------
    reconstruction, truth : ndarray, complex, same shape
        2D image or 3D volume.
    mask : ndarray of bool, optional
        Region the fit is restricted to (e.g. the scanned area or the crystal support).
    shift : bool
        Remove a sub-pixel translation.
    ramp : bool
        Remove a linear phase ramp.
    scale : bool
        Fit an amplitude scale as well as the global phase.
    twin : bool
        Also try the twin ``conj(rec[::-1, ::-1, ...])`` and keep whichever matches
        better (the 3D Bragg CDI ambiguity); the mask is mirrored with it.

    Returns
    -------
    Registration
    """
    same_shape(reconstruction, truth, "reconstruction", "truth")
    mask = as_mask(mask, truth.shape)
    best = _register_one(reconstruction, truth, mask, shift, ramp, scale)
    best.mask = mask
    if twin:
        flip = (slice(None, None, -1),) * reconstruction.ndim
        fmask = None if mask is None else mask[flip]
        other = _register_one(np.conj(reconstruction[flip]), truth, fmask, shift, ramp, scale)
        if (_nrmse(other.aligned, other.reference, fmask)
                < _nrmse(best.aligned, best.reference, mask)):
            other.twin = True
            other.mask = fmask
            best = other
    return best
