"""Recurrent layers and wrappers as ONNX nodes.

SimpleRNN, LSTM and GRU become ONNX's RNN, LSTM and GRU operators wherever their activations
are ones those operators take (sigmoid, tanh, relu, linear, hard_sigmoid, softsign, softplus,
elu, leaky_relu). The weights are PyTorch's with the gate blocks reordered: PyTorch stacks LSTM
gates i, f, g, o and ONNX i, o, f, c; PyTorch's GRU r, z, n and ONNX's z, r, h. ONNX's bias is
the input bias then the recurrent one, as PyTorch keeps them. GRU's ``reset_after=true``
(PyTorch's form) is ``linear_before_reset=1``; Keras's original ``reset_after=false`` is
ONNX's default ``linear_before_reset=0``, whose formula is exactly Keras's.

onnxruntime runs these operators time-major only (``layout=0``), so the sequence is transposed
to (time, batch, features) and back. ``go_backwards`` is ``direction="reverse"``; Keras returns
that sequence in processed order, so it is reversed along time afterwards.

A layer with an activation the operators do not take, and ConvLSTM2D (no ONNX operator), run
as a ``Scan`` over the time axis whose body is the cell written out: the input projection (or
convolution) of every step is computed once before the Scan, the recurrent part inside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.backends.onnx.activations import activation, rnn_activation
from neuralc.backends.onnx.builder import Builder, Layer, Val, channels_first, dims_of
from neuralc.backends.onnx.emitters import emits, emitter_for
from neuralc.backends.onnx.layers_conv import same_input
from neuralc.ir.types import TensorType
from neuralc.ir.windows import same_pads
from neuralc.layers.catalog import inner_layer
from neuralc.layers.recurrent import GATES
from neuralc.layers.wrappers import REVERSE

ONNX_OP = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}
# For each ONNX gate block, the PyTorch block it is: LSTM i,o,f,c <- i,f,g,o; GRU z,r,h <- r,z,n.
GATE_ORDER = {"SimpleRNN": [0], "LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2]}


def _reorder(w: np.ndarray, kind: str) -> np.ndarray:
    blocks = np.split(w, GATES[kind], axis=0)
    return np.concatenate([blocks[i] for i in GATE_ORDER[kind]], axis=0)


def _native_activations(kind: str, a: dict) -> dict[str, Any] | None:
    """The operator's activations attributes for Keras's, or None if one is not available."""
    names = {"SimpleRNN": [a["activation"]],
             "GRU": [a.get("recurrent_activation"), a["activation"]],
             "LSTM": [a.get("recurrent_activation"), a["activation"], a["activation"]]}[kind]
    acts = [rnn_activation(n) for n in names]
    if any(x is None for x in acts):
        return None
    out: dict[str, Any] = {"activations": [x[0] for x in acts if x]}
    alphas = [x[1] for x in acts if x and x[1] is not None]
    betas = [x[2] for x in acts if x and x[2] is not None]
    if alphas:
        out["activation_alpha"] = alphas
    if betas:
        out["activation_beta"] = betas
    return out


def _num_states(kind: str) -> int:
    return 2 if kind == "LSTM" else 1


class Run:
    """What one direction of a recurrent layer gives: the sequence (batch, time, units) in
    processed order, or None if not asked for, and the final states, all channels-last."""

    def __init__(self, seq: str | None, states: list[str]):
        self.seq = seq
        self.states = states


def _native(b: Builder, layer: Layer, kind: str, a: dict, x: str, suffixes: list[str],
            direction: str, acts: dict[str, Any]) -> tuple[Any, ...]:
    """One ONNX RNN/LSTM/GRU node over time-major ``x``; ``suffixes`` name the weights of each
    direction ("" and "_reverse"). Returns the node's outputs (Y, Y_h[, Y_c])."""
    u = a["units"]
    w = np.stack([_reorder(b.weight(layer, f"weight_ih_l0{s}"), kind) for s in suffixes])
    r = np.stack([_reorder(b.weight(layer, f"weight_hh_l0{s}"), kind) for s in suffixes])
    ins = [x, b.init(f"{layer.name}.W", w), b.init(f"{layer.name}.R", r)]
    if a["use_bias"]:
        bias = np.stack([np.concatenate([_reorder(b.weight(layer, f"bias_ih_l0{s}"), kind),
                                         _reorder(b.weight(layer, f"bias_hh_l0{s}"), kind)])
                         for s in suffixes])
        ins.append(b.init(f"{layer.name}.B", bias))
    extra = {"linear_before_reset": int(a["reset_after"])} if kind == "GRU" else {}
    if direction == "bidirectional":  # one list per direction, forward first
        acts = {k: list(v) * 2 for k, v in acts.items()}
    return tuple(b.op(ONNX_OP[kind], ins, outputs=1 + _num_states(kind), hidden_size=u,
                      direction=direction, **acts, **extra))


def _direction_of(b: Builder, outs: tuple[Any, ...], d: int, kind: str, a: dict,
                  reverse_seq: bool) -> Run:
    """Direction ``d`` of a native node's outputs as a Run (sequence back to batch-first)."""
    seq = None
    if a["return_sequences"]:
        tm = b.op("Gather", [outs[0], b.ints(d)], axis=1)  # (time, batch, units)
        seq = b.op("Transpose", [tm], perm=[1, 0, 2])
        if reverse_seq:
            seq = b.reverse(seq, 1)
    states = [b.op("Gather", [outs[1 + k], b.ints(d)], axis=0) for k in range(_num_states(kind))]
    return Run(seq, states)


def _scan_cell(b: Builder, layer: Layer, kind: str, a: dict, suffix: str, units: int
               ) -> Any:
    """The Scan body of one step: (h[, c], projected input) -> (h[, c], h)."""
    from onnx import TensorProto, helper

    sub = b.subgraph()
    u = units
    rows = GATES[kind] * u
    h = sub.fresh(f"{layer.name}/h_in")
    c = sub.fresh(f"{layer.name}/c_in") if kind == "LSTM" else None
    xt = sub.fresh(f"{layer.name}/x_t")
    act, rec = a["activation"], a.get("recurrent_activation", "sigmoid")
    w_hh = b.weight(layer, f"weight_hh_l0{suffix}")
    b_hh = b.weight(layer, f"bias_hh_l0{suffix}") if a["use_bias"] else np.zeros(rows, np.float32)

    def recur(hh: str, w: np.ndarray, bias: np.ndarray, tag: str) -> str:
        wt = sub.init(f"{layer.name}.{tag}{suffix}_t", np.ascontiguousarray(w.T))
        return sub.op("Add", [sub.op("MatMul", [hh, wt]),
                              sub.init(f"{layer.name}.{tag}_bias{suffix}", bias)])

    outs: list[str]
    if kind == "SimpleRNN":
        h_new = activation(sub, act, sub.op("Add", [xt, recur(h, w_hh, b_hh, "hh")]))
        outs = [h_new]
    elif kind == "LSTM":
        assert c is not None
        z = sub.op("Add", [xt, recur(h, w_hh, b_hh, "hh")])
        i, f, g, o = sub.split(z, [u] * 4, 1)
        c_new = sub.op("Add", [sub.op("Mul", [activation(sub, rec, f), c]),
                               sub.op("Mul", [activation(sub, rec, i), activation(sub, act, g)])])
        h_new = sub.op("Mul", [activation(sub, rec, o), activation(sub, act, c_new)])
        outs = [h_new, c_new]
    else:
        x_r, x_z, x_n = sub.split(xt, [u] * 3, 1)
        if a["reset_after"]:
            h_r, h_z, h_n = sub.split(recur(h, w_hh, b_hh, "hh"), [u] * 3, 1)
            r = activation(sub, rec, sub.op("Add", [x_r, h_r]))
            zg = activation(sub, rec, sub.op("Add", [x_z, h_z]))
            n = activation(sub, act, sub.op("Add", [x_n, sub.op("Mul", [r, h_n])]))
        else:
            h_r, h_z = sub.split(recur(h, w_hh[:2 * u], b_hh[:2 * u], "hh_rz"), [u] * 2, 1)
            r = activation(sub, rec, sub.op("Add", [x_r, h_r]))
            zg = activation(sub, rec, sub.op("Add", [x_z, h_z]))
            rh = sub.op("Mul", [r, h])
            n = activation(sub, act, sub.op("Add", [x_n, recur(rh, w_hh[2 * u:], b_hh[2 * u:],
                                                               "hh_n")]))
        # h' = (1 - z) * n + z * h = n + z * (h - n)
        h_new = sub.op("Add", [n, sub.op("Mul", [zg, sub.op("Sub", [h, n])])])
        outs = [h_new]
    y = sub.op("Identity", [outs[0]], hint="y")
    F = TensorProto.FLOAT
    batch = dims_of(layer.in_types[0].shape or ("batch",))[0]
    ins_vi = [helper.make_tensor_value_info(h, F, [batch, u])]
    if c is not None:
        ins_vi.append(helper.make_tensor_value_info(c, F, [batch, u]))
    ins_vi.append(helper.make_tensor_value_info(xt, F, [batch, rows]))
    outs_vi = [helper.make_tensor_value_info(o, F, [batch, u]) for o in [*outs, y]]
    return helper.make_graph(sub.nodes, f"{layer.name}_cell{suffix}", ins_vi, outs_vi)


def _scan(b: Builder, layer: Layer, kind: str, a: dict, x: str, suffix: str,
          backwards: bool) -> Run:
    """One direction as a Scan over axis 1 of the projected input (batch-first throughout)."""
    u = a["units"]
    w_ih = b.weight(layer, f"weight_ih_l0{suffix}")
    xw = b.op("MatMul", [x, b.init(f"{layer.name}.weight_ih_l0{suffix}_t",
                                   np.ascontiguousarray(w_ih.T))])
    if a["use_bias"]:
        xw = b.op("Add", [xw, b.init(f"{layer.name}.bias_ih_l0{suffix}",
                                     b.weight(layer, f"bias_ih_l0{suffix}"))])
    zeros = b.zeros(b.concat([b.shape_of(x, 0, 1), b.ints([u])], 0))  # (batch, units)
    states = [zeros] * _num_states(kind)
    body = _scan_cell(b, layer, kind, a, suffix, u)
    n = _num_states(kind)
    outs = b.op("Scan", [*states, xw], outputs=n + 1, body=body, num_scan_inputs=1,
                scan_input_axes=[1], scan_output_axes=[1],
                scan_input_directions=[1 if backwards else 0])
    return Run(outs[n] if a["return_sequences"] else None, list(outs[:n]))


def run_direction(b: Builder, layer: Layer, kind: str, a: dict, x: Val, suffix: str,
                  backwards: bool) -> Run:
    """One direction of a recurrent layer with Keras's go_backwards = ``backwards``."""
    acts = _native_activations(kind, a)
    if acts is None:
        return _scan(b, layer, kind, a, b.get(x), suffix, backwards)
    tm = b.op("Transpose", [b.get(x)], perm=[1, 0, 2], hint="time_major")
    outs = _native(b, layer, kind, a, tm, [suffix], "reverse" if backwards else "forward", acts)
    return _direction_of(b, outs, 0, kind, a, reverse_seq=backwards)


def _finish(layer: Layer, kind: str, run: Run, b: Builder) -> list[Val]:
    out = run.seq if run.seq is not None else run.states[0]
    vals = [b.val(layer.out_types[0], out)]
    if layer.attrs["return_state"]:
        vals += [b.val(t, s) for t, s in zip(layer.out_types[1:], run.states)]
    return vals


@emits("simple_rnn", "lstm", "gru")
def recurrent(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    kind = layer.spec.name
    run = run_direction(b, layer, kind, layer.attrs, xs[0], "", layer.attrs["go_backwards"])
    return _finish(layer, kind, run, b)


# -- Bidirectional ---------------------------------------------------------------------------------


@emits("bidirectional")
def bidirectional(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Keras's Bidirectional: the backward copy flips go_backwards and its sequence is put back
    into time order. One ``direction="bidirectional"`` operator when the layer reads forwards
    and the activations are native; two directions otherwise."""
    spec, a = inner_layer(layer.attrs["layer"])
    kind = spec.name
    x = xs[0]
    acts = _native_activations(kind, a)
    if acts is not None and not a["go_backwards"]:
        tm = b.op("Transpose", [b.get(x)], perm=[1, 0, 2], hint="time_major")
        outs = _native(b, layer, kind, a, tm, ["", REVERSE], "bidirectional", acts)
        fwd = _direction_of(b, outs, 0, kind, a, reverse_seq=False)
        bwd = _direction_of(b, outs, 1, kind, a, reverse_seq=False)  # time order already
    else:
        g = a["go_backwards"]
        fwd = run_direction(b, layer, kind, a, x, "", g)
        bwd = run_direction(b, layer, kind, a, x, REVERSE, not g)
        if bwd.seq is not None:
            bwd = Run(b.reverse(bwd.seq, 1), bwd.states)
    yf = fwd.seq if fwd.seq is not None else fwd.states[0]
    yb = bwd.seq if bwd.seq is not None else bwd.states[0]
    mode = layer.attrs["merge_mode"]
    if mode == "concat":
        y = b.op("Concat", [yf, yb], axis=-1)
    elif mode == "sum":
        y = b.op("Add", [yf, yb])
    elif mode == "mul":
        y = b.op("Mul", [yf, yb])
    else:
        y = b.op("Mul", [b.op("Add", [yf, yb]), b.scalar(0.5)], hint="ave")
    vals = [b.val(layer.out_types[0], y)]
    if a["return_state"]:
        states = [*fwd.states, *bwd.states]
        vals += [b.val(t, s) for t, s in zip(layer.out_types[1:], states)]
    return vals


# -- ConvLSTM2D ------------------------------------------------------------------------------------


@emits("conv_lstm2d")
def conv_lstm2d(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """The input convolution of every frame at once, then a Scan over time whose body is the
    recurrent convolution ('same', stride 1) and the LSTM update, channels-first inside."""
    from onnx import TensorProto, helper

    a = layer.attrs
    x = xs[0]
    f = a["filters"]
    k = a["kernel_size"]
    xc = b.get(x)
    frames = b.op("Reshape", [xc, b.concat([b.ints([-1]), b.shape_of(xc, 2)], 0)])
    frames_cf = b.op("Transpose", [frames], perm=[0, 3, 1, 2], hint="nchw")
    src, pads, _ = same_input(b, frames_cf, tuple(x.shape[2:4]), k, a["strides"],
                              a["dilation_rate"], a["padding"])
    ins = [src, b.param(layer, "weight_ih")]
    if a["use_bias"]:
        ins.append(b.param(layer, "bias"))
    conv = b.op("Conv", ins, kernel_shape=k, strides=a["strides"], dilations=a["dilation_rate"],
                **pads)
    xw = b.op("Reshape", [conv, b.concat([b.shape_of(xc, 0, 2), b.shape_of(conv, 1)], 0)])
    hw = b.shape_of(conv, 2)
    zeros = b.zeros(b.concat([b.shape_of(xc, 0, 1), b.ints([f]), hw], 0))  # (N, f, h', w')

    sub = b.subgraph()
    h = sub.fresh(f"{layer.name}/h_in")
    c = sub.fresh(f"{layer.name}/c_in")
    xt = sub.fresh(f"{layer.name}/x_t")
    pads = [same_pads(16, ki, 1, 1) for ki in k]  # stride 1: independent of the size
    rec_conv = sub.op("Conv", [h, sub.param(layer, "weight_hh")], kernel_shape=k,
                      pads=[p[0] for p in pads] + [p[1] for p in pads])
    z = sub.op("Add", [xt, rec_conv])
    i, fg, g, o = sub.split(z, [f] * 4, 1)
    act, rec = a["activation"], a["recurrent_activation"]
    c_new = sub.op("Add", [sub.op("Mul", [activation(sub, rec, fg, axis=1), c]),
                           sub.op("Mul", [activation(sub, rec, i, axis=1),
                                          activation(sub, act, g, axis=1)])])
    h_new = sub.op("Mul", [activation(sub, rec, o, axis=1), activation(sub, act, c_new, axis=1)])
    y = sub.op("Identity", [h_new], hint="y")
    F = TensorProto.FLOAT
    out = layer.out_types[0].shape
    assert out is not None
    batch, h2, w2 = dims_of([out[0], *(out[2:4] if a["return_sequences"] else out[1:3])])
    shape4 = [batch, f, h2, w2]
    body = helper.make_graph(
        sub.nodes, f"{layer.name}_cell",
        [helper.make_tensor_value_info(h, F, shape4), helper.make_tensor_value_info(c, F, shape4),
         helper.make_tensor_value_info(xt, F, [batch, 4 * f, h2, w2])],
        [helper.make_tensor_value_info(n, F, shape4) for n in (h_new, c_new, y)])
    h_t, c_t, seq = b.op("Scan", [zeros, zeros, xw], outputs=3, body=body, num_scan_inputs=1,
                         scan_input_axes=[1], scan_output_axes=[1],
                         scan_input_directions=[1 if a["go_backwards"] else 0])
    cf = channels_first(4)
    if a["return_sequences"]:
        out = b.val(layer.out_types[0], seq, (0, 1, 4, 2, 3))  # (N, T, f, h', w')
    else:
        out = b.val(layer.out_types[0], h_t, cf)
    vals = [out]
    if a["return_state"]:
        vals += [b.val(layer.out_types[1], h_t, cf), b.val(layer.out_types[2], c_t, cf)]
    return vals


# -- TimeDistributed -------------------------------------------------------------------------------

# Layers that act on the last axis alone, position by position: TimeDistributed of these is the
# layer itself on the (batch, time, ...) input, with no folding of time into the batch.
_POSITIONWISE = {"dense", "output", "activation", "dropout", "gaussian_noise",
                 "gaussian_dropout", "alpha_dropout", "activity_regularization", "leaky_re_lu",
                 "re_lu", "elu"}


@emits("time_distributed")
def time_distributed(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """The wrapped layer on (batch * time, ...) and the result unfolded; weights shared."""
    spec, a = inner_layer(layer.attrs["layer"])
    kind = spec.op_name.removeprefix("graph.")
    fn = emitter_for(kind)
    if fn is None:
        from neuralc.backends.onnx.builder import Unsupported

        raise Unsupported(f"the onnx target cannot express the wrapped {spec.name}")
    x = xs[0]
    out_t = layer.out_types[0]
    assert out_t.shape is not None and x.type.shape is not None
    if kind in _POSITIONWISE and (kind != "dense" or x.rank >= 3):
        inner = Layer(spec, a, layer.name, [x.type], [out_t], layer.location)
        return fn(b, inner, [x])
    step_in = TensorType((x.shape[0], *x.shape[2:]), x.type.dtype)
    step_out = TensorType((out_t.shape[0], *out_t.shape[2:]), out_t.dtype)
    inner = Layer(spec, a, layer.name, [step_in], [step_out], layer.location)
    xc = b.get(x)
    if all(isinstance(d, int) for d in x.shape[2:]):
        shape = b.ints([-1, *x.shape[2:]])
    else:
        shape = b.concat([b.ints([-1]), b.shape_of(xc, 2)], 0)
    folded = b.op("Reshape", [xc, shape], hint="fold")
    (y,) = fn(b, inner, [b.val(step_in, folded)])
    yc = b.get(y)
    if all(isinstance(d, int) for d in out_t.shape[2:]):
        rest = b.ints(list(out_t.shape[2:]))
    else:
        rest = b.shape_of(yc, 1)
    unfolded = b.op("Reshape", [yc, b.concat([b.shape_of(xc, 0, 2), rest], 0)], hint="unfold")
    return [b.val(out_t, unfolded)]
