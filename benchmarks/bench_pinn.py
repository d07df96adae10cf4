"""PtychoPINN benchmarks: fidelity (the paper's Table 2/3 shape) and speed vs ePIE.

Fidelity: PtychoPINN, the supervised baseline and the basic-PINN ablation are trained on
one simulated grouped-grid scan of a ``--train`` object strip (default Lines), then score
held-out scans (new seeds) of Lines, GRF and Large features: MAE, PSNR and FRC50 of
amplitude and phase (FRC50 in cycles per pixel, after removing shift and global phase).
Test kinds other than the training kind are the out-of-distribution rows.

Speed: inference of 1024 patterns (64²) including stitching, against ePIE on the same scan
(``--epie-iterations`` timed and scaled to 100 when fewer are run).

Prints JSON and a Markdown table; ``--out`` also writes the JSON. Example (recorded in
docs/benchmarks.md)::

    python benchmarks/bench_pinn.py --epochs 12 --filters 8 --object-size 128 \\
        --train-copies 2 --epie-iterations 10 --out /tmp/bench_pinn.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("pinn", "supervised", "basic_pinn")
KINDS = ("lines", "grf", "large_features")


def _region_scores(rec: np.ndarray, data: Any, mask: np.ndarray) -> dict[str, float]:
    """MAE, PSNR and FRC50 of amplitude and phase on the pixels of ``mask``.

    FRC runs on the mask's bounding box of the registered images; pixels of the box outside
    the mask are set to each image's in-mask mean, so only scored pixels carry structure.
    """
    from napari_ptycho.metrics import evaluate, frc
    from napari_ptycho.metrics.frc import frc_crossing
    from napari_ptycho.metrics.registration import register

    m = evaluate(rec, data.truth_object, region=mask)
    reg = register(rec, data.truth_object, mask=mask)
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    x, t, inside = reg.aligned[box], reg.reference[box], mask[box]
    out = {k: float(m[k]) for k in ("mae_amplitude", "mae_phase", "psnr_amplitude",
                                     "psnr_phase")}
    for name, fx, ft in (("amplitude", np.abs(x), np.abs(t)),
                         ("phase", np.angle(x), np.angle(t))):
        fx = np.where(inside, fx - fx[inside].mean(), 0.0)
        ft = np.where(inside, ft - ft[inside].mean(), 0.0)
        freq, curve, _, _ = frc(fx, ft, window=True)
        out[f"frc50_{name}"] = float(frc_crossing(freq, curve, 0.5))
    return out


def score(rec: np.ndarray, data: Any) -> dict[str, float]:
    """MAE, PSNR and FRC50 of amplitude and phase, in two regions.

    Plain keys: the patches' reach (the bounding box of every patch, this benchmark's
    original protocol). ``lit_`` keys: the illuminated region (summed probe intensity >= 10 %
    of its peak, ``metrics.illuminated_region``), the scoring mask of the other 2D engine
    benchmarks: the dark corners of the box were never constrained by any pattern.
    FRC50 is in cycles per pixel, 0.5 meaning the curve never falls below 0.5.
    """
    from napari_ptycho.metrics import illuminated_region
    from napari_ptycho.metrics.region import region_mask, scanned_region

    n = data.detector_shape[0]
    region = scanned_region(data.positions + n // 4, (n // 2, n // 2), data.object_shape)
    out = _region_scores(rec, data, region_mask(region, data.truth_object.shape))
    probe = data.truth_probe if data.truth_probe is not None else data.probe
    lit = illuminated_region(data.positions, probe, data.object_shape)
    out.update({f"lit_{k}": v for k, v in _region_scores(rec, data, lit).items()})
    return out


def objective(data: Any, model_path: str) -> dict[str, float]:
    """Poisson NLL on the training scan: the trained model vs true and flat patches.

    All three go through the same overlap constraint, probe and far field, so a model far
    above the truth's NLL is an optimisation shortfall, not a modelling one.
    """
    import torch
    from torch.nn import functional as F

    from napari_ptycho.engines._pinn_data import prepare_scan
    from napari_ptycho.engines.pinn import truth_patches
    from napari_ptycho.nn.pinn_model import load_model, overlap_constraint

    model, _ = load_model(model_path)
    scan = prepare_scan(data, model.arch.n, model.arch.k)
    n, g = model.arch.n, scan.groups
    scale = scan.probe_power

    def nll(patches: torch.Tensor) -> float:
        fields = torch.fft.fft2(overlap_constraint(patches, scan.offsets, n) * scan.probe,
                                norm="ortho")
        pred = scale * torch.fft.fftshift(fields, dim=(-2, -1)).abs().square()
        return float(F.poisson_nll_loss(pred, scan.counts[g], log_input=False, eps=1e-6))

    with torch.no_grad():
        true = truth_patches(scan, g.reshape(-1), n // 2).reshape(*g.shape, n // 2, n // 2)
        pred = torch.cat([model.patches(scan.inputs[g[i:i + 64]])
                          for i in range(0, len(g), 64)])
        return {"model": nll(pred), "truth": nll(true),
                "flat": nll(torch.ones_like(true) * true.abs().mean())}


def fidelity(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Train the three models and score them on held-out scans of every kind."""
    from napari_ptycho.engines import reconstruct
    from napari_ptycho.training.pinn import simulate_scan

    spec = "sim:" + "+".join([args.train] * args.train_copies)
    train = simulate_scan(spec, args.object_size, "grouped", photons=args.photons,
                          seed=args.seed)
    tests = {kind: simulate_scan(f"sim:{kind}", args.object_size, "grouped",
                                 photons=args.photons, seed=args.seed + 100 + i)
             for i, kind in enumerate(KINDS)}
    rows: dict[str, Any] = {"flat": {"train_seconds": 0.0, "final_loss": None}}
    for kind, data in tests.items():  # the reference every model must beat
        rows["flat"][kind] = score(np.ones(data.object_shape, np.complex64), data)
    if args.epie_reference:
        # what the data allow: sequential ePIE with the known probe on each test scan
        rows["epie_known_probe"] = {"train_seconds": 0.0, "final_loss": None}
        for kind, data in tests.items():
            rec = reconstruct(data, "epie", iterations=args.epie_reference, batch_size=1,
                              update_probe=False, probe_init="given", seed=args.seed,
                              device=args.device)
            rows["epie_known_probe"][kind] = score(rec.object, data)
    trained = dict(item.split("=", 1) for item in args.trained)
    for method in args.methods:
        if method in trained:  # a model trained earlier with these settings (its card says)
            model = trained[method]
            card = json.loads(Path(model).with_suffix(".json").read_text())
            seconds = float(card.get("train_seconds", 0.0))
            rows[method] = {"train_seconds": seconds, "final_loss": card.get("loss"),
                            "model_path": model, "reused": True}
        else:
            t0 = time.perf_counter()
            result = reconstruct(train, method, iterations=args.epochs, filters=args.filters,
                                 batch_size=args.batch_size, seed=args.seed,
                                 device=args.device, save_dir=str(workdir / method),
                                 update_every=args.epochs, cpu_threads=args.threads,
                                 max_groups=args.max_groups, learning_rate=args.lr,
                                 amplitude_max=args.amplitude_max)
            seconds = time.perf_counter() - t0
            model = result.extras["model_path"]
            rows[method] = {"train_seconds": seconds, "final_loss": result.errors[-1],
                            "model_path": model}
        if method != "supervised":
            rows[method]["nll_on_training_scan"] = objective(train, model)
        for kind, data in tests.items():
            rec = reconstruct(data, "pinn_infer", model_path=model, device=args.device)
            rows[method][kind] = score(rec.object, data)
            # the same patches stitched with probe-intensity weights (a separate row)
            rec = reconstruct(data, "pinn_infer", model_path=model, device=args.device,
                              stitch_weighting="probe")
            rows.setdefault(f"{method}+probe-weighted", {"train_seconds": seconds})[kind] = \
                score(rec.object, data)
        print(f"{method}: trained in {seconds:.0f} s; "
              + "; ".join(f"{k} amp {rows[method][k]['psnr_amplitude']:.1f} dB phase "
                          f"{rows[method][k]['psnr_phase']:.1f} dB" for k in KINDS),
              flush=True)
    return {"train_patterns": int(train.n_patterns), "train_object": list(train.object_shape),
            "train_groups": int(train.n_patterns) // 4, "lr": args.lr,
            "test_patterns": {k: int(d.n_patterns) for k, d in tests.items()},
            "epochs": args.epochs, "filters": args.filters, "batch_size": args.batch_size,
            "amplitude_max": args.amplitude_max,
            "photons": args.photons, "train_kind": args.train, "models": rows}


def step_rate(args: argparse.Namespace, steps: int = 20) -> dict[str, float]:
    """Training throughput (groups/s) of PtychoPINN steps at 1 and 2 torch threads."""
    import torch

    from napari_ptycho.engines._pinn_data import prepare_scan
    from napari_ptycho.engines.pinn import loss_of
    from napari_ptycho.nn.pinn_model import PinnArch, PinnNet
    from napari_ptycho.training.pinn import simulate_scan

    data = simulate_scan("sim:lines+lines", args.object_size, "grouped",
                         photons=args.photons, seed=args.seed)
    scan = prepare_scan(data, 64, 4)
    model = PinnNet(PinnArch(64, 4, args.filters, "group"))
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scale = torch.tensor(scan.probe_power)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        times = []
        for i in range(steps + 2):
            idx = torch.arange(i * 16, i * 16 + 16) % len(scan.groups)
            t0 = time.perf_counter()
            loss = loss_of("pinn", model, scan, idx, scale)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - t0)
        out[f"groups_per_s_{threads}_threads"] = 16 / float(np.median(times[2:]))
    torch.set_num_threads(args.threads)
    return out


def _timed(fn: Any) -> tuple[float, float]:
    """(wall, process CPU) seconds of ``fn()``; CPU time is what compares under load."""
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def speed(args: argparse.Namespace, model_path: str) -> dict[str, Any]:
    """Inference of 1024 patterns (with stitching) vs ePIE on the same scan.

    Times the whole ``pinn_infer`` call (model loading, grouping, network, stitching) in
    wall and process CPU seconds, the best of ``--repeats``; with ``--speed-filters`` also
    untrained networks of other widths (the time does not depend on the weights), to show
    which size would fit the ratio goal.
    """
    import torch

    from napari_ptycho.engines import reconstruct
    from napari_ptycho.nn.pinn_model import PinnArch, PinnNet, load_model, save_model
    from napari_ptycho.physics.simulate import simulate_ptycho
    from napari_ptycho.training.pinn import grouped_grid_positions

    side = 16 * 12 + 64 + 2  # 16 x 16 groups of 4 -> 1024 patterns
    positions = grouped_grid_positions((side, side), 64)[:1024]
    data = simulate_ptycho(object="lines", object_size=side, probe_size=64,
                           photons=args.photons, noise="poisson", seed=args.seed,
                           positions=positions)
    torch.set_num_threads(args.threads)
    models = {"model": model_path}
    with tempfile.TemporaryDirectory() as tmp:
        arch = load_model(model_path)[0].arch
        for f in args.speed_filters:
            net = PinnNet(PinnArch(arch.n, arch.k, f, arch.gauge, arch.phase_limit))
            models[f"filters_{f}"] = str(save_model(net, Path(tmp) / f"f{f}.pt", {}))
        infer = {}
        for name, path in models.items():
            reconstruct(data.subset(slice(0, 16)), "pinn_infer", model_path=path,
                        device=args.device)  # warm-up (allocations, lazy imports)
            runs = [_timed(lambda p=path: reconstruct(data, "pinn_infer", model_path=p,
                                                      device=args.device, tile_groups=1024))
                    for _ in range(args.repeats)]
            infer[name] = {"wall": min(r[0] for r in runs), "cpu": min(r[1] for r in runs)}
    wall, cpu = _timed(lambda: reconstruct(data, "epie", iterations=args.epie_iterations,
                                           device=args.device, seed=0))
    scale = 100 / args.epie_iterations
    out = {"patterns": int(data.n_patterns), "pattern_size": 64,
           "inference_seconds": infer["model"]["wall"],
           "inference_cpu_seconds": infer["model"]["cpu"],
           "epie_100_seconds": wall * scale, "epie_100_cpu_seconds": cpu * scale,
           "epie_iterations_timed": args.epie_iterations,
           "ratio": infer["model"]["wall"] / (wall * scale),
           "ratio_cpu": infer["model"]["cpu"] / (cpu * scale),
           "budget_cpu_seconds_for_1_300": cpu * scale / 300,
           "threads": args.threads, "model_filters": arch.filters}
    out["by_width"] = {name: {**t, "ratio_cpu": t["cpu"] / (cpu * scale)}
                       for name, t in infer.items() if name != "model"}
    return out


def table(res: dict[str, Any]) -> str:
    """Markdown tables of the results."""
    lines = []
    if "fidelity" in res:
        f = res["fidelity"]
        lines += [f"Trained on {f['train_kind']} ({f['train_patterns']} patterns, object "
                  f"{f['train_object']}), {f['epochs']} epochs, filters {f['filters']}.", "",
                  "| model | test object | MAE amp | MAE phase | PSNR amp | PSNR phase | "
                  "FRC50 amp | FRC50 phase | lit: MAE amp | MAE phase | PSNR amp | "
                  "PSNR phase | FRC50 amp | FRC50 phase | train s |",
                  "|---" * 15 + "|"]
        for method, row in f["models"].items():
            if method == "flat" or "+" in method:
                row = {**row, "train_seconds": row.get("train_seconds", 0.0)}
            for kind in KINDS:
                s = row[kind]
                ood = "" if kind == f["train_kind"] else " (OOD)"
                cells = [f"{s[p + k]:{fmt}}" for p in ("", "lit_") for k, fmt in (
                    ("mae_amplitude", ".3f"), ("mae_phase", ".3f"), ("psnr_amplitude", ".1f"),
                    ("psnr_phase", ".1f"), ("frc50_amplitude", ".3f"),
                    ("frc50_phase", ".3f"))]
                lines.append(f"| {method} | {kind}{ood} | " + " | ".join(cells)
                             + f" | {row['train_seconds']:.0f} |")
    if "training_step" in res:
        t = res["training_step"]
        lines += ["", f"Training steps (batch 16 groups of 4 x 64²): "
                  f"{t['groups_per_s_1_threads']:.0f} groups/s on 1 thread, "
                  f"{t['groups_per_s_2_threads']:.0f} groups/s on 2 threads."]
    if "speed" in res:
        s = res["speed"]
        lines += ["", f"Speed: {s['patterns']} patterns of 64², model of "
                  f"{s['model_filters']} filters: inference + stitching "
                  f"{s['inference_cpu_seconds']:.3f} s CPU ({s['inference_seconds']:.3f} s "
                  f"wall); ePIE 100 iterations {s['epie_100_cpu_seconds']:.1f} s CPU "
                  f"({s['epie_100_seconds']:.1f} s wall, timed {s['epie_iterations_timed']}); "
                  f"ratio 1/{1 / s['ratio_cpu']:.0f} CPU (1/{1 / s['ratio']:.0f} wall); "
                  f"1/300 needs <= {s['budget_cpu_seconds_for_1_300'] * 1e3:.0f} ms CPU."]
        for name, t in s.get("by_width", {}).items():
            lines.append(f"  untrained {name}: {t['cpu'] * 1e3:.0f} ms CPU, ratio "
                         f"1/{1 / t['ratio_cpu']:.0f}")
    return "\n".join(lines)


def main() -> None:
    """Run the benchmarks and print JSON + table."""
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--filters", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--object-size", type=int, default=128)
    p.add_argument("--train", choices=KINDS, default="lines")
    p.add_argument("--train-copies", type=int, default=2,
                   help="objects side by side in the training strip")
    p.add_argument("--photons", type=float, default=1e9)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (training and timing); 1 is fastest on a busy CPU")
    p.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--amplitude-max", type=float, default=1.0,
                   help="amplitude = this x sigmoid in every trained model")
    p.add_argument("--max-groups", type=int, default=0)
    p.add_argument("--trained", nargs="*", default=[], metavar="METHOD=PATH",
                   help="score these models instead of training them (e.g. "
                   "pinn=src/napari_ptycho/weights/pinn_default.pt, trained "
                   "with --epochs 150 --filters 16 --train-copies 8)")
    p.add_argument("--copy-models", type=Path, default=None,
                   help="keep the trained models in this folder")
    p.add_argument("--epie-iterations", type=int, default=100)
    p.add_argument("--epie-reference", type=int, default=100,
                   help="iterations of the sequential known-probe ePIE row "
                   "of the fidelity table (0 = no row)")
    p.add_argument("--skip", choices=("fidelity", "speed"), default=None)
    p.add_argument("--repeats", type=int, default=3,
                   help="inference timings per model (the best counts)")
    p.add_argument("--speed-filters", type=int, nargs="*", default=[],
                   help="also time untrained networks of these widths")
    p.add_argument("--no-step-rate", action="store_true",
                   help="skip timing training steps at 1 and 2 threads")
    p.add_argument("--model", default=None, help="model for the speed test (default: the "
                   "PINN trained here, else the shipped one)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    res: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if not args.no_step_rate:
            res["training_step"] = step_rate(args)
            print(json.dumps(res["training_step"]), flush=True)
        if args.skip != "fidelity":
            res["fidelity"] = fidelity(args, Path(tmp))
            if "pinn" in res["fidelity"]["models"]:
                model = model or res["fidelity"]["models"]["pinn"]["model_path"]
            if args.copy_models:
                import shutil

                args.copy_models.mkdir(parents=True, exist_ok=True)
                for method in args.methods:
                    for f in Path(tmp, method).glob("*") if Path(tmp, method).is_dir() else []:
                        shutil.copy(f, args.copy_models / f.name)
        if args.skip != "speed":
            from napari_ptycho.engines.pinn import DEFAULT_MODEL

            res["speed"] = speed(args, model or str(DEFAULT_MODEL))
    text = json.dumps(res, indent=1, default=float)
    print(text)
    print(table(res))
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
