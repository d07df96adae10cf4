"""Per-method widget parameters that survive napari sessions (a JSON file, no Qt).

The file lives in the user config dir (``platformdirs``) unless the environment variable
``NAPARI_PTYCHO_CONFIG_DIR`` points elsewhere; tests and CI use that to stay out of the
user's home. A corrupt or unreadable file never stops the widget: it reads as empty.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_VAR = "NAPARI_PTYCHO_CONFIG_DIR"


def settings_path(name: str = "widgets.json") -> Path:
    """Path of the settings file (not created until something is saved)."""
    root = os.environ.get(ENV_VAR)
    if not root:
        from platformdirs import user_config_dir

        root = user_config_dir("napari-ptycho", appauthor=False)
    return Path(root) / name


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


class WidgetSettings:
    """Read and write one widget's remembered values, grouped by section (e.g. method).

    Parameters
    ----------
    widget : str
        Top-level key in the settings file (one per widget, e.g. ``"reconstruct"``).
    path : Path, optional
        Settings file; default :func:`settings_path`.
    """

    def __init__(self, widget: str, path: Path | None = None) -> None:
        if not widget:
            raise ValueError("widget must be a non-empty name")
        self.widget = widget
        self.path = Path(path) if path is not None else settings_path()

    def _read_all(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_all(self, data: dict[str, Any]) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(_jsonable(data), indent=1, sort_keys=True),
                           encoding="utf-8")
            # atomic on POSIX: two napari windows never see half a file
            tmp.replace(self.path)
        except OSError:
            pass  # read-only home: remembering values is a convenience, not a requirement

    def get(self, section: str) -> dict[str, Any]:
        """Values remembered for ``section`` (empty dict when none)."""
        value = self._read_all().get(self.widget, {}).get(section, {})
        return dict(value) if isinstance(value, dict) else {}

    def set(self, section: str, values: dict[str, Any]) -> None:
        """Remember ``values`` for ``section`` (replaces what was there)."""
        data = self._read_all()
        mine = data.get(self.widget)
        if not isinstance(mine, dict):
            mine = {}
        mine[section] = dict(values)
        data[self.widget] = mine
        self._write_all(data)

    def clear(self, section: str) -> None:
        """Forget ``section``."""
        data = self._read_all()
        mine = data.get(self.widget)
        if isinstance(mine, dict) and section in mine:
            del mine[section]
            self._write_all(data)
