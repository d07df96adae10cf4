"""Programmable phase-retrieval cycles: parse recipes such as ``"(20ER+160HIO+20ER)*3"``.

Grammar (whitespace ignored, names case-insensitive)::

    recipe := term ("+" term)*
    term   := [count] (NAME | "(" recipe ")") ["*" count]

``20ER`` is twenty ER iterations, ``HIO`` alone is one, ``(...)*3`` repeats a group and
``ER*5`` equals ``5ER``. A schedule is the flat list of ``(algorithm, count)`` runs.
"""

from __future__ import annotations

import re

#: Algorithms a recipe may name.
ALGORITHMS = ("ER", "HIO", "RAAR")

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z]+)|(.))")


def _tokens(recipe: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for number, name, other in _TOKEN.findall(recipe):
        if number:
            out.append(("int", number))
        elif name:
            out.append(("name", name.upper()))
        elif other.strip():
            out.append(("op", other))
    return out


class _Parser:
    def __init__(self, recipe: str) -> None:
        self.recipe = recipe
        self.toks = _tokens(recipe)
        self.i = 0

    def fail(self, why: str) -> ValueError:
        return ValueError(f"recipe {self.recipe!r}: {why} (example: '(20ER+160HIO+20ER)*3')")

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end")
        self.i += 1
        return tok

    def count(self) -> int:
        kind, value = self.take()
        if kind != "int" or int(value) < 1:
            raise self.fail(f"expected a positive count, got {value!r}")
        return int(value)

    def expr(self) -> list[tuple[str, int]]:
        runs = self.term()
        while self.peek() == ("op", "+"):
            self.take()
            runs += self.term()
        return runs

    def term(self) -> list[tuple[str, int]]:
        times = self.count() if (self.peek() or ("", ""))[0] == "int" else 1
        kind, value = self.take()
        if kind == "name":
            if value not in ALGORITHMS:
                raise self.fail(f"unknown algorithm {value!r}; known: {list(ALGORITHMS)}")
            runs = [(value, 1)]
        elif (kind, value) == ("op", "("):
            runs = self.expr()
            if self.take() != ("op", ")"):
                raise self.fail("missing ')'")
        else:
            raise self.fail(f"unexpected {value!r}")
        if self.peek() == ("op", "*"):
            self.take()
            times *= self.count()
        if len(runs) == 1:
            return [(runs[0][0], runs[0][1] * times)]
        return runs * times


def parse_recipe(recipe: str) -> list[tuple[str, int]]:
    """Parse a recipe into consecutive ``(algorithm, count)`` runs.

    Parameters
    ----------
    recipe : str
        E.g. ``"(20ER+160HIO+20ER)*3"`` (600 iterations) or ``"50ER"``.

    Returns
    -------
    list of (str, int)
        Runs with adjacent equal algorithms merged.

    Raises
    ------
    ValueError
        On a syntax error or an unknown algorithm, quoting the recipe.
    """
    if not isinstance(recipe, str) or not recipe.strip():
        raise ValueError("recipe must be a non-empty string such as '(20ER+160HIO+20ER)*3'")
    parser = _Parser(recipe)
    runs = parser.expr()
    if parser.peek() is not None:
        raise parser.fail(f"unexpected {parser.peek()[1]!r}")  # type: ignore[index]
    merged: list[tuple[str, int]] = []
    for name, n in runs:
        if merged and merged[-1][0] == name:
            merged[-1] = (name, merged[-1][1] + n)
        else:
            merged.append((name, n))
    return merged


def schedule(recipe: str, iterations: int | None = None) -> list[str]:
    """Algorithm name for every iteration.

    The recipe is cycled (and truncated) to ``iterations`` when given, so ``"ER"`` with
    100 iterations means 100 ER iterations; ``None`` keeps the recipe's own length.
    """
    flat = [name for name, n in parse_recipe(recipe) for _ in range(n)]
    if iterations is None:
        return flat
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1 (got {iterations})")
    return [flat[i % len(flat)] for i in range(iterations)]
