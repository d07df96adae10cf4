"""Time and memory to open a large CXI scan in napari until its layer is drawn.

Writes a synthetic CXI scan of ``--size-gb`` gigabytes (chunked, one frame per HDF5
chunk, written block-wise so the generator itself stays small), evicts it from the page
cache (``posix_fadvise``) so the open reads from disk, then in a fresh process opens it
in a shown napari viewer with ``viewer.open(path, plugin="napari-ptycho")`` and processes
Qt events until the canvas has drawn. Peak resident memory is sampled every 2 ms and
reported above the empty viewer's. Prints a JSON line and a table.

Run under a display (``xvfb-run -a python benchmarks/bench_open.py --size-gb 10``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

DET = "entry_1/instrument_1/detector_1"


def make_scan(path: Path, size_gb: float, frame: int) -> dict:
    """Write a synthetic uint32 CXI scan of about ``size_gb`` GB; returns its description."""
    import h5py

    n = max(1, int(size_gb * 1e9 // (frame * frame * 4)))
    yy, xx = np.mgrid[:frame, :frame] - frame / 2
    r = np.hypot(yy, xx) + 1.0
    base = (1e5 / r ** 2).astype(np.float32)  # a bright centre falling off like a pattern
    rng = np.random.default_rng(0)
    noise = rng.poisson(2.0, size=(16, frame, frame)).astype(np.uint32)
    block = max(1, int(256e6 // (frame * frame * 4)))
    side = int(np.ceil(np.sqrt(n)))
    t0 = time.perf_counter()
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(f"{DET}/data", shape=(n, frame, frame), dtype=np.uint32,
                                chunks=(1, frame, frame))
        for start in range(0, n, block):
            stop = min(n, start + block)
            scale = 1.0 + 0.1 * np.sin(np.arange(start, stop))[:, None, None]
            frames = (base[None] * scale).astype(np.uint32)
            frames += noise[np.arange(start, stop) % len(noise)]
            dset[start:stop] = frames
        f[f"{DET}/distance"] = 2.0
        f[f"{DET}/x_pixel_size"] = 75e-6
        f[f"{DET}/y_pixel_size"] = 75e-6
        f["entry_1/instrument_1/source_1/energy"] = 8000.0 * 1.602176634e-19
        step = 0.5e-6
        idx = np.arange(n)
        trans = np.zeros((n, 3))
        trans[:, 0], trans[:, 1] = (idx % side) * step, (idx // side) * step
        f["entry_1/sample_1/geometry_1/translation"] = trans
    return {"patterns": n, "frame": frame, "bytes": n * frame * frame * 4,
            "write_s": time.perf_counter() - t0}


def evict(path: Path) -> None:
    """Drop the file's pages from the OS cache so opening reads from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def _open_once(viewer, path: str, app, proc, baseline: int) -> dict:
    """Open ``path`` and wait until its diffraction layer is drawn; time and peak RSS."""
    peak = [proc.memory_info().rss]
    running = [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    layers = viewer.open(path, plugin="napari-ptycho")
    t_open = time.perf_counter() - t0
    layer = layers[0]
    # the layer is "shown" once its current slice is loaded and the canvas has drawn
    while not layer.loaded:
        app.processEvents()
    viewer.window._qt_viewer.canvas.native.repaint()
    app.processEvents()
    t_shown = time.perf_counter() - t0
    running[0] = False
    sampler.join()
    return {"open_s": t_open, "shown_s": t_shown,
            "peak_mb_above_viewer": (max(peak[0], proc.memory_info().rss) - baseline) / 2**20,
            "layers": [lyr.name for lyr in layers], "shape": list(layer.data.shape),
            "lazy": type(layer.data).__module__}


def measure(path: str) -> dict:
    """Open ``path`` twice in a shown viewer (first: with one-time imports; second: warm).

    Runs in a fresh process (see ``--child``) so the empty-viewer baseline is clean.
    """
    import napari
    import psutil
    from qtpy.QtWidgets import QApplication

    proc = psutil.Process()
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
    time.sleep(0.2)
    app.processEvents()
    baseline = proc.memory_info().rss
    first = _open_once(viewer, path, app, proc, baseline)
    evict(Path(path))
    second = _open_once(viewer, path, app, proc, baseline)
    viewer.close()
    return {**first, "rss_viewer_mb": baseline / 2**20,
            "warm": {k: second[k] for k in ("open_s", "shown_s", "peak_mb_above_viewer")}}


def main(argv: list[str] | None = None) -> int:
    """Entry point; prints JSON then a table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gb", type=float, default=10.0, help="scan size (default 10)")
    parser.add_argument("--frame", type=int, default=512, help="frame side in pixels")
    parser.add_argument("--path", type=Path, default=Path("/tmp/napari_ptycho_bench_open.cxi"))
    parser.add_argument("--keep", action="store_true", help="keep the file afterwards")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child)))
        return 0
    if args.size_gb <= 0 or args.frame < 2:
        raise ValueError("--size-gb must be > 0 and --frame >= 2")
    try:
        info = make_scan(args.path, args.size_gb, args.frame)
        evict(args.path)
        child = subprocess.run([sys.executable, __file__, "--child", str(args.path)],
                               capture_output=True, text=True, check=False)
        if child.returncode != 0:
            print(child.stderr[-3000:], file=sys.stderr)
            return child.returncode
        result = {**info, **json.loads(child.stdout.strip().splitlines()[-1])}
    finally:
        if not args.keep:
            args.path.unlink(missing_ok=True)
    print(json.dumps(result))
    warm = result["warm"]
    print(f"\n| scan | patterns | open | shown (s) | peak RSS above empty viewer (MB) |\n"
          f"|---|---|---|---|---|\n"
          f"| {result['bytes'] / 1e9:.1f} GB, {args.frame}² uint32 | {result['patterns']} | "
          f"first (imports) | {result['shown_s']:.2f} | "
          f"{result['peak_mb_above_viewer']:.0f} |\n"
          f"| | | second | {warm['shown_s']:.2f} | {warm['peak_mb_above_viewer']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
