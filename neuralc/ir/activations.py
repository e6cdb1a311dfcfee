"""Activation functions: names, aliases and numpy reference semantics (Keras 3's definitions).

Used by the ``activation=`` parameter of Dense, Conv and friends and by the ``Activation``
layer. ``alpha`` is the one optional parameter (leaky_relu's negative slope, elu's alpha).
Functions that are easy to get wrong in float32 (mish, log_softmax, hard_swish) compute in
float64 and return the input's dtype, so the reference stays a faithful oracle.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

_erf = np.frompyfunc(math.erf, 1, 1)


def _gelu(x: np.ndarray, alpha: float | None) -> np.ndarray:
    # Exact GELU (Keras's default approximate=False): x * Phi(x).
    e = _erf(x.astype(np.float64) / math.sqrt(2.0)).astype(np.float64)
    return (0.5 * x * (1.0 + e)).astype(x.dtype)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - np.max(x, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(np.zeros_like(x), x)


def log_softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """``x - logsumexp(x)`` in float64: stable for any range, unlike ``log(softmax(x))``."""
    x64 = x.astype(np.float64)
    z = x64 - np.max(x64, axis=axis, keepdims=True)
    return (z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))).astype(x.dtype)


def _hard_swish(x: np.ndarray, a: float | None) -> np.ndarray:
    x64 = x.astype(np.float64)
    return (x64 * np.clip(x64 + 3.0, 0.0, 6.0) / 6.0).astype(x.dtype)


def _mish(x: np.ndarray, a: float | None) -> np.ndarray:
    x64 = x.astype(np.float64)
    return (x64 * np.tanh(_softplus(x64))).astype(x.dtype)


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


@dataclass(frozen=True)
class ActivationDef:
    name: str
    fn: Callable[[np.ndarray, float | None], np.ndarray]
    default_alpha: float | None = None
    doc: str = ""


_DEFS: dict[str, ActivationDef] = {}
_ALIASES: dict[str, str] = {}


def _define(name: str, fn: Callable[[np.ndarray, float | None], np.ndarray],
            alpha: float | None = None, aliases: tuple[str, ...] = (), doc: str = "") -> None:
    _DEFS[name] = ActivationDef(name, fn, alpha, doc)
    _ALIASES[name] = name
    for a in aliases:
        _ALIASES[a] = name


def _elu(x: np.ndarray, a: float | None) -> np.ndarray:
    a = 1.0 if a is None else a
    return np.where(x > 0, x, a * np.expm1(np.minimum(x, 0))).astype(x.dtype)


_define("linear", lambda x, a: x, aliases=("none", "identity"), doc="x")
_define("relu", lambda x, a: np.maximum(x, 0).astype(x.dtype), doc="max(x, 0)")
_define("leaky_relu",
        lambda x, a: np.where(x >= 0, x, (0.2 if a is None else a) * x).astype(x.dtype),
        alpha=0.2, aliases=("leakyrelu",), doc="x if x >= 0 else alpha * x (alpha 0.2, as Keras)")
_define("elu", _elu, alpha=1.0, doc="x if x > 0 else alpha * (exp(x) - 1)")
_define("selu",
        lambda x, a: (SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0))))
        .astype(x.dtype),
        doc="scale * elu(x, alpha) with the self-normalising constants")
_define("gelu", _gelu, doc="exact x * Phi(x)")
_define("swish", lambda x, a: (x * _sigmoid(x)).astype(x.dtype), aliases=("silu",),
        doc="x * sigmoid(x)")
_define("sigmoid", lambda x, a: _sigmoid(x), doc="1 / (1 + exp(-x))")
_define("tanh", lambda x, a: np.tanh(x), doc="tanh(x)")
_define("softmax", lambda x, a: softmax(x, -1).astype(x.dtype), doc="softmax over the last axis")
_define("softplus", lambda x, a: _softplus(x).astype(x.dtype), doc="log(1 + exp(x))")
_define("softsign", lambda x, a: (x / (1 + np.abs(x))).astype(x.dtype), doc="x / (1 + |x|)")
_define("relu6", lambda x, a: np.clip(x, 0, 6).astype(x.dtype), doc="min(max(x, 0), 6)")
_define("hard_sigmoid", lambda x, a: (np.clip(x + 3.0, 0, 6) / 6.0).astype(x.dtype),
        aliases=("hardsigmoid",), doc="relu6(x + 3) / 6 (Keras 3)")
_define("exponential", lambda x, a: np.exp(x), aliases=("exp",), doc="exp(x)")
_define("hard_swish", _hard_swish, aliases=("hard_silu", "hardswish"),
        doc="x * relu6(x + 3) / 6 (Keras 3's hard_silu, torch's hardswish)")
_define("mish", _mish, doc="x * tanh(softplus(x))")
_define("log_softmax", lambda x, a: log_softmax(x, -1), aliases=("logsoftmax",),
        doc="log of softmax over the last axis, computed as x - logsumexp(x)")


def canonical_activation(name: str) -> str | None:
    return _ALIASES.get(name.lower())


def activation_names() -> list[str]:
    return sorted(_ALIASES)


def activation_defs() -> list[ActivationDef]:
    return list(_DEFS.values())


def apply_activation(name: str, x: np.ndarray, alpha: float | None = None) -> np.ndarray:
    """Apply activation ``name`` (canonical or alias); ``alpha`` overrides its default."""
    canon = canonical_activation(name)
    if canon is None:
        raise KeyError(name)
    return _DEFS[canon].fn(x, alpha)
