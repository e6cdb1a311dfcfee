"""The textual form of the IR, MLIR-style; :mod:`neuralc.ir.parser` reads it back.

The text is deterministic so FileCheck tests and dumps are stable:
``print_module(parse_module(print_module(m))) == print_module(m)``, byte for byte. Names are
derived, never stored: op results are numbered per function in order of appearance (``%0``,
``%1``; an op with several results is ``%3:2`` and its results are used as ``%3#0``, ``%3#1``),
block arguments are named after their ``name_hint`` made unique (``%x``, ``%x_1``). Attributes
print sorted by key, and ``loc(unknown)`` is left out.

``func.func`` prints in a custom form (``func.func @f(%x: type) -> (types) { ... }``); every
other op, and a ``func.func`` that does not fit that form, prints in the generic form
``%N = "dialect.op"(operands) {attrs} ({regions}) : (types) -> types loc(...)``.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from neuralc.ir.core import Block, BlockArgument, Module, Op, OpResult, Region, Value
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.types import TensorType
from neuralc.location import Location, UnknownLoc

INDENT = "  "
UNKNOWN_VALUE = "%<<UNKNOWN SSA VALUE>>"

_BARE_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BARE_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*\Z")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")


# -- attributes --------------------------------------------------------------------------------


def format_float(v: float) -> str:
    """Shortest text that reads back to the same float and always looks like a float."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    text = repr(v)
    if not any(ch in text for ch in ".e"):
        text += ".0"
    return text


def format_key(key: str) -> str:
    """A dict key: a bare identifier where possible, otherwise a JSON string."""
    if not isinstance(key, str):
        raise TypeError(f"attribute dictionary keys must be strings, got {key!r}")
    return key if _BARE_KEY.match(key) else json.dumps(key)


def format_symbol(name: str) -> str:
    """``@name``, quoted as ``@"..."`` when the name is not a plain identifier."""
    return "@" + (name if _BARE_SYMBOL.match(name) else json.dumps(name))


def format_attr(value: Any) -> str:
    """Text of one attribute value; tuples print as lists (their canonical form).

    Raises TypeError for values that have no textual form, rather than printing text that
    would not parse back.
    """
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        return format_float(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(format_attr(v) for v in value) + "]"
    if isinstance(value, dict):
        return format_attr_dict(value)
    if isinstance(value, TensorType):
        return str(value)
    # numpy scalars are accepted as the Python numbers they stand for.
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        py = item()
        if isinstance(py, (bool, int, float)):
            return format_attr(py)
    raise TypeError(f"attribute value {value!r} of type {type(value).__name__} has no text form")


def format_attr_dict(attrs: dict[str, Any]) -> str:
    """``{a = 1, b = "x"}``, keys sorted."""
    for k in attrs:
        format_key(k)  # rejects non-string keys before sorting compares them
    items = sorted(attrs.items(), key=lambda kv: kv[0])
    return "{" + ", ".join(f"{format_key(k)} = {format_attr(v)}" for k, v in items) + "}"


def format_loc(loc: Location) -> str:
    """`` loc(...)`` with a leading space, or nothing for an unknown location."""
    if isinstance(loc, UnknownLoc):
        return ""
    return f" loc({loc.to_ir()})"


def format_type(t: Any) -> str:
    return str(t)


# -- value names -----------------------------------------------------------------------------


def sanitize_name(hint: str | None, index: int) -> str:
    """A block argument's base name: ``[A-Za-z0-9_]`` only and never a bare number."""
    if not hint:
        return f"arg{index}"
    name = _NOT_NAME_CHAR.sub("_", hint)
    if name[0].isdigit():
        name = "_" + name
    return name


class _Namer:
    """Names of the values of one isolated scope (a function, or the module body)."""

    def __init__(self, names: dict[int, str]):
        self.names = names
        self.used: set[str] = set()
        self.suffix: dict[str, int] = {}  # the last suffix tried per base name
        self.counter = 0

    def name_arg(self, arg: BlockArgument) -> None:
        base = sanitize_name(arg.name_hint, arg.index)
        name = base
        # Thousands of kernels name their first argument alike: continue from the last
        # suffix taken instead of trying each again (quadratic in the size of the module).
        n = self.suffix.get(base, 0)
        while name in self.used:
            n += 1
            name = f"{base}_{n}"
        self.suffix[base] = n
        self.used.add(name)
        self.names[id(arg)] = name

    def name_block(self, block: Block) -> None:
        for a in block.args:
            self.name_arg(a)
        for op in block.ops:
            self.name_op(op)

    def name_op(self, op: Op) -> None:
        if op.results:
            base = str(self.counter)
            self.counter += 1
            for r in op.results:
                self.names[id(r)] = base
        if _is_isolated(op):
            return  # its regions are named when it is printed, in a fresh scope
        for region in op.regions:
            for block in region.blocks:
                self.name_block(block)


def _is_isolated(op: Op) -> bool:
    """Ops whose regions number their values afresh (functions); other regions, isolated or
    not, continue their function's numbering so a kernel body reads as part of it."""
    return isinstance(op, DefinedOp) and op.fresh_name_scope


# -- printing ----------------------------------------------------------------------------------


class _Printer:
    def __init__(self) -> None:
        self.names: dict[int, str] = {}
        self.lines: list[str] = []

    # names
    def start_scope_block(self, block: Block) -> None:
        _Namer(self.names).name_block(block)

    def start_scope_op(self, op: Op) -> None:
        namer = _Namer(self.names)
        for region in op.regions:
            for block in region.blocks:
                namer.name_block(block)

    def ref(self, v: Value) -> str:
        name = self.names.get(id(v))
        if name is None:
            return UNKNOWN_VALUE
        if isinstance(v, OpResult) and len(v.op.results) > 1:
            return f"%{name}#{v.index}"
        return f"%{name}"

    def arg_decl(self, a: BlockArgument) -> str:
        return f"{self.ref(a)}: {format_type(a.type)}{format_loc(a.location)}"

    # ops
    def op(self, op: Op, indent: int) -> None:
        if op.name == "func.func" and _fits_func_form(op):
            self.func(op, indent)
        else:
            self.generic(op, indent)

    def func(self, op: Op, indent: int) -> None:
        self.start_scope_op(op)
        block = op.regions[0].blocks[0]
        pad = INDENT * indent
        args = ", ".join(self.arg_decl(a) for a in block.args)
        term = block.terminator
        results = term.operands if term is not None and term.name == "func.return" else ()
        res = ", ".join(format_type(v.type) for v in results)
        head = f"{pad}func.func {format_symbol(op.attributes['sym_name'])}({args}) -> ({res})"
        extra = {k: v for k, v in op.attributes.items() if k != "sym_name"}
        if extra:
            head += f" attributes {format_attr_dict(extra)}"
        self.lines.append(head + " {")
        for inner in block.ops:
            self.op(inner, indent + 1)
        self.lines.append(f"{pad}}}{format_loc(op.location)}")

    def generic(self, op: Op, indent: int) -> None:
        if _is_isolated(op):
            self.start_scope_op(op)
        pad = INDENT * indent
        text = pad
        if op.results:
            name = self.names.get(id(op.results[0]), "<<UNNAMED>>")
            count = f":{len(op.results)}" if len(op.results) > 1 else ""
            text += f"%{name}{count} = "
        text += json.dumps(op.name)
        text += "(" + ", ".join(self.ref(v) for v in op.operands) + ")"
        if op.attributes:
            text += " " + format_attr_dict(op.attributes)
        if op.regions:
            text += " ("
            for i, region in enumerate(op.regions):
                if i:
                    text += ", "
                text = self.region(region, text, indent)
            text += ")"
        ins = ", ".join(format_type(v.type) for v in op.operands)
        outs = [format_type(r.type) for r in op.results]
        out = outs[0] if len(outs) == 1 else "(" + ", ".join(outs) + ")"
        text += f" : ({ins}) -> {out}{format_loc(op.location)}"
        self.lines.append(text)

    def region(self, region: Region, text: str, indent: int) -> str:
        """Emit ``{`` blocks ``}``; returns the unfinished line after the closing brace."""
        pad = INDENT * indent
        self.lines.append(text + "{")
        for i, block in enumerate(region.blocks):
            args = ", ".join(self.arg_decl(a) for a in block.args)
            label = f"^bb{i}" + (f"({args})" if block.args else "")
            self.lines.append(f"{pad}{label}:")
            for inner in block.ops:
                self.op(inner, indent + 1)
        return pad + "}"


def _fits_func_form(op: Op) -> bool:
    return (
        not op.operands
        and not op.results
        and len(op.regions) == 1
        and len(op.regions[0].blocks) == 1
        and isinstance(op.attributes.get("sym_name"), str)
    )


def print_module(m: Module) -> str:
    """The module's text, without a final newline (callers print or join it)."""
    p = _Printer()
    head = f"module {format_symbol(m.name)}"
    if m.attributes:
        head += f" attributes {format_attr_dict(m.attributes)}"
    p.lines.append(head + " {")
    p.start_scope_block(m.body)
    for op in m.body.ops:
        p.op(op, 1)
    p.lines.append("}")
    return "\n".join(p.lines)


def print_op(op: Op) -> str:
    """One op (with its regions) as it prints inside its module, without indentation.

    Operand names are those of the enclosing function, so a diagnostic that quotes an op
    matches the module dump.
    """
    p = _Printer()
    scope = _scope_owner(op)
    if isinstance(scope, Op):
        p.start_scope_op(scope)
    else:
        p.start_scope_block(scope)
    start = len(p.lines)
    p.op(op, 0)
    return "\n".join(p.lines[start:])


def _scope_owner(op: Op) -> Op | Block:
    """Where ``op``'s names come from: the nearest isolated op around it, else the top block."""
    block = op.parent
    if block is None:
        detached = Block()
        detached.ops = [op]  # name a detached op in a scope of its own, leaving op.parent alone
        return detached
    while True:
        region = block.parent
        parent_op = region.parent if region is not None else None
        if parent_op is None:
            return block
        if _is_isolated(parent_op):
            return parent_op
        if parent_op.parent is None:
            detached = Block()
            detached.ops = [parent_op]
            return detached
        block = parent_op.parent
