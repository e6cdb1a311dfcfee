"""The Keras emitters by graph op kind, and the layers Keras cannot express.

An emitter turns one layer (a :class:`LayerOp`: kind, attributes, types, names) into one
Keras layer (a :class:`KerasLayer`: the expression that constructs it, how it is called, and
how neuralc's PyTorch-layout weights become its Keras weights). Wrappers (TimeDistributed,
Bidirectional) call the emitter of the layer they wrap, so every layer is written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from neuralc.ir.dims import Expr
from neuralc.ir.types import TensorType
from neuralc.layers.catalog import LayerSpec, WeightSpec
from neuralc.location import UNKNOWN, Location


class Unsupported(Exception):
    """Keras cannot express this layer (with these parameters) faithfully; says why."""


def fixed(d: object, what: str) -> int:
    """``d`` as the number Keras needs for ``what``; Unsupported naming the symbol to make
    static where the model leaves it symbolic. Every dim written into generated code passes
    here (or through :func:`neuralc.backends.keras.pycode.literal`, which refuses symbols too),
    so a symbolic size is a located error, never an ``Expr`` in a broken file."""
    if isinstance(d, Expr):
        raise Unsupported(f"Keras needs a fixed {what}, but the model leaves it as the "
                          f"symbolic dim '{d}'; give it a number in the input shape")
    if isinstance(d, bool) or not isinstance(d, int):
        raise TypeError(f"not a dimension: {d!r}")
    return d


@dataclass
class LayerOp:
    """What an emitter needs of one layer, whether a graph op or a layer inside a wrapper."""

    spec: LayerSpec
    attrs: dict
    in_types: list[TensorType]
    out_types: list[TensorType]
    name: str  # the Keras layer name
    weight_prefix: str  # neuralc's weight names are "<prefix>.<param><suffix>"
    weight_suffix: str = ""  # "_reverse" for the backward copy inside Bidirectional
    location: Location = UNKNOWN

    def weight_specs(self) -> dict[str, WeightSpec]:
        return self.spec.weights(self.attrs, self.in_types)

    def has(self, param: str) -> bool:
        return param in self.weight_specs()

    def w(self, param: str) -> str:
        """The expression reading one of this layer's neuralc weights in the loader."""
        return f't["{self.weight_prefix}.{param}{self.weight_suffix}"]'

    def opt(self, param: str) -> str:
        """Like :meth:`w`, or ``None`` where the layer has no such weight (no bias)."""
        return self.w(param) if self.has(param) else "None"

    @property
    def in_shape(self) -> tuple:
        shape = self.in_types[0].shape
        assert shape is not None
        return shape

    @property
    def rank(self) -> int:
        return len(self.in_shape)

    def dim(self, axis: int, what: str) -> int:
        """The size of input axis ``axis`` (batch included) where Keras needs a number."""
        return fixed(self.in_shape[axis], what)


@dataclass
class KerasLayer:
    """One Keras layer as source text.

    ``ctor`` constructs it; ``call`` says how it takes its inputs ("one": ``layer(x)``,
    "list": ``layer([a, b])``, "attention": ``layer(query, value, ...)``); ``call_kwargs`` are
    added to the call. ``then`` are further layers applied to its result (a residual's
    activation). ``weights`` are ``(path, arrays)``: the attribute path from the layer to the
    Keras layer whose ``set_weights`` takes ``arrays`` (a Python list expression over the
    loader's tensor dict ``t``).
    """

    ctor: str
    weights: list[tuple[str, str]] = field(default_factory=list)
    call: str = "one"
    call_kwargs: str = ""
    then: list[str] = field(default_factory=list)


class Gen:
    """What emitters may ask of the generator: helper snippets for the generated file."""

    def __init__(self) -> None:
        self.helpers: list[str] = []

    def use(self, *names: str) -> None:
        for n in names:
            if n not in self.helpers:
                self.helpers.append(n)


Emitter = Callable[[LayerOp, Gen], KerasLayer]

EMITTERS: dict[str, Emitter] = {}

# Catalog layers Keras cannot express faithfully, by canonical name, with the reason. Empty:
# every layer of the catalog has an emitter (parameter combinations Keras lacks raise
# Unsupported from their emitter instead).
CANNOT_EXPRESS: dict[str, str] = {}


def emitter(*layer_names: str) -> Callable[[Emitter], Emitter]:
    """Register an emitter for the catalog layers called ``layer_names`` (canonical names)."""

    def register(fn: Emitter) -> Emitter:
        for n in layer_names:
            if n in EMITTERS:
                raise ValueError(f"two Keras emitters for {n}")
            EMITTERS[n] = fn
        return fn

    return register


def emitter_for(spec: LayerSpec) -> Emitter | None:
    _load()
    return EMITTERS.get(spec.name)


_loaded = False


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        from neuralc.backends.keras import (  # noqa: F401 - each module registers emitters
            emit_core,
            emit_sequence,
        )
