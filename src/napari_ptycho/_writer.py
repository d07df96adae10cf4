"""npe2 writers: image layers -> float32 ImageJ TIFF with pixel size and unit.

A diffraction layer shows ``log10(1 + I)`` for display only; its export writes the
measured intensities kept in the layer metadata, never the log view. Complex data is
written as amplitude and phase channels (see :func:`napari_ptycho.io.tiff.write_tiff`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np


def _export_array(data: Any, meta: dict[str, Any]) -> Any:
    extra = meta.get("metadata") or {}
    if extra.get("log_view"):
        source = extra.get("ptycho_data") or extra.get("bragg_data")
        if source is not None:
            return source.intensities()
    return np.asarray(data)


def _length_scale(meta: dict[str, Any]) -> tuple[float | None, str]:
    """In-plane pixel size and ImageJ unit, or (None, 'pixel') for non-length units."""
    from napari_ptycho.io.tiff import IMAGEJ_UNITS

    scale = meta.get("scale")
    units = meta.get("units")
    if scale is None or len(scale) == 0:
        return None, "pixel"
    unit = str(units[-1]) if units else "pixel"
    if unit not in IMAGEJ_UNITS or IMAGEJ_UNITS[unit] == "pixel":
        return None, "pixel"
    return float(scale[-1]), IMAGEJ_UNITS[unit]


def _tiff_path(path: str) -> Path:
    p = Path(path)
    if p.suffix.lower() not in (".tif", ".tiff"):
        p = p.with_suffix(".tif")
    return p


def write_tiff_single(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one image layer; returns the written path (npe2 single-layer writer)."""
    from napari_ptycho.io.tiff import write_tiff

    array = _export_array(data, meta)
    pixel, unit = _length_scale(meta)
    scale = meta.get("scale")
    spacing = float(scale[-3]) if pixel and scale is not None and len(scale) >= 3 else None
    out = write_tiff(array, _tiff_path(path), pixel_size=pixel, unit=unit, spacing=spacing)
    return [str(out)]


def write_tiff_multiple(path: str, data: list[tuple[Any, dict[str, Any], str]]) -> list[str]:
    """Write each image layer to ``<stem>_<layer name>.tif`` (npe2 multi-layer writer)."""
    base = _tiff_path(path)
    written: list[str] = []
    used: set[str] = set()
    for array, meta, layer_type in data:
        if layer_type != "image":
            continue
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(meta.get("name", "layer"))).strip("_")
        slug = slug or "layer"
        while slug in used:
            slug += "_"
        used.add(slug)
        target = base.with_name(f"{base.stem}_{slug}{base.suffix}")
        written += write_tiff_single(str(target), array, meta)
    return written
