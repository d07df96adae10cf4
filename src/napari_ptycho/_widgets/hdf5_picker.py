"""Dock to pick the diffraction and position datasets of an ambiguous HDF5/NeXus file.

The reader docks it when a generic HDF5 file has no unique answer; it can also be
opened from the Plugins menu. The choice is stored per file layout (see
:mod:`napari_ptycho.io.hdf5`), so the next file of the same layout opens directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

NONE = "(none)"
UNITS = ("m", "mm", "um", "nm", "pixel")


class HDF5PickerWidget(QWidget):
    """Choose datasets and units of an HDF5 scan, then open it as layers.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer the layers go to.
    """

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._layout_key: str | None = None
        self.path_edit = QLineEdit()
        self.path_edit.setPlaceholderText("HDF5 / NeXus file")
        self.path_edit.editingFinished.connect(lambda: self.set_path(self.path_edit.text()))
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.path_edit)
        row.addWidget(browse)
        self.kind = QComboBox()
        self.kind.addItems(["ptycho", "bragg"])
        self.diffraction = QComboBox()
        self.positions = QComboBox()
        self.positions_x = QComboBox()
        self.positions_y = QComboBox()
        self.units = QComboBox()
        self.units.addItems(UNITS)
        self.order = QComboBox()
        self.order.addItems(["yx", "xy"])
        self.remember = QCheckBox("Remember for files of this layout")
        self.remember.setChecked(True)
        form = QFormLayout()
        form.addRow("Data kind", self.kind)
        form.addRow("Diffraction (3D)", self.diffraction)
        form.addRow("Positions (N×2)", self.positions)
        form.addRow("or positions x", self.positions_x)
        form.addRow("and positions y", self.positions_y)
        form.addRow("Position units", self.units)
        form.addRow("Column order", self.order)
        self.open_button = QPushButton("Open")
        self.open_button.clicked.connect(self.open_file)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(form)
        layout.addWidget(self.remember)
        layout.addWidget(self.open_button)
        layout.addWidget(self.status)
        layout.addStretch(1)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open HDF5 scan", "",
                                              "HDF5 (*.h5 *.hdf5 *.nxs *.nx5 *.cxi)")
        if path:
            self.set_path(path)

    def set_path(self, path: str) -> None:
        """List the datasets of ``path`` and preselect the remembered or guessed choice."""
        import h5py

        from napari_ptycho.io import hdf5

        self.path_edit.setText(str(path))
        try:
            with h5py.File(path, "r") as f:
                infos = hdf5.list_datasets(f)
        except (OSError, ValueError) as exc:
            self.status.setText(f"Cannot read {Path(str(path)).name}: {exc}")
            return
        self._layout_key = hdf5.layout_key(infos)
        stacks = [d for d in infos if len(d.shape) == 3 and d.kind in "uif"]
        pairs = [d for d in infos if len(d.shape) == 2 and d.shape[1] in (2, 3)]
        vectors = [d for d in infos if len(d.shape) == 1]
        for combo, items in ((self.diffraction, stacks), (self.positions, pairs),
                             (self.positions_x, vectors), (self.positions_y, vectors)):
            combo.clear()
            if combo is not self.diffraction:
                combo.addItem(NONE)
            for d in items:
                combo.addItem(d.path)
        choice = hdf5.remembered_choice(self._layout_key) or hdf5.guess_choice(infos)[0]
        self.apply_choice(choice)
        self.status.setText(f"{len(stacks)} 3D dataset(s), {len(pairs)} position table(s)")

    def apply_choice(self, choice: dict[str, Any]) -> None:
        """Select the entries of a choice dictionary in the combo boxes."""
        for key, combo in (("diffraction", self.diffraction), ("positions", self.positions),
                           ("positions_x", self.positions_x),
                           ("positions_y", self.positions_y), ("units", self.units),
                           ("order", self.order), ("kind", self.kind)):
            value = choice.get(key)
            if value:
                index = combo.findText(str(value))
                if index >= 0:
                    combo.setCurrentIndex(index)

    def choice(self) -> dict[str, Any]:
        """The current selection as a choice dictionary for ``io.hdf5.read_hdf5``."""
        def pick(combo: QComboBox) -> str | None:
            text = combo.currentText()
            return None if text in ("", NONE) else text

        return {"diffraction": pick(self.diffraction), "positions": pick(self.positions),
                "positions_x": pick(self.positions_x), "positions_y": pick(self.positions_y),
                "units": self.units.currentText(), "order": self.order.currentText(),
                "kind": self.kind.currentText()}

    def open_file(self) -> list[Any]:
        """Load the file with the current choice and add its layers to the viewer."""
        from napari.layers import Layer
        from napari.utils.notifications import show_error

        from napari_ptycho.io import hdf5
        from napari_ptycho.io.layers import layers_for

        path = self.path_edit.text()
        choice = self.choice()
        try:
            data = hdf5.read_hdf5(path, choice=choice, kind=choice["kind"])
        except (ValueError, OSError) as exc:
            self.status.setText(str(exc))
            show_error(f"napari-ptycho could not open {Path(path).name}: {exc}")
            return []
        if self.remember.isChecked() and self._layout_key:
            try:
                hdf5.remember_choice(self._layout_key, choice)
            except OSError as exc:
                self.status.setText(f"Opened, but the choice was not saved: {exc}")
        added = [self.viewer.add_layer(Layer.create(*ld))
                 for ld in layers_for(data, Path(path).stem)]
        self.status.setText(f"Opened {Path(path).name}: {len(added)} layer(s)")
        return added
