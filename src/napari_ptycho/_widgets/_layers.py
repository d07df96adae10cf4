"""Output layers of a run, created once and then updated in place.

Output layers are found by their tags in ``layer.metadata`` (``ptycho_source`` = the input
layer's key, ``ptycho_role`` = what the layer shows), never by name, so renaming a layer
does not break a run, and a run can only ever write to the layers of its own input.
Scale and units come from ``Geometry.object_pixel_size`` (in µm, like the reader's truth
layers); ``metadata["pixel_size"]`` keeps metres for writers.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import numpy as np

ROLE_KEY = "ptycho_role"
SOURCE_KEY = "ptycho_source"
RUN_KEY = "ptycho_run"
RESULT_KEY = "ptycho_result"
_GAP = 8  # pixels between the side-by-side images
#: seconds between thumbnail refreshes while a run streams: each costs the layer list a
#: repaint, and under software OpenGL two extra window composites (≈ 30 ms of CPU, as
#: much as a whole layer update); the final snapshot always refreshes them
THUMBNAIL_INTERVAL = 2.0


def source_key(layer: Any) -> str:
    """Stable identity of an input layer: its ``unique_id`` (napari ≥ 0.5) else ``id()``."""
    uid = getattr(layer, "unique_id", None)
    return str(uid) if uid is not None else f"id{id(layer)}"


def complex_to_rgb(field_: np.ndarray, vmax: float | None = None) -> np.ndarray:
    """HSV composite of a complex image: hue = phase, value = amplitude / ``vmax``.

    Returns float32 RGB in [0, 1] with shape ``field_.shape + (3,)``.
    """
    from matplotlib.colors import hsv_to_rgb

    field_ = np.asarray(field_)
    if not np.iscomplexobj(field_):
        raise ValueError("field_ must be a complex array")
    amp = np.abs(field_)
    top = float(vmax) if vmax else float(np.percentile(amp, 99.5)) or 1.0
    hsv = np.empty(field_.shape + (3,), dtype=np.float32)
    hsv[..., 0] = (np.angle(field_) + np.pi) / (2 * np.pi)
    hsv[..., 1] = 1.0
    hsv[..., 2] = np.clip(amp / top, 0.0, 1.0)
    return hsv_to_rgb(hsv).astype(np.float32)


def tile_modes(probe: np.ndarray, gap: int = 2) -> np.ndarray:
    """Lay probe modes (M, h, w) side by side into one (h, M*w + (M-1)*gap) complex image."""
    probe = np.asarray(probe)
    if probe.ndim == 2:
        probe = probe[None]
    if probe.ndim != 3:
        raise ValueError(f"probe must have shape (modes, h, w); got {probe.shape}")
    m, h, w = probe.shape
    out = np.zeros((h, m * w + (m - 1) * gap), dtype=np.complex64)
    for i in range(m):
        out[:, i * (w + gap):i * (w + gap) + w] = probe[i]
    return out


def scan_centres(positions: np.ndarray, probe_shape: tuple[int, int]) -> np.ndarray:
    """Probe-window centres in object pixel coordinates.

    napari puts pixel ``i`` at coordinate ``i``, so a window covering pixels ``r .. r+h-1``
    is centred on ``r + (h - 1) / 2``.
    """
    pos = np.asarray(positions, dtype=np.float64)
    return pos + (np.asarray(probe_shape, dtype=np.float64) - 1) / 2


def fit_contrast(layer: Any, data: np.ndarray, tolerance: float = 0.01) -> None:
    """Set ``layer``'s contrast limits to the range of ``data`` (which it shows).

    Skipped when the limits already match within ``tolerance`` of the range: each
    setting costs napari events and a thumbnail on the main thread, and a converging
    reconstruction barely changes its range from one update to the next.
    """
    lo, hi = float(np.min(data)), float(np.max(data))
    if not (np.isfinite(lo) and np.isfinite(hi)) or hi <= lo:
        layer.reset_contrast_limits()  # flat or non-finite: napari's own fallback
        return
    old_lo, old_hi = (float(x) for x in layer.contrast_limits)
    if abs(old_lo - lo) <= tolerance * (hi - lo) and abs(old_hi - hi) <= tolerance * (hi - lo):
        return
    layer.contrast_limits = (lo, hi)


def display_scale(geometry: Any) -> tuple[float, str | None]:
    """(scale per object pixel, unit) for layers: µm when the pixel size is known.

    µm matches the reader's truth-object and scan-position layers, so a reconstruction
    lies exactly over its ground truth.
    """
    px = getattr(geometry, "object_pixel_size", None)
    if px:
        return float(px) * 1e6, "um"
    return 1.0, None


def display_name(layer_name: str) -> str:
    """Prefix for output layer names: the input's name without the reader's suffix."""
    for suffix in (" diffraction (log10)", " diffraction"):
        if layer_name.endswith(suffix):
            return layer_name[: -len(suffix)]
    return layer_name


def find_output_layer(viewer: Any, key: str, role: str) -> Any:
    """The layer tagged with input ``key`` and ``role``, or None."""
    for layer in viewer.layers:
        md = layer.metadata
        if md.get(SOURCE_KEY) == key and md.get(ROLE_KEY) == role:
            return layer
    return None


def upsert_layer(viewer: Any, kind: str, key: str, role: str, name: str, data: Any,
                 metadata: dict[str, Any], thumbnail: bool = True, **kwargs: Any) -> Any:
    """Update the tagged layer's data in place, or add it when missing (or deleted).

    ``kwargs`` (colormap, scale, ...) are only used when the layer is created, so the
    user's display choices survive updates. ``thumbnail=False`` skips the layer-list
    thumbnail of an in-place update (a streaming run refreshes it now and then).
    """
    layer = find_output_layer(viewer, key, role)
    tags = {**metadata, SOURCE_KEY: key, ROLE_KEY: role}
    if layer is None or layer._type_string != kind:
        add = getattr(viewer, f"add_{kind}")
        return add(data, name=name, metadata=tags, **kwargs)
    layer.metadata.update(tags)
    current = layer.data
    if (kind == "image" and isinstance(current, np.ndarray) and current.shape == data.shape
            and current.dtype == data.dtype and current.flags.writeable):
        # Same geometry: copy into the array the layer already owns and redraw it. The
        # data setter would also recompute the viewer's dims and extents, which costs
        # ~10 ms per layer on the main thread for nothing.
        np.copyto(current, data)
        layer.refresh(extent=False, thumbnail=thumbnail, highlight=False)
        return layer
    layer.data = data
    return layer


class PtychoLayers:
    """The 2D result layers of one input: object amplitude, phase, HSV, probe, positions.

    Parameters
    ----------
    viewer : napari.Viewer
    key : str
        Input-layer key (see :func:`source_key`).
    name : str
        Prefix for the layer names (the input layer's name).
    geometry : Geometry
        For scale and units.
    """

    def __init__(self, viewer: Any, key: str, name: str, geometry: Any) -> None:
        self.viewer = viewer
        self.key = key
        self.name = name
        self.scale, self.units = display_scale(geometry)
        self.pixel_size = getattr(geometry, "object_pixel_size", None)
        self._pending_hsv: tuple[np.ndarray, dict[str, Any]] | None = None
        self._thumbnail_at = -np.inf
        self._stale: dict[int, Any] = {}  # layers whose thumbnail lags their data
        self._turn = 0  # streaming: object layers on odd updates, probe layers on even
        self._pending: tuple[Any, ...] | None = None  # a snapshot shown only in part
        #: whether the last :meth:`update` refreshed thumbnails: the dock changes its other
        #: widgets (status text) on the same updates, so they share one repaint
        self.thumbnails_refreshed = False

    def _kw(self, translate: tuple[float, float] = (0.0, 0.0)) -> dict[str, Any]:
        # layer.units is what the TIFF writer reads for the ImageJ pixel size
        kw: dict[str, Any] = {"scale": (self.scale, self.scale),
                              "translate": tuple(t * self.scale for t in translate)}
        if self.units:
            kw["units"] = (self.units, self.units)
        return kw

    def _update_hsv(self, obj: np.ndarray, md: dict[str, Any]) -> Any:
        """The HSV composite, computed only while it is visible (it is hidden at first)."""
        layer = find_output_layer(self.viewer, self.key, "hsv")
        self._pending_hsv = (obj, md)
        if layer is not None and not layer.visible:
            layer.metadata.update({**md, SOURCE_KEY: self.key, ROLE_KEY: "hsv"})
            return layer
        layer = upsert_layer(self.viewer, "image", self.key, "hsv", f"{self.name} HSV",
                             complex_to_rgb(obj), md, rgb=True, visible=False, **self._kw())
        if not getattr(layer, "_ptycho_hsv_hooked", False):
            layer._ptycho_hsv_hooked = True
            layer.events.visible.connect(self._hsv_shown)
        return layer

    def _hsv_shown(self, event: Any) -> None:
        layer = find_output_layer(self.viewer, self.key, "hsv")
        if layer is not None and layer.visible and self._pending_hsv is not None:
            layer.data = complex_to_rgb(self._pending_hsv[0])

    def finish(self) -> None:
        """End of a run: show what :meth:`update` deferred, refresh skipped thumbnails."""
        pending, self._pending = self._pending, None
        if pending is not None:
            self.update(*pending, full=True)
        for layer in self._stale.values():
            if layer in self.viewer.layers:
                layer._update_thumbnail()
        self._stale = {}
        self._thumbnail_at = time.perf_counter()

    def update(self, snap: Any, metadata: dict[str, Any], probe_shape: tuple[int, int],
               positions: np.ndarray | None = None, full: bool = False) -> dict[str, Any]:
        """Show ``snap``; returns role -> layer. ``metadata`` tags every layer.

        While a run streams (``snap.done`` false, ``full`` false and every layer there),
        one update refreshes the object layers and the next the probe layers: each napari
        refresh plus its repaint blocks the main thread, and two layers at a time keep
        those blocks short. Thumbnails are refreshed at most every
        :data:`THUMBNAIL_INTERVAL` seconds. The final snapshot (or :meth:`finish`, for a
        cancelled run) shows everything.
        """
        v, k, n = self.viewer, self.key, self.name
        md = {**metadata, "pixel_size": self.pixel_size, "units": self.units or "pixel"}
        now = time.perf_counter()
        full = full or bool(getattr(snap, "done", False))
        thumb = full or now - self._thumbnail_at >= THUMBNAIL_INTERVAL
        if thumb:
            self._thumbnail_at = now
        self.thumbnails_refreshed = thumb
        roles = ("amplitude", "phase", "probe_amplitude", "probe_phase")
        found = {r: find_output_layer(v, k, r) for r in roles}
        if any(layer is None for layer in found.values()):
            full = True
        self._turn ^= 1
        do_object = full or self._turn == 1
        do_probe = snap.probe is not None and (full or self._turn == 0)
        self._pending = None if full else (snap, metadata, probe_shape, positions)
        tags = {**md, SOURCE_KEY: k}
        out: dict[str, Any] = {}
        obj = np.asarray(snap.object)
        # side by side: amplitude | phase | probe amplitude over probe phase; the HSV
        # composite (hidden) and the positions lie over the amplitude
        step = obj.shape[1] + _GAP
        # Between thumbnail refreshes the layer list has nothing new to show, yet every
        # layer event reaches its Qt model and repaints its rows, which under software
        # OpenGL costs a second window composite per update. Its group emitter (only the
        # layer-list model listens there; the canvas listens to each layer) is muted.
        quiet = (v.layers.events.blocker() if not thumb and not full
                 else contextlib.nullcontext())
        with quiet:
            if do_object:
                amp = np.abs(obj).astype(np.float32)
                out["amplitude"] = upsert_layer(v, "image", k, "amplitude", f"{n} amplitude",
                                                amp, md, thumbnail=thumb, colormap="gray",
                                                **self._kw())
                out["phase"] = upsert_layer(v, "image", k, "phase", f"{n} phase",
                                            np.angle(obj).astype(np.float32), md,
                                            thumbnail=thumb, colormap="twilight",
                                            contrast_limits=(-np.pi, np.pi),
                                            **self._kw((0.0, step)))
                out["hsv"] = self._update_hsv(obj, md)
                fit_contrast(out["amplitude"], amp)
            if do_probe:
                tiled = tile_modes(snap.probe)
                right = 2 * step
                below = tiled.shape[0] + _GAP
                probe_amp = np.abs(tiled).astype(np.float32)
                out["probe_amplitude"] = upsert_layer(
                    v, "image", k, "probe_amplitude", f"{n} probe amplitude",
                    probe_amp, md, thumbnail=thumb, colormap="magma",
                    **self._kw((0.0, right)))
                fit_contrast(out["probe_amplitude"], probe_amp)
                out["probe_phase"] = upsert_layer(
                    v, "image", k, "probe_phase", f"{n} probe phase",
                    np.angle(tiled).astype(np.float32), md, thumbnail=thumb,
                    colormap="twilight", contrast_limits=(-np.pi, np.pi),
                    **self._kw((below, right)))
        for role in ("amplitude", "phase", "hsv", "probe_amplitude", "probe_phase"):
            if role not in out:  # deferred to the next update: keep the tags current
                layer = found.get(role) or find_output_layer(v, k, role)
                if layer is not None:
                    layer.metadata.update({**tags, ROLE_KEY: role})
                    out[role] = layer
        shown = [r for r, on in (("amplitude", do_object), ("phase", do_object),
                                 ("probe_amplitude", do_probe), ("probe_phase", do_probe))
                 if on]
        for role in shown:
            if thumb:
                self._stale.pop(id(out[role]), None)
            else:
                self._stale[id(out[role])] = out[role]
        pos = snap.positions if snap.positions is not None else positions
        if pos is not None:
            centres = scan_centres(pos, probe_shape)
            current = find_output_layer(v, k, "positions")
            if current is not None and np.array_equal(current.data, centres):
                current.metadata.update(md)  # unchanged: spare napari a points refresh
                out["positions"] = current
                return out
            out["positions"] = upsert_layer(
                v, "points", k, "positions", f"{n} positions", centres, md,
                size=max(1.0, min(probe_shape) / 24), face_color="#00d0ff", opacity=0.5,
                border_width=0, **self._kw())
        return out
