"""TIFF stacks in (Bragg volumes, or scans with a positions side-car) and TIFF out.

Export writes float32 ImageJ hyperstacks that Fiji and tifffile both understand: the
pixel size goes into the resolution tags and the ImageJ ``unit``/``spacing`` metadata.
Complex images become two channels, amplitude then phase (radians), so nothing of the
reconstruction is lost while every viewer can show them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.io import _common as c

_SIDECARS = ("_positions.csv", "_positions.txt", "_positions.npy")
#: napari/pint unit names -> ImageJ unit strings
IMAGEJ_UNITS = {"micrometer": "um", "micron": "um", "µm": "um", "um": "um",
                "nanometer": "nm", "nm": "nm", "millimeter": "mm", "mm": "mm",
                "meter": "m", "m": "m", "pixel": "pixel", "px": "pixel"}


def _sidecar(path: Path) -> Path | None:
    for suffix in _SIDECARS:
        cand = path.with_name(path.stem + suffix)
        if cand.exists():
            return cand
    return None


def _read_positions(path: Path, n: int) -> np.ndarray:
    try:
        if path.suffix == ".npy":
            pos = np.load(path, allow_pickle=False)
        else:
            pos = np.loadtxt(path, delimiter="," if path.suffix == ".csv" else None, ndmin=2)
    except (OSError, ValueError) as exc:
        raise c.fail(path, f"positions side-car cannot be read: {exc}") from None
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 2:
        raise c.fail(path, f"positions must be N rows of (row, col); got {pos.shape}")
    if len(pos) != n:
        raise c.fail(path, f"{n} diffraction patterns but {len(pos)} positions")
    return pos


def read_tiff(path: str | Path, *, amplitudes: bool = False,
              margin: float = c.DEFAULT_MARGIN) -> PtychoData | BraggData:
    """Read a 3D TIFF stack.

    With a side-car ``<stem>_positions.csv|txt|npy`` (rows of ``row, col`` in object
    pixels) it is a ptychography scan; otherwise a Bragg CDI volume.

    Parameters
    ----------
    path : str or Path
        The TIFF file.
    amplitudes : bool
        The stack holds amplitudes: square them.
    margin : float
        Margin for side-car positions that go below zero.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape, dtype = tuple(series.shape), series.dtype
            c.check_stack(path, shape, dtype, what="TIFF stack", square=False)
            try:
                arr = tifffile.memmap(path)  # lazy when the pixels are stored contiguously
            except ValueError:
                arr = series.asarray()
            ij = tif.imagej_metadata or {}
    except (tifffile.TiffFileError, OSError, IndexError, KeyError) as exc:
        raise c.fail(path, f"not a readable TIFF stack: {exc}") from None
    if tuple(arr.shape) != shape:
        arr = np.asarray(arr).reshape(shape)
    sample = c.sample_frames(arr)
    c.check_counts(path, sample, what="TIFF stack")
    data = np.square(np.asarray(arr, dtype=np.float32)) if amplitudes else arr
    meta = {"source": str(path), "format": "tiff", "name": path.stem,
            "amplitudes_squared": amplitudes, "imagej": {k: v for k, v in ij.items()
                                                         if isinstance(v, (str, int, float))},
            "contrast_sample": list(c.contrast_limits(sample ** 2 if amplitudes else sample))}
    side = _sidecar(path)
    try:
        if side is None:
            return BraggData(data, Geometry(), metadata=meta)
        c.check_stack(path, shape, dtype, what="TIFF stack", square=True)
        pos = _read_positions(side, shape[0])
        if pos.min() < 0:
            pos = c.positions_to_margin(pos, margin)
        return PtychoData(data, pos, Geometry(), metadata={**meta, "positions": str(side)})
    except ValueError as exc:
        raise c.fail(path, str(exc)) from None


def imagej_unit(unit: Any) -> str:
    """ImageJ spelling of a unit name (``micrometer`` -> ``um``)."""
    text = str(unit or "pixel").strip()
    if text not in IMAGEJ_UNITS:
        raise ValueError(f"unit {text!r} is not a length unit TIFF metadata can hold; use one "
                         f"of {sorted(set(IMAGEJ_UNITS.values()))}")
    return IMAGEJ_UNITS[text]


def write_tiff(array: Any, path: str | Path, *, pixel_size: float | None = None,
               unit: str = "pixel", spacing: float | None = None) -> Path:
    """Write an image or stack as a float32 ImageJ TIFF, atomically.

    Parameters
    ----------
    array : array_like, 2D or 3D, real or complex
        Complex data is written as two channels: amplitude, then phase in radians.
    path : str or Path
        Target ``.tif``/``.tiff`` file.
    pixel_size : float, optional
        In-plane pixel size in ``unit`` (resolution tags and ImageJ metadata).
    unit : str
        Length unit of ``pixel_size`` (``um``, ``nm``, ``mm``, ``m``; napari's
        ``micrometer`` etc. are accepted).
    spacing : float, optional
        Slice spacing of a 3D stack, in ``unit``.

    Returns
    -------
    Path
        The written file.
    """
    import tifffile

    arr = np.asarray(array)
    if arr.ndim not in (2, 3):
        raise ValueError(f"array must be 2D or 3D for TIFF export; got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("array is empty; nothing to export")
    if pixel_size is not None and not (np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number (got {pixel_size!r})")
    ij_unit = imagej_unit(unit)
    axes = "ZYX" if arr.ndim == 3 else "YX"
    if np.iscomplexobj(arr):
        arr = np.stack([np.abs(arr), np.angle(arr)], axis=-3)
        axes = axes[:-2] + "CYX"
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    metadata: dict[str, Any] = {"axes": axes, "unit": ij_unit}
    if spacing is not None and arr.ndim >= 3 and "Z" in axes:
        metadata["spacing"] = float(spacing)
    kw: dict[str, Any] = {}
    if pixel_size is not None:
        kw["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
    path = Path(path)
    with c.atomic_write(path) as tmp:
        tifffile.imwrite(tmp, arr, imagej=True, metadata=metadata, **kw)
    return path


def read_tiff_scale(path: str | Path) -> tuple[float | None, str]:
    """Pixel size and unit recorded in a TIFF written by :func:`write_tiff`."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        unit = (tif.imagej_metadata or {}).get("unit", "pixel")
        tag = page.tags.get("XResolution")
        if tag is None:
            return None, unit
        num, den = tag.value
        return (den / num if num else None), unit
