"""Writing Python source: literals and calls, so every emitter formats code the same way."""

from __future__ import annotations

import keyword
from typing import Any

from neuralc.backends import pysource
from neuralc.backends.keras.registry import fixed
from neuralc.ir.dims import Expr

# Names the generated module defines or imports; a value named like one gets a trailing "_".
RESERVED = frozenset({
    "keras", "layers", "ops", "np", "math", "sys", "argparse", "json", "Path", "model", "inputs",
    "outputs", "input", "t", "main", "train", "build_model", "compile_model", "predict",
    "load_weights_safetensors", "make_optimizer", "list", "dict", "tuple", "type", "id", "len",
    "max", "min", "sum", "abs", "range", "print", "object", "super", "float", "int", "str",
    "bool", "map", "filter", "zip", "open", "format", "hash", "iter", "next", "vars", "all",
    "any", "round", "pow", "slice", "set", "help", "exit", "quit", "copyright", "license",
})


def literal(value: Any) -> str:
    """A Python literal for an attribute value; lists become tuples (Keras takes either).

    A symbolic dim has no literal: it is refused (Unsupported) rather than written."""
    if isinstance(value, Expr):
        fixed(value, "size here")
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return pysource.string(value)  # double quotes, as the rest of the generated code
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        items = [literal(v) for v in value]
        if len(items) == 1:
            return f"({items[0]},)"
        return "(" + ", ".join(items) + ")"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Python literal for {value!r}")


def call(func: str, *args: Any, **kwargs: Any) -> str:
    """``func(arg, ..., key=value, ...)`` with literal arguments; a ``Code`` is inserted as is."""
    parts = [a.text if isinstance(a, Code) else literal(a) for a in args]
    parts += [f"{k}={v.text if isinstance(v, Code) else literal(v)}" for k, v in kwargs.items()]
    return f"{func}({', '.join(parts)})"


class Code:
    """Source text that ``call`` inserts verbatim (an expression, not a literal)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def identifier(name: str, taken: set[str]) -> str:
    """A fresh Python identifier for a layer or input name, not in ``taken`` (then added);
    Python reads it back as itself (pysource: ``ﬁ`` and ``fi`` may not become one name)."""
    base = pysource.identifier(name) or "v"
    if base[0].isdigit():
        base = "v_" + base
    if keyword.iskeyword(base) or base in RESERVED or base.startswith("__"):
        base = base + "_"
    out, i = base, 1
    while out in taken:
        out = f"{base}_{i}"
        i += 1
    taken.add(out)
    return out


WIDTH = 99


def _top_level(text: str, start: int) -> tuple[int, list[int]]:
    """The index of the bracket closing ``text[start]`` and the commas directly inside it."""
    depth, quote, commas = 0, "", []
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
            if depth == 0:
                return i, commas
        elif ch == "," and depth == 1:
            commas.append(i)
        i += 1
    return -1, commas


def _in_string(text: str, index: int) -> bool:
    quote = ""
    i = 0
    while i < index:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        i += 1
    return bool(quote)


def _groups(text: str) -> list[tuple[int, int, list[int]]]:
    """The top-level bracket groups of ``text``: (opening, closing, commas directly inside)."""
    out = []
    i = 0
    while i < len(text):
        if text[i] in "([{" and not _in_string(text, i):
            close, commas = _top_level(text, i)
            if close < 0:
                break
            out.append((i, close, commas))
            i = close
        i += 1
    return out


def wrap(text: str, indent: int = 0) -> list[str]:
    """Break one line at a bracket with a hanging indent (as black does) so that lines fit
    ``WIDTH``: the last top-level bracket whose head fits, its items filled greedily four
    columns in, an item still too long broken again. ``indent`` is where ``text`` starts;
    continuation lines carry their own leading spaces relative to it."""
    if indent + len(text) <= WIDTH:
        return [text]
    for opening, close, commas in reversed(_groups(text)):
        head = text[:opening + 1]
        if indent + len(head) > WIDTH or close == opening + 1:
            continue
        bounds = [opening, *commas, close]
        items = [text[a + 1:b].strip() for a, b in zip(bounds, bounds[1:])]
        pieces = [it + "," for it in items[:-1]] + [items[-1] + text[close:]]
        inner = indent + 4
        lines: list[str] = []
        for piece in pieces:
            if lines and inner + len(lines[-1]) + 1 + len(piece) <= WIDTH:
                lines[-1] += " " + piece
            else:
                lines.extend(wrap(piece, inner))
        return [head] + [" " * 4 + line for line in lines]
    return [text]
