"""Turn scans, volumes and results into napari layer-data tuples (no napari import).

Shared by the npe2 reader and the sample-data provider. The diffraction stack is shown
as a lazy ``log10(1 + I)`` dask map (napari has no log colour scale, and mapping per
chunk costs nothing until a slice is displayed); the untouched data object travels in
``layer.metadata["ptycho_data"]`` / ``["bragg_data"]`` for the reconstruction widgets.

Far-field patterns live in reciprocal space: their pixels are scaled to spatial
frequency (``p / (λ z)``, in 1/µm) while objects use the object pixel size in µm, so
both come out at comparable sizes on the canvas. Near-field holograms are real-space
images and share the object's µm scale.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from napari_ptycho.data import BraggData, Geometry, PtychoData

LayerData = tuple[Any, dict[str, Any], str]
UM = 1e6


class LogView:
    """``log10(1 + I)`` of a file-backed stack, read straight from the file per request.

    Reading inside ``__getitem__`` lets dask push napari's slice down to HDF5 (one frame
    read per displayed frame) and makes the *display* forgiving: an unreadable frame
    (damaged chunk) shows as NaN with a warning, which napari turns into a notification.
    Engines read ``ptycho_data`` and still get the error.
    """

    def __init__(self, source: Any) -> None:
        self.source = source
        self.shape = tuple(source.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __getitem__(self, index: Any) -> np.ndarray:
        try:
            block = np.asarray(self.source[index], dtype=np.float32)
        except (OSError, ValueError, KeyError) as exc:
            warnings.warn(f"napari-ptycho: frames could not be read from the file ({exc}); "
                          "they are shown blank", RuntimeWarning, stacklevel=2)
            dummy = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=self.shape,
                                                    strides=(0,) * self.ndim)
            return np.full(dummy[index].shape, np.nan, dtype=np.float32)
        return np.log10(1.0 + block)


def _log_view(stack: Any) -> Any:
    import dask.array as da

    if type(stack).__module__.startswith("dask"):
        from napari_ptycho.io._common import SOURCES

        source = SOURCES.get(stack.name)
        if source is None:  # not file-backed (or sliced): map the chunks
            return stack.map_blocks(lambda b: np.log10(1.0 + b.astype(np.float32)),
                                    dtype=np.float32)
        return da.from_array(LogView(source), chunks=stack.chunks, name=f"{stack.name}-log10",
                             asarray=True, meta=np.empty((0,) * stack.ndim, np.float32))
    return da.log10(1.0 + da.from_array(stack, chunks=(1,) + tuple(stack.shape[1:]))
                    .astype(np.float32))


def _log_limits(meta: dict[str, Any], stack: Any) -> tuple[float, float]:
    lo, hi = meta.get("contrast_sample") or (None, None)
    if lo is None:
        from napari_ptycho.io._common import contrast_limits, sample_frames

        lo, hi = contrast_limits(sample_frames(stack))
    lo, hi = np.log10(1.0 + max(float(lo), 0.0)), np.log10(1.0 + max(float(hi), 0.0))
    return float(lo), float(hi if hi > lo else lo + 1.0)


def reciprocal_scale(geometry: Geometry) -> tuple[float | None, str]:
    """Detector pixel size as spatial frequency (1/µm per pixel), or ``None``."""
    g = geometry
    if None in (g.wavelength, g.distance, g.detector_pixel_size):
        return None, "pixel"
    return g.detector_pixel_size / (g.wavelength * g.distance) / UM, "1/um"


def _object_scale(geometry: Geometry) -> tuple[float, str]:
    dx = geometry.object_pixel_size
    return (dx * UM, "um") if dx else (1.0, "pixel")


def complex_layers(array: np.ndarray, name: str, scale: float, unit: str,
                   meta: dict[str, Any] | None = None) -> list[LayerData]:
    """Amplitude and phase image layers of a complex 2D/3D array."""
    arr = np.asarray(array)
    nd = arr.ndim
    kw = {"scale": (scale,) * nd, "units": (unit,) * nd, "metadata": dict(meta or {})}
    return [(np.abs(arr).astype(np.float32), {"name": f"{name} amplitude", "colormap": "gray",
                                              **kw}, "image"),
            (np.angle(arr).astype(np.float32), {"name": f"{name} phase",
                                                "colormap": "twilight_shifted",
                                                "contrast_limits": (-np.pi, np.pi),
                                                "visible": False, **kw}, "image")]


def ptycho_layers(data: PtychoData, name: str | None = None) -> list[LayerData]:
    """Diffraction (log view), scan positions and any ground truth of a scan."""
    name = name or str(data.metadata.get("name", "scan"))
    g = data.geometry
    if g.near_field:
        step, unit = _object_scale(g)
    else:
        step, unit = reciprocal_scale(g)
    step = step or 1.0
    diff_meta = {"ptycho_data": data, "log_view": "log10(1 + I)", "source": data.metadata.get(
        "source", "")}
    layers: list[LayerData] = [(
        _log_view(data.diffraction),
        {"name": f"{name} diffraction (log10)", "metadata": diff_meta,
         "contrast_limits": _log_limits(data.metadata, data.diffraction),
         "colormap": "magma", "scale": (1.0, step, step), "units": ("pixel", unit, unit),
         "axis_labels": ("pattern", "qy" if not g.near_field else "y",
                         "qx" if not g.near_field else "x")},
        "image")]
    dx, obj_unit = _object_scale(g)
    centres = data.positions + np.asarray(data.probe_shape, dtype=float) / 2.0
    layers.append((centres, {"name": f"{name} scan positions", "scale": (dx, dx),
                             "units": (obj_unit, obj_unit), "size": max(data.probe_shape) / 8,
                             "face_color": "cyan", "border_width": 0,
                             "metadata": {"ptycho_data": data}, "visible": False}, "points"))
    if data.truth_object is not None:
        layers += complex_layers(data.truth_object, f"{name} truth object", dx, obj_unit,
                                 {"truth_of": name})
    return layers


def bragg_layers(data: BraggData, name: str | None = None) -> list[LayerData]:
    """The Bragg intensity volume (log view) and any ground-truth crystal."""
    name = name or str(data.metadata.get("name", "bragg"))
    step, unit = reciprocal_scale(data.geometry)
    step = step or 1.0
    layers: list[LayerData] = [(
        _log_view(data.intensity),
        {"name": f"{name} intensity (log10)", "metadata": {"bragg_data": data,
                                                           "log_view": "log10(1 + I)"},
         "contrast_limits": _log_limits(data.metadata, data.intensity), "colormap": "magma",
         "scale": (step,) * 3, "units": (unit,) * 3, "rendering": "mip"}, "image")]
    if data.truth_object is not None:
        layers += complex_layers(data.truth_object, f"{name} truth crystal", 1.0, "pixel",
                                 {"truth_of": name})
    return layers


def result_layers(result: Any, name: str = "result",
                  pixel_size: float | None = None) -> list[LayerData]:
    """Object amplitude/phase and probe amplitude of a reconstruction result."""
    scale, unit = (pixel_size * UM, "um") if pixel_size else (1.0, "pixel")
    meta = {"result": result}
    layers = complex_layers(result.object, f"{name} object", scale, unit, meta)
    if result.probe is not None:
        probe = np.asarray(result.probe)
        layers.append((np.abs(probe).astype(np.float32),
                       {"name": f"{name} probe amplitude", "metadata": meta,
                        "visible": False}, "image"))
    return layers


def layers_for(obj: Any, name: str | None = None) -> list[LayerData]:
    """Layer data for a PtychoData, BraggData or Result."""
    if isinstance(obj, PtychoData):
        return ptycho_layers(obj, name)
    if isinstance(obj, BraggData):
        return bragg_layers(obj, name)
    if hasattr(obj, "object") and hasattr(obj, "iteration"):
        return result_layers(obj, name or "result",
                             (obj.parameters or {}).get("object_pixel_size"))
    raise ValueError(f"obj must be PtychoData, BraggData or a Result (got "
                     f"{type(obj).__name__})")
