"""Reconstruction results <-> HDF5 (``.h5``) or CXI (``.cxi``) files.

One layout for both: the result lives in the ``napari_ptycho_result`` group (object,
probe, positions, error history, extras as datasets; the method's parameters, the
metrics and the software version as JSON attributes). A ``.cxi`` result also gets the
standard ``entry_1/image_1/data`` object image so other CXI tools can display it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from napari_ptycho.io import _common as c

GROUP = "napari_ptycho_result"
_SCALARS = ("iteration", "total", "elapsed", "unit", "method", "done", "source")


def is_result(h5: Any) -> bool:
    """True when an open h5py File holds a result written by :func:`save_result`."""
    return GROUP in h5


def _split(mapping: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Separate JSON-able values from arrays (arrays become datasets)."""
    plain: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for key, value in mapping.items():
        if isinstance(value, np.ndarray) and value.size > 16:
            arrays[str(key)] = value
        elif type(value).__module__.startswith("torch"):
            arrays[str(key)] = value.detach().cpu().numpy()
        elif isinstance(value, (tuple, list)) and value and all(
                isinstance(v, np.ndarray) for v in value):
            for i, v in enumerate(value):
                arrays[f"{key}__{i}"] = v
        else:
            plain[str(key)] = c.to_jsonable(value)
    return plain, arrays


def _regroup(arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    """Undo the ``key__i`` split of tuples of arrays made by :func:`_split`."""
    out: dict[str, Any] = {}
    parts: dict[str, dict[int, np.ndarray]] = {}
    for key, value in arrays.items():
        base, sep, idx = key.rpartition("__")
        if sep and idx.isdigit():
            parts.setdefault(base, {})[int(idx)] = value
        else:
            out[key] = value
    for base, items in parts.items():
        out[base] = tuple(items[i] for i in sorted(items))
    return out


def save_result(result: Any, path: str | Path) -> Path:
    """Write an :class:`~napari_ptycho.engines.base.Result` atomically.

    Parameters
    ----------
    result : Result (or Snapshot)
        The reconstruction.
    path : str or Path
        ``.h5``/``.hdf5``/``.cxi`` target.
    """
    import h5py

    from napari_ptycho import __version__

    if not hasattr(result, "object") or not hasattr(result, "iteration"):
        raise ValueError(f"result must be a Result or Snapshot (got {type(result).__name__})")
    path = Path(path)
    obj = np.asarray(result.object)
    with c.atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        g = f.create_group(GROUP)
        g["object"] = obj.astype(np.complex64) if np.iscomplexobj(obj) else obj
        if result.probe is not None:
            g["probe"] = np.asarray(result.probe, dtype=np.complex64)
        if result.positions is not None:
            g["positions"] = np.asarray(result.positions, dtype=np.float64)
        g["errors"] = np.asarray(result.errors, dtype=np.float64)
        for name in _SCALARS:
            g.attrs[name] = c.to_jsonable(getattr(result, name, ""))
        g.attrs["software"] = "napari-ptycho"
        g.attrs["version"] = __version__
        for name in ("parameters", "metrics", "extras"):
            plain, arrays = _split(dict(getattr(result, name, {}) or {}))
            g.attrs[name] = json.dumps(plain)
            if arrays:
                sub = g.create_group(name)
                for key, value in arrays.items():
                    sub[key] = np.asarray(value)
        if path.suffix.lower() == ".cxi":
            f["cxi_version"] = 160
            f["entry_1/image_1/data"] = h5py.SoftLink(f"/{GROUP}/object")
            if result.probe is not None:
                f["entry_1/instrument_1/source_1/illumination"] = h5py.SoftLink(
                    f"/{GROUP}/probe")
    return path


def load_result(path: str | Path) -> Any:
    """Read a result file written by :func:`save_result`.

    Returns
    -------
    Result
        With parameters, metrics and extras restored (arrays as numpy).
    """
    import h5py

    from napari_ptycho.engines.base import Result

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise c.fail(path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    with f:
        if GROUP not in f:
            raise c.fail(path, f"no reconstruction result (group {GROUP!r}) in this file")
        g = f[GROUP]
        kw: dict[str, Any] = {}
        for name in ("parameters", "metrics", "extras"):
            try:
                value = json.loads(g.attrs.get(name, "{}"))
            except ValueError:
                raise c.fail(path, f"{name} attribute is not valid JSON") from None
            if name in g:
                value.update(_regroup({k: v[()] for k, v in g[name].items()}))
            kw[name] = value
        scalars = {k: g.attrs[k] for k in _SCALARS if k in g.attrs}
        for k, v in scalars.items():
            scalars[k] = v.item() if isinstance(v, np.generic) else v
        return Result(
            iteration=int(scalars.get("iteration", 0)), total=int(scalars.get("total", 0)),
            object=g["object"][()],
            probe=g["probe"][()] if "probe" in g else None,
            positions=g["positions"][()] if "positions" in g else None,
            errors=[float(e) for e in g["errors"][()]] if "errors" in g else [],
            elapsed=float(scalars.get("elapsed", 0.0)), unit=str(scalars.get("unit", "")),
            method=str(scalars.get("method", "")), done=bool(scalars.get("done", False)),
            source=str(scalars.get("source", "")), **kw)
