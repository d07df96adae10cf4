"""Fidelity of PtyINR against ePIE, DM and AD with an unknown probe (shape of PtyINR Fig. 2–3).

Simulated Siemens-star scans with a focused probe (rings: "with structure"), the probe
estimated from the data by every method (``probe_init="data"``; PtyINR pre-fits its probe
field to the same estimate). Cases:

* overlap study, noise-free: overlaps ``--overlaps`` (default 0.95, 0.5, 0.3);
* noise study at ``--noise-overlap``: Poisson (α = 10, PtyINR's eq. 6), Gaussian
  (σ = 100 counts, eq. 7) and mixed (eq. 8) — ``napari_ptycho.physics.noise``;
* ω₀ study: PtyINR with ω₀ = 30 / 90 / 300 at two overlaps (``--omega-overlaps``).

Scores: PSNR of object amplitude and phase inside the scanned region and of probe amplitude
and phase, after removing global phase, scale and shift (``napari_ptycho.metrics.evaluate``
with ``scale=True``), plus wall time. Prints one JSON object and a Markdown table; writes
small PNGs (``--images``).

The CPU is shared: sizes are flags. Development: ``--quick``. Full run (docs):
``python benchmarks/bench_ptyinr.py --images docs/images``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

METHODS = ("ptyinr", "epie", "dm", "ad")


def object_size(overlap: float, args: argparse.Namespace) -> int:
    """Object side for ``overlap``: dense scans use ``--dense-object-size`` so the pattern
    count stays affordable (overlap is 1 − step / FWHM: 90 % on a 160² object would be
    4761 patterns), sparse ones ``--object-size`` so they still hold ~100 patterns."""
    return args.dense_object_size if overlap >= args.dense_from else args.object_size


def make_case(overlap: float, noise: str, args: argparse.Namespace) -> Any:
    """One simulated scan with ground truth."""
    from napari_ptycho.physics.simulate import simulate_ptycho

    kw: dict[str, Any] = {}
    if noise in ("poisson", "mixed"):
        kw["alpha"] = args.alpha
    if noise in ("gaussian", "mixed"):
        kw["sigma"] = args.sigma
    return simulate_ptycho(object="siemens", object_size=object_size(overlap, args),
                           probe_size=args.probe_size, overlap=overlap, photons=args.photons,
                           noise=noise, probe="focused", seed=args.seed, **kw)


def run_method(data: Any, method: str, args: argparse.Namespace, **extra: Any) -> Any:
    """Reconstruct with ``method`` from a data-estimated probe; returns (result, (wall
    seconds, process CPU seconds)). A run that stops with an EngineError returns (the
    error message, times). CPU time is the comparable figure on a shared machine."""
    from napari_ptycho.engines import EngineError, reconstruct

    common = {"device": "cpu", "seed": args.seed}
    if method == "ptyinr":
        kw = {"iterations": args.steps, "batch_size": args.batch, "render_every": args.steps,
              "update_every": args.steps, **args.ptyinr, **extra}
    else:
        kw = {"iterations": args.iters, "probe_init": "data", "update_every": args.iters}
        if args.baseline_probe == "defocus":
            kw["init"] = searched_start(data, args)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        result = reconstruct(data, method, **common, **kw)
    except EngineError as err:
        return str(err), (time.perf_counter() - t0, time.process_time() - c0)
    return result, (time.perf_counter() - t0, time.process_time() - c0)


def searched_start(data: Any, args: argparse.Namespace) -> Any:
    """A warm start for ePIE / DM / AD from PtyINR's "defocus" probe guess (flat object),
    so that they can be compared from the same start (``--baseline-probe defocus``)."""
    from napari_ptycho.engines.base import Snapshot
    from napari_ptycho.engines.common import PtychoConfig, prepare
    from napari_ptycho.engines.probe_search import search_defocus
    from napari_ptycho.engines.ptyinr import PtyINRConfig

    cfg = PtyINRConfig(**{k: v for k, v in args.ptyinr.items()
                          if k.startswith("defocus_")})
    problem = prepare(data, PtychoConfig(iterations=1, device="cpu", probe_init="data"))
    probe, _, _ = search_defocus(problem, cfg.defocus_phases(), cfg.defocus_iterations)
    return Snapshot(iteration=0, total=0, object=np.ones(data.object_shape, np.complex64),
                    probe=probe.cpu().numpy(), positions=np.asarray(data.positions),
                    errors=[], elapsed=0.0, unit="iteration", method="defocus-search",
                    done=True)


def scored(result: Any, data: Any, times: tuple[float, float]) -> dict[str, Any]:
    """Scores of one run (NaN PSNRs and the message for a run that stopped)."""
    seconds, cpu = times
    if isinstance(result, str):
        nan = float("nan")
        return {"object_amplitude": nan, "object_phase": nan, "probe_amplitude": nan,
                "probe_phase": nan, "seconds": seconds, "cpu_seconds": cpu, "failed": result}
    extras = result.extras or {}
    starts = ({"start_errors": extras["start_errors"], "chosen_start": extras["chosen_start"]}
              if extras.get("start_errors") else {})  # PtyINR restarts (option starts > 1)
    if "defocus_edge_phase" in extras:  # PtyINR's searched probe start
        starts["defocus_edge_phase"] = extras["defocus_edge_phase"]
    return {**score(result, data), "seconds": seconds, "cpu_seconds": cpu,
            "final_error": result.errors[-1], **starts}



def score(result: Any, data: Any) -> dict[str, float]:
    """PSNRs of object (lit region) and probe after removing global phase, scale, shift and
    the linear phase ramp that blind ptychography cannot fix (it moves between object and
    probe without changing the exit waves)."""
    from napari_ptycho.metrics import evaluate, illuminated_region

    # the lit region, not the scanned box: the box would also score the dark corners of
    # the windows, where no method is constrained by the data
    lit = illuminated_region(data.positions, data.truth_probe, data.object_shape)
    obj = evaluate(result.object, data.truth_object, region=lit, scale=True, ramp=True)
    probe = evaluate(result.probe[0], data.truth_probe[0], scale=True, ramp=True)
    return {"object_amplitude": obj["psnr_amplitude"], "object_phase": obj["psnr_phase"],
            "probe_amplitude": probe["psnr_amplitude"], "probe_phase": probe["psnr_phase"],
            **paper_score(result, data, lit)}


def paper_score(result: Any, data: Any, region: np.ndarray) -> dict[str, float]:
    """The PtyINR paper's looser scores, next to ours (keys ``paper_*``).

    As in the authors' evaluation: the reconstructed amplitude is rescaled by the median
    ratio to the truth, clipped to <= 1, and PSNR is taken with peak 1 (amplitude) and π
    (phase); the probe amplitude is normalised to its maximum. Their 30-pixel border crop
    does not fit our 96² objects, so the lit region stands in for it. Shift, global phase
    and phase ramp are removed first (as for our scores); no least-squares scale.
    """
    from napari_ptycho.metrics import registration
    from napari_ptycho.metrics.scores import psnr

    def one(rec: np.ndarray, truth: np.ndarray, mask: np.ndarray | None,
            probe: bool) -> tuple[float, float]:
        reg = registration.register(rec, truth, mask=mask, shift=True, ramp=True)
        x, t = reg.aligned, reg.reference
        sel = np.ones(t.shape, bool) if mask is None else reg.mask
        amp_x, amp_t = np.abs(x), np.abs(t)
        if probe:
            amp_x, amp_t = amp_x / amp_x.max(), amp_t / amp_t.max()
        else:
            amp_x = amp_x * np.median(amp_t[sel] / np.maximum(amp_x[sel], 1e-12))
            amp_x = np.minimum(amp_x, 1.0)
        dphi = np.angle(x * np.conj(t))
        return (psnr(amp_t, amp_x, 1.0, sel),
                psnr(np.zeros_like(dphi), dphi, np.pi, sel))

    oa, op = one(np.asarray(result.object), data.truth_object, region, False)
    pa, pp = one(np.asarray(result.probe[0]), data.truth_probe[0], None, True)
    return {"paper_object_amplitude": oa, "paper_object_phase": op,
            "paper_probe_amplitude": pa, "paper_probe_phase": pp}


def save_images(case: str, data: Any, results: dict[str, Any], folder: Path,
                prefix: str = "ptyinr_") -> str:
    """Amplitude/phase of object and probe per method (rows) next to the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [("truth", data.truth_object, data.truth_probe[0])]
    rows += [(m, r.object, r.probe[0]) for m, r in results.items() if not isinstance(r, str)]
    fig, axes = plt.subplots(len(rows), 4, figsize=(6, 1.5 * len(rows)))
    for i, (name, obj, probe) in enumerate(rows):
        ref = np.vdot(obj, data.truth_object)  # remove the global phase for display
        obj = obj * np.exp(-1j * np.angle(ref)) if ref != 0 else obj
        for j, (img, cmap) in enumerate(((np.abs(obj), "gray"), (np.angle(obj), "twilight"),
                                         (np.abs(probe), "magma"),
                                         (np.angle(probe), "twilight"))):
            ax = axes[i, j]
            ax.imshow(img, cmap=cmap)
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(name, fontsize=8)
            if i == 0:
                ax.set_title(("obj amp", "obj phase", "probe amp", "probe phase")[j],
                             fontsize=8)
    fig.tight_layout()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{prefix}{case}.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    _palettise(path)
    return str(path)


def _palettise(path: Path) -> None:
    """Rewrite a PNG with a 256-colour palette (a third of the RGBA size, same look)."""
    from PIL import Image

    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256)
    small.save(path, optimize=True)


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Seconds per PtyINR step (median of ``--speed-steps``) for precision / compile variants
    and the two presets, on the noise-free ``--noise-overlap`` case."""
    from napari_ptycho.engines._ptyinr_fit import Fit
    from napari_ptycho.engines.ptyinr import PtyINRConfig

    data = make_case(args.noise_overlap, "none", args)
    variants = {"cpu float32": {}, "cpu bfloat16": {"precision": "bfloat16"},
                "cpu compile": {"compile": True}, "cpu exact sampling": {"sampling": "exact"},
                "paper float32": {"preset": "paper"}}
    out = {}
    for name, kw in variants.items():
        fit = Fit(data, PtyINRConfig(device="cpu", prefit_steps=5, **kw), None)
        t0, c0 = time.perf_counter(), time.process_time()
        fit.step(0)  # first step: compilation, allocator warm-up
        first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
        times, cpu = [], []
        for k in range(1, args.speed_steps + 1):
            t0, c0 = time.perf_counter(), time.process_time()
            fit.step(k)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        # process CPU time: comparable under load (one thread), unlike wall time
        out[name] = {"first_step_s": first, "step_s": float(np.median(times)),
                     "first_step_cpu_s": first_cpu, "step_cpu_s": float(np.median(cpu)),
                     "patterns": data.n_patterns}
        print(f"# speed {name}: {out[name]}", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object-size", type=int, default=160)
    parser.add_argument("--dense-object-size", type=int, default=96,
                        help="object side for overlaps >= --dense-from")
    parser.add_argument("--dense-from", type=float, default=0.8)
    parser.add_argument("--probe-size", type=int, default=64)
    parser.add_argument("--photons", type=float, default=1e6)
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--sigma", type=float, default=100.0)
    parser.add_argument("--overlaps", type=float, nargs="*", default=[0.9, 0.5, 0.3])
    parser.add_argument("--noise-overlap", type=float, default=0.5)
    parser.add_argument("--noises", nargs="*", default=["poisson", "gaussian", "mixed"])
    parser.add_argument("--omega-overlaps", type=float, nargs="*", default=[0.9, 0.3])
    parser.add_argument("--omegas", type=float, nargs="*", default=[30.0, 90.0, 300.0])
    parser.add_argument("--steps", type=int, default=300, help="PtyINR steps")
    parser.add_argument("--batch", type=int, default=0, help="PtyINR batch (0 = all)")
    parser.add_argument("--iters", type=int, default=100, help="ePIE/DM/AD iterations")
    parser.add_argument("--ptyinr", type=json.loads, default={},
                        help='extra PtyINR config as JSON, e.g. \'{"object_lr": 3e-4}\'')
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--baseline-probe", choices=("data", "defocus"), default="data",
                        help="start of ePIE/DM/AD: the flat-phase data guess (default) or "
                             "PtyINR's defocus-searched probe (its search time is not "
                             "counted in their CPU time)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=Path, default=None)
    parser.add_argument("--image-prefix", default="ptyinr_",
                        help="image file names: PREFIX + case + .png")
    parser.add_argument("--speed", action="store_true",
                        help="only time PtyINR steps (precision, compile, presets)")
    parser.add_argument("--speed-steps", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes for development (48² object, 24² probe)")
    args = parser.parse_args()
    if args.quick:
        args.object_size, args.probe_size, args.steps, args.iters = 48, 24, 30, 10
        args.dense_object_size = 48
        args.overlaps, args.omega_overlaps, args.omegas = [0.5], [0.5], [30.0, 90.0]

    import torch

    torch.set_num_threads(args.threads)
    if args.speed:
        result = speed(args)
        print(json.dumps(result, indent=1))
        print("| variant | first step CPU (s) | step CPU (s) | step wall (s) |\n"
              "|---|---|---|---|")
        for name, m in result.items():
            print(f"| {name} | {m['first_step_cpu_s']:.2f} | {m['step_cpu_s']:.3f} | "
                  f"{m['step_s']:.3f} |")
        return
    cases = [(f"overlap{int(round(o * 100))}", o, "none") for o in args.overlaps]
    cases += [(f"{n}_overlap{int(round(args.noise_overlap * 100))}", args.noise_overlap, n)
              for n in args.noises]
    out: dict[str, Any] = {"settings": {k: (str(v) if isinstance(v, Path) else v)
                                        for k, v in vars(args).items()},
                           "loadavg_start": os.getloadavg(),
                           "cases": {}, "omega": {}}
    for name, overlap, noise in cases:
        data = make_case(overlap, noise, args)
        entry: dict[str, Any] = {"overlap": overlap, "noise": noise,
                                 "object_size": data.object_shape[0],
                                 "measured_overlap": data.metadata["measured_overlap"],
                                 "patterns": data.n_patterns, "methods": {}}
        results = {}
        for method in args.methods:
            result, seconds = run_method(data, method, args)
            results[method] = result
            entry["methods"][method] = {**scored(result, data, seconds),
                                        "loadavg": os.getloadavg()[0]}
            print(f"# {name} {method}: {entry['methods'][method]}", flush=True)
        if args.images is not None:
            entry["image"] = save_images(name, data, results, args.images,
                                         args.image_prefix)
        out["cases"][name] = entry
    for overlap in args.omega_overlaps:
        data = make_case(overlap, "none", args)
        for omega in args.omegas:
            result, seconds = run_method(data, "ptyinr", args, first_omega=omega)
            key = f"overlap{int(round(overlap * 100))}_omega{int(omega)}"
            out["omega"][key] = {**scored(result, data, seconds),
                                 "loadavg": os.getloadavg()[0]}
            print(f"# {key}: {out['omega'][key]}", flush=True)
    out["loadavg_end"] = os.getloadavg()
    text = json.dumps(out, indent=1, default=float)
    if args.json is not None:
        args.json.write_text(text)
    print(text)
    print(table(out))


def table(out: dict[str, Any]) -> str:
    """Markdown tables of the cases and the ω₀ study."""
    lines = ["| case | object | patterns | method | obj amp PSNR | obj phase PSNR | "
             "probe amp PSNR | probe phase PSNR | paper-style obj amp / phase | "
             "CPU (s) |", "|---" * 10 + "|"]
    for name, entry in out["cases"].items():
        for method, m in entry["methods"].items():
            paper = (f"{m['paper_object_amplitude']:.1f} / {m['paper_object_phase']:.1f}"
                     if "paper_object_amplitude" in m else "–")
            lines.append(f"| {name} | {entry['object_size']}² | {entry['patterns']} | {method} | "
                         f"{m['object_amplitude']:.1f} | {m['object_phase']:.1f} | "
                         f"{m['probe_amplitude']:.1f} | {m['probe_phase']:.1f} | {paper} | "
                         f"{m['cpu_seconds']:.0f} |" + (" stopped |" if "failed" in m else ""))
    if out["omega"]:
        lines += ["", "| ω₀ study | obj amp PSNR | obj phase PSNR | probe amp PSNR | "
                  "probe phase PSNR | CPU (s) |", "|---|---|---|---|---|---|"]
        for key, m in out["omega"].items():
            lines.append(f"| {key} | {m['object_amplitude']:.1f} | {m['object_phase']:.1f} | "
                         f"{m['probe_amplitude']:.1f} | {m['probe_phase']:.1f} | "
                         f"{m['cpu_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
