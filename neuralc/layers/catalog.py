"""The layer catalog: every layer kind defined once.

A :class:`LayerSpec` holds everything the compiler knows about one layer kind: its DSL names,
its parameters (Keras names, PyTorch aliases, defaults, positional order, validation), its
symbolic shape rule, its weights (PyTorch names, layouts and default initialisers), its
reference semantics in numpy, and its FLOP count. The frontend binds and validates arguments
through it, the graph dialect makes one op per spec, shape inference calls its shape rule, the
reference interpreter calls its reference function, and the language reference is generated
from it. Nothing else restates these facts.

Layer families live in sibling modules (``dense.py``, ``conv.py``, ...) and call
:func:`register` at import; :func:`load_all` imports them.
"""

from __future__ import annotations

import copy
import importlib
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType

# -- errors raised by catalog rules (converted to located diagnostics by their callers) -----


class ParamError(Exception):
    """A parameter value is invalid; the message names the parameter and the rule."""




# -- parameter types ---------------------------------------------------------------------

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


class ParamType:
    """Validates a Python value from the DSL and returns its canonical attribute form."""

    label = "value"

    def convert(self, value: Any, pname: str) -> Any:
        raise NotImplementedError

    def _fail(self, pname: str, value: Any, want: str) -> ParamError:
        return ParamError(f"'{pname}' must be {want}, got {_show(value)}")


def show_value(value: Any) -> str:
    """A parameter value as the DSL writes it: ``"same"``, ``true``, ``None``, ``(1, 1)``.

    Used in error messages here and for the defaults in the layer reference (``docs.py``).
    """
    if isinstance(value, str):
        return f'"{value}"'
    if value is None:
        return "None"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        inner = ", ".join(show_value(v) for v in value)
        return f"({inner})" if isinstance(value, tuple) else f"[{inner}]"
    return repr(value)


_show = show_value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integral(v: Any) -> Any:
    """An integral float (``3.0``, from macro arithmetic such as ``$n / 2``) as an int."""
    return int(v) if isinstance(v, float) and v.is_integer() else v


def _integrals(v: Any) -> Any:
    """``_integral`` on a scalar or on each item of a list or tuple (keeping its kind)."""
    if isinstance(v, (list, tuple)):
        return type(v)(_integral(x) for x in v)
    return _integral(v)


@dataclass(frozen=True)
class Int(ParamType):
    min: int | None = None
    max: int | None = None
    label: str = "an integer"

    def convert(self, value: Any, pname: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value):
            raise self._fail(pname, value, self.describe())
        too_low = self.min is not None and value < self.min
        too_high = self.max is not None and value > self.max
        if too_low or too_high:
            raise self._fail(pname, value, self.describe())
        return value

    def describe(self) -> str:
        if self.min == 1 and self.max is None:
            return "a positive integer"
        if self.min == 0 and self.max is None:
            return "a non-negative integer"
        if self.min is not None and self.max is not None:
            return f"an integer in [{self.min}, {self.max}]"
        return "an integer"


@dataclass(frozen=True)
class Float(ParamType):
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    label: str = "a number"

    def convert(self, value: Any, pname: str) -> float:
        if not _is_num(value):
            raise self._fail(pname, value, self.describe())
        v = float(value)
        if not math.isfinite(v):  # 1e999 in a model file reads as inf; nan passes no comparison
            raise self._fail(pname, value, self.describe())
        lo_bad = self.min is not None and (v <= self.min if self.min_open else v < self.min)
        hi_bad = self.max is not None and v > self.max
        if lo_bad or hi_bad:
            raise self._fail(pname, value, self.describe())
        return v

    def describe(self) -> str:
        if self.min is not None and self.max is not None:
            return f"a number in [{_num(self.min)}, {_num(self.max)}]"
        if self.min is not None:
            return f"a number {'>' if self.min_open else '>='} {_num(self.min)}"
        return "a number"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


RATE = Float(0.0, 1.0)


@dataclass(frozen=True)
class Bool(ParamType):
    def convert(self, value: Any, pname: str) -> bool:
        if not isinstance(value, bool):
            raise self._fail(pname, value, "true or false")
        return value


@dataclass(frozen=True)
class Choice(ParamType):
    """One of a fixed set of strings, matched case-insensitively."""

    choices: tuple[str, ...]

    def convert(self, value: Any, pname: str) -> str:
        if isinstance(value, str):
            for c in self.choices:
                if c.lower() == value.lower():
                    return c
        from neuralc.diagnostics import did_you_mean

        hint = did_you_mean(str(value), self.choices) if isinstance(value, str) else ""
        want = "one of " + ", ".join(f'"{c}"' for c in self.choices)
        raise ParamError(f"'{pname}' must be {want}, got {_show(value)}{hint}")


@dataclass(frozen=True)
class IntTuple(ParamType):
    """``n`` positive ints; a single int stands for all of them (``3`` == ``(3, 3)``)."""

    n: int
    min: int = 1

    def convert(self, value: Any, pname: str) -> list[int]:
        value = _integrals(value)
        if _is_int(value):
            value = [value] * self.n
        ints = isinstance(value, (list, tuple)) and all(_is_int(v) for v in value)
        if ints and len(value) == self.n and all(v >= self.min for v in value):
            return list(value)
        word = "positive" if self.min == 1 else "non-negative"
        want = f"a {word} integer or a tuple of {self.n} {word} integers"
        raise self._fail(pname, value, want)


@dataclass(frozen=True)
class Shape(ParamType):
    """A target shape for Reshape: a tuple of positive ints, at most one -1."""

    def convert(self, value: Any, pname: str) -> list[int]:
        value = _integrals(value)
        if _is_int(value):
            value = [value]
        if (
            isinstance(value, (list, tuple))
            and value
            and all(_is_int(v) and (v > 0 or v == -1) for v in value)
            and sum(1 for v in value if v == -1) <= 1
        ):
            return list(value)
        raise self._fail(pname, value, "a tuple of positive integers (at most one -1)")


@dataclass(frozen=True)
class Axis(ParamType):
    """An axis index; negative counts from the end. Checked against the rank by shape rules."""

    def convert(self, value: Any, pname: str) -> int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not _is_int(value):
            raise self._fail(pname, value, "an integer axis")
        return value


@dataclass(frozen=True)
class Axes(ParamType):
    """One axis or a list of axes."""

    def convert(self, value: Any, pname: str) -> list[int]:
        value = _integrals(value)
        if _is_int(value):
            return [value]
        if isinstance(value, (list, tuple)) and value and all(_is_int(v) for v in value):
            return list(value)
        raise self._fail(pname, value, "an axis or a list of axes")


@dataclass(frozen=True)
class ActivationName(ParamType):
    """A known activation name; ``None`` means linear."""

    def convert(self, value: Any, pname: str) -> str:
        from neuralc.ir.activations import canonical_activation

        if value is None:
            return "linear"
        if isinstance(value, str):
            name = canonical_activation(value)
            if name is not None:
                return name
        from neuralc.diagnostics import did_you_mean
        from neuralc.ir.activations import activation_names

        hint = did_you_mean(str(value), activation_names()) if isinstance(value, str) else ""
        raise ParamError(f"unknown activation {_show(value)} for '{pname}'{hint}")


@dataclass(frozen=True)
class Optional_(ParamType):
    inner: ParamType

    def convert(self, value: Any, pname: str) -> Any:
        return None if value is None else self.inner.convert(value, pname)


@dataclass(frozen=True)
class Str(ParamType):
    def convert(self, value: Any, pname: str) -> str:
        if not isinstance(value, str):
            raise self._fail(pname, value, "a string")
        return value


@dataclass(frozen=True)
class LayerArg(ParamType):
    """A layer given as an argument: ``TimeDistributed(Dense(64))``, ``Bidirectional(LSTM(32))``.

    The lowering binds the inner call through the catalog and stores it as the attribute
    ``{"layer": "<canonical name>", "params": {...canonical params...}}``; the wrapper's rules
    get the inner spec and its attributes with :func:`inner_layer`. ``allowed`` restricts the
    inner layer kinds (canonical names); empty means any single-input layer.
    """

    allowed: tuple[str, ...] = ()

    def convert(self, value: Any, pname: str) -> dict:
        if not (isinstance(value, dict) and set(value) == {"layer", "params"}
                and isinstance(value["layer"], str) and isinstance(value["params"], dict)):
            raise self._fail(pname, value, "a layer, such as Dense(64)")
        spec = lookup(value["layer"])
        if spec is None:
            raise ParamError(f"'{pname}': unknown layer '{value['layer']}'")
        if self.allowed and spec.name not in self.allowed:
            raise ParamError(f"'{pname}' must be one of {', '.join(self.allowed)}, got {spec.name}")
        return {"layer": spec.name, "params": value["params"]}


def inner_layer(attr: dict) -> tuple[LayerSpec, dict]:
    """The spec and attributes of a :class:`LayerArg` attribute."""
    spec = lookup(attr["layer"])
    assert spec is not None, attr
    return spec, attr["params"]


@dataclass(frozen=True)
class ValueRef(ParamType):
    """The name of a network input or named branch: ``MultiHeadAttention(4, 16, context=memory)``.

    The lowering turns each such parameter that is not None into an extra operand of the op,
    after the layer's own inputs and in parameter order; the attribute keeps the name.
    """

    def convert(self, value: Any, pname: str) -> str:
        if not isinstance(value, str) or not value.isidentifier():
            raise self._fail(pname, value, "the name of an input or a named branch")
        return value


@dataclass(frozen=True)
class Param:
    name: str
    type: ParamType
    default: Any = REQUIRED
    aliases: tuple[str, ...] = ()
    doc: str = ""

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


# -- weights ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Init:
    """A default initialiser, as PyTorch's for the same module.

    ``uniform``: U(-a, a); ``normal``: N(0, a^2); ``const``: every element equals ``a``.
    """

    kind: Literal["uniform", "normal", "const"]
    a: float


@dataclass(frozen=True)
class WeightSpec:
    """One weight tensor: PyTorch's layout, default initialiser and element type."""

    shape: tuple[int, ...]
    init: Init
    dtype: str = "f32"  # "i64" for counters such as BatchNorm's num_batches_tracked
    # A file may leave it out (a training counter that inference never reads); its
    # initial value is used then.
    optional: bool = False


# -- shape rules -------------------------------------------------------------------------------




ShapeRule = Callable[[dict, list[TensorType], ShapeContext], list[TensorType]]
WeightRule = Callable[[dict, list[TensorType]], dict[str, WeightSpec]]
Reference = Callable[[dict, list[np.ndarray], dict[str, np.ndarray]], list[np.ndarray]]
FlopRule = Callable[[dict, list[TensorType], list[TensorType]], Dim]


def no_weights(attrs: dict, in_types: list[TensorType]) -> dict[str, WeightSpec]:
    return {}


def no_flops(attrs: dict, in_types: list[TensorType], out_types: list[TensorType]) -> Dim:
    return 0


Kind = Literal["layer", "merge", "residual"]


@dataclass
class LayerSpec:
    """One layer kind. See the module docstring for who asks which field."""

    name: str  # canonical DSL spelling, e.g. "Conv2D"
    params: tuple[Param, ...]
    positional: tuple[str, ...]
    shape: ShapeRule
    reference: Reference
    weights: WeightRule = no_weights
    flops: FlopRule = no_flops
    aliases: tuple[str, ...] = ()
    kind: Kind = "layer"
    arity: int | None = 1  # number of inputs; None: two or more (merges)
    keras_name: str = ""  # base of the auto name ("conv2d"); default: snake_case of name
    op_name: str = ""  # graph op; default: "graph." + keras_name
    check: Callable[[dict], None] | None = None  # cross-parameter validation, raises ParamError
    doc: str = ""
    example: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    # Number of results for given attributes (e.g. LSTM with return_state); default one.
    num_results: Callable[[dict], int] | None = None
    # Lowering to tensor ops: (TensorBuilder, attrs, operand values) -> result values.
    lower: Callable[[Any, dict, list[Any]], list[Any]] | None = None
    # Parameters other DSL implementations take that neuralc does not support yet: name ->
    # why, and what to write instead. Giving one (other than as false) is an error saying so.
    unsupported: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.keras_name:
            self.keras_name = snake_case(self.name)
        if not self.op_name:
            self.op_name = "graph." + self.keras_name
        names = {p.name for p in self.params}
        for pos in self.positional:
            if pos not in names:
                raise ValueError(f"{self.name}: positional {pos!r} is not a parameter")

    def param(self, name: str) -> Param | None:
        """The parameter called ``name`` or one of its aliases (case-sensitive, as Keras)."""
        for p in self.params:
            if p.name == name or name in p.aliases:
                return p
        return None

    def results(self, attrs: dict) -> int:
        return 1 if self.num_results is None else self.num_results(attrs)

    def value_params(self) -> list[Param]:
        """Parameters naming other values; each non-None one adds an operand."""
        return [p for p in self.params if isinstance(p.type, ValueRef) or
                (isinstance(p.type, Optional_) and isinstance(p.type.inner, ValueRef))]

    def defaults(self) -> dict[str, Any]:
        """Fresh copies: list defaults (``strides=[1, 1]``) must not be shared between ops."""
        return {p.name: copy.deepcopy(p.default) for p in self.params if not p.required}


def snake_case(name: str) -> str:
    """Keras's layer-name rule: ``Conv2D`` -> ``conv2d``, ``MaxPooling2D`` -> ``max_pooling2d``."""
    s = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    s = re.sub(r"([a-z])([A-Z])", r"\1_\2", s)
    return s.lower()


# -- registry ------------------------------------------------------------------------------------

_BY_NAME: dict[str, LayerSpec] = {}  # lower-cased DSL names and aliases
_BY_OP: dict[str, LayerSpec] = {}
_SPECS: list[LayerSpec] = []

FAMILIES: Sequence[str] = (
    "neuralc.layers.dense",
    "neuralc.layers.conv",
    "neuralc.layers.pooling",
    "neuralc.layers.reshaping",
    "neuralc.layers.regularization",
    "neuralc.layers.normalization",
    "neuralc.layers.embedding",
    "neuralc.layers.activation_layers",
    "neuralc.layers.merge",
    "neuralc.layers.conv_variants",
    "neuralc.layers.resampling",
    "neuralc.layers.blocks",
    "neuralc.layers.recurrent",
    "neuralc.layers.wrappers",
    "neuralc.layers.attention",
    "neuralc.layers.transformer",
    # Last: the graph dialect makes one op per spec registered above.
    "neuralc.layers.graph_dialect",
)

_loaded = False


def register(spec: LayerSpec) -> LayerSpec:
    for n in (spec.name, *spec.aliases):
        key = n.lower()
        if key in _BY_NAME:
            raise ValueError(f"layer name {n!r} registered twice")
        _BY_NAME[key] = spec
    if spec.op_name in _BY_OP:
        raise ValueError(f"graph op {spec.op_name!r} registered twice")
    _BY_OP[spec.op_name] = spec
    _SPECS.append(spec)
    return spec


def load_all() -> None:
    """Import every layer family (each registers its specs once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in FAMILIES:
        importlib.import_module(mod)


def lookup(name: str) -> LayerSpec | None:
    """The spec for a DSL layer name, matched case-insensitively."""
    load_all()
    return _BY_NAME.get(name.lower())


def by_op(op_name: str) -> LayerSpec | None:
    load_all()
    return _BY_OP.get(op_name)


def all_specs() -> list[LayerSpec]:
    load_all()
    return list(_SPECS)


def layer_names() -> list[str]:
    load_all()
    return [s.name for s in _SPECS]
