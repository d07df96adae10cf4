"""Make the user guide's screenshots (docs/images/gui_*.png) from a real run.

Opens napari with the plugin's docks on the Siemens-star sample, runs ePIE, clicks a scan
position in the inspector and saves the window and each dock. Needs a display; without
one it re-runs itself under ``xvfb-run``::

    .venv/bin/python scripts/make_screenshots.py [--iterations 30] [--out docs/images]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images")
    args = p.parse_args(argv)
    if not os.environ.get("DISPLAY") and sys.platform.startswith("linux"):
        if shutil.which("xvfb-run") is None:
            print("make_screenshots: no display and no xvfb-run", file=sys.stderr)
            return 2
        return subprocess.call(["xvfb-run", "-a", "-s", "-screen 0 1600x1000x24",
                                sys.executable, __file__, *(argv or sys.argv[1:])])
    # never read or overwrite the user's remembered parameters
    os.environ["NAPARI_PTYCHO_CONFIG_DIR"] = tempfile.mkdtemp()
    import torch

    torch.set_num_threads(2)
    from qtpy.QtWidgets import QApplication

    from napari_ptycho._widgets.inspector import ScanInspectorWidget
    from napari_ptycho.commands.gui import build_viewer

    args.out.mkdir(parents=True, exist_ok=True)
    viewer, docks = build_viewer("siemens", "epie", "cpu")
    app = QApplication.instance()
    recon, plots = docks["reconstruct"], docks["plots"]
    inspector = ScanInspectorWidget(viewer)
    viewer.window.add_dock_widget(inspector, name="Scan inspector", area="left")

    def settle(seconds: float = 1.0) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    settle()
    recon.form.set_values({"iterations": args.iterations})
    recon.start()
    while recon.runner.running:
        settle(0.1)
        if recon.runner.updates == 3 and not (args.out / "gui_running.png").exists():
            viewer.screenshot(str(args.out / "gui_running.png"), canvas_only=False,
                              flash=False)
    settle(1.5)
    scan = recon.selected_layer()
    data = scan.metadata["ptycho_data"]
    inspector.show_position(data.n_patterns // 2 + data.n_patterns // 30)
    viewer.layers.selection.active = viewer.layers["siemens amplitude"]
    settle(1.5)
    viewer.screenshot(str(args.out / "gui_overview.png"), canvas_only=False, flash=False)
    for name, widget in (("gui_reconstruct_dock", recon), ("gui_plots", plots),
                         ("gui_inspector", inspector)):
        widget.grab().save(str(args.out / f"{name}.png"))
    viewer.screenshot(str(args.out / "gui_canvas.png"), canvas_only=True, flash=False)
    print("\n".join(str(p) for p in sorted(args.out.glob("gui_*.png"))))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
