"""Scalar scores: image quality against the truth, and fit quality against the data.

Image scores (PSNR, SSIM, MAE) come from :mod:`skimage.metrics` where it has them; the
complex NRMSE follows the PMACE paper (``||x·e^{iφ} − t|| / ||t||`` at the optimal φ).
Data scores compare model intensities with measured ones: the amplitude χ² and the
Poisson negative log-likelihood per pixel.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_ptycho.metrics._checks import as_complex_array, as_mask, as_real_array, same_shape

__all__ = ["PSNR_CAP_DB", "psnr", "ssim", "mae", "nrmse", "wrapped_phase_difference", "chi2",
           "poisson_nll", "free_poisson_nll"]

#: PSNR reported for identical images, so that the value stays a finite JSON number.
PSNR_CAP_DB = 200.0


def psnr(truth: np.ndarray, test: np.ndarray, data_range: float,
         mask: np.ndarray | None = None) -> float:
    """Peak signal-to-noise ratio in dB (capped at :data:`PSNR_CAP_DB`), optionally masked."""
    from skimage.metrics import mean_squared_error

    same_shape(truth, test, "truth", "test")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number (got {data_range!r})")
    sel = (slice(None),) if mask is None else mask
    mse = float(mean_squared_error(truth[sel], test[sel]))
    floor = data_range ** 2 * 10 ** (-PSNR_CAP_DB / 10)
    return float(10 * np.log10(data_range ** 2 / max(mse, floor)))


def ssim(truth: np.ndarray, test: np.ndarray, data_range: float,
         mask: np.ndarray | None = None) -> float:
    """Mean structural similarity (2D or 3D), averaged inside ``mask`` when given.

    The window is 7 pixels, shrunk (odd, >= 3) for smaller arrays.
    """
    from skimage.metrics import structural_similarity

    same_shape(truth, test, "truth", "test")
    if not (np.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number (got {data_range!r})")
    win = min(7, min(truth.shape))
    win -= 1 - win % 2
    if win < 3:
        raise ValueError(f"images of shape {truth.shape} are too small for SSIM (need at "
                         "least 3 pixels per axis)")
    _, smap = structural_similarity(truth, test, win_size=win, data_range=data_range,
                                    full=True)
    return float(smap.mean() if mask is None else smap[mask].mean())


def mae(truth: np.ndarray, test: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean absolute error, optionally masked."""
    same_shape(truth, test, "truth", "test")
    sel = (slice(None),) if mask is None else mask
    return float(np.mean(np.abs(truth[sel] - test[sel])))


def wrapped_phase_difference(test: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Phase of ``test`` minus phase of ``truth``, wrapped to (-π, π]."""
    return np.angle(test * np.conj(truth))


def nrmse(reconstruction: Any, truth: Any, mask: Any = None, phase: bool = True) -> float:
    """Normalised RMS error of a complex object, ``||x·e^{iφ} − t|| / ||t||``.

    Parameters
    ----------
    reconstruction, truth : array_like, complex, same shape
        Already translated into register (see :func:`~napari_ptycho.metrics.register`).
    mask : ndarray of bool, optional
        Region to score.
    phase : bool
        Use the optimal global phase ``φ = arg <x, t>`` (PMACE's definition); with
        ``False`` the arrays are compared as they are.
    """
    x = as_complex_array(reconstruction, "reconstruction")
    t = as_complex_array(truth, "truth")
    same_shape(x, t, "reconstruction", "truth")
    m = as_mask(mask, t.shape)
    sel = (slice(None),) if m is None else m
    x, t = x[sel], t[sel]
    norm = np.linalg.norm(t)
    if norm == 0:
        raise ValueError("truth is zero everywhere in the scored region; NRMSE is undefined")
    if phase:
        inner = np.vdot(x, t)
        if inner != 0:
            x = x * (inner / abs(inner))
    return float(np.linalg.norm(x - t) / norm)


def _intensity_pair(estimate: Any, measured: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    est = as_real_array(estimate, "estimate", nonnegative=True)
    meas = as_real_array(measured, "measured", nonnegative=True)
    same_shape(est, meas, "estimate", "measured")
    m = as_mask(mask, meas.shape)
    if m is not None:
        est, meas = est[m], meas[m]
    return est.ravel(), meas.ravel()


def chi2(estimate: Any, measured: Any, mask: Any = None) -> float:
    """Amplitude misfit ``Σ(√I_est − √I_meas)² / Σ I_meas`` (0 for exact data).

    Parameters
    ----------
    estimate, measured : array_like, real, >= 0, same shape
        Model and measured intensities.
    mask : ndarray of bool, optional
        Pixels to include (e.g. valid detector pixels).
    """
    est, meas = _intensity_pair(estimate, measured, mask)
    total = meas.sum()
    if total <= 0:
        raise ValueError("measured holds no counts in the selected pixels; χ² is undefined")
    return float(np.sum((np.sqrt(est) - np.sqrt(meas)) ** 2) / total)


def poisson_nll(estimate: Any, measured: Any, mask: Any = None, *,
                constant: bool = True, floor: float = 1e-12) -> float:
    """Poisson negative log-likelihood per pixel.

    ``L = mean(I_est − I_meas·log I_est + log Γ(I_meas + 1))``: the exact −log P of the
    counts, minimal at ``I_est = I_meas``. The ``log Γ`` term (Stirling's constant for
    large counts) does not depend on the model; ``constant=False`` drops it, which only
    shifts every value by the same amount for a given data set.

    Parameters
    ----------
    estimate, measured : array_like, real, >= 0, same shape
        Model intensities and measured counts.
    mask : ndarray of bool, optional
        Pixels to include.
    constant : bool
        Include ``log Γ(I_meas + 1)``.
    floor : float
        Model intensities are clipped to at least this, so zero model intensity with
        non-zero counts gives a large, finite value.
    """
    est, meas = _intensity_pair(estimate, measured, mask)
    if not (np.isfinite(floor) and floor > 0):
        raise ValueError(f"floor must be a positive number (got {floor!r})")
    est = np.maximum(est, floor)
    nll = est - meas * np.log(est)
    if constant:
        from scipy.special import gammaln

        nll = nll + gammaln(meas + 1.0)
    return float(np.mean(nll))


def free_poisson_nll(estimate: Any, measured: Any, free_mask: Any, *,
                     constant: bool = True) -> float:
    """Poisson NLL on the held-out ("free") pixels only, the analogue of R-free.

    Parameters
    ----------
    estimate, measured : array_like, real, >= 0, same shape
        Model intensities and measured counts.
    free_mask : ndarray of bool
        Pixels excluded from the fit; must select some but not all pixels.
    """
    meas = as_real_array(measured, "measured", nonnegative=True)
    m = as_mask(free_mask, meas.shape, name="free_mask")
    if m is None:
        raise ValueError("free_mask is required for the free log-likelihood")
    if m.all():
        raise ValueError("free_mask selects every pixel; it must hold some out of the fit")
    return poisson_nll(estimate, meas, m, constant=constant)
