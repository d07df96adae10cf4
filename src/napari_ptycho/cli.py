"""``napari-ptycho`` command line: one sub-command per module under ``napari_ptycho.commands``.

Each command module defines ``add_arguments(parser)`` and ``main(args) -> int``; they are
imported only when their sub-command runs, so ``napari-ptycho --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# sub-command -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "simulate": ("napari_ptycho.commands.simulate", "simulate a ptychography scan or a Bragg "
                 "crystal"),
    "evaluate": ("napari_ptycho.commands.evaluate", "score a reconstruction against the truth"),
    "reconstruct": ("napari_ptycho.commands.reconstruct", "reconstruct a scan with any method"),
    "train": ("napari_ptycho.commands.train", "train a network (pinn, autophasenn, cdinn, "
              "diffusion)"),
    "gui": ("napari_ptycho.commands.gui", "open napari with the plugin docked and a sample scan"),
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every available sub-command."""
    parser = argparse.ArgumentParser(prog="napari-ptycho", description=__doc__.splitlines()[0])
    from napari_ptycho import __version__

    parser.add_argument("--version", action="version", version=f"napari-ptycho {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:  # not built yet
                continue
            raise
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_main=mod.main)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``napari-ptycho`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_main", None):
        parser.print_help()
        return 2
    try:
        return int(args._main(args) or 0)
    except ValueError as exc:  # bad input: a clear message, no traceback
        print(f"napari-ptycho {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
