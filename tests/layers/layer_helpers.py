"""Shared helpers of the layer-catalog tests: attribute binding, a shape context, running a layer.

``make_attrs`` binds arguments exactly as the frontend does (aliases, ``p.type.convert(value,
p.name)``, defaults, the spec's cross-parameter check), so the tests exercise the same
canonical attributes that graph ops carry. ``run_layer`` runs a spec's reference on concrete
arrays and checks it against the spec's own shape rule, so every parity test also checks that
shape inference and the numpy semantics agree.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from neuralc.ir.dims import Dim, evaluate, sym
from neuralc.ir.shapes import Unifier
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.layers.catalog import LayerSpec, ParamError, WeightSpec

NUMPY_OF = {"f32": np.float32, "f64": np.float64, "i64": np.int64, "i32": np.int32}
TYPE_OF = {np.dtype(v): k for k, v in NUMPY_OF.items()}


def spec(name: str) -> LayerSpec:
    s = catalog.lookup(name)
    assert s is not None, name
    return s


def make_attrs(layer: LayerSpec | str, *args: Any, **kwargs: Any) -> dict:
    """Canonical attributes: positional and keyword arguments (aliases allowed), defaults filled,
    each value converted by its Param's type, then the spec's cross-parameter check."""
    s = spec(layer) if isinstance(layer, str) else layer
    if len(args) > len(s.positional):
        raise ParamError(f"{s.name} takes at most {len(s.positional)} positional arguments")
    given: dict[str, Any] = dict(zip(s.positional, args))
    for key, value in kwargs.items():
        p = s.param(key)
        if p is None:
            raise ParamError(f"{s.name} has no parameter '{key}'")
        if p.name in given:
            raise ParamError(f"{s.name}: parameter '{p.name}' is given twice")
        given[p.name] = value
    attrs: dict[str, Any] = {}
    for p in s.params:
        if p.name in given:
            attrs[p.name] = p.type.convert(given[p.name], p.name)
        elif p.required:
            raise ParamError(f"{s.name} is missing the required parameter '{p.name}'")
        else:
            attrs[p.name] = copy.deepcopy(p.default)
    if s.check is not None:
        s.check(attrs)
    return attrs


class SimpleContext(Unifier):
    """The real shape-inference unifier, recording every ``unify`` call for the tests."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[Dim, Dim, str]] = []

    def unify(self, a: Dim, b: Dim, what: str) -> Dim:
        self.calls.append((a, b, what))
        return super().unify(a, b, what)


def dims(*ds: int | str) -> tuple[Dim, ...]:
    """``dims("batch", "h", 3)``: strings become symbols."""
    return tuple(sym(d) if isinstance(d, str) else d for d in ds)


def ttype(*ds: int | str, dtype: str = "f32") -> TensorType:
    return TensorType(dims(*ds), dtype)


def concrete_type(x: np.ndarray) -> TensorType:
    """The type shape inference would see for ``x``: a symbolic batch, static per-sample dims."""
    return TensorType((sym("batch"), *x.shape[1:]), TYPE_OF[x.dtype])


def random_weights(specs: dict[str, WeightSpec], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Random weights of the spec'd shapes: running variances positive, counters zero."""
    out: dict[str, np.ndarray] = {}
    for name, ws in specs.items():
        if ws.dtype == "i64":
            out[name] = np.zeros(ws.shape, np.int64)
        elif name == "running_var":
            out[name] = rng.uniform(0.5, 2.0, ws.shape).astype(np.float32)
        elif ws.init.kind == "uniform" and ws.init.a > 0:
            out[name] = rng.uniform(-ws.init.a, ws.init.a, ws.shape).astype(np.float32)
        else:
            out[name] = rng.normal(0.0, 1.0, ws.shape).astype(np.float32)
    return out


def run_layer(s: LayerSpec, attrs: dict, xs: list[np.ndarray], rng: np.random.Generator,
              weights: dict[str, np.ndarray] | None = None
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Run ``s.reference`` with random weights; check the output against the shape rule."""
    in_types = [concrete_type(x) for x in xs]
    ctx = SimpleContext()
    (out_t,) = s.shape(attrs, in_types, ctx)
    if weights is None:
        weights = random_weights(s.weights(attrs, in_types), rng)
    for x in xs:
        x.setflags(write=False)  # the interpreter hands read-only arrays to references
    (y,) = s.reference(attrs, xs, weights)
    assert out_t.shape is not None
    want = tuple(evaluate(ctx.resolve(d), {"batch": xs[0].shape[0]}) for d in out_t.shape)
    assert y.shape == want, (y.shape, want)
    assert y.dtype == NUMPY_OF[out_t.dtype], (y.dtype, out_t.dtype)
    return y, weights


# -- torch side ------------------------------------------------------------------------------


def tt(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(a, copy=True))


def to_cf(x: torch.Tensor) -> torch.Tensor:
    """Channels-last (N, *S, C) -> channels-first (N, C, *S)."""
    return x.movedim(-1, 1)


def to_cl(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def keras_same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """Keras 'same' split, written out again here independently of neuralc.layers.common."""
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def torch_pad(xc: torch.Tensor, pads: list[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    """F.pad a channels-first tensor with per-spatial-axis (before, after) pads."""
    flat: list[int] = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    return F.pad(xc, flat, value=value)


TORCH_ACT: dict[str, Callable[[torch.Tensor, float | None], torch.Tensor]] = {
    "linear": lambda t, a: t,
    "relu": lambda t, a: F.relu(t),
    "leaky_relu": lambda t, a: F.leaky_relu(t, 0.2 if a is None else a),
    "elu": lambda t, a: F.elu(t, 1.0 if a is None else a),
    "selu": lambda t, a: F.selu(t),
    "gelu": lambda t, a: F.gelu(t, approximate="none"),
    "swish": lambda t, a: F.silu(t),
    "sigmoid": lambda t, a: torch.sigmoid(t),
    "tanh": lambda t, a: torch.tanh(t),
    "softmax": lambda t, a: torch.softmax(t, dim=-1),
    "softplus": lambda t, a: F.softplus(t),
    "softsign": lambda t, a: F.softsign(t),
    "relu6": lambda t, a: F.relu6(t),
    "hard_sigmoid": lambda t, a: F.relu6(t + 3.0) / 6.0,
    "exponential": lambda t, a: torch.exp(t),
    "hard_swish": lambda t, a: F.hardswish(t),
    "mish": lambda t, a: F.mish(t),
    "log_softmax": lambda t, a: F.log_softmax(t, dim=-1),
}


def torch_act(name: str, t: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
    return TORCH_ACT[name](t, alpha)


RTOL = 1e-5
ATOL = 1e-5
