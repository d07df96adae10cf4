"""NumPy files: PtychoPINN and Tike ``.npz`` scans, ``.npy`` Bragg volumes.

Both are read with ``allow_pickle=False``: a file that needs unpickling is refused.

* PtychoPINN: ``diffraction`` (or ``diff3d``) holds *amplitudes* (we square them);
  ``xcoords``/``ycoords`` are probe-window *centres* (we convert to corners); optional
  ``probeGuess`` and ``objectGuess``.
* Tike: ``data`` intensities with DC at the array *corner* (we ``fftshift`` to our
  DC-centred convention), ``scan`` corners ``(row, col)``, ``probe`` ``(1, 1, M, h, w)``,
  ``psi`` the object used to simulate (kept as the ground truth).
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.io import _common as c


def _open_npz(path: Any) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise c.fail(path, f"not a readable .npz archive: {exc}") from None


def _get(path: Any, npz: Any, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise c.fail(path, f"array {key!r} cannot be read without unpickling ({exc})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise c.fail(path, f"array {key!r} is corrupt: {exc}") from None


def _counts(path: Any, arr: np.ndarray, what: str, square: bool = True) -> np.ndarray:
    c.check_stack(path, arr.shape, arr.dtype, what=what, square=square)
    c.check_counts(path, np.asarray(arr, dtype=np.float64), what=what)
    return arr


def _probe(path: Any, value: np.ndarray | None, frame: tuple[int, int]) -> np.ndarray | None:
    if value is None:
        return None
    probe = np.asarray(value)
    probe = probe.reshape((-1,) + probe.shape[-2:]) if probe.ndim >= 2 else probe
    if probe.ndim != 3 or probe.shape[-2] > frame[0] or probe.shape[-1] > frame[1]:
        raise c.fail(path, f"probe of shape {np.shape(value)} does not fit frames {frame}")
    return probe.astype(np.complex64)


def read_npz(path: str | Path, *, margin: float = c.DEFAULT_MARGIN) -> PtychoData:
    """Read a PtychoPINN or Tike ``.npz`` scan.

    Parameters
    ----------
    path : str or Path
        The archive.
    margin : float
        Used only when the file's positions go below zero: they are shifted to this margin.
    """
    with _open_npz(path) as npz:
        keys = set(npz.files)
        meta: dict[str, Any] = {"source": str(path), "name": Path(str(path)).stem}
        if keys & {"diffraction", "diff3d"}:
            key = "diffraction" if "diffraction" in keys else "diff3d"
            amp = _counts(path, _get(path, npz, key), key)
            intensity = np.square(amp.astype(np.float32))
            if not {"xcoords", "ycoords"} <= keys:
                raise c.fail(path, "PtychoPINN file without xcoords/ycoords positions")
            x = _get(path, npz, "xcoords").astype(np.float64).ravel()
            y = _get(path, npz, "ycoords").astype(np.float64).ravel()
            probe = _probe(path, _get(path, npz, "probeGuess") if "probeGuess" in keys
                           else None, intensity.shape[1:])
            window = probe.shape[-2:] if probe is not None else intensity.shape[1:]
            if x.shape != y.shape:
                raise c.fail(path, "xcoords and ycoords differ in length")
            corners = np.stack([y - window[0] / 2, x - window[1] / 2], axis=1)
            truth = _get(path, npz, "objectGuess") if "objectGuess" in keys else None
            truth_probe = None
            meta.update(format="ptychopinn-npz", amplitudes_squared=True)
        elif {"data", "scan"} <= keys:
            raw = _counts(path, _get(path, npz, "data"), "data")
            intensity = np.fft.fftshift(raw.astype(np.float32), axes=(-2, -1))
            scan = _get(path, npz, "scan").astype(np.float64)
            corners = scan.reshape(-1, scan.shape[-1]) if scan.ndim >= 2 else scan
            probe = _probe(path, _get(path, npz, "probe") if "probe" in keys else None,
                           intensity.shape[1:])
            truth = _get(path, npz, "psi") if "psi" in keys else None
            truth_probe = probe  # Tike's test set simulates with exactly this probe
            meta.update(format="tike-npz")
        else:
            raise c.fail(path, f"unknown .npz layout (keys {sorted(keys)[:8]}); expected "
                         "PtychoPINN (diffraction, xcoords, ycoords) or Tike (data, scan)")
    if corners.ndim != 2 or corners.shape[1] != 2:
        raise c.fail(path, f"positions must be (N, 2); got {corners.shape}")
    if len(corners) != len(intensity):
        raise c.fail(path, f"{len(intensity)} diffraction patterns but {len(corners)} "
                     "positions")
    if not np.all(np.isfinite(corners)):
        raise c.fail(path, "positions contain NaN or infinite values")
    if corners.min() < 0:
        meta["positions_shifted_by"] = (-corners.min(axis=0) + margin).tolist()
        corners = c.positions_to_margin(corners, margin)
        truth = None  # the object frame no longer matches the shifted positions
    if truth is not None:
        truth = np.asarray(truth).astype(np.complex64)
        truth = truth.reshape(truth.shape[-2:]) if truth.ndim == 3 and truth.shape[0] == 1 \
            else truth
        if truth.ndim != 2:
            truth = None
    meta["contrast_sample"] = list(c.contrast_limits(intensity[:3]))
    try:
        return PtychoData(intensity, corners, Geometry(), probe=probe, metadata=meta,
                          truth_object=truth, truth_probe=truth_probe,
                          object_shape=truth.shape if truth is not None else None)
    except ValueError as exc:
        raise c.fail(path, str(exc)) from None


def read_npy_volume(path: str | Path, *, amplitudes: bool = False) -> BraggData:
    """Read a 3D ``.npy`` Bragg volume (memory-mapped, never unpickled).

    Parameters
    ----------
    path : str or Path
        The ``.npy`` file.
    amplitudes : bool
        The file holds amplitudes (e.g. 3D-CDI-NN's ``ft_crop_64.npy``): square them.
    """
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise c.fail(path, f"not a readable .npy array: {exc}") from None
    c.check_stack(path, arr.shape, arr.dtype, what="volume", square=False)
    sample = c.sample_frames(arr)
    c.check_counts(path, sample, what="volume")
    volume = np.square(np.asarray(arr, dtype=np.float32)) if amplitudes else arr
    meta = {"source": str(path), "format": "npy", "name": Path(str(path)).stem,
            "amplitudes_squared": amplitudes,
            "contrast_sample": list(c.contrast_limits(sample ** 2 if amplitudes else sample))}
    try:
        return BraggData(volume, Geometry(), metadata=meta)
    except ValueError as exc:
        raise c.fail(path, str(exc)) from None
