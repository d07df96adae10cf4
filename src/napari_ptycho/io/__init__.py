"""Scan and result files: ``load``, ``save`` and ``load_result`` (no Qt, no napari).

=========================  =====================================================
File                       Reads as
=========================  =====================================================
``.cxi``                   :class:`PtychoData` (CXI standard, lazy)
``.h5 .hdf5 .nxs .nx5``    CXI layout, generic HDF5/NeXus scan, or Bragg volume
``.npz``                   PtychoPINN or Tike scan
``.npy``                   3D Bragg volume
``.tif .tiff``             3D Bragg volume, or a scan with a positions side-car
=========================  =====================================================

Every failure is a ``ValueError`` (:class:`FileFormatError`) that names the file and
says what is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from napari_ptycho.io._common import FileFormatError, atomic_write

HDF5_SUFFIXES = (".cxi", ".h5", ".hdf5", ".nxs", ".nx5")
SUFFIXES = HDF5_SUFFIXES + (".npz", ".npy", ".tif", ".tiff")

__all__ = ["FileFormatError", "HDF5_SUFFIXES", "SUFFIXES", "atomic_write", "is_result_file",
           "load", "load_result", "save"]


def _check_path(path: Any) -> Path:
    if not isinstance(path, (str, Path)):
        raise ValueError(f"path must be a str or Path (got {type(path).__name__})")
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"path {str(p)!r} is not an existing file")
    if p.suffix.lower() not in SUFFIXES:
        raise ValueError(f"path {p.name!r}: unsupported extension {p.suffix!r}; napari-ptycho "
                         f"reads {', '.join(SUFFIXES)}")
    return p


def is_result_file(path: str | Path) -> bool:
    """True when ``path`` is an HDF5 reconstruction result (never raises)."""
    try:
        import h5py

        from napari_ptycho.io.results import is_result

        with h5py.File(path, "r") as f:
            return is_result(f)
    except Exception:  # noqa: BLE001 - a probe must never fail
        return False


def load(path: str | Path, *, near_field: bool | None = None,
         propagation_distance: float | None = None, pixel_size: float | None = None,
         kind: str | None = None, amplitudes: bool = False, choice: dict[str, Any] | None = None,
         margin: float | None = None) -> Any:
    """Open a scan or a Bragg volume.

    Parameters
    ----------
    path : str or Path
        The file (see the module table for formats).
    near_field : bool, optional
        Force near- or far-field geometry (CXI/HDF5); detected when omitted.
    propagation_distance : float, optional
        Effective Fresnel propagation distance in metres (implies near field).
    pixel_size : float, optional
        Object pixel size in metres, overriding the geometry.
    kind : {"ptycho", "bragg"}, optional
        Force the data kind of a generic HDF5 file.
    amplitudes : bool
        ``.npy``/TIFF volumes hold amplitudes: square them into intensities.
    choice : dict, optional
        Generic HDF5 dataset choice (see :func:`napari_ptycho.io.hdf5.read_hdf5`).
    margin : float, optional
        Free pixels above/left of the first probe window (default 4).

    Returns
    -------
    PtychoData or BraggData
        Diffraction stays lazy (dask over the open HDF5 file) where the format allows.
    """
    from napari_ptycho.io import _common

    p = _check_path(path)
    margin = _common.DEFAULT_MARGIN if margin is None else float(margin)
    for name, value in (("propagation_distance", propagation_distance),
                        ("pixel_size", pixel_size)):
        if value is not None and not (float(value) > 0 and float(value) < 1e3):
            raise ValueError(f"{name} must be a positive length in metres (got {value!r})")
    suffix = p.suffix.lower()
    geo = {"propagation_distance": propagation_distance, "pixel_size": pixel_size,
           "margin": margin}
    if suffix in HDF5_SUFFIXES:
        import h5py

        from napari_ptycho.io import cxi, hdf5

        try:
            h5 = h5py.File(p, "r")
        except OSError as exc:
            raise _common.fail(p, f"not a readable HDF5 file (truncated or corrupt?): "
                               f"{exc}") from None
        try:
            use_cxi = cxi.is_cxi(h5) and kind != "bragg" and choice is None
            if "napari_ptycho_result" in h5:
                raise _common.fail(p, "this is a reconstruction result; open it with "
                                   "napari_ptycho.io.load_result")
        except BaseException:
            h5.close()
            raise
        if use_cxi:
            return cxi.read_cxi(p, h5=h5, near_field=near_field, **geo)
        h5.close()
        return hdf5.read_hdf5(p, choice=choice, kind=kind, near_field=bool(near_field),
                              **geo)
    if suffix == ".npz":
        from napari_ptycho.io.npz import read_npz

        return read_npz(p, margin=margin)
    if suffix == ".npy":
        from napari_ptycho.io.npz import read_npy_volume

        return read_npy_volume(p, amplitudes=amplitudes)
    from napari_ptycho.io.tiff import read_tiff

    return read_tiff(p, amplitudes=amplitudes, margin=margin)


def load_result(path: str | Path) -> Any:
    """Read a reconstruction result file into an ``engines.base.Result``."""
    from napari_ptycho.io.results import load_result as _load

    return _load(_check_path(path))


def save(obj: Any, path: str | Path) -> Path:
    """Save a result, a scan or a Bragg volume (atomically).

    Parameters
    ----------
    obj : Result, Snapshot, PtychoData or BraggData
        ``Result``/``Snapshot`` -> HDF5/CXI result file; ``PtychoData`` -> CXI;
        ``BraggData`` -> HDF5.
    path : str or Path
        Target file; ``.h5``, ``.hdf5`` or ``.cxi``.

    Returns
    -------
    Path
        The written file.
    """
    from napari_ptycho.data import BraggData, PtychoData

    if not isinstance(path, (str, Path)):
        raise ValueError(f"path must be a str or Path (got {type(path).__name__})")
    p = Path(path)
    if p.suffix.lower() not in HDF5_SUFFIXES:
        raise ValueError(f"path {p.name!r}: save writes HDF5/CXI files "
                         f"({', '.join(HDF5_SUFFIXES)}); use io.tiff.write_tiff for TIFF")
    if isinstance(obj, PtychoData):
        from napari_ptycho.io.cxi import write_cxi

        return write_cxi(obj, p)
    if isinstance(obj, BraggData):
        from napari_ptycho.io.hdf5 import write_bragg_h5

        return write_bragg_h5(obj, p)
    if hasattr(obj, "object") and hasattr(obj, "iteration"):
        from napari_ptycho.io.results import save_result

        return save_result(obj, p)
    raise ValueError(f"obj must be a Result, PtychoData or BraggData (got "
                     f"{type(obj).__name__})")
