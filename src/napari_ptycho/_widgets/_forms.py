"""A magicgui form generated from an engine's Config dataclass (reusable by every dock).

One widget per dataclass field, typed from the field's annotation: ``int`` → spin box,
``bool`` → check box, ``Literal[...]`` and ``device`` → combo box, ``float`` → a line edit
that keeps full precision (a spin box would round 1e-4 to 0.00), anything else (tuples,
optionals) → a Python-literal line edit. Tooltips come from the dataclass docstring.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import typing
from typing import Any, Literal

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    LineEdit,
    LiteralEvalLineEdit,
    SpinBox,
    Widget,
)

DEVICE_CHOICES = ("auto", "cpu", "cuda")
_INT_LIMIT = 2**31 - 1


def field_docs(config_cls: type) -> dict[str, str]:
    """Parameter descriptions from numpy-style docstrings along the MRO (name -> text)."""
    docs: dict[str, str] = {}
    for cls in reversed(config_cls.__mro__):  # subclasses override base descriptions
        current = None
        for line in inspect.cleandoc(cls.__dict__.get("__doc__") or "").splitlines():
            head = re.match(r"^(\w+)\s*:\s*\S", line)
            if head:
                current = head.group(1)
                docs[current] = ""
            elif current and line.startswith(" ") and line.strip():
                docs[current] = (docs[current] + " " + line.strip()).strip()
            elif not line.startswith(" "):
                current = None
    return docs


def _float_text(value: Any) -> str:
    return repr(float(value)) if value is not None else ""


class ConfigForm:
    """Editable form for one Config dataclass.

    Parameters
    ----------
    config_cls : type
        A dataclass whose fields all have defaults (every engine Config does).
    values : dict, optional
        Initial values (e.g. remembered ones); unknown or invalid entries are ignored.
    hidden : iterable of str
        Fields not shown (their defaults, or values passed to :meth:`config`, are used).
    """

    def __init__(self, config_cls: type, values: dict[str, Any] | None = None,
                 hidden: typing.Iterable[str] = ()) -> None:
        if not dataclasses.is_dataclass(config_cls):
            raise ValueError(f"config_cls must be a dataclass (got {config_cls!r})")
        self.config_cls = config_cls
        self.hidden = set(hidden)
        self.defaults = dataclasses.asdict(config_cls())
        hints = typing.get_type_hints(config_cls)
        docs = field_docs(config_cls)
        self._kinds: dict[str, Any] = {}
        widgets: list[Widget] = []
        for f in dataclasses.fields(config_cls):
            if f.name in self.hidden or not f.init:
                continue
            w, kind = self._make_widget(f.name, hints.get(f.name, Any), self.defaults[f.name])
            w.tooltip = docs.get(f.name) or None
            self._kinds[f.name] = kind
            widgets.append(w)
        self.container = Container(widgets=widgets, labels=True)
        self.changed = self.container.changed
        if values:
            self.set_values(values)

    @staticmethod
    def _make_widget(name: str, hint: Any, default: Any) -> tuple[Widget, Any]:
        label = name.replace("_", " ")
        if typing.get_origin(hint) is Literal:
            choices = tuple(typing.get_args(hint))
            return ComboBox(name=name, label=label, choices=choices, value=default), "choice"
        if name == "device":
            choices = DEVICE_CHOICES if default in DEVICE_CHOICES else (*DEVICE_CHOICES, default)
            return ComboBox(name=name, label=label, choices=choices, value=default), "choice"
        if hint is bool:
            return CheckBox(name=name, label=label, value=bool(default)), bool
        if hint is int:
            return SpinBox(name=name, label=label, value=int(default), min=-_INT_LIMIT,
                           max=_INT_LIMIT), int
        if hint is float:
            return LineEdit(name=name, label=label, value=_float_text(default)), float
        if hint is str:
            return LineEdit(name=name, label=label, value=str(default)), str
        return LiteralEvalLineEdit(name=name, label=label, value=repr(default)), "literal"

    @property
    def native(self) -> Any:
        """The Qt widget (to put in a layout)."""
        return self.container.native

    def _parse(self, name: str) -> Any:
        kind = self._kinds[name]
        widget = self.container[name]
        if kind is float:
            text = str(widget.value).strip()
            try:
                return float(text)
            except ValueError:
                raise ValueError(f"{name} must be a number (got {text!r})") from None
        if kind == "literal":
            text = widget.native.text() if hasattr(widget.native, "text") else widget.value
            try:
                return ast.literal_eval(str(text))
            except (ValueError, SyntaxError):
                raise ValueError(f"{name} must be a Python literal such as 1, (2, 3) or "
                                 f"None (got {text!r})") from None
        return widget.value

    def values(self) -> dict[str, Any]:
        """Current values of the shown fields, typed; ValueError names a malformed field."""
        return {name: self._parse(name) for name in self._kinds}

    def changed_values(self) -> dict[str, Any]:
        """The shown fields whose value differs from the dataclass default: what is worth
        remembering, so that a default improved in a later version reaches the user
        instead of being pinned by a remembered copy of the old one."""
        return {k: v for k, v in self.values().items() if v != self.defaults.get(k)}

    def config(self, **fixed: Any) -> Any:
        """A validated Config instance from the form (``fixed`` overrides hidden fields)."""
        kwargs = {**self.values(), **fixed}
        try:
            cfg = self.config_cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"invalid parameters for {self.config_cls.__name__}: {exc}") \
                from None
        validate = getattr(cfg, "validate", None)
        if callable(validate):
            validate()
        return cfg

    def set_values(self, values: dict[str, Any]) -> None:
        """Set the fields named in ``values``; unknown names and bad values are skipped."""
        for name, value in values.items():
            if name not in self._kinds:
                continue
            widget = self.container[name]
            kind = self._kinds[name]
            try:
                if kind is float:
                    widget.value = _float_text(value)
                elif kind == "literal":
                    widget.value = repr(value)
                elif kind == "choice":
                    if value in widget.choices:
                        widget.value = value
                else:
                    widget.value = kind(value)
            except (TypeError, ValueError):
                continue

    def reset(self) -> None:
        """Put every field back to the dataclass default."""
        self.set_values(self.defaults)
