"""Every activation of ``neuralc/layers/activations.py`` as ONNX nodes, with Keras 3's meaning.

Native operators where the opset has one with the same definition (``Gelu`` from opset 20,
``Mish`` 18, ``HardSwish`` 14); otherwise the defining formula from older operators. The
recurrent operators (LSTM, GRU, RNN) take only a few activations by name;
:func:`rnn_activation` says which, and how.
"""

from __future__ import annotations

import math

from neuralc.backends.onnx.builder import Builder, Unsupported, Val
from neuralc.ir.activations import SELU_ALPHA, SELU_SCALE, canonical_activation


def activation(b: Builder, name: str, x: str, alpha: float | None = None,
               axis: int = -1) -> str:
    """``name`` applied to tensor ``x``; ``axis`` is the physical axis of softmax."""
    act = canonical_activation(name)
    if act is None:
        raise Unsupported(f"unknown activation '{name}'")
    if act == "linear":
        return x
    simple = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
              "softsign": "Softsign", "exponential": "Exp"}
    if act in simple:
        return b.op(simple[act], [x])
    if act == "leaky_relu":
        return b.op("LeakyRelu", [x], alpha=0.2 if alpha is None else float(alpha))
    if act == "elu":
        return b.op("Elu", [x], alpha=1.0 if alpha is None else float(alpha))
    if act == "selu":
        return b.op("Selu", [x], alpha=SELU_ALPHA, gamma=SELU_SCALE)
    if act == "gelu":
        if b.has("Gelu"):
            return b.op("Gelu", [x], approximate="none")
        erf = b.op("Erf", [b.op("Mul", [x, b.scalar(1.0 / math.sqrt(2.0))])])
        half = b.op("Mul", [x, b.scalar(0.5)])
        return b.op("Mul", [half, b.op("Add", [erf, b.scalar(1.0)])], hint="gelu")
    if act == "swish":
        return b.op("Mul", [x, b.op("Sigmoid", [x])], hint="swish")
    if act == "relu6":
        return b.op("Clip", [x, b.scalar(0.0), b.scalar(6.0)], hint="relu6")
    if act == "hard_sigmoid":
        return b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)
    if act == "hard_swish":
        if b.has("HardSwish"):
            return b.op("HardSwish", [x])
        return b.op("Mul", [x, b.op("HardSigmoid", [x], alpha=1.0 / 6.0, beta=0.5)],
                    hint="hard_swish")
    if act == "mish":
        if b.has("Mish"):
            return b.op("Mish", [x])
        return b.op("Mul", [x, b.op("Tanh", [b.op("Softplus", [x])])], hint="mish")
    if act == "softmax":
        return b.op("Softmax", [x], axis=axis)
    if act == "log_softmax":
        return b.op("LogSoftmax", [x], axis=axis)
    raise Unsupported(f"no ONNX form of the activation '{act}'")


def activation_val(b: Builder, name: str, v: Val, alpha: float | None = None) -> Val:
    """An activation on a graph value, in whatever layout it already has.

    Softmax and log-softmax run over the last IR axis, wherever that axis lies physically.
    """
    act = canonical_activation(name)
    if act == "linear":
        return v
    perm, x = b.any(v)
    axis = perm.index(v.rank - 1)
    return b.val(v.type, activation(b, name, x, alpha, axis), perm)


# LSTM/GRU/RNN name their activations; these are the ones onnxruntime implements, with the
# alpha and beta that give Keras's definition. None: the operator cannot take it.
_RNN_ACTIVATIONS: dict[str, tuple[str, float | None, float | None]] = {
    "sigmoid": ("Sigmoid", None, None),
    "tanh": ("Tanh", None, None),
    "relu": ("Relu", None, None),
    "linear": ("Affine", 1.0, 0.0),
    "hard_sigmoid": ("HardSigmoid", 1.0 / 6.0, 0.5),
    "softsign": ("Softsign", None, None),
    "softplus": ("Softplus", None, None),
    "elu": ("Elu", 1.0, None),
    "leaky_relu": ("LeakyRelu", 0.2, None),
}


def rnn_activation(name: str) -> tuple[str, float | None, float | None] | None:
    """(ONNX name, alpha, beta) of an activation for the recurrent operators, or None."""
    act = canonical_activation(name)
    return _RNN_ACTIVATIONS.get(act or "")
