"""``napari-ptycho train KIND ...``: dispatch to ``napari_ptycho.training.<kind>``.

Each training module provides ``add_arguments(parser)`` and ``main(args) -> int``; only
the chosen one is imported.
"""

from __future__ import annotations

import argparse
import importlib

#: kind -> one-line help; a kind whose module is not installed is skipped.
KINDS: dict[str, str] = {
    "pinn": "PtychoPINN (2D)",
    "autophasenn": "AutoPhaseNN, unsupervised (3D Bragg)",
    "cdinn": "3D-CDI-NN, supervised + physics (3D Bragg)",
    "diffusion": "diffusion prior (2D)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One sub-parser per available training module."""
    sub = parser.add_subparsers(dest="kind", metavar="KIND")
    for kind, help_ in KINDS.items():
        name = f"napari_ptycho.training.{kind}"
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        p = sub.add_parser(kind, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_train=mod.main)


def main(args: argparse.Namespace) -> int:
    """Run the chosen training; a missing kind is a clear error."""
    train = getattr(args, "_train", None)
    if train is None:
        raise ValueError(f"choose what to train: one of {sorted(KINDS)}")
    return int(train(args) or 0)
