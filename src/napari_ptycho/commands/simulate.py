"""``napari-ptycho simulate``: write a simulated scan (CXI) or Bragg crystal (HDF5).

Examples::

    napari-ptycho simulate ptycho --object siemens --object-size 128 --probe-size 64 \\
        --overlap 0.7 --photons 1e6 --noise poisson --scan raster --seed 0 -o scan.cxi
    napari-ptycho simulate bragg --size 64 --seed 0 --photons 1e8 -o crystal.h5

The ground truth (object, probe; or the complex crystal) is stored inside the file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

# CLI flag -> simulate_ptycho keyword (None: the simulator's default applies)
_PTYCHO_FLAGS: dict[str, tuple[type, str]] = {
    "object": (str, "object kind: siemens, lines, grf, large_features, images"),
    "object_size": (int, "object side in pixels"),
    "probe_size": (int, "probe window side in pixels"),
    "detector_size": (int, "detector side in pixels (>= probe size; zero-padded)"),
    "overlap": (float, "overlap 1 - step/FWHM, in (0, 1)"),
    "photons": (float, "expected counts per pattern"),
    "noise": (str, "none, poisson, gaussian or mixed"),
    "scan": (str, "raster or spiral"),
    "probe": (str, "focused or gaussian"),
    "probe_modes": (int, "incoherent probe modes"),
    "jitter": (float, "position jitter (pixels, standard deviation)"),
}
_BRAGG_FLAGS: dict[str, tuple[type, str]] = {
    "size": (int, "box side in voxels (>= 16)"),
    "photons": (float, "expected total counts in the volume"),
    "oversampling": (float, "oversampling ratio per axis (>= 2)"),
    "noise": (str, "none, poisson, gaussian or mixed"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``ptycho`` and ``bragg`` sub-commands and their flags."""
    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    for kind, flags, suffix, what in (
            ("ptycho", _PTYCHO_FLAGS, ".cxi", "a 2D far-field scan"),
            ("bragg", _BRAGG_FLAGS, ".h5", "a 3D Bragg crystal")):
        p = sub.add_parser(kind, help=f"simulate {what} and write {suffix}")
        for name, (typ, help_) in flags.items():
            p.add_argument("--" + name.replace("_", "-"), dest=name, type=typ, default=None,
                           help=help_ + " (simulator default when omitted)")
        p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        if kind == "bragg":
            p.add_argument("--unstrained", action="store_true",
                           help="a real crystal without a strain phase")
        p.add_argument("-o", "--output", required=True, type=Path,
                       help=f"output file ({suffix})")


def _kwargs(args: argparse.Namespace, flags: dict[str, Any]) -> dict[str, Any]:
    kw = {name: getattr(args, name) for name in flags if getattr(args, name) is not None}
    kw["seed"] = args.seed
    return kw


def main(args: argparse.Namespace) -> int:
    """Simulate and write the file; prints a one-line JSON summary."""
    from napari_ptycho.io import save

    out = Path(args.output)
    if args.kind == "ptycho":
        if out.suffix.lower() not in (".cxi", ".h5", ".hdf5"):
            raise ValueError(f"--output must end in .cxi (got {out.name!r})")
        from napari_ptycho.physics.simulate import simulate_ptycho

        data = simulate_ptycho(**_kwargs(args, _PTYCHO_FLAGS))
        data.metadata["name"] = out.stem
        summary = {"patterns": data.n_patterns, "detector": list(data.detector_shape),
                   "object": list(data.object_shape),
                   "object_pixel_size_m": data.geometry.object_pixel_size,
                   "measured_overlap": data.metadata.get("measured_overlap")}
    else:
        if out.suffix.lower() not in (".h5", ".hdf5"):
            raise ValueError(f"--output must end in .h5 (got {out.name!r})")
        from napari_ptycho.physics.simulate import simulate_bragg

        kw = _kwargs(args, _BRAGG_FLAGS)
        if args.unstrained:
            kw["strained"] = False
        data = simulate_bragg(**kw)
        data.metadata["name"] = out.stem
        summary = {"volume": list(data.shape),
                   "oversampling": list(data.oversampling or ()),
                   "total_counts": float(data.intensities().sum())}
    save(data, out)
    print(json.dumps({"written": str(out), **summary}, default=float))
    return 0
