"""SimpleRNN, LSTM, GRU and ConvLSTM2D: Keras's recurrent layers with PyTorch's weights.

Data is batch-first, ``(batch, time, features)`` (ConvLSTM2D: ``(batch, time, h, w, c)``); the
time axis may be symbolic, the feature axis sizes the weights and must be a number.

Weights are exactly ``torch.nn.RNN`` / ``LSTM`` / ``GRU`` (one layer, ``batch_first`` makes no
difference to them): ``weight_ih_l0`` ``(gates * units, features)``, ``weight_hh_l0``
``(gates * units, units)``, ``bias_ih_l0`` and ``bias_hh_l0`` ``(gates * units,)``, gates
stacked in PyTorch's order (LSTM ``i, f, g, o``; GRU ``r, z, n``), initialised as PyTorch does,
U(-1/sqrt(units), 1/sqrt(units)). A torch state_dict therefore loads as it is. Keras keeps one
LSTM bias where PyTorch keeps two; the sum is what counts.

Semantics are Keras's, which equal PyTorch's wherever both define them:

- LSTM: ``c' = f * c + i * act(g)``, ``h' = o * act(c')`` with ``i, f, o = rec_act(...)``.
- GRU, ``reset_after=true`` (Keras's default, PyTorch's only form):
  ``n = act(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.
- GRU, ``reset_after=false`` (Keras's original form; PyTorch has no such module): the reset
  gate is applied before the recurrent matmul, ``n = act(W_in x + b_in + W_hn (r * h) + b_hn)``,
  with the same weight names (Keras's single bias is ``bias_ih_l0``, ``bias_hh_l0`` zero).
- ``go_backwards`` processes the time steps last to first and returns the sequence in processed
  order (reversed), as Keras does. Without ``return_sequences`` the output is the last processed
  step's hidden state. ``return_state`` adds the final states as results (LSTM: output, h, c;
  GRU and SimpleRNN: output, h); the first result flows on to the next layer.
- ``dropout`` and ``recurrent_dropout`` are training-time masks: the identity at inference.
  Initial states are zero; masking is not supported.

ConvLSTM2D has no PyTorch module; its weights follow the layout a PyTorch implementation built
from two ``nn.Conv2d`` would have: ``weight_ih`` ``(4 * filters, in, kh, kw)`` (the input
convolution: Keras's strides, padding and dilation), ``weight_hh`` ``(4 * filters, filters, kh,
kw)`` (the recurrent convolution: stride 1, 'same' padding, as Keras), ``bias``
``(4 * filters,)``, gates ``i, f, g, o``, and nn.Conv2d's default initialisers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dialects.tensor_loops import build_scan
from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.ir.windows import pad_spatial, sliding_windows, spatial_pads
from neuralc.layers.catalog import (
    RATE,
    ActivationName,
    Bool,
    Choice,
    Init,
    Int,
    IntTuple,
    LayerSpec,
    Param,
    WeightSpec,
    register,
)
from neuralc.layers.common import (
    bias_bound,
    conv_window_dims,
    kaiming_uniform_bound,
    no_strided_dilation,
    static_dim,
)

if TYPE_CHECKING:
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}
# Element-wise work per unit and step beyond the matmuls, counted one flop per op:
# SimpleRNN: act; LSTM: 3 gate acts, act(g), f*c, i*g, +, act(c), o*; GRU: 2 gate acts, r*,
# +, act, 1-z, two products, +.
_ELEMENTWISE = {"SimpleRNN": 1, "LSTM": 9, "GRU": 9}
FLOAT_TYPES = ("f32", "f64", "f16", "bf16")


# -- shared pieces ------------------------------------------------------------------------------


def sequence_input(t: TensorType, layer: str) -> tuple[Dim, Dim, int]:
    """(batch, time, features) of a recurrent layer's input, or the section 9 error."""
    assert t.shape is not None
    shape = t.shape
    if t.dtype not in FLOAT_TYPES:
        raise ShapeError(
            f"{layer} expects float vectors, got {t.dtype} values",
            "put Embedding(vocabulary, dim) before it to turn token indices into vectors",
        )
    if len(shape) != 3:
        raise ShapeError(f"{layer} expects input (batch, time, features), got {shape_str(shape)}",
                         _sequence_hint(shape, layer))
    features = static_dim(shape[2], layer, "number of input features")
    return shape[0], shape[1], features


def _sequence_hint(shape: tuple[Dim, ...], layer: str) -> str:
    """What to put before a recurrent layer, by the rank of what it got."""
    if len(shape) <= 2:
        return ("it has no time axis: use Reshape((steps, features)) to make it a sequence, "
                "or return_sequences=true on a recurrent layer before it")
    if len(shape) == 4:
        rows = (f"Reshape(({shape[1]}, {shape[2] * shape[3]}))"
                if all(isinstance(d, int) for d in shape[2:]) else "Reshape((time, features))")
        return (f"use {rows} to read axis 1 as time steps, TimeDistributed(Flatten()) before "
                f"it to make each step a vector, or TimeDistributed({layer}(...)) to run it over "
                "axis 2 for each item of axis 1")
    if len(shape) == 5:
        return ("for sequences of images use ConvLSTM2D, or TimeDistributed(Flatten()) to make "
                "each step a vector")
    return "use Reshape((time, features)) to make it a sequence"


def recurrent_flags() -> tuple[Param, ...]:
    """The flags every recurrent layer shares (Keras's names and defaults)."""
    return (
        Param("use_bias", Bool(), True, aliases=("bias",),
              doc="add the learned biases (bias_ih and bias_hh)"),
        Param("return_sequences", Bool(), False,
              doc="return the output of every step (batch, time, ...), not only the last"),
        Param("return_state", Bool(), False,
              doc="also return the final states as extra results (LSTM: h, c; GRU/SimpleRNN: h)"),
        Param("go_backwards", Bool(), False,
              doc="process the steps last to first; sequences come out in processed order"),
        Param("dropout", RATE, 0.0, doc="input dropout while training; identity at inference"),
        Param("recurrent_dropout", RATE, 0.0,
              doc="dropout on the recurrent state while training; identity at inference"),
    )


def rnn_uniform(units: int) -> Init:
    """PyTorch's RNN/LSTM/GRU default for every weight and bias: U(+-1/sqrt(hidden_size))."""
    return Init("uniform", 1.0 / math.sqrt(units))


def _act(name: str, x: np.ndarray) -> np.ndarray:
    return apply_activation(name, x)


# -- SimpleRNN, LSTM, GRU -------------------------------------------------------------------------


def _num_results(kind: str):
    states = 2 if kind == "LSTM" else 1
    return lambda attrs: 1 + states if attrs["return_state"] else 1


def _make_shape(kind: str):
    def shape_rule(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
        batch, time, _ = sequence_input(ins[0], kind)
        u = attrs["units"]
        out = (batch, time, u) if attrs["return_sequences"] else (batch, u)
        outs = [TensorType(out, "f32")]
        if attrs["return_state"]:
            outs += [TensorType((batch, u), "f32")] * (2 if kind == "LSTM" else 1)
        return outs
    return shape_rule


def _make_weights(kind: str):
    def weight_rule(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
        assert ins[0].shape is not None
        _, _, features = sequence_input(ins[0], kind)
        u = attrs["units"]
        rows = GATES[kind] * u
        init = rnn_uniform(u)
        w = {"weight_ih_l0": WeightSpec((rows, features), init),
             "weight_hh_l0": WeightSpec((rows, u), init)}
        if attrs["use_bias"]:
            w["bias_ih_l0"] = WeightSpec((rows,), init)
            w["bias_hh_l0"] = WeightSpec((rows,), init)
        return w
    return weight_rule


def run_recurrent(kind: str, attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]
                  ) -> list[np.ndarray]:
    """One recurrent layer over ``x`` (batch, time, features): [output, *final states].

    Shared with Bidirectional, which runs it once per direction. Computed in float64.
    """
    u = attrs["units"]
    act, rec = attrs["activation"], attrs.get("recurrent_activation", "sigmoid")
    xs = x.astype(np.float64)
    if attrs["go_backwards"]:
        xs = xs[:, ::-1]
    n, steps = xs.shape[0], xs.shape[1]
    w_ih = w["weight_ih_l0"].astype(np.float64)
    w_hh = w["weight_hh_l0"].astype(np.float64)
    rows = w_ih.shape[0]
    xw = xs @ w_ih.T  # every step's input projection at once: (batch, time, gates * units)
    if attrs["use_bias"]:
        xw = xw + w["bias_ih_l0"].astype(np.float64)
        b_hh = w["bias_hh_l0"].astype(np.float64)
    else:
        b_hh = np.zeros(rows)
    h = np.zeros((n, u))
    c = np.zeros((n, u))
    seq = np.zeros((n, steps, u))
    for t in range(steps):
        xt = xw[:, t]
        if kind == "SimpleRNN":
            h = _act(act, xt + h @ w_hh.T + b_hh)
        elif kind == "LSTM":
            z = xt + h @ w_hh.T + b_hh
            i, f, g, o = (z[:, k * u:(k + 1) * u] for k in range(4))
            c = _act(rec, f) * c + _act(rec, i) * _act(act, g)
            h = _act(rec, o) * _act(act, c)
        else:
            x_r, x_z, x_n = (xt[:, k * u:(k + 1) * u] for k in range(3))
            if attrs["reset_after"]:
                hw = h @ w_hh.T + b_hh
                r = _act(rec, x_r + hw[:, :u])
                z = _act(rec, x_z + hw[:, u:2 * u])
                cand = _act(act, x_n + r * hw[:, 2 * u:])
            else:
                hw = h @ w_hh[:2 * u].T + b_hh[:2 * u]
                r = _act(rec, x_r + hw[:, :u])
                z = _act(rec, x_z + hw[:, u:])
                cand = _act(act, x_n + (r * h) @ w_hh[2 * u:].T + b_hh[2 * u:])
            h = (1.0 - z) * cand + z * h
        seq[:, t] = h
    out = seq if attrs["return_sequences"] else h
    results = [out]
    if attrs["return_state"]:
        results += [h, c] if kind == "LSTM" else [h]
    return [r.astype(np.float32) for r in results]


def _make_reference(kind: str):
    def reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
        return run_recurrent(kind, attrs, xs[0], w)
    return reference


def _make_flops(kind: str):
    def flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
        """Per sample: 2 flops per multiply-add of both matmuls, bias adds, element-wise work."""
        assert ins[0].shape is not None
        time, features = ins[0].shape[1], ins[0].shape[2]
        u = attrs["units"]
        rows = GATES[kind] * u
        per_step = 2 * rows * (features + u) + _ELEMENTWISE[kind] * u
        if attrs["use_bias"]:
            per_step = per_step + 2 * rows
        return time * per_step
    return flops


def _rnn_params(kind: str) -> tuple[Param, ...]:
    ps = [
        Param("units", Int(min=1), aliases=("hidden_size",),
              doc="size of the hidden state and of each output step"),
        Param("activation", ActivationName(), "tanh",
              doc="activation of the candidate" + (" and of the cell output" if kind == "LSTM"
                                                     else "")),
    ]
    if kind != "SimpleRNN":
        ps.append(Param("recurrent_activation", ActivationName(), "sigmoid",
                        doc="activation of the gates"))
    ps += recurrent_flags()
    if kind == "GRU":
        ps.append(Param("reset_after", Bool(), True,
                        doc="apply the reset gate after the recurrent matmul (PyTorch's and "
                            "Keras's default); false: before it (Keras's original GRU)"))
    return tuple(ps)


_DOCS = {
    "SimpleRNN": "Fully connected recurrence over (batch, time, features): "
                 "h = activation(W_ih x + b_ih + W_hh h + b_hh), as torch.nn.RNN.",
    "LSTM": "Long short-term memory over (batch, time, features), torch.nn.LSTM's weights and "
            "gate order (i, f, g, o).",
    "GRU": "Gated recurrent unit over (batch, time, features), torch.nn.GRU's weights and gate "
           "order (r, z, n); reset_after=false is Keras's original formulation.",
}
_EXAMPLES = {
    "SimpleRNN": "SimpleRNN(32, return_sequences=true)",
    "LSTM": "LSTM(64, return_sequences=true)",
    "GRU": "GRU(32)",
}


def _recurrent_spec(kind: str) -> LayerSpec:
    positional = ("units", "activation", "use_bias") if kind == "SimpleRNN" else \
        ("units", "activation", "recurrent_activation", "use_bias")
    return register(LayerSpec(
        name=kind, params=_rnn_params(kind), positional=positional,
        shape=_make_shape(kind), reference=_make_reference(kind), weights=_make_weights(kind),
        flops=_make_flops(kind), num_results=_num_results(kind), lower=_make_lower(kind),
        doc=_DOCS[kind], example=_EXAMPLES[kind],
    ))


# -- lowering to tensor ops ------------------------------------------------------------------------
#
# The input projection of every step is one tensor.matmul over (batch, time, features) (for
# ConvLSTM2D one tensor.conv over the batch * time frames), with its bias, outside the loop;
# only the recurrence runs in a ``tensor.scan`` (neuralc/ir/dialects/tensor_loops.py), whose
# body holds the recurrent matmul/conv, the gate slices, the activations and the state update
# as ordinary tensor ops, and reads the recurrent weights as operands. States start as zero
# fills. ``go_backwards`` is the scan's ``reverse``; the scan stores step t's output at t, so
# Keras's processed-order sequence is a tensor.reverse of it (Bidirectional asks for time order
# and needs none). Without ``return_sequences`` the output is the final state and the scan
# stacks nothing.

WeightFn = Callable[[str], "Value"]


def _float32(b: TensorBuilder, x: Value) -> Value:
    """The layer computes in float32 (its results are f32 whatever float the input is)."""
    return x if x.type.dtype == "f32" else b.op("tensor.cast", [x], {"to": "f32"})


def _gate(b: TensorBuilder, z: Value, k: int, size: int) -> Value:
    """Gate ``k`` of ``z``: its ``k``-th block of ``size`` features on the last axis."""
    return b.op("tensor.slice", [z], {"axis": -1, "size": size, "start": k * size})


def _linear(b: TensorBuilder, x: Value, w: Value, bias: Value | None) -> Value:
    """``x @ w.T (+ bias)``: the matmul with its bias as an epilogue."""
    y = b.op("tensor.matmul", [x, w], {"transpose_b": True})
    return y if bias is None else b.binary("add", y, bias)


def _lstm_update(b: TensorBuilder, z: Value, c: Value, act: str, rec: str,
                 u: int) -> tuple[Value, Value]:
    """``c' = rec(f) * c + rec(i) * act(g)``, ``h' = rec(o) * act(c')`` from the pre-activations
    ``z`` (gates i, f, g, o on the last axis); returns (h', c')."""
    i, f, g, o = (_gate(b, z, k, u) for k in range(4))
    c_new = b.binary("add", b.binary("mul", b.activation(rec, f), c),
                     b.binary("mul", b.activation(rec, i), b.activation(act, g)))
    h_new = b.binary("mul", b.activation(rec, o), b.activation(act, c_new))
    return h_new, c_new


def lower_recurrent(kind: str, b: TensorBuilder, attrs: dict, x: Value,
                    weight: WeightFn | None = None, time_order: bool = False) -> list[Value]:
    """SimpleRNN/LSTM/GRU over ``x`` as tensor ops: [output, *final states] as the reference.

    ``weight(param)`` gives a weight constant (default ``b.weight``; Bidirectional's backward
    copy reads the ``_reverse`` names). ``time_order``: a backward sequence output is stored in
    input time order instead of Keras's processed order (what Bidirectional wants).
    """
    w = weight or b.weight
    u = attrs["units"]
    act, rec = attrs["activation"], attrs.get("recurrent_activation", "sigmoid")
    bias = attrs["use_bias"]
    x = _float32(b, x)
    assert x.type.shape is not None
    xw = _linear(b, x, w("weight_ih_l0"), w("bias_ih_l0") if bias else None)
    zeros = b.op("tensor.constant", [], {"value": 0.0}, TensorType((x.type.shape[0], u), "f32"))
    w_hh = w("weight_hh_l0")
    b_hh = w("bias_hh_l0") if bias else None
    split = kind == "GRU" and not attrs["reset_after"]
    if split:
        # Keras's original GRU: W_hn multiplies r * h, so the recurrent weights split into the
        # r, z rows and the n rows, once, outside the loop.
        def rows(v: Value, start: int, size: int) -> Value:
            return b.op("tensor.slice", [v], {"axis": 0, "size": size, "start": start})
        reads = [rows(w_hh, 0, 2 * u), rows(w_hh, 2 * u, u)]
        names = ["weight_hh_rz", "weight_hh_n"]
        if b_hh is not None:
            reads += [rows(b_hh, 0, 2 * u), rows(b_hh, 2 * u, u)]
            names += ["bias_hh_rz", "bias_hh_n"]
    else:
        reads = [w_hh] + ([b_hh] if b_hh is not None else [])
        names = ["weight_hh"] + (["bias_hh"] if b_hh is not None else [])
    seq_out = attrs["return_sequences"]

    def step(bb: TensorBuilder, xs: list[Value], states: list[Value],
             ws: list[Value]) -> tuple[list[Value], list[Value]]:
        (xt,), h = xs, states[0]
        if split:
            w_rz, w_n = ws[0], ws[1]
            b_rz, b_n = (ws[2], ws[3]) if len(ws) == 4 else (None, None)
        else:
            hw = _linear(bb, h, ws[0], ws[1] if len(ws) > 1 else None)
        if kind == "SimpleRNN":
            new = [bb.activation(act, bb.binary("add", hw, xt))]
        elif kind == "LSTM":
            new = list(_lstm_update(bb, bb.binary("add", hw, xt), states[1], act, rec, u))
        else:
            x_r, x_z, x_n = (_gate(bb, xt, k, u) for k in range(3))
            if split:
                hw = _linear(bb, h, w_rz, b_rz)
            r = bb.activation(rec, bb.binary("add", x_r, _gate(bb, hw, 0, u)))
            z = bb.activation(rec, bb.binary("add", x_z, _gate(bb, hw, 1, u)))
            if split:
                hn = _linear(bb, bb.binary("mul", r, h), w_n, b_n)  # W_hn (r * h) + b_hn
            else:
                hn = bb.binary("mul", r, _gate(bb, hw, 2, u))  # r * (W_hn h + b_hn)
            n = bb.activation(act, bb.binary("add", x_n, hn))
            one_minus_z = bb.binary("sub", bb.scalar(1.0), z)
            new = [bb.binary("add", bb.binary("mul", one_minus_z, n), bb.binary("mul", z, h))]
        return ([new[0]] if seq_out else []), new

    n_states = 2 if kind == "LSTM" else 1
    outs, finals = build_scan(b, [xw], [zeros] * n_states, reads, step,
                              reverse=attrs["go_backwards"],
                              names=(["x_t"], ["h", "c"][:n_states], names))
    if seq_out:
        y = outs[0]
        if attrs["go_backwards"] and not time_order:
            y = b.op("tensor.reverse", [y], {"axes": [1]})  # Keras: in processed order
    else:
        y = finals[0]
    return [y, *finals] if attrs["return_state"] else [y]


def _make_lower(kind: str) -> Callable[[TensorBuilder, dict, list[Value]], list[Value]]:
    def lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
        return lower_recurrent(kind, b, attrs, xs[0])
    return lower


SIMPLE_RNN = _recurrent_spec("SimpleRNN")
LSTM = _recurrent_spec("LSTM")
GRU = _recurrent_spec("GRU")
RECURRENT_KINDS = ("SimpleRNN", "LSTM", "GRU")


# -- ConvLSTM2D -------------------------------------------------------------------------------


def _conv_lstm_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    t = ins[0]
    assert t.shape is not None
    shape = t.shape
    if t.dtype not in FLOAT_TYPES:
        raise ShapeError(f"ConvLSTM2D expects float images, got {t.dtype} values")
    if len(shape) != 5:
        hint = ("use LSTM for sequences of vectors" if len(shape) == 3 else
                "use Reshape((time, height, width, channels)) to make it a sequence of images")
        raise ShapeError(
            f"ConvLSTM2D expects input (batch, time, height, width, channels), "
            f"got {shape_str(shape)}", hint)
    static_dim(shape[4], "ConvLSTM2D", "number of input channels")
    image = (shape[0], *shape[2:])  # one step: (batch, h, w, c)
    spatial = conv_window_dims("ConvLSTM2D", image, attrs)
    f = attrs["filters"]
    step = (shape[0], *spatial, f)
    out = (shape[0], shape[1], *spatial, f) if attrs["return_sequences"] else step
    outs = [TensorType(out, "f32")]
    if attrs["return_state"]:
        outs += [TensorType(step, "f32")] * 2
    return outs


def _conv_lstm_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    assert ins[0].shape is not None
    channels = static_dim(ins[0].shape[-1], "ConvLSTM2D", "number of input channels")
    f = attrs["filters"]
    kh, kw = attrs["kernel_size"]
    fan_ih, fan_hh = channels * kh * kw, f * kh * kw
    w = {"weight_ih": WeightSpec((4 * f, channels, kh, kw), kaiming_uniform_bound(fan_ih)),
         "weight_hh": WeightSpec((4 * f, f, kh, kw), kaiming_uniform_bound(fan_hh))}
    if attrs["use_bias"]:
        w["bias"] = WeightSpec((4 * f,), bias_bound(fan_ih))
    return w


def _conv2d(x: np.ndarray, weight: np.ndarray, strides: list[int], dilation: list[int],
            padding: str) -> np.ndarray:
    """Channels-last 2-D convolution (N, H, W, C) x (F, C, kh, kw) -> (N, H', W', F)."""
    k = list(weight.shape[2:])
    pads = spatial_pads(x.shape, k, strides, dilation, padding)
    win = sliding_windows(pad_spatial(x, pads), k, strides, dilation)  # (N, H', W', C, kh, kw)
    return np.tensordot(win, weight, axes=([3, 4, 5], [1, 2, 3]))


def _conv_lstm_reference(attrs: dict, xs: list[np.ndarray],
                         w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    if attrs["go_backwards"]:
        x = x[:, ::-1]
    n, steps = x.shape[:2]
    f = attrs["filters"]
    act, rec = attrs["activation"], attrs["recurrent_activation"]
    w_ih = w["weight_ih"].astype(np.float64)
    w_hh = w["weight_hh"].astype(np.float64)
    frames = x.reshape(n * steps, *x.shape[2:])
    xw = _conv2d(frames, w_ih, attrs["strides"], attrs["dilation_rate"], attrs["padding"])
    if attrs["use_bias"]:
        xw = xw + w["bias"].astype(np.float64)
    xw = xw.reshape(n, steps, *xw.shape[1:])  # (N, T, H', W', 4f)
    h = np.zeros((n, *xw.shape[2:4], f))
    c = np.zeros_like(h)
    seq = np.zeros((n, steps, *h.shape[1:]))
    for t in range(steps):
        z = xw[:, t] + _conv2d(h, w_hh, [1, 1], [1, 1], "same")
        i, fg, g, o = (z[..., k * f:(k + 1) * f] for k in range(4))
        c = _act(rec, fg) * c + _act(rec, i) * _act(act, g)
        h = _act(rec, o) * _act(act, c)
        seq[:, t] = h
    results = [seq if attrs["return_sequences"] else h]
    if attrs["return_state"]:
        results += [h, c]
    return [r.astype(np.float32) for r in results]


def _conv_lstm_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Per sample: both convolutions at every output pixel and step, plus the LSTM update."""
    assert ins[0].shape is not None and outs[0].shape is not None
    time, channels = ins[0].shape[1], ins[0].shape[4]
    out = outs[0].shape
    h, w = (out[2], out[3]) if attrs["return_sequences"] else (out[1], out[2])
    f = attrs["filters"]
    kh, kw = attrs["kernel_size"]
    per_pixel = 2 * 4 * f * kh * kw * (channels + f) + _ELEMENTWISE["LSTM"] * f
    if attrs["use_bias"]:
        per_pixel = per_pixel + 4 * f
    return time * h * w * per_pixel


def _conv_lstm_check(attrs: dict) -> None:
    no_strided_dilation(attrs)


def _conv_lstm_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The input convolution over all batch * time frames at once, then a scan whose body is
    the recurrent 'same' convolution and the LSTM update on channels-last states."""
    x = _float32(b, xs[0])
    assert x.type.shape is not None
    n, t, *image = x.type.shape
    f = attrs["filters"]
    frames = b.reshape(x, (n * t, *image))
    xw = b.op("tensor.conv", [frames, b.weight("weight_ih")],
              {"dilation": list(attrs["dilation_rate"]), "groups": 1,
               "padding": attrs["padding"], "strides": list(attrs["strides"])})
    if attrs["use_bias"]:
        xw = b.binary("add", xw, b.weight("bias"))
    assert xw.type.shape is not None
    _, oh, ow, gates = xw.type.shape
    xw = b.reshape(xw, (n, t, oh, ow, gates))
    zeros = b.op("tensor.constant", [], {"value": 0.0}, TensorType((n, oh, ow, f), "f32"))
    act, rec = attrs["activation"], attrs["recurrent_activation"]

    def step(bb: TensorBuilder, seqs: list[Value], states: list[Value],
             ws: list[Value]) -> tuple[list[Value], list[Value]]:
        hw = bb.op("tensor.conv", [states[0], ws[0]],
                   {"dilation": [1, 1], "groups": 1, "padding": "same", "strides": [1, 1]})
        h_new, c_new = _lstm_update(bb, bb.binary("add", hw, seqs[0]), states[1], act, rec, f)
        return ([h_new] if attrs["return_sequences"] else []), [h_new, c_new]

    outs, (h, c) = build_scan(b, [xw], [zeros, zeros], [b.weight("weight_hh")], step,
                              reverse=attrs["go_backwards"],
                              names=(["x_t"], ["h", "c"], ["weight_hh"]))
    if attrs["return_sequences"]:
        y = outs[0]
        if attrs["go_backwards"]:
            y = b.op("tensor.reverse", [y], {"axes": [1]})  # Keras: in processed order
    else:
        y = h
    return [y, h, c] if attrs["return_state"] else [y]


CONV_LSTM2D = register(LayerSpec(
    name="ConvLSTM2D",
    params=(
        Param("filters", Int(min=1), doc="channels of the hidden state and of each output step"),
        Param("kernel_size", IntTuple(2), aliases=("kernel",),
              doc="window of both convolutions; an int stands for both axes"),
        Param("strides", IntTuple(2), [1, 1], aliases=("stride",),
              doc="step of the input convolution (the recurrent one has stride 1)"),
        Param("padding", Choice(("valid", "same")), "valid",
              doc='padding of the input convolution ("valid" or Keras "same"); the recurrent '
                  'one is always "same"'),
        Param("dilation_rate", IntTuple(2), [1, 1], aliases=("dilation",),
              doc="dilation of the input convolution"),
        Param("activation", ActivationName(), "tanh",
              doc="activation of the candidate and of the cell output"),
        Param("recurrent_activation", ActivationName(), "sigmoid", doc="activation of the gates"),
        *recurrent_flags(),
    ),
    positional=("filters", "kernel_size", "strides", "padding"),
    shape=_conv_lstm_shape, reference=_conv_lstm_reference, weights=_conv_lstm_weights,
    flops=_conv_lstm_flops, check=_conv_lstm_check, lower=_conv_lstm_lower,
    num_results=lambda attrs: 3 if attrs["return_state"] else 1,
    doc="LSTM whose transforms are 2-D convolutions, over (batch, time, height, width, "
        "channels); gates i, f, g, o.",
    example='ConvLSTM2D(16, (3, 3), padding="same", return_sequences=true)',
))
