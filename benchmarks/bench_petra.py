"""Real data: the PETRA III P25 near-field scan (CDTools example data), reconstructed.

Loads ``../shared/data/ptycho_nearfield_petra3/PETRAIII_P25_Near_Field_Ptycho.cxi`` through
``napari_ptycho.io.load`` as near-field data (Fresnel propagation distance 3.65 mm, the
CDTools example's value), runs one or more engines and saves a picture of the object
(amplitude, phase) and the probe (amplitude, phase) per engine.

Usage::

    .venv/bin/python benchmarks/bench_petra.py --methods lsqml=60,rpie=60 \\
        --out docs/images/petra_nearfield.png

Prints one JSON object (final χ², wall time per engine) and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "ptycho_nearfield_petra3" / \
    "PETRAIII_P25_Near_Field_Ptycho.cxi"


def picture(results: dict, region: tuple[slice, slice], path: Path) -> None:
    """One row per engine: object amplitude, object phase, probe amplitude, probe phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 4, figsize=(8.4, 2.3 * len(results)), dpi=90,
                             squeeze=False)
    for i, (name, res) in enumerate(results.items()):
        obj = res.object[region]
        obj = obj * np.exp(-1j * np.angle(np.mean(obj)))  # global phase: mean phase zero
        probe = res.probe[0]
        panels = [(np.abs(obj), "gray", f"{name}: object |O|"),
                  (np.angle(obj), "viridis", "object phase"),
                  (np.abs(probe), "magma", "probe |P|"),
                  (np.angle(probe), "twilight", "probe phase")]
        for ax, (img, cmap, title) in zip(axes[i], panels, strict=True):
            # percentile limits: a few wild pixels at the scan's rim must not set the scale
            lo, hi = np.percentile(img, [2, 98])
            ax.imshow(img, cmap=cmap, vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=8)
            ax.set_axis_off()
    fig.tight_layout(pad=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Reconstruct the PETRA III scan with each engine and save the picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=DATA)
    parser.add_argument("--distance", type=float, default=3.65e-3,
                        help="Fresnel propagation distance in metres")
    parser.add_argument("--methods", default="lsqml=60,rpie=60",
                        help="NAME=ITERATIONS, comma separated")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--mirror-positions", action="store_true",
                        help="mirror both position axes (the opposite CXI sign convention, "
                        "which fits this scan ~2x worse; see napari_ptycho.io.cxi)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" /
                        "petra_nearfield.png")
    args = parser.parse_args(argv)
    if not args.file.is_file():
        print(f"PETRA III data not found at {args.file}", file=sys.stderr)
        return 2

    import torch

    from napari_ptycho.engines import reconstruct
    from napari_ptycho.io import load
    from napari_ptycho.metrics import fit_metrics
    from napari_ptycho.metrics.region import scanned_region

    torch.set_num_threads(args.threads)
    data = load(args.file, propagation_distance=args.distance)
    data.diffraction = data.intensities()  # read once, not per engine
    if args.mirror_positions:
        # mirror the scan inside its own bounding box: translations of the opposite sign
        pos = data.positions
        data.positions = pos.max(0) + pos.min(0) - pos
    region = scanned_region(data.positions, data.probe_shape, data.object_shape)
    results, rows = {}, []
    for item in args.methods.split(","):
        name, _, n = item.partition("=")
        t0 = time.perf_counter()
        res = reconstruct(data, name, iterations=int(n), seed=0)
        wall = time.perf_counter() - t0
        results[name] = res
        rows.append({"method": name, "iterations": int(n), "seconds": wall,
                     "first_error": res.errors[0], "final_error": res.errors[-1],
                     "chi2": fit_metrics(res, data)["chi2"]})
        print(f"# {name}: chi2 {rows[-1]['chi2']:.4g} ({wall:.0f} s)", file=sys.stderr)
    picture(results, region, args.out)
    print(json.dumps({"file": str(args.file), "distance": args.distance,
                      "positions_mirrored": args.mirror_positions,
                      "object_pixel_size": data.geometry.object_pixel_size,
                      "patterns": data.n_patterns, "rows": rows, "picture": str(args.out)},
                     indent=1))
    print("\n| method | iterations | first error | final χ² | s |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']} | {r['iterations']} | {r['first_error']:.4f} | "
              f"{r['chi2']:.4f} | {r['seconds']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
