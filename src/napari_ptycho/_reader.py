"""npe2 reader: drag-and-drop and File > Open for scans, Bragg volumes and results.

``get_reader`` never raises: it returns ``None`` for files it cannot read (wrong
extension, a plain 2D TIFF or ``.npy`` image that napari's own reader handles) and a
reader function otherwise. The reader function never raises either: a broken file ends
in an error notification (napari's notification area, not a traceback dialog) and the
null-layer sentinel ``[(None,)]``, which napari accepts as "opened, nothing to add", so
the viewer stays usable. An ambiguous generic HDF5 file opens the dataset picker dock.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from napari_ptycho._threads import prefer_passive_wait
from napari_ptycho.io import SUFFIXES

prefer_passive_wait()  # napari loads this module before torch: see napari_ptycho._threads

logger = logging.getLogger(__name__)
NULL_LAYERS: list[tuple[None]] = [(None,)]


def _stack_like(p: Path) -> bool:
    """Cheap header check that a .npy/.tif holds a stack (3D), without reading pixels."""
    suffix = p.suffix.lower()
    if suffix == ".npy":
        import numpy as np

        # a memory map reads the header only; object arrays (pickles) raise here
        return np.load(p, mmap_mode="r", allow_pickle=False).ndim == 3
    import tifffile

    with tifffile.TiffFile(p) as tif:
        return len(tif.series[0].shape) == 3


def get_reader(path: str | list[str]) -> Any:
    """Return a reader function for ``path``, or ``None`` when we cannot read it."""
    try:
        if isinstance(path, (list, tuple)):
            if len(path) != 1:
                return None
            path = path[0]
        p = Path(str(path))
        if p.suffix.lower() not in SUFFIXES or not p.is_file():
            return None
        if p.suffix.lower() in (".npy", ".tif", ".tiff") and not _stack_like(p):
            return None
        return read_path
    except Exception:  # noqa: BLE001 - get_reader must never raise
        return None


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _open_picker(path: str, message: str) -> None:
    """Dock the HDF5 dataset picker for ``path`` in the current viewer, if any."""
    import napari
    from napari.utils.notifications import show_info

    viewer = napari.current_viewer()
    if viewer is None or getattr(viewer, "window", None) is None:
        _notify_error(message)
        return
    from napari_ptycho._widgets.hdf5_picker import HDF5PickerWidget

    widget = HDF5PickerWidget(viewer)
    widget.set_path(path)
    viewer.window.add_dock_widget(widget, name="HDF5 dataset picker", area="right")
    show_info(f"{message}\nPick the datasets in the 'HDF5 dataset picker' dock.")


def read_layers(path: str) -> list[tuple]:
    """Layer data for one file; raises ``ValueError`` with a clear message on bad input."""
    from napari_ptycho.io import is_result_file, load, load_result
    from napari_ptycho.io.layers import layers_for

    name = Path(path).stem
    if Path(path).suffix.lower() in (".h5", ".hdf5", ".cxi") and is_result_file(path):
        return layers_for(load_result(path), name)
    return layers_for(load(path), name)


def read_path(path: str | list[str], stack: bool = False) -> list[tuple]:
    """The reader function handed to napari; reports every failure as a notification."""
    from napari_ptycho.io.hdf5 import AmbiguousLayout

    paths = [path] if isinstance(path, (str, Path)) else list(path)
    layers: list[tuple] = []
    for one in paths:
        try:
            layers += read_layers(str(one))
        except AmbiguousLayout as exc:
            _open_picker(str(one), str(exc))
        except (ValueError, OSError, KeyError, TypeError, IndexError, RuntimeError,
                MemoryError, EOFError) as exc:
            _notify_error(f"napari-ptycho could not open {Path(str(one)).name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - a reader must never take napari down
            logger.exception("unexpected error reading %s", one)
            _notify_error(f"napari-ptycho: unexpected error reading {Path(str(one)).name}: "
                          f"{type(exc).__name__}: {exc}")
    return layers or NULL_LAYERS
