"""``napari-ptycho reconstruct``: run any registered method on a scan file, save the result.

Examples::

    napari-ptycho reconstruct scan.cxi --method rpie --iterations 200 --probe-modes 3 \\
        --seed 0 --device auto -o result.h5
    napari-ptycho reconstruct scan.cxi --method ad --set loss=poisson --set learning_rate=0.05
    napari-ptycho reconstruct petra.cxi --method lsqml --propagation-distance 3.65e-3

Ctrl-C stops the run cleanly: the latest snapshot is saved as a partial result (exit 130).
The result file carries the method's full configuration (``parameters``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

# first-class flag -> (config field, type, help); applied only when given
_FLAGS: dict[str, tuple[str, Any, str]] = {
    "iterations": ("iterations", int, "run length in the method's unit (default: method's)"),
    "probe_modes": ("probe_modes", int, "incoherent probe modes"),
    "seed": ("seed", int, "random seed"),
    "device": ("device", str, "auto, cpu or cuda"),
    "update_every": ("update_every", int, "snapshot (progress) every N iterations"),
    "batch_size": ("batch_size", int, "mini-batch size (0: method's automatic batching)"),
}
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``reconstruct`` flags to ``parser``."""
    parser.add_argument("file", type=Path, help="scan file (.cxi, .h5, .npz, ...)")
    parser.add_argument("-m", "--method", default="rpie",
                        help="registered method name (default rpie; see --list)")
    for flag, (_, typ, help_) in _FLAGS.items():
        parser.add_argument("--" + flag.replace("_", "-"), dest=flag, type=typ, default=None,
                            help=help_)
    parser.add_argument("--no-probe-update", action="store_true",
                        help="keep the initial probe fixed")
    parser.add_argument("--position-refinement", action="store_true",
                        help="refine the scan positions")
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="KEY=VALUE", help="any config field of the method "
                        "(repeatable), e.g. --set alpha=0.5")
    parser.add_argument("--init", type=Path, default=None,
                        help="warm start from an earlier result file")
    parser.add_argument("--near-field", action="store_true",
                        help="treat the scan as near-field (Fresnel) data")
    parser.add_argument("--propagation-distance", type=float, default=None,
                        help="Fresnel propagation distance in metres (implies near field)")
    parser.add_argument("--pixel-size", type=float, default=None,
                        help="object pixel size in metres (overrides the geometry)")
    parser.add_argument("-o", "--output", type=Path, default=None,
                        help="result file (.h5 or .cxi; default FILE_METHOD.h5)")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def parse_value(key: str, text: str, default: Any) -> Any:
    """Convert ``--set key=text`` to the type of the field's default value."""
    if isinstance(default, bool):
        low = text.strip().lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"--set {key}: expected true/false (got {text!r})")
    for typ in (int, float):
        if isinstance(default, typ):
            try:
                return typ(text) if typ is float else int(text, 0)
            except ValueError:
                raise ValueError(f"--set {key}: expected {typ.__name__} "
                                 f"(got {text!r})") from None
    if isinstance(default, str):
        return text
    try:  # tuples, lists, None defaults: a JSON literal, else the plain string
        return json.loads(text)
    except ValueError:
        return text


def build_overrides(args: argparse.Namespace, config_cls: type) -> dict[str, Any]:
    """Config overrides from the first-class flags and every ``--set key=value``."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    defaults = config_cls()
    out: dict[str, Any] = {}
    for flag, (name, _, _) in _FLAGS.items():
        value = getattr(args, flag, None)
        if value is None:
            continue
        if name not in fields:
            raise ValueError(f"--{flag.replace('_', '-')} does not apply to method "
                             f"{args.method!r}")
        out[name] = value
    switches = (("no_probe_update", "update_probe", False),
                ("position_refinement", "position_refinement", True))
    for attr, name, value in switches:
        if getattr(args, attr, False):
            if name not in fields:
                raise ValueError(f"--{attr.replace('_', '-')} does not apply to method "
                                 f"{args.method!r}")
            out[name] = value
    for item in args.settings:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ValueError(f"--set expects KEY=VALUE (got {item!r})")
        if key not in fields:
            raise ValueError(f"--set {key}: method {args.method!r} has no such parameter; "
                             f"valid: {sorted(fields)}")
        out[key] = parse_value(key, text, getattr(defaults, key))
    return out


class Progress:
    """tqdm when installed, else a plain one-line bar on stderr."""

    def __init__(self, total: int, unit: str, enabled: bool = True) -> None:
        self.enabled = enabled
        self.total = total
        self.done = 0
        self.bar = None
        if not enabled:
            return
        try:
            from tqdm import tqdm
        except ImportError:
            return
        self.bar = tqdm(total=total, unit=unit, file=sys.stderr, dynamic_ncols=True)

    def update(self, snap: Any) -> None:
        """Advance to ``snap.iteration`` and show the latest error."""
        if not self.enabled:
            return
        if int(snap.total) != self.total:  # e.g. several random starts: the engine knows
            self.total = int(snap.total)
            if self.bar is not None:
                self.bar.total = self.total
        step = max(int(snap.iteration) - self.done, 0)
        self.done = int(snap.iteration)
        err = f"{snap.errors[-1]:.3g}" if snap.errors else "-"
        if self.bar is not None:
            self.bar.set_postfix_str(f"error {err}", refresh=False)
            self.bar.update(step)
            return
        width = 30
        filled = int(width * min(self.done / max(self.total, 1), 1.0))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}"
                         f" error {err}")
        sys.stderr.flush()

    def close(self) -> None:
        """Finish the bar's line."""
        if self.bar is not None:
            self.bar.close()
        elif self.enabled:
            sys.stderr.write("\n")


def _load(args: argparse.Namespace) -> Any:
    from napari_ptycho.io import load

    near = True if (args.near_field or args.propagation_distance is not None) else None
    return load(args.file, near_field=near, propagation_distance=args.propagation_distance,
                pixel_size=args.pixel_size)


class _StopRequest:
    """The first Ctrl-C asks the run to stop at its next snapshot; a second one interrupts
    at once (KeyboardInterrupt).

    A KeyboardInterrupt raised at an arbitrary point can land inside the progress bar's
    write lock and leave it held, so that the save after it waits forever (the likely cause
    of a hang seen once in ``test_ctrl_c_saves_the_partial_result`` under load); the first
    request is therefore only a flag. Outside the main thread (no signals there) it does
    nothing.
    """

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def _handler(self, signum: int, frame: Any) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> _StopRequest:
        import threading

        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def main(args: argparse.Namespace) -> int:
    """Reconstruct, save the result (partial on Ctrl-C) and print a JSON summary."""
    from napari_ptycho.engines.base import EngineError, Result, get_engine

    engine = get_engine(args.method)  # ValueError (exit 2) for unknown names
    config = engine.Config(**build_overrides(args, engine.Config))
    if hasattr(config, "validate"):
        config.validate()  # refuse bad configs before reading any data
    out = args.output or args.file.with_name(f"{args.file.stem}_{engine.name}.h5")
    if out.suffix.lower() not in (".h5", ".hdf5", ".cxi"):
        raise ValueError(f"--output must end in .h5, .hdf5 or .cxi (got {out.name!r})")
    init = None
    if args.init is not None:
        from napari_ptycho.io import load_result

        init = load_result(args.init)
    data = _load(args)
    dims = getattr(engine, "dims", 2)
    if dims == 2 and not hasattr(data, "positions"):
        raise ValueError(f"method {engine.name!r} reconstructs 2D scans; {args.file.name} "
                         "holds a 3D volume")
    if dims == 3 and hasattr(data, "positions"):
        raise ValueError(f"method {engine.name!r} reconstructs 3D Bragg volumes; "
                         f"{args.file.name} holds a 2D ptychography scan")

    params = {"method": engine.name, **dataclasses.asdict(config)}
    print(f"reconstructing {args.file} with {engine.name} ({config.iterations} "
          f"{getattr(engine, 'unit', 'iteration')}s)", file=sys.stderr, flush=True)
    progress = Progress(int(config.iterations), getattr(engine, "unit", "iteration"),
                        enabled=not args.quiet)
    last = None
    interrupted = False
    start = time.perf_counter()
    stop = _StopRequest()
    runner = engine().run(data, config, init)
    try:
        with stop:
            for snap in runner:
                last = snap
                progress.update(snap)
                if stop.requested:
                    interrupted = True
                    break
    except KeyboardInterrupt:
        interrupted = True
    except EngineError as exc:
        progress.close()
        print(f"napari-ptycho reconstruct: {exc}", file=sys.stderr)
        return 1
    finally:
        runner.close()
    progress.close()
    if last is None:
        print("napari-ptycho reconstruct: interrupted before the first snapshot; nothing "
              "saved", file=sys.stderr)
        return 130
    result = Result.from_snapshot(last, params, source=str(args.file))
    result.extras = {**result.extras, "interrupted": interrupted}
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not
    try:                                                      # leave a half-written file
        from napari_ptycho.io import save

        save(result, out)
    finally:
        signal.signal(signal.SIGINT, previous)
    summary = {"output": str(out), "method": engine.name, "iteration": int(last.iteration),
               "total": int(last.total), "interrupted": interrupted,
               "final_error": float(last.errors[-1]) if last.errors else None,
               "seconds": round(time.perf_counter() - start, 3)}
    print(json.dumps(summary))
    if interrupted:
        print(f"napari-ptycho reconstruct: interrupted at {last.iteration}/{last.total}; "
              f"partial result saved to {out}", file=sys.stderr)
        return 130
    return 0
