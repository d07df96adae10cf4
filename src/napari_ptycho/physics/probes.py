"""Synthetic X-ray probes: a defocused zone-plate (Airy) probe, a Gaussian probe, and
extra orthogonal incoherent modes.

All probes are complex64 arrays of shape ``(modes, n, n)`` centred in the window. Their
overall scale is arbitrary here (unit total power); the simulator scales the probe so that
the diffraction patterns hold the requested photon count.
"""

from __future__ import annotations

import math

import numpy as np

#: Probe kinds understood by :func:`make_probe`.
PROBE_KINDS: tuple[str, ...] = ("focused", "gaussian")

# half-maximum of the Airy amplitude 2 J1(x) / x is reached at x = 2.2151
_AIRY_HALF_AMPLITUDE_X = 2.2151
#: FWHM of the default-defocused focused probe over its in-focus FWHM. Fresnel scaling
#: makes it independent of size (defocus is set in depths of focus); measured 3.56-3.58
#: for windows of 64-256 pixels.
FOCUSED_WIDENING = 3.57


def _check_size(size: int) -> int:
    if int(size) != size or size < 4:
        raise ValueError(f"probe size must be an integer >= 4 (got {size})")
    return int(size)


def _check_fwhm(fwhm: float, size: int) -> float:
    if not (math.isfinite(fwhm) and 0 < fwhm < size):
        raise ValueError(f"probe fwhm must be in (0, size={size}) pixels (got {fwhm})")
    return float(fwhm)


def focused_probe(size: int, focus_fwhm: float | None = None, defocus: float | None = None,
                  wavelength: float = 1.5498e-10, pixel_size: float = 6.46e-8,
                  pad: int = 4, central_stop: float = 0.0) -> np.ndarray:
    """Probe of a circular lens aperture (zone plate) focused and then defocused.

    The aperture's far field (an Airy pattern) is formed with an FFT on a grid ``pad``
    times larger than the window (so the Airy rings do not wrap around), Fresnel-propagated
    by ``defocus`` with :func:`napari_ptycho.physics.propagation.fresnel_propagate`, and
    cropped to the window. Defocus curves the phase and puts rings into the amplitude.

    Parameters
    ----------
    size : int
        Window side in pixels.
    focus_fwhm : float, optional
        Amplitude FWHM of the in-focus Airy spot in pixels (default ``size / 16``).
    defocus : float, optional
        Propagation distance from the focus in metres. Default: 1.5 depths of focus
        ``1.5 λ / NA²``, which widens the spot about 3.5 times (FWHM ≈ ``size / 4.5``),
        adds bright rings and keeps ~97 % of the power in the central half of the window
        (so far-field patterns are oversampled about twice).
    wavelength : float
        Wavelength in metres (default 8 keV).
    pixel_size : float
        Sample-plane pixel size in metres.
    pad : int
        Oversize factor of the computation grid (>= 1).
    central_stop : float
        Radius of an opaque central stop as a fraction of the aperture radius, in [0, 1)
        (zone plates carry one to block the zero order); it strengthens the rings.

    Returns
    -------
    ndarray, complex64, shape (1, size, size)
        Unit total power.
    """
    import torch

    from napari_ptycho.physics.propagation import fresnel_propagate

    size = _check_size(size)
    fwhm = _check_fwhm(focus_fwhm if focus_fwhm is not None else size / 16, size)
    if int(pad) != pad or pad < 1:
        raise ValueError(f"pad must be an integer >= 1 (got {pad})")
    if not (math.isfinite(central_stop) and 0 <= central_stop < 1):
        raise ValueError(f"central_stop must be in [0, 1) (got {central_stop})")
    for name, v in (("wavelength", wavelength), ("pixel_size", pixel_size)):
        if not (math.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be a positive finite number (got {v})")
    m = size * int(pad)
    radius = _AIRY_HALF_AMPLITUDE_X * m / (math.pi * fwhm)  # pupil radius in pupil pixels
    if radius > m / 2:
        raise ValueError(f"focus_fwhm={fwhm} px is too small to be sampled on a {size} px "
                         "window; use a larger value")
    # anti-aliased (annular) disk: a one-pixel linear ramp at each edge approximates the
    # covered pixel fraction without a memory-hungry supersampled grid
    f = np.fft.fftfreq(m) * m  # pupil pixel coordinates, DC at index 0
    r = np.hypot(f[:, None], f[None, :])
    pupil = np.clip(radius + 0.5 - r, 0.0, 1.0)
    if central_stop > 0:
        pupil *= np.clip(r - central_stop * radius + 0.5, 0.0, 1.0)
    focus = np.fft.fftshift(np.fft.ifft2(pupil, norm="ortho"))
    if defocus is None:
        na_over_lambda = radius / (m * pixel_size)
        defocus = 1.5 / (wavelength * na_over_lambda ** 2)
    if not math.isfinite(defocus):
        raise ValueError(f"defocus must be finite (got {defocus})")
    wave = torch.from_numpy(focus.astype(np.complex64))
    wave = fresnel_propagate(wave, pixel_size, wavelength, float(defocus)).numpy()
    top = (m - size) // 2
    probe = wave[top:top + size, top:top + size]
    return _unit_power(probe[None])


def gaussian_probe(size: int, fwhm: float | None = None) -> np.ndarray:
    """Flat-phase Gaussian probe with amplitude FWHM ``fwhm`` pixels (default ``size / 4``),
    shape (1, size, size), unit total power."""
    size = _check_size(size)
    fwhm = _check_fwhm(fwhm if fwhm is not None else size / 4, size)
    sigma = fwhm / (2 * math.sqrt(2 * math.log(2)))
    c = np.arange(size) - (size - 1) / 2
    r2 = c[:, None] ** 2 + c[None, :] ** 2
    return _unit_power(np.exp(-r2 / (2 * sigma ** 2))[None].astype(np.complex64))


def _unit_power(probe: np.ndarray) -> np.ndarray:
    power = float(np.sum(np.abs(probe) ** 2))
    return (probe / math.sqrt(power)).astype(np.complex64)


def add_incoherent_modes(probe: np.ndarray, n_modes: int, decay: float = 0.5) -> np.ndarray:
    """Extend a single-mode probe with ``n_modes - 1`` extra orthogonal modes.

    Extra modes are the main mode multiplied by low-order polynomials in (y, x) about its
    centroid (Hermite-Gauss-like shapes), made orthonormal by Gram–Schmidt. Mode ``k``
    carries a fraction of the total power proportional to ``decay**k``; the total power of
    the input is kept.

    Parameters
    ----------
    probe : ndarray, complex, shape (1, h, w) or (h, w)
    n_modes : int
        Total number of modes wanted (1..10).
    decay : float
        Power ratio between successive modes, in (0, 1].

    Returns
    -------
    ndarray, complex64, shape (n_modes, h, w)
    """
    p = np.asarray(probe, dtype=np.complex128)
    if p.ndim == 3:
        p = p[0]
    if p.ndim != 2:
        raise ValueError(f"probe must have shape (1, h, w) or (h, w); got {np.shape(probe)}")
    if int(n_modes) != n_modes or not 1 <= n_modes <= 10:
        raise ValueError(f"probe_modes must be an integer in 1..10 (got {n_modes})")
    if not 0 < decay <= 1:
        raise ValueError(f"decay must be in (0, 1] (got {decay})")
    total = float(np.sum(np.abs(p) ** 2))
    h, w = p.shape
    weight = np.abs(p) ** 2 / total
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    cy, cx = float((weight * y).sum()), float((weight * x).sum())
    s = math.sqrt(float((weight * ((y - cy) ** 2 + (x - cx) ** 2)).sum())) or 1.0
    y, x = (y - cy) / s, (x - cx) / s
    shapes = [np.ones_like(x), x, y, x * y, x ** 2 - y ** 2, x ** 2 + y ** 2 - 2,
              x ** 3, y ** 3, x ** 2 * y, x * y ** 2]
    basis: list[np.ndarray] = []
    for poly in shapes:
        v = p * poly
        for b in basis:
            v = v - np.vdot(b, v) * b
        norm = np.linalg.norm(v)
        if norm > 1e-8 * math.sqrt(total):
            basis.append(v / norm)
        if len(basis) == n_modes:
            break
    powers = np.array([decay ** k for k in range(len(basis))])
    powers *= total / powers.sum()
    return np.stack([b * math.sqrt(pw) for b, pw in zip(basis, powers, strict=True)]
                    ).astype(np.complex64)


def probe_fwhm(probe: np.ndarray) -> float:
    """Probe diameter in pixels: the FWHM of the (mode-summed) amplitude.

    Defined as the diameter of the disk whose area equals the area where the amplitude is
    at least half its maximum; for a round beam this is the FWHM of a line profile, and it
    stays meaningful for a ringed, defocused beam whose profile is not monotonic.
    """
    p = np.asarray(probe)
    if p.ndim == 2:
        p = p[None]
    if p.ndim != 3 or p.shape[-1] < 2 or p.shape[-2] < 2:
        raise ValueError(f"probe must have shape (modes, h, w) or (h, w); got {np.shape(probe)}")
    amplitude = np.sqrt(np.sum(np.abs(p) ** 2, axis=0))
    peak = float(amplitude.max())
    if not peak > 0:
        raise ValueError("probe is zero everywhere; its FWHM is undefined")
    area = float(np.count_nonzero(amplitude >= 0.5 * peak))
    return 2.0 * math.sqrt(area / math.pi)


def make_probe(kind: str = "focused", size: int = 64, modes: int = 1,
               fwhm: float | None = None, **kwargs: float) -> np.ndarray:
    """Probe of ``kind`` ("focused" or "gaussian") with ``modes`` incoherent modes,
    complex64 (modes, size, size) with unit total power.

    ``fwhm`` (pixels) sets the amplitude FWHM of the result: directly for the Gaussian;
    for the focused probe through its in-focus spot (about ``fwhm / FOCUSED_WIDENING`` at
    the default defocus, corrected by up to three re-measurements). A ringed beam's FWHM
    jumps when a ring crosses half maximum, so the focused result is within ~2 % above
    10 px and within ~6 % for 5–10 px. Other ``kwargs`` go to :func:`focused_probe` or
    :func:`gaussian_probe`.
    """
    if kind not in PROBE_KINDS:
        raise ValueError(f"probe kind {kind!r} is unknown; choose one of {PROBE_KINDS}")
    if fwhm is not None:
        if not (isinstance(fwhm, (int, float, np.number)) and math.isfinite(fwhm)
                and 0 < fwhm < size):
            raise ValueError(f"probe fwhm must be in (0, size={size}) pixels (got {fwhm!r})")
        if kind == "gaussian":
            kwargs["fwhm"] = float(fwhm)
    if kind == "gaussian":
        base = gaussian_probe(size, **kwargs)
    elif fwhm is None:
        base = focused_probe(size, **kwargs)
    else:
        # the area-based FWHM of a small ringed beam moves in pixel steps, so correct the
        # in-focus spot a few times and keep the closest result
        # the in-focus Airy spot needs a pupil that fits the computation grid
        min_focus = 2 * _AIRY_HALF_AMPLITUDE_X / math.pi * 1.01
        if fwhm < min_focus * FOCUSED_WIDENING:
            raise ValueError(f"probe fwhm={fwhm} px is too small for a focused probe (minimum "
                             f"{min_focus * FOCUSED_WIDENING:.1f} px); use probe='gaussian'")
        focus = float(fwhm) / FOCUSED_WIDENING
        best, best_err = None, math.inf
        for _ in range(4):
            candidate = focused_probe(size, focus_fwhm=focus, **kwargs)
            got = probe_fwhm(candidate)
            if abs(got - fwhm) < best_err:
                best, best_err = candidate, abs(got - fwhm)
            if best_err <= 0.01 * fwhm:
                break
            focus = max(focus * fwhm / got, min_focus)
        base = best
    return add_incoherent_modes(base, modes) if modes != 1 else base
