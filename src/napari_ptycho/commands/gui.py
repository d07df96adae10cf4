"""``napari-ptycho gui``: napari with the reconstruction and plots docks and a sample scan.

``--screenshot`` and ``--quit-after`` make it checkable headless (under Xvfb); ``--run N``
starts an N-iteration reconstruction right away (what the user-guide screenshots show).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

SAMPLES = ("siemens", "low_overlap", "bragg", "none")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of the ``gui`` sub-command."""
    parser.add_argument("--sample", choices=SAMPLES, default="siemens",
                        help="sample data to open (default: siemens; none opens nothing)")
    parser.add_argument("--method", default="epie",
                        help="method selected in the dock (default: epie)")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"),
                        help="device selected in the dock (default: cpu)")
    parser.add_argument("--run", type=int, default=0, metavar="N",
                        help="start an N-iteration reconstruction at once (default: 0 = no)")
    parser.add_argument("--screenshot", type=Path, default=None, metavar="PNG",
                        help="save a screenshot of the window (after --run finishes)")
    parser.add_argument("--quit-after", type=float, default=None, metavar="S",
                        help="close napari after S seconds (for headless checks)")


def _check(args: argparse.Namespace) -> None:
    if args.quit_after is not None and not args.quit_after > 0:
        raise ValueError(f"--quit-after must be a positive number of seconds "
                         f"(got {args.quit_after})")
    if args.run < 0:
        raise ValueError(f"--run must be >= 0 iterations (got {args.run})")
    if args.screenshot is not None and args.screenshot.suffix.lower() != ".png":
        raise ValueError(f"--screenshot must name a .png file (got {args.screenshot})")
    if args.run and args.sample in ("none", "bragg"):
        raise ValueError("--run needs a 2D scan: choose --sample siemens or low_overlap "
                         "(the Bragg CDI dock has its own Start)")


def build_viewer(sample: str = "siemens", method: str = "epie", device: str = "cpu",
                 show: bool = True) -> tuple[Any, dict[str, Any]]:
    """A napari viewer with the plugin's docks and ``sample`` opened; returns (viewer, docks).

    Raises
    ------
    ValueError
        For an unknown ``sample`` or ``method``.
    """
    if sample not in SAMPLES:
        raise ValueError(f"sample must be one of {SAMPLES} (got {sample!r})")
    import napari

    from napari_ptycho._widgets.plots import PlotsWidget
    from napari_ptycho._widgets.reconstruct import ReconstructionWidget

    viewer = napari.Viewer(title="napari-ptycho", show=show)
    viewer.window._qt_window.resize(1600, 1000)  # room for the image and both docks
    if sample != "none":
        viewer.open_sample("napari-ptycho", sample)
    docks: dict[str, Any] = {}
    if sample == "bragg":  # a 3D volume: the Bragg CDI dock and a 3D view
        viewer.dims.ndisplay = 3
        try:
            _, docks["bragg"] = viewer.window.add_plugin_dock_widget("napari-ptycho",
                                                                     "Bragg CDI")
        except Exception as exc:  # the 3D dock is optional here: say so and go on
            print(f"napari-ptycho gui: Bragg dock unavailable ({exc})")
        return viewer, docks
    recon = ReconstructionWidget(viewer)
    names = [recon.method_box.itemText(i) for i in range(recon.method_box.count())]
    if method not in names:
        viewer.close()
        raise ValueError(f"method must be one of {names} (got {method!r})")
    recon.method_box.setCurrentText(method)
    if recon.form is not None:
        recon.form.set_values({"device": device})
    docks["reconstruct"] = recon
    docks["plots"] = PlotsWidget(viewer)
    viewer.window.add_dock_widget(recon, name="Ptychography reconstruction", area="right")
    viewer.window.add_dock_widget(docks["plots"], name="Plots (loss, FRC)", area="right")
    return viewer, docks


def main(args: argparse.Namespace) -> int:
    """Open the GUI; returns when napari closes."""
    from napari_ptycho._threads import prefer_passive_wait

    prefer_passive_wait()  # before torch is imported: see napari_ptycho._threads
    _check(args)
    import napari
    from qtpy.QtCore import QTimer

    viewer, docks = build_viewer(args.sample, args.method, args.device)
    recon = docks.get("reconstruct")
    state = {"shot": False}

    def take_screenshot() -> None:
        if args.screenshot is None or state["shot"]:
            return
        state["shot"] = True
        args.screenshot.parent.mkdir(parents=True, exist_ok=True)
        viewer.screenshot(str(args.screenshot), canvas_only=False, flash=False)
        print(f"napari-ptycho gui: screenshot saved to {args.screenshot}")

    def quit_now() -> None:
        take_screenshot()
        if recon is not None:
            recon.cancel()
            recon.runner.wait(5)
        viewer.close()

    if args.run and recon is not None:
        recon.form.set_values({"iterations": args.run})
        recon.hub.finished.connect(lambda *_: QTimer.singleShot(500, take_screenshot))
        QTimer.singleShot(200, lambda: recon._guard(recon.start))
    elif args.screenshot is not None:
        QTimer.singleShot(1000, take_screenshot)
    if args.quit_after is not None:
        QTimer.singleShot(int(args.quit_after * 1000), quit_now)
    napari.run()
    return 0
