"""``napari-ptycho evaluate RESULT --truth FILE``: score a reconstruction against the truth.

RESULT is a result file (``napari_ptycho.io.load_result``), or a ``.npy`` holding the
complex object, or a ``.npz`` holding it as ``object`` (optionally with ``positions`` and
``probe``). FILE is a scan or volume readable by ``napari_ptycho.io.load`` whose
``truth_object`` is used, or a ``.npy`` holding the complex truth itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the ``evaluate`` options."""
    parser.add_argument("result", help="result file (.h5/.cxi), or .npy/.npz with a complex "
                        "object")
    parser.add_argument("--truth", metavar="FILE", help="scan/volume file with a ground "
                        "truth object, or a .npy holding the complex truth")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    parser.add_argument("--region", choices=("full", "scanned"), default="full",
                        help="score the whole object or only the area the probe scanned "
                        "(2D; needs positions and a probe shape)")
    parser.add_argument("--scale", action="store_true", help="also fit a global amplitude "
                        "scale (free-probe ambiguity)")
    parser.add_argument("--ramp", action="store_true", help="also remove a linear phase ramp")
    parser.add_argument("--no-register", dest="register", action="store_false",
                        help="do not remove the translation / twin (global phase still is)")
    parser.add_argument("--dims", type=int, choices=(2, 3), default=None,
                        help="force 2D or 3D (inferred by default)")


def _load_npy(path: Path, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{what} {str(path)!r} cannot be read as .npy: {exc}") from None


def load_reconstruction(path: str | Path) -> Any:
    """Read RESULT into an object with ``object`` (and ``positions``/``probe`` if known)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"result file {str(p)!r} does not exist")
    suffix = p.suffix.lower()
    if suffix == ".npy":
        return SimpleNamespace(object=_load_npy(p, "result"), positions=None, probe=None)
    if suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as npz:
                if "object" not in npz.files:
                    raise ValueError(f"result {str(p)!r} has no 'object' array (keys: "
                                     f"{sorted(npz.files)})")
                return SimpleNamespace(
                    object=npz["object"],
                    positions=npz["positions"] if "positions" in npz.files else None,
                    probe=npz["probe"] if "probe" in npz.files else None)
        except OSError as exc:
            raise ValueError(f"result {str(p)!r} cannot be read as .npz: {exc}") from None
    from napari_ptycho import io

    return io.load_result(p)


def load_truth(path: str | Path) -> tuple[np.ndarray, Any]:
    """Read FILE; return the complex truth and the scan it came from (or ``None``)."""
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"truth file {str(p)!r} does not exist")
    if p.suffix.lower() == ".npy":
        arr = _load_npy(p, "truth")
        if not np.iscomplexobj(arr):
            raise ValueError(f"truth {str(p)!r} holds a real {arr.dtype} array; give the "
                             "complex ground-truth object or a scan file that carries one")
        return arr, None
    from napari_ptycho import io

    data = io.load(p)
    truth = getattr(data, "truth_object", None)
    if truth is None:
        raise ValueError(f"truth file {str(p)!r} carries no ground truth (truth_object is "
                         "missing); only simulated data can be scored")
    return np.asarray(truth), data


def _scanned(rec: Any, data: Any, shape: tuple[int, ...]) -> tuple[slice, slice]:
    from napari_ptycho.metrics import scanned_region

    if len(shape) != 2:
        raise ValueError(f"--region scanned applies to 2D objects (truth has shape {shape})")
    positions = getattr(data, "positions", None)
    probe_shape = getattr(data, "probe_shape", None) if data is not None else None
    if positions is None:
        positions = getattr(rec, "positions", None)
    if probe_shape is None and getattr(rec, "probe", None) is not None:
        probe_shape = np.shape(rec.probe)[-2:]
    if positions is None or probe_shape is None:
        raise ValueError("--region scanned needs scan positions and a probe shape; neither "
                         "the truth file nor the result provides them")
    return scanned_region(positions, probe_shape, shape)


def format_table(scores: dict[str, float]) -> str:
    """Two-column text table of the scores."""
    width = max(len(k) for k in scores)
    return "\n".join(f"{k:<{width}}  {v:.6g}" for k, v in scores.items())


def main(args: argparse.Namespace) -> int:
    """Run ``napari-ptycho evaluate``; bad input raises ValueError (exit status 2)."""
    from napari_ptycho.metrics import evaluate

    if not args.truth:
        raise ValueError("--truth FILE is required: the ground truth to score against")
    truth, data = load_truth(args.truth)
    rec = load_reconstruction(args.result)
    obj = np.asarray(rec.object)
    region = None
    if args.region == "scanned":
        region = _scanned(rec, data, np.squeeze(truth).shape if truth.ndim > 2 else truth.shape)
    scores = evaluate(obj, truth, region=region, register=args.register, dims=args.dims,
                      scale=args.scale, ramp=args.ramp)
    if args.json:
        json.dump(scores, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"{Path(args.result).name} vs {Path(args.truth).name}"
              f"{' (scanned region)' if region else ''}")
        print(format_table(scores))
    return 0
