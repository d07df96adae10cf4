"""Quality metrics for ptychography and Bragg CDI reconstructions (numpy only, no torch).

* :func:`evaluate` — every image score of a reconstruction against the truth, as a dict of
  floats, after registration (sub-pixel shift, global phase, optional scale / phase ramp,
  3D twin).
* :func:`frc` — Fourier ring / shell correlation with half-bit and 1/7 thresholds.
* :func:`chi2`, :func:`poisson_nll`, :func:`free_poisson_nll`, :func:`fit_metrics` — fit
  of model intensities to measured data.
* :func:`register`, :func:`scanned_region` — the building blocks.
"""

from __future__ import annotations

from napari_ptycho.metrics.evaluation import evaluate, fit_metrics
from napari_ptycho.metrics.frc import ONE_SEVENTH, frc, frc_crossing, halfbit_threshold
from napari_ptycho.metrics.region import illuminated_region, region_mask, scanned_region
from napari_ptycho.metrics.registration import (
    Registration,
    apply_shift,
    estimate_shift,
    global_phase_and_scale,
    register,
    remove_phase_ramp,
)
from napari_ptycho.metrics.scores import (
    PSNR_CAP_DB,
    chi2,
    free_poisson_nll,
    mae,
    nrmse,
    poisson_nll,
    psnr,
    ssim,
    wrapped_phase_difference,
)

__all__ = [
    "ONE_SEVENTH", "PSNR_CAP_DB", "Registration", "apply_shift", "chi2", "estimate_shift",
    "evaluate", "fit_metrics", "free_poisson_nll", "frc", "frc_crossing",
    "global_phase_and_scale", "halfbit_threshold", "mae", "nrmse", "poisson_nll", "psnr",
    "illuminated_region", "region_mask", "register", "remove_phase_ramp", "scanned_region", "ssim",
    "wrapped_phase_difference",
]
