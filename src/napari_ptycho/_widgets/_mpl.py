"""A matplotlib canvas that wears napari's theme (background, text, accent colours)."""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QSizePolicy, QVBoxLayout, QWidget


def theme_colours(viewer: Any) -> dict[str, str]:
    """Hex colours of the viewer's current theme: background, text, grid, accent."""
    from napari.utils.theme import get_theme

    theme = get_theme(str(viewer.theme))
    return {"background": theme.background.as_hex(), "text": theme.text.as_hex(),
            "grid": theme.primary.as_hex(), "accent": theme.current.as_hex(),
            "highlight": theme.highlight.as_hex()}


class ThemedCanvas(QWidget):
    """Figure + Qt canvas restyled whenever the viewer's theme changes.

    Parameters
    ----------
    viewer : napari.Viewer
    nrows, ncols : int
        Subplot grid.
    """

    def __init__(self, viewer: Any, nrows: int = 1, ncols: int = 1,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.viewer = viewer
        self.figure = Figure(figsize=(4, 3 * nrows), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.axes = list(self.figure.subplots(nrows, ncols, squeeze=False).ravel())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.apply_theme()
        viewer.events.theme.connect(self.apply_theme)

    @property
    def colours(self) -> dict[str, str]:
        """Current theme colours (see :func:`theme_colours`)."""
        return theme_colours(self.viewer)

    def apply_theme(self, event: Any = None) -> None:
        """Recolour figure, axes, ticks and legends, then redraw."""
        c = self.colours
        self.figure.set_facecolor(c["background"])
        for ax in self.axes:
            self.style_axes(ax, c)
        self.draw()

    @staticmethod
    def style_axes(ax: Any, c: dict[str, str]) -> None:
        """Apply theme colours ``c`` to one axes (call again after ``ax.clear()``)."""
        ax.set_facecolor(c["background"])
        for spine in ax.spines.values():
            spine.set_color(c["text"])
        ax.tick_params(colors=c["text"], which="both")
        ax.xaxis.label.set_color(c["text"])
        ax.yaxis.label.set_color(c["text"])
        ax.title.set_color(c["text"])
        legend = ax.get_legend()
        if legend is not None:
            legend.get_frame().set_facecolor(c["background"])
            for text in legend.get_texts():
                text.set_color(c["text"])

    def draw(self) -> None:
        """Redraw when Qt is next idle (never blocks the caller)."""
        self.canvas.draw_idle()
