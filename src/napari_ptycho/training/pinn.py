"""``napari-ptycho train pinn SCAN -o DIR``: train PtychoPINN (or its baselines).

SCAN is a file any reader opens, or ``sim:KIND[+KIND...]`` to simulate one from the
package's simulator: the named objects (``lines``, ``grf``, ``large_features``,
``siemens``) side by side in one strip, scanned either on the sample data's raster
(``--grid raster``) or on PtychoPINN's grouped grid (``--grid grouped``: 2×2 groups with
4-pixel steps inside and 8-pixel gaps between groups). The shipped model was made by
``benchmarks/bench_pinn.py --epochs 150 --filters 16 --train-copies 8 --methods pinn``,
with the same settings as::

    napari-ptycho train pinn sim:lines+lines+lines+lines+lines+lines+lines+lines \\
        --grid grouped --photons 1e9 --epochs 150 --filters 16 --test sample \\
        -o src/napari_ptycho/weights --name pinn_default

(the exact command, sizes, time and metrics are in ``weights/pinn_default.json``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

VARIANTS = ("pinn", "basic_pinn", "supervised")


def grouped_grid_positions(object_shape: tuple[int, int], probe_size: int, inner: float = 4,
                           gap: float = 8, margin: int = 1) -> np.ndarray:
    """PtychoPINN's grouped grid: 2×2 groups (``inner`` px apart), ``gap`` px between groups.

    Returns window corners (N, 2) that keep every window inside ``object_shape``.
    """
    stride = inner + gap
    hi = np.array(object_shape) - probe_size - margin - inner
    if np.any(hi < margin):
        raise ValueError(f"object {object_shape} is too small for a {probe_size}-pixel probe "
                         "on a grouped grid")
    rows = np.arange(margin, hi[0] + 1e-9, stride)
    cols = np.arange(margin, hi[1] + 1e-9, stride)
    corners = np.stack(np.meshgrid(rows, cols, indexing="ij"), -1).reshape(-1, 2)
    inside = np.array([[0, 0], [0, inner], [inner, 0], [inner, inner]], dtype=np.float64)
    return (corners[:, None, :] + inside[None]).reshape(-1, 2)


def simulate_scan(spec: str, object_size: int = 128, grid: str = "raster",
                  overlap: float = 0.7, photons: float = 1e6, seed: int = 0,
                  probe_size: int = 64) -> Any:
    """A simulated scan from ``sim:KIND[+KIND...]`` (objects side by side, one strip).

    Raises
    ------
    ValueError
        Unknown object kind or grid, or sizes the simulator refuses.
    """
    from napari_ptycho.physics.objects import make_object
    from napari_ptycho.physics.simulate import simulate_ptycho

    kinds = spec.split(":", 1)[1].split("+") if ":" in spec else [spec]
    if grid not in ("raster", "grouped"):
        raise ValueError(f"grid must be 'raster' or 'grouped' (got {grid!r})")
    rng = np.random.default_rng(seed)
    parts = [make_object(kind, object_size, rng) for kind in kinds]
    obj = np.concatenate(parts, axis=1).astype(np.complex64)
    positions = None
    if grid == "grouped":
        positions = grouped_grid_positions(obj.shape, probe_size)
    data = simulate_ptycho(object_array=obj, probe_size=probe_size, overlap=overlap,
                           photons=photons, noise="poisson", seed=seed, positions=positions)
    data.metadata["name"] = spec
    return data


def sample_scan() -> Any:
    """Exactly the plugin's Siemens-star sample scan (File > Open Sample)."""
    from napari_ptycho._sample_data import OBJECT_SIZE, PROBE_SIZE
    from napari_ptycho.physics.simulate import simulate_ptycho

    return simulate_ptycho(object="siemens", object_size=OBJECT_SIZE, probe_size=PROBE_SIZE,
                           overlap=0.7, photons=1e6, noise="poisson", seed=0)


def load_scan(spec: str, args: argparse.Namespace, seed: int | None = None) -> Any:
    """Open SCAN (``sample``, ``sim:...`` or a file path)."""
    if spec == "sample":
        return sample_scan()
    if spec.startswith("sim:"):
        return simulate_scan(spec, args.object_size, args.grid, args.overlap, args.photons,
                             args.seed if seed is None else seed, args.probe_size)
    from napari_ptycho.io import load

    if not Path(spec).exists():
        raise ValueError(f"scan {spec!r} does not exist (give a file or sim:KIND)")
    return load(spec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``napari-ptycho train pinn``."""
    parser.add_argument("scan", help="scan file, sim:KIND[+KIND...] to simulate one, or "
                        "'sample' (the Siemens sample scan)")
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder")
    parser.add_argument("--name", default=None, help="weights file stem (default: variant)")
    parser.add_argument("--variant", choices=VARIANTS, default="pinn",
                        help="pinn (default), basic_pinn (no overlap constraint) or "
                             "supervised (L1 on ground truth)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--pattern-size", type=int, default=64)
    parser.add_argument("--group-size", type=int, default=4)
    parser.add_argument("--resize", choices=("refuse", "crop", "bin"), default="refuse")
    parser.add_argument("--probe-source", choices=("auto", "data", "rpie"), default="auto")
    parser.add_argument("--max-groups", type=int, default=0)
    parser.add_argument("--train-scale", action="store_true")
    parser.add_argument("--amplitude-max", type=float, default=1.0,
                        help="amplitude = this x sigmoid (1 = the paper's [0, 1]; "
                        "1.25 speeds the first epochs only, docs/pinn.md)")
    parser.add_argument("--init", default="", help="start from these weights (fine-tune)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads on the CPU (default 1: fastest on a busy machine; "
                             "0 = torch's default)")
    parser.add_argument("--preview-every", type=int, default=0,
                        help="stitch a preview every this many epochs (default: at the end)")
    sim = parser.add_argument_group("simulated scans (sim:...)")
    sim.add_argument("--object-size", type=int, default=128, help="side of each object")
    sim.add_argument("--grid", choices=("raster", "grouped"), default="raster")
    sim.add_argument("--overlap", type=float, default=0.7, help="raster overlap")
    sim.add_argument("--photons", type=float, default=1e6, help="photons per pattern")
    sim.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--test", default=None,
                        help="held-out scan (file or sim:KIND) scored into the model card")


def main(args: argparse.Namespace) -> int:
    """Train, save weights + card after every epoch, score on ``--test`` at the end."""
    import sys

    from napari_ptycho.engines import stream

    data = load_scan(args.scan, args)
    out = Path(args.output)
    before = {}
    if args.init:  # read now: the output may overwrite the file we start from
        init_card = Path(args.init).with_suffix(".json")
        before = json.loads(init_card.read_text()) if init_card.is_file() else {}
    name = args.name or args.variant
    t0 = time.perf_counter()
    last = None
    for snap in stream(data, args.variant, iterations=args.epochs, batch_size=args.batch_size,
                       learning_rate=args.lr, filters=args.filters,
                       pattern_size=args.pattern_size, group_size=args.group_size,
                       resize=args.resize, probe_source=args.probe_source,
                       max_groups=args.max_groups, train_scale=args.train_scale,
                       amplitude_max=args.amplitude_max,
                       model_path=args.init, cpu_threads=args.threads,
                       seed=args.seed, device=args.device, save_dir=str(out),
                       update_every=max(1, int(args.preview_every or args.epochs))):
        last = snap
        print(f"epoch {snap.iteration}/{snap.total} losses {snap.errors} "
              f"({snap.elapsed:.0f} s)", flush=True)
    seconds = time.perf_counter() - t0
    saved = Path(last.extras["model_path"])
    if saved.stem != name:
        for suffix in (".pt", ".json"):
            saved.with_suffix(suffix).replace(out / f"{name}{suffix}")
        saved = out / f"{name}.pt"
    card = json.loads(saved.with_suffix(".json").read_text())
    card.update({
        "command": "napari-ptycho train pinn " + " ".join(sys.argv[3:] if len(sys.argv) > 3
                                                          else []),
        "training_data": {"scan": args.scan, "patterns": int(data.n_patterns),
                          "object_shape": list(data.object_shape),
                          "pattern_size": list(data.detector_shape),
                          "grid": args.grid, "photons": args.photons},
        "train_seconds": seconds,
    })
    if before:
        card["continued_from"] = {k: before.get(k) for k in (
            "command", "epochs", "train_seconds", "continued_from")}
        card["total_epochs"] = int(args.epochs) + int(
            before.get("total_epochs", before.get("epochs", 0)) or 0)
        card["total_train_seconds"] = seconds + float(
            before.get("total_train_seconds", before.get("train_seconds", 0)) or 0)
    if args.test:
        card["test"] = score(saved, load_scan(args.test, args, seed=args.seed + 1000))
        card["test"]["scan"] = args.test
        print(json.dumps(card["test"], indent=1))
    saved.with_suffix(".json").write_text(json.dumps(card, indent=2, default=float))
    print(f"saved {saved} ({seconds:.0f} s)")
    return 0


def score(model_path: str | Path, data: Any) -> dict[str, float]:
    """Inference with ``model_path`` on ``data`` scored against its truth (scanned region)."""
    from napari_ptycho.engines import reconstruct
    from napari_ptycho.metrics import evaluate
    from napari_ptycho.metrics.region import scanned_region

    t0 = time.perf_counter()
    result = reconstruct(data, "pinn_infer", model_path=str(model_path), device="cpu")
    seconds = time.perf_counter() - t0
    # the network reconstructs the central half of each window: score where patches reach
    n = data.detector_shape[0]
    region = scanned_region(data.positions + n // 4, (n // 2, n // 2), data.object_shape)
    m = evaluate(result.object, data.truth_object, region=region)
    keep = ("psnr_amplitude", "psnr_phase", "mae_amplitude", "mae_phase", "frc50",
            "ssim_amplitude", "ssim_phase")
    return {**{k: float(m[k]) for k in keep if k in m}, "inference_seconds": seconds,
            "patterns": int(data.n_patterns)}
