"""Pre- and post-processing for 3D Bragg CDI (numpy only, no torch, no Qt).

Before phase retrieval: find the Bragg peak, crop a window around it, bin to a target
oversampling, build masks (:func:`prepare` does all of it). After: centre the crystal,
remove the linear phase ramp (a peak off the array centre), resolve the twin, unwrap
the phase and compute a strain map.

Strain convention: the reconstructed phase is ``φ(r) = q · u(r)`` (Robinson & Harder
2009) with ``q`` the scattering vector (``|q| = 2π/d``) and ``u`` the displacement, so
the strain along ``q̂`` is ``ε = (∂φ/∂r_q) / |q|`` with ``r_q = r · q̂``. The twin
(``conj(ρ(−r))``) flips the sign of φ and hence of ε: resolve the twin first.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np


def _volume(x: Any, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 3:
        raise ValueError(f"{name} must be a 3D volume (D, H, W); got shape {arr.shape}")
    return arr


def _triple(v: Any, name: str) -> tuple[int, int, int]:
    t = (v, v, v) if np.isscalar(v) else tuple(v)
    if len(t) != 3 or any(int(x) != x or x < 1 for x in t):
        raise ValueError(f"{name} must be a positive integer or three of them (got {v!r})")
    return tuple(int(x) for x in t)  # type: ignore[return-value]


def find_peak(intensity: Any, mask: Any = None) -> tuple[int, int, int]:
    """Index of the strongest valid voxel (the Bragg peak)."""
    arr = _volume(intensity, "intensity").astype(np.float64)
    if mask is not None:
        arr = np.where(np.asarray(mask, bool), arr, -np.inf)
    arr = np.where(np.isfinite(arr), arr, -np.inf)
    if not np.any(arr > 0):
        raise ValueError("intensity has no positive valid voxel: no Bragg peak to find")
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(arr)), arr.shape))


def estimate_oversampling(intensity: Any, threshold: float = 0.05) -> tuple[float, ...]:
    """Oversampling ratio per axis from the extent of the autocorrelation ``|IFFT(I)|``.

    The autocorrelation of an object of extent ``s`` spans ``2s − 1`` voxels, so the
    ratio is ``N / s ≈ 2N / (extent + 1)``.
    """
    arr = _volume(intensity, "intensity").astype(np.float64)
    auto = np.abs(np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(arr))))
    above = auto > threshold * auto.max()
    out = []
    for axis, n in enumerate(arr.shape):
        idx = np.nonzero(above.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        out.append(2.0 * n / (idx[-1] - idx[0] + 2))
    return tuple(out)


def crop_around_peak(intensity: Any, size: Any, mask: Any = None, peak: Any = None,
                     edge_margin: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Cut a window of ``size`` voxels with the Bragg peak at its centre (``size // 2``).

    Parts of the window outside the array are zero-filled and marked invalid in the
    returned mask.

    Parameters
    ----------
    intensity : array_like, shape (D, H, W)
    size : int or tuple of 3 int
    mask : array_like of bool, optional
        ``True`` where voxels are valid.
    peak : tuple of 3 int, optional
        Peak position; the strongest valid voxel by default.
    edge_margin : int
        A peak closer than this to the border is refused: the pattern is cut off there.

    Returns
    -------
    (ndarray, ndarray)
        The cropped float32 intensity and its bool validity mask.
    """
    arr = _volume(intensity, "intensity")
    size = _triple(size, "size")
    valid = np.ones(arr.shape, bool) if mask is None else np.asarray(mask, bool)
    if valid.shape != arr.shape:
        raise ValueError(f"mask shape {valid.shape} does not match intensity {arr.shape}")
    peak = find_peak(arr, valid) if peak is None else tuple(int(p) for p in peak)
    for axis, (p, n) in enumerate(zip(peak, arr.shape, strict=True)):
        if p < edge_margin or p > n - 1 - edge_margin:
            raise ValueError(f"the Bragg peak {peak} is at the edge of the array (axis {axis},"
                             f" size {n}): the pattern is cut off; measure or select a volume "
                             "with the peak inside")
    out = np.zeros(size, np.float32)
    out_valid = np.zeros(size, bool)
    src, dst = [], []
    for p, n, s in zip(peak, arr.shape, size, strict=True):
        lo = p - s // 2
        a, b = max(lo, 0), min(lo + s, n)
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = arr[tuple(src)]
    out_valid[tuple(dst)] = valid[tuple(src)]
    return out, out_valid


def bin_volume(intensity: Any, factors: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Sum-bin by integer ``factors`` (detector binning); a bin with any invalid voxel is
    invalid. The shape must be a multiple of the factors."""
    from skimage.measure import block_reduce

    arr = _volume(intensity, "intensity").astype(np.float32)
    factors = _triple(factors, "factors")
    if any(n % f for n, f in zip(arr.shape, factors, strict=True)):
        raise ValueError(f"volume shape {arr.shape} is not a multiple of factors {factors}")
    valid = np.ones(arr.shape, bool) if mask is None else np.asarray(mask, bool)
    binned = block_reduce(np.where(valid, arr, 0), factors, np.sum).astype(np.float32)
    return binned, block_reduce(valid, factors, np.min).astype(bool)


def prepare(data: Any, size: Any = 64, target_oversampling: float = 3.0) -> Any:
    """Crop around the peak and bin so that the result has ``size`` voxels per axis and an
    oversampling near ``target_oversampling`` (never below it when binning).

    Parameters
    ----------
    data : BraggData
        The measured volume (oversampling used when set, else estimated).
    size : int or tuple of 3 int
        Output shape (e.g. 32 or 64).
    target_oversampling : float
        Desired oversampling ratio (≥ 2 for phase retrieval; ≈ 3 is comfortable).

    Returns
    -------
    BraggData
        New volume, peak at ``size // 2``, mask, oversampling and provenance in metadata.
    """
    if not target_oversampling >= 2:
        raise ValueError(f"target_oversampling must be >= 2 (got {target_oversampling})")
    size = _triple(size, "size")
    if min(size) < 8:
        raise ValueError(f"size must be at least 8 voxels per axis (got {size})")
    arr = _volume(data.intensities(), "intensity")
    os_in = data.oversampling or estimate_oversampling(arr)
    factors = tuple(max(1, math.floor(o / target_oversampling)) for o in os_in)
    window = tuple(s * f for s, f in zip(size, factors, strict=True))
    cropped, valid = crop_around_peak(arr, window, data.mask)
    binned, valid = bin_volume(cropped, factors, valid)
    os_out = tuple(float(o) / f for o, f in zip(os_in, factors, strict=True))
    meta = {**data.metadata, "preprocess": {"size": list(size), "bin": list(factors),
                                            "oversampling_in": [float(o) for o in os_in]}}
    return replace(data, intensity=binned, mask=None if valid.all() else valid,
                   oversampling=os_out, metadata=meta, truth_object=None)


# ----------------------------------------------------------------------------- post


def center_object(obj: Any, support: Any = None) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Roll the volume so that the amplitude's centre of mass sits at the array centre.

    Returns
    -------
    (ndarray, tuple of int)
        The rolled object and the roll applied (apply it to the support with ``np.roll``).
    """
    arr = _volume(obj, "obj")
    weight = np.abs(arr) if support is None else np.abs(arr) * np.asarray(support, bool)
    if not weight.sum() > 0:
        raise ValueError("cannot centre an empty object (zero amplitude inside the support)")
    grids = np.indices(arr.shape, sparse=True)
    com = [float((weight * g).sum() / weight.sum()) for g in grids]
    shift = tuple(int(round(n // 2 - c)) for n, c in zip(arr.shape, com, strict=True))
    return np.roll(arr, shift, axis=(0, 1, 2)), shift  # type: ignore[return-value]


def phase_gradient(obj: Any, support: Any = None) -> np.ndarray:
    """Amplitude-weighted mean phase gradient (rad/voxel per axis), wrap-safe: it averages
    neighbour products ``ρ[i+1] conj(ρ[i])`` instead of differencing wrapped phases."""
    arr = _volume(obj, "obj").astype(np.complex128)
    if support is not None:
        arr = arr * np.asarray(support, bool)
    grad = []
    for axis in range(3):
        a = np.take(arr, np.arange(1, arr.shape[axis]), axis=axis)
        b = np.take(arr, np.arange(arr.shape[axis] - 1), axis=axis)
        grad.append(float(np.angle(np.sum(a * np.conj(b)))))
    return np.asarray(grad)


def remove_phase_ramp(obj: Any, support: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Remove the linear phase ramp and the mean phase inside the support.

    Returns
    -------
    (ndarray, ndarray)
        The corrected complex64 object and the removed gradient (rad/voxel per axis).
    """
    arr = _volume(obj, "obj")
    grad = phase_gradient(arr, support)
    ramp = sum(g * np.arange(n).reshape([-1 if a == i else 1 for a in range(3)])
               for i, (g, n) in enumerate(zip(grad, arr.shape, strict=True)))
    out = arr * np.exp(-1j * ramp)
    sel = out if support is None else out * np.asarray(support, bool)
    out = out * np.exp(-1j * np.angle(np.sum(sel)))
    return out.astype(np.complex64), grad


def twin(obj: Any) -> np.ndarray:
    """The conjugate-inverted twin ``conj(ρ(−r))``: it has exactly the same |FFT|."""
    arr = _volume(obj, "obj")
    return np.conj(np.roll(arr[::-1, ::-1, ::-1], 1, axis=(0, 1, 2)))


def _best_correlation(a: np.ndarray, ref: np.ndarray) -> float:
    """max over circular shifts of |Σ a(r + s) conj(ref(r))| / (‖a‖‖ref‖)."""
    cc = np.fft.ifftn(np.fft.fftn(a) * np.conj(np.fft.fftn(ref)))
    return float(np.abs(cc).max() / (np.linalg.norm(a) * np.linalg.norm(ref) + 1e-30))


def resolve_twin(obj: Any, reference: Any) -> tuple[np.ndarray, bool]:
    """Pick the orientation (object or its twin) that matches ``reference`` better.

    The match is the complex cross-correlation maximum over shifts, so global phase and
    translation do not matter; it uses the phase too, which tells apart twins of a
    centro-symmetric shape.

    Returns
    -------
    (ndarray, bool)
        The chosen orientation and whether it is the twin.
    """
    arr = _volume(obj, "obj")
    ref = _volume(reference, "reference")
    if ref.shape != arr.shape:
        raise ValueError(f"reference shape {ref.shape} does not match obj {arr.shape}")
    tw = twin(arr)
    flipped = _best_correlation(tw, ref) > _best_correlation(arr, ref)
    return (tw if flipped else arr), bool(flipped)


def unwrap_phase(obj: Any, support: Any) -> np.ndarray:
    """Unwrapped phase inside the support (scikit-image), 0 outside."""
    from skimage.restoration import unwrap_phase as _unwrap

    arr = _volume(obj, "obj")
    sup = np.asarray(support, bool)
    if sup.shape != arr.shape:
        raise ValueError(f"support shape {sup.shape} does not match obj {arr.shape}")
    if not sup.any():
        raise ValueError("support is empty: nothing to unwrap")
    wrapped = np.ma.masked_array(np.angle(arr), mask=~sup)
    return np.ma.filled(_unwrap(wrapped), 0.0).astype(np.float32)


def strain_map(obj: Any, q_direction: Any = (1.0, 0.0, 0.0), support: Any = None,
               voxel_size: float = 1.0, q_magnitude: float | None = None) -> np.ndarray:
    """Strain along ``q̂``: ``ε = (∂φ/∂r_q) / |q|`` (module docstring for the sign).

    Parameters
    ----------
    obj : array_like, complex, shape (D, H, W)
    q_direction : tuple of 3 float
        Scattering vector direction in array axes (normalised here).
    support : array_like of bool, optional
        Voxels outside are 0 and do not feed the gradient; voxels inside without a
        neighbour along an axis that ``q̂`` needs (one-voxel-thin parts) are NaN.
    voxel_size : float
        Real-space voxel size (same length unit as ``1/q_magnitude``).
    q_magnitude : float, optional
        ``|q| = 2π/d``; without it the phase gradient along ``q̂`` (rad per length
        unit) is returned instead of the strain.
    """
    arr = _volume(obj, "obj").astype(np.complex128)
    q = np.asarray(q_direction, float)
    if q.shape != (3,) or not np.linalg.norm(q) > 0:
        raise ValueError(f"q_direction must be 3 numbers, not all zero (got {q_direction!r})")
    if not voxel_size > 0 or (q_magnitude is not None and not q_magnitude > 0):
        raise ValueError("voxel_size and q_magnitude must be positive")
    q = q / np.linalg.norm(q)
    sup = np.ones(arr.shape, bool) if support is None else np.asarray(support, bool)
    arr = arr * sup
    grad = np.zeros(arr.shape)
    defined = sup.copy()
    for axis in range(3):
        if q[axis] == 0:
            continue
        fwd, back = np.roll(arr, -1, axis), np.roll(arr, 1, axis)
        has_f, has_b = np.roll(sup, -1, axis) & sup, np.roll(sup, 1, axis) & sup
        # central difference of the phase from neighbour products: no unwrapping needed;
        # one-sided at the support border, undefined where both neighbours are missing
        d = np.where(has_f & has_b, np.angle(fwd * np.conj(back)) / 2,
                     np.where(has_f, np.angle(fwd * np.conj(arr)),
                              np.angle(arr * np.conj(back))))
        grad += q[axis] * np.where(has_f | has_b, d, 0.0)
        defined &= has_f | has_b
    grad /= voxel_size
    if q_magnitude is not None:
        grad /= q_magnitude
    return np.where(defined, grad, np.where(sup, np.nan, 0.0)).astype(np.float32)


def isosurface(amplitude: Any, phase: Any, level: float = 0.3
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Isosurface of the amplitude at ``level`` × max, vertices coloured by the phase.

    Returns
    -------
    (verts, faces, values)
        napari Surface data: float32 vertices (voxel units), int faces, and the phase of
        the nearest voxel for each vertex. Empty arrays when nothing crosses the level.
    """
    from skimage.measure import marching_cubes

    amp = _volume(amplitude, "amplitude").astype(np.float32)
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1) (got {level})")
    top = float(amp.max()) if amp.size else 0.0
    if not top > 0:
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), int), np.zeros(0, np.float32)
    # pad so that crystals touching the border still give closed surfaces
    verts, faces, _, _ = marching_cubes(np.pad(amp, 1), level * top)
    verts = (verts - 1).astype(np.float32)
    idx = np.clip(np.rint(verts).astype(int), 0, np.array(amp.shape) - 1)
    values = np.asarray(phase, np.float32)[idx[:, 0], idx[:, 1], idx[:, 2]]
    return verts, faces.astype(int), values


def postprocess(obj: Any, support: Any = None, q_direction: Any = (1.0, 0.0, 0.0),
                reference: Any = None, unwrap: bool = False, voxel_size: float = 1.0,
                q_magnitude: float | None = None, iso_level: float = 0.3) -> dict[str, Any]:
    """Everything a viewer shows for one reconstruction.

    Resolves the twin against ``reference`` (when given), centres the crystal, removes the
    phase ramp, optionally unwraps the phase, and computes the strain and the isosurface.

    Returns
    -------
    dict
        ``object`` (processed complex), ``support``, ``amplitude``, ``phase`` (0 outside
        the support), ``strain`` (NaN-free: 0 where undefined), ``surface``
        ``(verts, faces, values)`` and ``twin_flipped``.
    """
    arr = _volume(obj, "obj").astype(np.complex64)
    sup = (np.abs(arr) > 0.1 * np.abs(arr).max()) if support is None else np.asarray(
        support, bool)
    if sup.shape != arr.shape:
        raise ValueError(f"support shape {sup.shape} does not match obj {arr.shape}")
    flipped = False
    if reference is not None:
        arr, flipped = resolve_twin(arr, reference)
        if flipped:
            sup = twin(sup.astype(np.complex64)).real > 0.5
    if not sup.any():
        sup = np.abs(arr) > 0.1 * np.abs(arr).max()
    arr, shift = center_object(arr, sup)
    sup = np.roll(sup, shift, axis=(0, 1, 2))
    arr, _ = remove_phase_ramp(arr, sup)
    phase = unwrap_phase(arr, sup) if unwrap else np.where(sup, np.angle(arr), 0.0)
    amplitude = np.abs(arr).astype(np.float32)
    strain = strain_map(arr, q_direction, sup, voxel_size, q_magnitude)
    return {"object": arr, "support": sup, "amplitude": amplitude,
            "phase": phase.astype(np.float32), "strain": np.nan_to_num(strain),
            "surface": isosurface(amplitude, phase, iso_level), "twin_flipped": flipped}
