"""The tensor dialect's elementwise functions, each written once over a few primitives.

``tensor.unary``/``loop.unary`` name math functions (exp, rsqrt, ...) and activations (gelu,
swish, hard_sigmoid, ...). A code generator does not implement each of them: it implements the
primitives of :class:`ScalarOps` (arithmetic, comparisons, select and a handful of
transcendental functions) and calls :func:`expand`, which composes them. The formulas follow
the numpy reference semantics (``neuralc.ir.activations`` and the tensor dialect's ``_MATH``)
including NaN: comparisons are written so that a NaN input gives NaN where numpy does.
"""

from __future__ import annotations

import math
from typing import Generic, Protocol, TypeVar

from neuralc.ir.activations import SELU_ALPHA, SELU_SCALE, canonical_activation

V = TypeVar("V")

# The transcendental and rounding primitives a code generator provides.
PRIMITIVES = ("exp", "expm1", "log", "tanh", "sigmoid", "softplus", "erf", "sin", "cos",
              "sqrt", "abs", "floor", "ceil", "neg")


class ScalarOps(Protocol, Generic[V]):
    """What :func:`expand` composes; a code generator's values are ``V``."""

    def const(self, value: float) -> V: ...

    def arith(self, fn: str, a: V, b: V) -> V: ...  # add, sub, mul, div

    def prim(self, name: str, x: V) -> V: ...  # one of PRIMITIVES

    def less(self, a: V, b: V) -> V: ...  # an ordered a < b (false on NaN)

    def select(self, cond: V, a: V, b: V) -> V: ...


def _relu(o: ScalarOps[V], x: V) -> V:
    # select(x < 0, 0, x): a NaN x compares false and stays NaN, as np.maximum(x, 0).
    return o.select(o.less(x, o.const(0.0)), o.const(0.0), x)


def _clip(o: ScalarOps[V], x: V, lo: float, hi: float) -> V:
    x = o.select(o.less(x, o.const(lo)), o.const(lo), x)
    return o.select(o.less(o.const(hi), x), o.const(hi), x)


def _negative_part_expm1(o: ScalarOps[V], x: V, alpha: float) -> V:
    """alpha * expm1(min(x, 0)), then x where x > 0 (elu's two branches)."""
    neg = o.select(o.less(o.const(0.0), x), o.const(0.0), x)
    tail = o.arith("mul", o.const(alpha), o.prim("expm1", neg))
    return o.select(o.less(o.const(0.0), x), x, tail)


def expand(fn: str, x: V, alpha: float | None, o: ScalarOps[V]) -> V:
    """``fn(x)`` (a math function or an activation, by any of its names) from primitives."""
    if fn in ("exp", "log", "sqrt", "sin", "cos", "erf", "floor", "ceil", "abs", "neg"):
        return o.prim(fn, x)
    if fn == "rsqrt":
        return o.arith("div", o.const(1.0), o.prim("sqrt", x))
    if fn == "reciprocal":
        return o.arith("div", o.const(1.0), x)
    if fn == "square":
        return o.arith("mul", x, x)
    name = canonical_activation(fn)
    if name is None:
        raise KeyError(f"unknown elementwise function {fn!r}")
    if name == "linear":
        return x
    if name == "relu":
        return _relu(o, x)
    if name == "leaky_relu":
        a = 0.2 if alpha is None else alpha
        return o.select(o.less(x, o.const(0.0)), o.arith("mul", o.const(a), x), x)
    if name == "elu":
        return _negative_part_expm1(o, x, 1.0 if alpha is None else alpha)
    if name == "selu":
        return o.arith("mul", o.const(SELU_SCALE), _negative_part_expm1(o, x, SELU_ALPHA))
    if name == "gelu":
        phi = o.arith("add", o.const(1.0),
                      o.prim("erf", o.arith("mul", x, o.const(1.0 / math.sqrt(2.0)))))
        return o.arith("mul", o.arith("mul", o.const(0.5), x), phi)
    if name == "swish":
        return o.arith("mul", x, o.prim("sigmoid", x))
    if name in ("sigmoid", "tanh", "softplus"):
        return o.prim(name, x)
    if name == "exponential":
        return o.prim("exp", x)
    if name == "softsign":
        return o.arith("div", x, o.arith("add", o.const(1.0), o.prim("abs", x)))
    if name == "relu6":
        return _clip(o, x, 0.0, 6.0)
    if name == "hard_sigmoid":
        return o.arith("div", _clip(o, o.arith("add", x, o.const(3.0)), 0.0, 6.0), o.const(6.0))
    if name == "hard_swish":
        gate = o.arith("div", _clip(o, o.arith("add", x, o.const(3.0)), 0.0, 6.0), o.const(6.0))
        return o.arith("mul", x, gate)
    if name == "mish":
        return o.arith("mul", x, o.prim("tanh", o.prim("softplus", x)))
    raise KeyError(f"{fn} is not elementwise (it is lowered to reductions)")
