"""Generic HDF5 / NeXus scans and Bragg volumes, with a remembered dataset choice.

Beamline files differ in where they keep the diffraction stack and the positions. We
take the largest 3D numeric dataset as the stack and look for positions under common
names. When that is ambiguous (several equal candidates, no units) :func:`read_hdf5`
raises :class:`AmbiguousLayout`; the napari reader then opens the HDF5 picker dock,
whose choice is stored per *file layout* (the set of dataset paths and ranks, not their
lengths) so the next file from the same beamline opens directly.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_ptycho.data import BraggData, Geometry, PtychoData
from napari_ptycho.io import _common as c

UNITS_TO_M = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "nm": 1e-9}
PIXEL_UNITS = ("pixel", "pixels", "px")
_POS_2D = re.compile(r"(translation|positions?|pos|scan|coords|xy|probe_positions)$", re.I)
_POS_X = re.compile(r"^(x|xcoords|pos_x|x_pos|x_positions?|sample_x|samx|positions_x)$", re.I)
_POS_Y = re.compile(r"^(y|ycoords|pos_y|y_pos|y_positions?|sample_y|samy|positions_y)$", re.I)
_BRAGG = re.compile(r"(bragg|bcdi|rocking|volume)", re.I)
KIND_ATTR = "napari_ptycho_kind"


class AmbiguousLayout(c.FileFormatError):
    """The file could hold several scans or lacks units; a person must choose."""

    def __init__(self, message: str, path: Any, candidates: dict[str, Any]) -> None:
        super().__init__(message)
        self.path = str(path)
        self.candidates = candidates


@dataclass
class DatasetInfo:
    """One numeric dataset of a file: its path, shape, dtype kind and units attribute."""

    path: str
    shape: tuple[int, ...]
    kind: str
    units: str


def list_datasets(h5: Any) -> list[DatasetInfo]:
    """All numeric datasets in an open h5py File (links followed, externals skipped)."""
    import h5py

    out: list[DatasetInfo] = []

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and obj.dtype.kind in "uifcb":
            u = obj.attrs.get("units", "")
            u = u.decode() if isinstance(u, bytes) else str(u)
            out.append(DatasetInfo(name, tuple(int(s) for s in obj.shape), obj.dtype.kind, u))

    h5.visititems(visit)
    return out


def layout_key(infos: list[DatasetInfo]) -> str:
    """Fingerprint of a file layout: dataset paths and ranks (lengths may differ)."""
    text = "\n".join(sorted(f"{d.path}:{len(d.shape)}:{d.kind}" for d in infos))
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def config_dir() -> Path:
    """Folder of napari-ptycho's user settings (``NAPARI_PTYCHO_CONFIG_DIR`` overrides)."""
    env = os.environ.get("NAPARI_PTYCHO_CONFIG_DIR")
    if env:
        return Path(env)
    try:
        import platformdirs

        return Path(platformdirs.user_config_dir("napari-ptycho"))
    except ImportError:  # pragma: no cover - platformdirs comes with napari
        return Path.home() / ".config" / "napari-ptycho"


def _store_file() -> Path:
    return config_dir() / "hdf5_layouts.json"


def remembered_choice(key: str) -> dict[str, Any] | None:
    """The dataset choice saved for a layout, if any."""
    try:
        return json.loads(_store_file().read_text()).get(key)
    except (OSError, ValueError):
        return None


def remember_choice(key: str, choice: dict[str, Any]) -> None:
    """Save the dataset choice for a layout (atomically)."""
    store = _store_file()
    store.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(store.read_text())
    except (OSError, ValueError):
        data = {}
    data[key] = choice
    with c.atomic_write(store) as tmp:
        tmp.write_text(json.dumps(data, indent=1))


def guess_choice(infos: list[DatasetInfo]) -> tuple[dict[str, Any], list[str]]:
    """Best guess of the datasets to use, and the reasons it is ambiguous (if any)."""
    problems: list[str] = []
    stacks = sorted((d for d in infos if len(d.shape) == 3 and d.kind in "uif"),
                    key=lambda d: -int(np.prod(d.shape)))
    choice: dict[str, Any] = {"diffraction": None, "positions": None, "positions_x": None,
                              "positions_y": None, "units": None, "order": "yx",
                              "kind": "ptycho"}
    if not stacks:
        return choice, ["no 3D numeric dataset (diffraction stack) found"]
    if len(stacks) > 1 and np.prod(stacks[0].shape) == np.prod(stacks[1].shape):
        problems.append(f"several equally large 3D datasets: {[d.path for d in stacks[:4]]}")
    stack = stacks[0]
    choice["diffraction"] = stack.path
    n = stack.shape[0]
    leaf = {d.path: d.path.rsplit("/", 1)[-1] for d in infos}
    pairs = [d for d in infos if len(d.shape) == 2 and d.shape[0] == n and d.shape[1] in (2, 3)
             and _POS_2D.search(leaf[d.path])]
    xs = [d for d in infos if d.shape == (n,) and _POS_X.match(leaf[d.path])]
    ys = [d for d in infos if d.shape == (n,) and _POS_Y.match(leaf[d.path])]
    units = ""
    if pairs:
        choice["positions"] = pairs[0].path
        units = pairs[0].units
        if len(pairs) > 1:
            problems.append(f"several position datasets: {[d.path for d in pairs]}")
    elif xs and ys:
        choice["positions_x"], choice["positions_y"] = xs[0].path, ys[0].path
        units = xs[0].units
    elif _BRAGG.search(stack.path):
        choice["kind"] = "bragg"
        return choice, problems
    else:
        problems.append("no scan positions found (looked for translation, positions, "
                        "x/y, xcoords/ycoords ...)")
    units = units.strip().lower().replace("μ", "µ")
    if units in UNITS_TO_M or units in PIXEL_UNITS:
        choice["units"] = "pixel" if units in PIXEL_UNITS else units
    else:
        problems.append("positions have no units attribute (m, um, nm or pixel)")
    return choice, problems


def _geometry_fields(h5: Any) -> dict[str, float]:
    """Energy/distance/pixel size under common NeXus or CXI names (SI, eV)."""
    from napari_ptycho.io.cxi import read_geometry_fields

    fields = read_geometry_fields(h5.filename, h5)
    names = {"energy": ("incident_energy", "energy", "photon_energy"),
             "distance": ("detector_distance", "distance", "sample_detector_distance"),
             "detector_pixel_size": ("x_pixel_size", "pixel_size", "detector_pixel_size")}
    infos = {d.path.rsplit("/", 1)[-1]: d for d in list_datasets(h5) if np.prod(d.shape) == 1}
    for key, candidates in names.items():
        if key in fields:
            continue
        for cand in candidates:
            if cand in infos:
                value = float(np.asarray(h5[infos[cand].path][()]).ravel()[0])
                unit = infos[cand].units.strip().lower()
                if key == "energy":
                    value *= {"kev": 1e3, "j": 1 / 1.602176634e-19}.get(unit, 1.0)
                else:
                    value *= UNITS_TO_M.get(unit.replace("μ", "µ"), 1.0)
                if math_ok(value):
                    fields[key] = value
                break
    return fields


def math_ok(value: float) -> bool:
    """A positive finite number."""
    return bool(np.isfinite(value) and value > 0)


def read_hdf5(path: str | Path, *, choice: dict[str, Any] | None = None,
              kind: str | None = None, near_field: bool = False,
              propagation_distance: float | None = None, pixel_size: float | None = None,
              margin: float = c.DEFAULT_MARGIN) -> PtychoData | BraggData:
    """Open a generic HDF5/NeXus scan (or a Bragg volume) lazily.

    Parameters
    ----------
    path : str or Path
        The file.
    choice : dict, optional
        Datasets to use (keys ``diffraction``, ``positions`` or ``positions_x`` /
        ``positions_y``, ``units``, ``order`` ("yx"/"xy"), ``kind``); by default the
        remembered choice for this layout, else a guess.
    kind : {"ptycho", "bragg"}, optional
        Force the data kind.
    near_field, propagation_distance, pixel_size, margin
        Geometry overrides, as for :func:`napari_ptycho.io.cxi.read_cxi`.

    Raises
    ------
    AmbiguousLayout
        When no choice is given or remembered and the guess is not unique.
    """
    import h5py
    import hdf5plugin  # noqa: F401

    if kind not in (None, "ptycho", "bragg"):
        raise ValueError(f"kind must be 'ptycho' or 'bragg' (got {kind!r})")
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise c.fail(path, f"not a readable HDF5 file (truncated or corrupt?): {exc}") from None
    try:
        return _read_open(path, h5, choice, kind, near_field, propagation_distance,
                          pixel_size, margin)
    except BaseException:
        h5.close()
        raise


def _read_open(path: Any, h5: Any, choice: dict[str, Any] | None, kind: str | None,
               near_field: bool, propagation_distance: float | None,
               pixel_size: float | None, margin: float) -> PtychoData | BraggData:
    if h5.attrs.get(KIND_ATTR) == "bragg" or "bragg/intensity" in h5:
        return read_bragg_h5(path, h5)
    infos = list_datasets(h5)
    key = layout_key(infos)
    if choice is None:
        choice = remembered_choice(key)
    if choice is None:
        choice, problems = guess_choice(infos)
        if kind is not None:
            choice["kind"] = kind
            problems = [p for p in problems if kind == "ptycho" or "position" not in p]
        if problems:
            raise AmbiguousLayout(c.fail(path, "; ".join(problems) + ". Choose the datasets "
                                         "in the HDF5 dataset picker dock (or pass "
                                         "choice=)").args[0], path,
                                  {"layout": key, "guess": choice,
                                   "datasets": [d.__dict__ for d in infos]})
    diff = choice.get("diffraction")
    if not diff or diff not in h5:
        raise c.fail(path, f"diffraction dataset {diff!r} is not in the file")
    dset = h5[diff]
    is_bragg = (kind or choice.get("kind")) == "bragg"
    c.check_stack(path, dset.shape, dset.dtype, what=diff, square=not is_bragg)
    stack = c.lazy_stack(dset, c.stack_token(path, diff))
    try:
        sample = c.sample_frames(dset)
    except OSError as exc:
        raise c.fail(path, f"{diff} cannot be read (truncated or corrupt?): {exc}") from None
    c.check_counts(path, sample, what=diff)
    meta = {"source": str(path), "format": "hdf5", "name": Path(str(path)).stem,
            "datasets": dict(choice), "contrast_sample": list(c.contrast_limits(sample))}
    fields = _geometry_fields(h5)
    if is_bragg:
        try:
            return BraggData(stack, Geometry(**fields), metadata=meta)
        except ValueError as exc:
            raise c.fail(path, str(exc)) from None
    n = dset.shape[0]
    positions = _read_positions(path, h5, choice, n)
    units = choice.get("units") or "pixel"
    try:
        geometry = Geometry(**fields, detector_shape=tuple(dset.shape[1:]),
                            near_field=bool(near_field or propagation_distance),
                            propagation_distance=propagation_distance,
                            pixel_size_override=pixel_size)
    except ValueError as exc:
        raise c.fail(path, str(exc)) from None
    if units not in PIXEL_UNITS:
        if units not in UNITS_TO_M:
            raise c.fail(path, f"unknown position units {units!r}; use m, mm, um, nm or "
                         "pixel")
        dx = geometry.object_pixel_size
        if dx is None:
            raise c.fail(path, f"positions are in {units} but energy, distance or pixel "
                         "size is missing to convert them to pixels (pass pixel_size=)")
        positions = positions * UNITS_TO_M[units] / dx
    positions = c.positions_to_margin(positions, margin)
    try:
        return PtychoData(stack, positions, geometry, metadata=meta)
    except ValueError as exc:
        raise c.fail(path, str(exc)) from None


def _read_positions(path: Any, h5: Any, choice: dict[str, Any], n: int) -> np.ndarray:
    if choice.get("positions"):
        name = choice["positions"]
        if name not in h5:
            raise c.fail(path, f"positions dataset {name!r} is not in the file")
        pos = np.asarray(h5[name][()], dtype=np.float64)
        if pos.ndim != 2 or pos.shape[1] not in (2, 3):
            raise c.fail(path, f"{name} must have shape (N, 2); got {pos.shape}")
        pos = pos[:, :2]
    elif choice.get("positions_x") and choice.get("positions_y"):
        cols = []
        for key in ("positions_y", "positions_x"):
            if choice[key] not in h5:
                raise c.fail(path, f"dataset {choice[key]!r} is not in the file")
            cols.append(np.asarray(h5[choice[key]][()], dtype=np.float64).ravel())
        if cols[0].shape != cols[1].shape:
            raise c.fail(path, "x and y positions differ in length")
        pos = np.stack(cols, axis=1)
        choice = {**choice, "order": "yx"}
    else:
        raise c.fail(path, "no scan positions chosen")
    if choice.get("order", "yx") == "xy":
        pos = pos[:, ::-1]
    if len(pos) != n:
        raise c.fail(path, f"{n} diffraction patterns but {len(pos)} positions")
    if not np.all(np.isfinite(pos)):
        raise c.fail(path, "positions contain NaN or infinite values")
    return pos


def read_bragg_h5(path: Any, h5: Any) -> BraggData:
    """Read a Bragg volume written by :func:`write_bragg_h5` (intensity stays lazy)."""
    name = "bragg/intensity"
    if name not in h5:
        raise c.fail(path, f"Bragg file has no {name} dataset")
    dset = h5[name]
    c.check_stack(path, dset.shape, dset.dtype, what="intensity", square=False)
    stack = c.lazy_stack(dset, c.stack_token(path, name))
    sample = c.sample_frames(dset)
    c.check_counts(path, sample, what="intensity")
    grp = h5["bragg"]
    meta = json.loads(grp.attrs.get("metadata", "{}"))
    meta.update(source=str(path), format="hdf5-bragg", name=Path(str(path)).stem,
                contrast_sample=list(c.contrast_limits(sample)))
    geometry = Geometry.from_dict(json.loads(grp.attrs.get("geometry", "{}")))
    kw: dict[str, Any] = {}
    for key in ("oversampling", "q_direction"):
        if key in grp.attrs:
            kw[key] = tuple(float(v) for v in grp.attrs[key])
    try:
        return BraggData(stack, geometry, metadata=meta,
                         mask=grp["mask"][()] if "mask" in grp else None,
                         truth_object=grp["truth_object"][()] if "truth_object" in grp else None,
                         **kw)
    except ValueError as exc:
        raise c.fail(path, str(exc)) from None


def write_bragg_h5(data: BraggData, path: str | Path) -> Path:
    """Write a Bragg volume (with its truth, mask and geometry) to HDF5, atomically."""
    import h5py

    if not isinstance(data, BraggData):
        raise ValueError(f"data must be a BraggData (got {type(data).__name__})")
    path = Path(path)
    with c.atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs[KIND_ATTR] = "bragg"
        grp = f.create_group("bragg")
        grp.create_dataset("intensity", data=np.asarray(data.intensity), chunks=True)
        if data.mask is not None:
            grp["mask"] = data.mask
        if data.truth_object is not None:
            grp["truth_object"] = np.asarray(data.truth_object, dtype=np.complex64)
        grp.attrs["geometry"] = json.dumps(data.geometry.to_dict())
        meta = {k: v for k, v in data.metadata.items() if k != "source"}
        grp.attrs["metadata"] = json.dumps(c.to_jsonable(meta))
        if data.oversampling is not None:
            grp.attrs["oversampling"] = list(data.oversampling)
        grp.attrs["q_direction"] = list(data.q_direction)
    return path
