"""What a layer emitter sees and returns, and the registry of emitters by graph op.

An emitter turns one graph op into PyTorch source: the constructor of its submodule (registered
under the layer's name, so the state_dict keys are neuralc's weight names) and the one forward
expression that computes its result(s) from its inputs. Every value crossing a layer boundary
is channels-last, as in the DSL; emitters move channels to dim 1 and back around torch's
channels-first operators. An emitter that cannot express an op raises :class:`EmitError`,
which becomes a located diagnostic; a graph op without an emitter is reported the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from neuralc.backends import pysource
from neuralc.ir.dims import Dim, FloorDiv
from neuralc.ir.types import TensorType
from neuralc.ir.windows import same_pads
from neuralc.layers.catalog import LayerSpec, inner_layer
from neuralc.location import Location

if TYPE_CHECKING:
    from neuralc.backends.pytorch.codegen import Generator


class EmitError(Exception):
    """This op cannot be written as PyTorch source; the message says why."""


class SearchError(EmitError):
    """With --hpo: a searched value the generated code cannot take as a variable."""


class SectionError(EmitError):
    """A training section (loss, optimizer, metrics, train) the target cannot map."""

    def __init__(self, section: str, message: str):
        super().__init__(message)
        self.section = section


@dataclass
class Emitted:
    """One layer's code: its forward expression and, if it has one, its submodule's constructor.

    ``results`` names the expression's results when it has several (a tuple to unpack).
    """

    expr: str
    module: str | None = None
    results: int = 1


@dataclass
class LayerCtx:
    """One layer as an emitter sees it: attributes, (possibly HPO-symbolic) types, inputs."""

    gen: Generator
    name: str  # the layer name: the submodule's name and the weights' prefix
    spec: LayerSpec
    attrs: dict[str, Any]
    in_types: list[TensorType]
    out_types: list[TensorType]
    inputs: list[str]  # forward expressions of the inputs (variable names)
    input_is_arg: list[bool]  # whether each input is a network input (as the user gave it)
    location: Location
    hp_attrs: dict[str, str] = field(default_factory=dict)  # attribute -> HPO path
    inner_hp: dict[str, str] = field(default_factory=dict)  # wrapped layer's parameter -> path

    # -- inputs and types --------------------------------------------------------------------
    @property
    def x(self) -> str:
        return self.inputs[0]

    def in_shape(self, i: int = 0) -> tuple[Dim, ...]:
        shape = self.in_types[i].shape
        assert shape is not None
        return shape

    def out_shape(self, i: int = 0) -> tuple[Dim, ...]:
        shape = self.out_types[i].shape
        assert shape is not None
        return shape

    @property
    def mod(self) -> str:
        """The expression of this layer's submodule inside ``forward``."""
        return self.gen.module_ref(self.name)

    def inner(self, step: bool = False) -> LayerCtx:
        """The layer a wrapper wraps, under the wrapper's name (it owns the weights).

        With ``step``, its input is one time step ``s`` of a (batch, time, ...) value.
        """
        spec, params = inner_layer(self.attrs["layer"])
        ins, outs, inputs = self.in_types, self.out_types, self.inputs
        if step:
            ins = [_step(t) for t in ins]
            outs = [_step(t) for t in outs]
            inputs = ["s"]
        return LayerCtx(self.gen, self.name, spec, params, ins, outs, inputs,
                        self.input_is_arg, self.location, dict(self.inner_hp))

    def need(self, *helpers: str) -> None:
        """Copy these snippets (functions, classes) into the generated file."""
        self.gen.helpers.update(helpers)

    # -- attributes ----------------------------------------------------------------------------
    def static(self, key: str) -> Any:
        """An attribute whose value shapes the generated code itself; an HPO over it cannot be
        searched (the code would differ per trial), which is an error with --hpo."""
        if key in self.hp_attrs:
            raise SearchError(
                f"the generated search cannot vary '{self.hp_attrs[key]}': the code of "
                f"{self.spec.name} depends on its value; fix it with --hparam "
                f"{self.hp_attrs[key]}=VALUE")
        return self.attrs[key]

    def default(self, key: str) -> Any:
        """An attribute's compiled value, for decisions that do not change the code's shape."""
        return self.attrs[key]

    def init(self, key: str) -> str:
        """An attribute as an expression inside ``__init__`` (``hp[...]`` when searched)."""
        if key in self.hp_attrs:
            return f"hp[{py(self.hp_attrs[key])}]"
        return lit(self.attrs[key])

    def fwd(self, key: str) -> str:
        """An attribute as an expression inside ``forward`` (``self.hp[...]`` when searched)."""
        if key in self.hp_attrs:
            return f"self.hp[{py(self.hp_attrs[key])}]"
        return lit(self.attrs[key])

    def size(self, d: Dim) -> str:
        """A size that a constructor needs: a number, or an expression over searched HPO."""
        return self.gen.size_code(d, self)

    def act(self, expr: str, key: str = "activation", alpha: float | None = None) -> str:
        """``expr`` through the activation held in attribute ``key``."""
        if key in self.hp_attrs:
            self.need("apply_activation")
            return f"apply_activation({self.fwd(key)}, {expr})"
        return activation_code(self.attrs[key], expr, alpha)

    # -- padding -------------------------------------------------------------------------------
    def keras_same(self, x: str, kernel: Sequence[int], strides: Sequence[int],
                   dilation: Sequence[int], spatial: Sequence[Dim], value: str = "0.0"
                   ) -> tuple[str, list[int] | None]:
        """Keras 'same' padding of the channels-first expression ``x``.

        Returns the padded expression and, where the padding is symmetric (and the sizes
        known), the per-axis amounts for the torch module's own ``padding`` argument instead.
        Symbolic sizes pad at run time with the ``same_pad`` snippet.
        """
        if all(isinstance(d, int) for d in spatial):
            pairs = [same_pads(int(d), k, s, dl)
                     for d, k, s, dl in zip(spatial, kernel, strides, dilation)]
            if all(lo == hi for lo, hi in pairs):
                return x, [lo for lo, _ in pairs]
            flat = [p for lo_hi in reversed(pairs) for p in lo_hi]
            fill = "" if value == "0.0" else f", value={value}"
            return f"F.pad({x}, {tup(flat)}{fill})", None
        self.need("same_pad")
        fill = "" if value == "0.0" else f", value={value}"
        return f"same_pad({x}, {tup(kernel)}, {tup(strides)}, {tup(dilation)}{fill})", None


def _step(t: TensorType) -> TensorType:
    assert t.shape is not None
    return t.with_shape((t.shape[0], *t.shape[2:]))


Emitter = Callable[[LayerCtx], Emitted]

EMITTERS: dict[str, Emitter] = {}

# Graph ops the target cannot express, with the reason (shown in the diagnostic).
UNSUPPORTED: dict[str, str] = {}


def emitter(*op_names: str) -> Callable[[Emitter], Emitter]:
    """Register ``fn`` as the emitter of these graph ops."""

    def deco(fn: Emitter) -> Emitter:
        for name in op_names:
            if name in EMITTERS:
                raise ValueError(f"two emitters for {name}")
            EMITTERS[name] = fn
        return fn

    return deco


# -- literals ------------------------------------------------------------------------------------


def lit(value: Any) -> str:
    """A Python literal for an attribute value (tuples for lists, as torch takes them)."""
    if isinstance(value, (list, tuple)):
        return tup(value)
    return py(value)


def py(value: Any) -> str:
    """A Python literal, strings double-quoted as in the rest of the file."""
    if isinstance(value, str):
        return pysource.string(value)
    if isinstance(value, (bool, int, float)) or value is None:
        return repr(value)
    if isinstance(value, tuple):
        items = [py(v) for v in value]
        return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"
    if isinstance(value, list):
        return "[" + ", ".join(py(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py(k)}: {py(v)}" for k, v in value.items()) + "}"
    return repr(value)


def py_block(name: str, value: list | dict, width: int = 100) -> list[str]:
    """``name = value`` on one line if it fits, else one item per line."""
    one = f"{name} = {py(value)}"
    if len(one) <= width:
        return [one]
    if isinstance(value, dict):
        items = [f"    {py(k)}: {py(v)}," for k, v in value.items()]
        return [f"{name} = {{", *items, "}"]
    return [f"{name} = [", *[f"    {py(v)}," for v in value], "]"]


def tup(values: Sequence[Any]) -> str:
    """``(1, 2)``, ``(1,)``: a tuple literal."""
    items = [lit(v) for v in values]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def int_or_tuple(values: Sequence[int]) -> str:
    """``3`` for (3, 3), else the tuple: torch takes either, the short form reads better."""
    if values and all(v == values[0] for v in values):
        return str(values[0])
    return tup(values)


# -- activations ----------------------------------------------------------------------------------

# Every activation of neuralc/layers/activations.py as a torch expression of {x}.
ACTIVATION_CODE: dict[str, str] = {
    "linear": "{x}",
    "relu": "F.relu({x})",
    "leaky_relu": "F.leaky_relu({x}, {alpha})",
    "elu": "F.elu({x}, {alpha})",
    "selu": "F.selu({x})",
    "gelu": "F.gelu({x})",  # exact (approximate="none"), Keras's default
    "swish": "F.silu({x})",
    "sigmoid": "torch.sigmoid({x})",
    "tanh": "torch.tanh({x})",
    "softmax": "torch.softmax({x}, dim=-1)",
    "softplus": "F.softplus({x})",
    "softsign": "F.softsign({x})",
    "relu6": "F.relu6({x})",
    "hard_sigmoid": "F.hardsigmoid({x})",  # relu6(x + 3) / 6, Keras 3's
    "exponential": "torch.exp({x})",
    "hard_swish": "F.hardswish({x})",
    "mish": "F.mish({x})",
    "log_softmax": "F.log_softmax({x}, dim=-1)",
}

_DEFAULT_ALPHA = {"leaky_relu": 0.2, "elu": 1.0}


def activation_code(name: str, x: str, alpha: float | None = None) -> str:
    """``x`` through activation ``name`` as a torch expression."""
    if name not in ACTIVATION_CODE:
        raise EmitError(f"no PyTorch form for the activation '{name}'")
    a = _DEFAULT_ALPHA.get(name) if alpha is None else alpha
    if name == "elu" and a == 1.0:
        return f"F.elu({x})"
    return ACTIVATION_CODE[name].format(x=x, alpha=repr(a))


# -- rendering symbolic sizes -------------------------------------------------------------------


def dim_code(d: Dim, symbol: Callable[[str], str]) -> str:
    """A dim as a Python expression; ``symbol`` renders each symbol (or raises EmitError)."""
    if isinstance(d, int):
        return str(d)
    terms: list[str] = []
    for mono, coeff in d.terms:
        factors = [_atom_code(a, symbol) for a in mono]
        if not factors:
            terms.append(str(coeff))
            continue
        if coeff != 1:
            factors.insert(0, str(coeff))
        terms.append(" * ".join(factors))
    text = " + ".join(terms).replace("+ -", "- ")
    return text


def _atom_code(a: str | FloorDiv, symbol: Callable[[str], str]) -> str:
    if isinstance(a, str):
        return symbol(a)
    inner = dim_code(a.num, symbol)
    return f"(({inner}) // {a.den})"


def docstring(text: str, indent: str = "    ", width: int = 100) -> list[str]:
    """``text`` as a docstring wrapped to ``width`` columns at ``indent`` (escaped: it may
    quote the model's names)."""
    words = pysource.doc(text).split()
    lines: list[str] = []
    cur = '"""'
    for w in words:
        if cur != '"""' and len(indent) + len(cur) + 1 + len(w) + 3 > width:
            lines.append(indent + cur)
            cur = w
        else:
            cur = cur + w if cur == '"""' else f"{cur} {w}"
    lines.append(indent + cur + '"""')
    return lines


def rule(title: str, width: int = 100) -> str:
    """A section comment ``# -- title -----`` of the file's width."""
    head = f"# -- {title} "
    return head + "-" * (width - 1 - len(head))


def wrap_line(line: str, width: int = 100) -> list[str]:
    """A long line of code broken at the commas of its leftmost bracket that has any, packing
    arguments greedily under the bracket (or, where that leaves too little room, on hanging
    lines four spaces in), as a person would; lines that cannot be broken stay long."""
    if len(line) <= width:
        return [line]
    base = " " * (len(line) - len(line.lstrip()))
    for open_at, close_at, commas in _bracket_pairs(line):
        if not commas:
            continue
        pieces, start = [], open_at + 1
        for c in commas:
            pieces.append(line[start:c + 1].strip())
            start = c + 1
        pieces.append(line[start:close_at].strip() + line[close_at:])
        aligned = _pack(line[:open_at + 1], pieces, " " * (open_at + 1), width)
        if len(aligned) > 1 and all(len(x) <= width for x in aligned):
            return aligned
        hanging = [line[:open_at + 1], *_pack(base + "    ", pieces, base + "    ", width)]
        if all(len(x) <= width for x in hanging):
            return hanging
    return [line]


def _pack(head: str, pieces: list[str], indent: str, width: int) -> list[str]:
    out, cur = [], head + pieces[0]
    for piece in pieces[1:]:
        if len(cur) + 1 + len(piece) <= width:
            cur += " " + piece
        else:
            out.append(cur)
            cur = indent + piece
    out.append(cur)
    return out


def _bracket_pairs(line: str) -> list[tuple[int, int, list[int]]]:
    """(open, close, top-level commas) of every bracket pair, outermost and leftmost first."""
    stack: list[tuple[int, list[int]]] = []
    pairs: list[tuple[int, int, list[int], int]] = []
    quote = ""
    escaped = False
    for i, ch in enumerate(line):
        if quote:  # inside a literal: a backslash escapes the next character, even a "\\"
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == quote:
                quote = ""
            continue
        if ch in "\"'":
            quote = ch
        elif ch == "#":
            break
        elif ch in "([{":
            stack.append((i, []))
        elif ch in ")]}" and stack:
            start, commas = stack.pop()
            pairs.append((start, i, commas, len(stack)))
        elif ch == "," and stack:
            stack[-1][1].append(i)
    pairs.sort(key=lambda p: (p[3], p[0]))
    return [(a, b, c) for a, b, c, _ in pairs]
