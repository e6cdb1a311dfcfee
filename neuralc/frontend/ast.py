"""The typed AST of a ``.nr`` file. Every node carries the exact span of its text.

The parser builds it, macro expansion rewrites layer lists in it (giving expanded nodes
``CallSiteLoc`` spans), and the lowering to graph IR reads it. Values stay unevaluated here
(``$param`` arithmetic, HPO) so that errors can point at them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from neuralc.location import Location

# -- values -------------------------------------------------------------------------------


@dataclass
class Number:
    value: int | float
    span: Location


@dataclass
class String:
    value: str
    span: Location


@dataclass
class Bool:
    value: bool
    span: Location


@dataclass
class NoneValue:
    span: Location


@dataclass
class Name:
    """A bare identifier used as a value: ``Adam``, ``relu``, a named dim ``seq``."""

    id: str
    span: Location


@dataclass
class TupleValue:
    items: list[Value]
    span: Location


@dataclass
class ListValue:
    items: list[Value]
    span: Location


@dataclass
class DictValue:
    items: list[tuple[str, Value]]
    span: Location


@dataclass
class Kwarg:
    name: str
    value: Value
    span: Location  # covers ``name=value``


@dataclass
class Call:
    """``Name(args, key=value)`` as a value: optimizers, schedules, wrapped layers."""

    name: str
    args: list[Value]
    kwargs: list[Kwarg]
    span: Location
    name_span: Location


@dataclass
class HPO:
    """``HPO(choice(...))``, ``HPO(range(lo, hi, step=s))``, ``HPO(log_range(lo, hi))``."""

    kind: str  # "choice" | "range" | "log_range"
    args: list[Value]
    kwargs: list[Kwarg]
    span: Location


@dataclass
class ParamRef:
    """``$name`` inside a macro body."""

    name: str
    span: Location


@dataclass
class BinOp:
    """``+ - * /`` arithmetic (macro bodies); ``op`` is one of ``+ - * /``."""

    op: str
    left: Value
    right: Value
    span: Location


@dataclass
class Neg:
    operand: Value
    span: Location


Value = Union[
    Number, String, Bool, NoneValue, Name, TupleValue, ListValue, DictValue, Call, HPO,
    ParamRef, BinOp, Neg,
]


# -- layers -------------------------------------------------------------------------------


@dataclass
class LayerCall:
    """One item of a layer list.

    ``Name(args...) @ "device" { block } * N``. ``parens`` is False for a bare ``Name``.
    ``body`` is the nested block of layers, ``branches`` the nested ``{ } { }`` blocks of a
    merge layer (a block holds either layers or branch blocks, never both), ``repeat`` the
    ``* N`` count (a value: a number, or ``$n`` inside a macro).
    """

    name: str
    args: list[Value]
    kwargs: list[Kwarg]
    span: Location
    name_span: Location
    parens: bool = True
    device: String | None = None
    body: list[LayerItem] | None = None
    branches: list[list[LayerItem]] | None = None
    repeat: Value | None = None


@dataclass
class NamedBranch:
    """``name: { layers }`` runs the layers on the input or earlier branch called ``name``."""

    name: str
    body: list[LayerItem]
    span: Location
    name_span: Location


LayerItem = Union[LayerCall, NamedBranch]


# -- sections -----------------------------------------------------------------------------


@dataclass
class InputShape:
    """One input's per-sample shape; items are Number, Name (named dim) or NoneValue."""

    dims: list[Value]
    span: Location
    name: str | None = None  # set for ``input: { image: (64, 64, 3) }``
    name_span: Location | None = None


@dataclass
class DimRange:
    """``seq: 8..512`` in ``dims { }``; either end may be None (open). ``h: 32..512 step 32``
    also says every size of ``h`` is a multiple of 32 (``step``, given at ``step_span``)."""

    name: str
    lo: int | None
    hi: int | None
    span: Location
    step: int | None = None
    step_span: Location | None = None


@dataclass
class DimStep:
    """``h % 8 == 0`` in ``dims { }``: every size of ``h`` is a multiple of ``step``."""

    name: str
    step: int
    span: Location


DimFact = Union[DimRange, DimStep]


@dataclass
class Section:
    """A ``key: value`` section line or a ``key { k: v ... }`` block of one."""

    name: str
    span: Location
    name_span: Location
    value: Value | None = None  # ``loss: "mse"``, ``optimizer: Adam(...)``, ``metrics: [...]``
    entries: list[Kwarg] | None = None  # ``train { epochs: 8 }``: the key/value lines


@dataclass
class Network:
    name: str
    span: Location
    name_span: Location
    inputs: list[InputShape] = field(default_factory=list)
    inputs_span: Location | None = None
    layers: list[LayerItem] = field(default_factory=list)
    layers_span: Location | None = None
    dims: list[DimFact] = field(default_factory=list)
    # Every other section by canonical name ("loss", "optimizer", "metrics", "train",
    # "execution" for execute/execution); unknown ones are reported by the parser.
    sections: dict[str, Section] = field(default_factory=dict)


@dataclass
class MacroParam:
    name: str
    default: Value | None
    span: Location


@dataclass
class MacroDef:
    """``define Name(p1, p2=default) { layers }``."""

    name: str
    params: list[MacroParam]
    body: list[LayerItem]
    span: Location
    name_span: Location


@dataclass
class File:
    filename: str
    networks: list[Network]
    macros: list[MacroDef]
