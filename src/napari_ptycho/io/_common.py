"""Shared helpers of the readers and writers: validation, lazy HDF5 stacks, atomic writes.

Every reader funnels its arrays through :func:`check_stack` and :func:`check_counts` so a
broken file always ends in a :class:`FileFormatError` (a ``ValueError``) whose message
names the file and the problem, never in an obscure numpy or h5py traceback.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Largest detector frame side and pattern count we accept; beyond that a file is corrupt.
MAX_FRAME_SIDE = 16384
MAX_PATTERNS = 10_000_000
#: Stacks up to this size are validated whole on open; larger ones at sampled frames.
FULL_CHECK_BYTES = 32 * 2**20
#: Positions margin (object pixels) left free above/left of the first probe window.
DEFAULT_MARGIN = 4
#: Target size of one dask chunk: small, so showing one slice reads about one frame.
CHUNK_BYTES = 4 * 2**20


class FileFormatError(ValueError):
    """A file that looks like a scan but cannot be used; the message says why."""


def fail(path: Any, message: str) -> FileFormatError:
    """Build a :class:`FileFormatError` naming the file."""
    return FileFormatError(f"{Path(str(path)).name}: {message}")


def check_stack(path: Any, shape: tuple[int, ...], dtype: Any, what: str = "diffraction",
                square: bool = True) -> None:
    """Refuse stacks that cannot be diffraction data (shape, size, dtype).

    Parameters
    ----------
    path : path-like
        File the stack comes from (for the message).
    shape : tuple of int
        Stack shape; must be 3D ``(N, H, W)``.
    dtype : numpy dtype
        Must be a real numeric dtype.
    what : str
        Name of the dataset in messages.
    square : bool
        Require ``H == W`` (ptychography frames).
    """
    shape = tuple(int(s) for s in shape)
    dtype = np.dtype(dtype)
    if len(shape) != 3:
        raise fail(path, f"{what} must be a 3D stack (N, H, W) but has shape {shape}"
                   + (" (a single 2D image)" if len(shape) == 2 else ""))
    if 0 in shape:
        raise fail(path, f"{what} is empty (shape {shape})")
    n, h, w = shape
    if h < 2 or w < 2:
        raise fail(path, f"{what} frames of {h}x{w} pixels are too small (need >= 2x2)")
    if max(h, w) > MAX_FRAME_SIDE or n > MAX_PATTERNS:
        raise fail(path, f"{what} shape {shape} is implausibly large (frames up to "
                   f"{MAX_FRAME_SIDE} px, up to {MAX_PATTERNS} patterns); the file is "
                   "probably corrupt")
    if square and h != w:
        raise fail(path, f"{what} frames are {h}x{w}; ptychography needs square detector "
                   "frames (crop them to a square first)")
    if dtype.kind == "c":
        raise fail(path, f"{what} holds complex values ({dtype}); expected real photon "
                   "counts")
    if dtype.kind not in "uif":
        raise fail(path, f"{what} has non-numeric type {dtype}")


def sample_frames(stack: Any, count: int = 3) -> np.ndarray:
    """Frames to validate and to set contrast from, as float64.

    A stack up to :data:`FULL_CHECK_BYTES` is read whole (every frame validated); a
    larger one only at ``count`` evenly spaced frames, so opening stays lazy.
    """
    n = int(stack.shape[0])
    nbytes = n * int(np.prod(stack.shape[1:])) * np.dtype(stack.dtype).itemsize
    if nbytes <= FULL_CHECK_BYTES:
        return np.asarray(stack[()] if n else stack[:0], dtype=np.float64)
    idx = sorted({int(round(i)) for i in np.linspace(0, n - 1, min(count, n))})
    frames = [np.asarray(stack[i]) for i in idx]
    return np.stack(frames).astype(np.float64)


def check_counts(path: Any, sample: np.ndarray, what: str = "diffraction") -> None:
    """Refuse NaN/inf or negative values in a sample of the stack."""
    if not np.all(np.isfinite(sample)):
        raise fail(path, f"{what} contains NaN or infinite values")
    lo = float(sample.min()) if sample.size else 0.0
    if lo < 0:
        raise fail(path, f"{what} contains negative values (min {lo:g}); expected photon "
                   "counts >= 0")


def contrast_limits(sample: np.ndarray) -> tuple[float, float]:
    """Display range from a sample: 0.1 % and 99.9 % percentiles, never an empty range."""
    lo, hi = (float(v) for v in np.percentile(sample, [0.1, 99.9]))
    if not hi > lo:
        hi = lo + 1.0
    return lo, hi


class H5Array:
    """Array-like view of an h5py dataset that keeps its file open while referenced.

    dask holds this object inside its graph, so the file lives exactly as long as the
    lazy array that reads from it.
    """

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.file = dataset.file
        self.shape = tuple(int(s) for s in dataset.shape)
        self.dtype = dataset.dtype
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        return self.dataset[index]


#: dask name of each lazy stack -> its H5Array (so display views can read the file directly)
SOURCES: weakref.WeakValueDictionary[str, H5Array] = weakref.WeakValueDictionary()


def lazy_stack(dataset: Any, name: str) -> Any:
    """A dask array over an h5py dataset, chunked along the first (pattern) axis.

    Chunks hold whole frames and a whole number of HDF5 chunks along axis 0, about
    :data:`CHUNK_BYTES` each, so reading one slice in napari touches one dask chunk.
    """
    import dask.array as da

    arr = H5Array(dataset)
    frame_bytes = int(np.prod(arr.shape[1:])) * arr.dtype.itemsize
    per = max(1, CHUNK_BYTES // max(frame_bytes, 1))
    h5_chunk = dataset.chunks[0] if dataset.chunks else 1
    per = max(h5_chunk, per // h5_chunk * h5_chunk)
    per = min(per, arr.shape[0])
    # a fixed name skips dask's content hashing, which would read the whole file
    stack = da.from_array(arr, chunks=(per,) + arr.shape[1:], name=name, lock=True,
                          asarray=True, meta=np.empty((0, 0, 0), dtype=arr.dtype))
    SOURCES[stack.name] = arr
    return stack


def stack_token(path: Any, dataset: str) -> str:
    """A dask name unique to a file version and dataset."""
    p = Path(str(path))
    st = p.stat()
    return f"h5-{abs(hash((str(p.resolve()), dataset, st.st_mtime_ns, st.st_size))):x}"


def positions_to_margin(positions: np.ndarray, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Shift positions so the smallest corner sits ``margin`` pixels from the origin."""
    return positions - positions.min(axis=0) + float(margin)


@contextlib.contextmanager
def atomic_write(path: Any) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` only on success.

    A killed or failing export therefore never leaves a half-written file under the
    final name (``os.replace`` is atomic on one file system).
    """
    final = Path(str(path))
    if final.is_dir():
        raise ValueError(f"path {str(final)!r} is a directory; give a file name")
    if not final.parent.exists():
        raise ValueError(f"path: folder {str(final.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".part", dir=final.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays and tuples into plain JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, complex):
        return [value.real, value.imag]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    return repr(value)
