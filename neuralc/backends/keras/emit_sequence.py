"""Emitters of the sequence layers: recurrent layers, ConvLSTM2D, the wrappers, attention,
positional encodings and transformer blocks.

Recurrent weights: torch stacks the gates as LSTM ``i, f, g, o`` (Keras's ``i, f, c, o``: the
same order) and GRU ``r, z, n`` (Keras: ``z, r, h``, so the blocks are reordered); Keras keeps
one LSTM/SimpleRNN bias (``bias_ih + bias_hh``) and for GRU ``reset_after=True`` a ``(2, 3 *
units)`` bias, input row first. Attention projections ``(heads * dim, d)`` become Keras's
EinsumDense kernels ``(d, heads, dim)`` and the output projection ``(heads, dim, d_out)``.
"""

from __future__ import annotations

from dataclasses import replace

from neuralc.backends.keras.emit_core import activation
from neuralc.backends.keras.pycode import Code, call, literal
from neuralc.backends.keras.registry import (
    Gen,
    KerasLayer,
    LayerOp,
    Unsupported,
    emitter,
    emitter_for,
)
from neuralc.layers.catalog import inner_layer

_RNN_DEFAULTS = {"activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
                 "return_sequences": False, "return_state": False, "go_backwards": False,
                 "dropout": 0.0, "recurrent_dropout": 0.0, "reset_after": True}


def _rnn_kwargs(op: LayerOp) -> dict:
    a = op.attrs
    values = {k: a[k] for k in _RNN_DEFAULTS if k in a}
    for k in ("activation", "recurrent_activation"):
        if k in values:
            values[k] = activation(values[k])
    out = {k: v for k, v in values.items() if _RNN_DEFAULTS[k] != v}
    out["name"] = op.name
    return out


@emitter("SimpleRNN", "LSTM", "GRU")
def recurrent(op: LayerOp, gen: Gen) -> KerasLayer:
    kind = op.spec.name
    gen.use("_rnn_weights")
    extra = f", reset_after={op.attrs['reset_after']}" if kind == "GRU" else ""
    arrays = (f"_rnn_weights({literal(kind)}, {op.w('weight_ih_l0')}, {op.w('weight_hh_l0')}, "
              f"{op.opt('bias_ih_l0')}, {op.opt('bias_hh_l0')}{extra})")
    return KerasLayer(call(f"layers.{kind}", op.attrs["units"], **_rnn_kwargs(op)),
                      [("", arrays)])


@emitter("ConvLSTM2D")
def conv_lstm2d(op: LayerOp, gen: Gen) -> KerasLayer:
    """Keras's ConvLSTM2D builds its cell for fixed spatial sizes (the time axis may vary)."""
    a = op.attrs
    symbolic = [f"'{d}'" for d in op.in_shape[2:4] if not isinstance(d, int)]
    if symbolic:
        them = "them numbers" if len(symbolic) > 1 else "it a number"
        raise Unsupported(f"Keras's ConvLSTM2D needs a fixed height and width (axes 2 and 3), "
                          f"but the model leaves {' and '.join(symbolic)} symbolic; give {them} "
                          "in the input shape (the time axis may stay symbolic)")
    kw = {}
    for k, default in (("strides", [1, 1]), ("padding", "valid"), ("dilation_rate", [1, 1])):
        if a[k] != default:
            kw[k] = a[k]
    kw.update(_rnn_kwargs(op))
    gen.use("_conv_kernel")
    bias = f", {op.w('bias')}" if op.has("bias") else ""
    arrays = f"[_conv_kernel({op.w('weight_ih')}), _conv_kernel({op.w('weight_hh')}){bias}]"
    return KerasLayer(call("layers.ConvLSTM2D", a["filters"], a["kernel_size"], **kw),
                      [("", arrays)])


# -- wrappers --------------------------------------------------------------------------------------


def _inner(op: LayerOp, in_types: list) -> LayerOp:
    spec, attrs = inner_layer(op.attrs["layer"])
    return LayerOp(spec, attrs, in_types, [], f"{op.name}_{spec.keras_name}", op.weight_prefix,
                   op.weight_suffix, op.location)


def _emit_inner(inner: LayerOp, gen: Gen, wrapper: str) -> KerasLayer:
    fn = emitter_for(inner.spec)
    if fn is None:
        raise Unsupported(f"{wrapper} wraps {inner.spec.name}, which has no Keras emitter")
    layer = fn(inner, gen)
    if layer.call != "one" or layer.then or layer.call_kwargs:
        raise Unsupported(f"{wrapper} cannot wrap {inner.spec.name}: in Keras it is not one "
                          "single-input layer")
    return layer


@emitter("Bidirectional")
def bidirectional(op: LayerOp, gen: Gen) -> KerasLayer:
    """The backward copy is Keras's own (go_backwards flipped); torch's ``_reverse`` weights."""
    fwd = _inner(op, op.in_types)
    forward = _emit_inner(fwd, gen, "Bidirectional")
    backward = _emit_inner(replace(fwd, weight_suffix="_reverse"), gen, "Bidirectional")
    kw = {"merge_mode": op.attrs["merge_mode"]} if op.attrs["merge_mode"] != "concat" else {}
    ctor = call("layers.Bidirectional", Code(forward.ctor), **kw, name=op.name)
    weights = [(".forward_layer" + p, arr) for p, arr in forward.weights]
    weights += [(".backward_layer" + p, arr) for p, arr in backward.weights]
    return KerasLayer(ctor, weights)


@emitter("TimeDistributed")
def time_distributed(op: LayerOp, gen: Gen) -> KerasLayer:
    step = op.in_types[0].with_shape((op.in_shape[0], *op.in_shape[2:]))
    inner = _emit_inner(_inner(op, [step]), gen, "TimeDistributed")
    ctor = call("layers.TimeDistributed", Code(inner.ctor), name=op.name)
    return KerasLayer(ctor, [(".layer" + p, arr) for p, arr in inner.weights])


# -- attention -------------------------------------------------------------------------------------


@emitter("MultiHeadAttention")
def multi_head_attention(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    kw = {}
    for k, default in (("value_dim", None), ("dropout", 0.0), ("use_bias", True),
                       ("output_shape", None)):
        if a[k] != default:
            kw[k] = a[k]
    gen.use("_proj_in", "_proj_out")
    h = a["num_heads"]
    weights = [
        (f".{p}_dense", f"_proj_in({op.w(f'{p[0]}_proj.weight')}, "
                        f"{op.opt(f'{p[0]}_proj.bias')}, {h})")
        for p in ("query", "key", "value")
    ]
    weights.append((".output_dense", f"_proj_out({op.w('out_proj.weight')}, "
                                     f"{op.opt('out_proj.bias')}, {h})"))
    return KerasLayer(call("layers.MultiHeadAttention", h, a["key_dim"], **kw, name=op.name),
                      weights, call="attention",
                      call_kwargs="use_causal_mask=True" if a["causal"] else "")


@emitter("Attention")
def dot_attention(op: LayerOp, gen: Gen) -> KerasLayer:
    """Keras's Attention takes [query, value(, key)]; without a value, the input itself."""
    a = op.attrs
    kw = {}
    for k, default in (("use_scale", False), ("score_mode", "dot"), ("dropout", 0.0)):
        if a[k] != default:
            kw[k] = a[k]
    arrays = [op.w(p) for p in ("scale", "concat_score_weight") if op.has(p)]
    weights = [("", "[" + ", ".join(arrays) + "]")] if arrays else []
    return KerasLayer(call("layers.Attention", **kw, name=op.name), weights,
                      call="attention_list",
                      call_kwargs="use_causal_mask=True" if a["causal"] else "")


@emitter("PositionalEncoding")
def positional_encoding(op: LayerOp, gen: Gen) -> KerasLayer:
    """The layer builds its (max_len, features) table once, from the input's feature size."""
    gen.use("PositionalEncoding")
    a = op.attrs
    op.dim(-1, f"number of features (axis {op.rank - 1}) to build its position table")
    ctor = call("PositionalEncoding", a["max_len"], a["encoding"], name=op.name)
    weights = [("", f"[{op.w('weight')}]")] if a["encoding"] == "learned" else []
    return KerasLayer(ctor, weights)


def _transformer(op: LayerOp, gen: Gen, cls: str, attentions: tuple[str, ...],
                 norms: int) -> KerasLayer:
    a = op.attrs
    gen.use(cls, "_packed_proj", "_proj_out")
    d = op.dim(-1, "model width (the last axis)")
    h = a["num_heads"]
    ctor = call(cls, d, h, a["ff_dim"], dropout=a["dropout"], activation=a["activation"],
                norm_first=a["norm_first"], epsilon=a["epsilon"], causal=a["causal"],
                use_bias=a["use_bias"], name=op.name)
    weights = []
    for att in attentions:
        for i, part in enumerate(("query", "key", "value")):
            weights.append((f".{att}.{part}_dense",
                            f"_packed_proj({op.w(f'{att}.in_proj_weight')}, "
                            f"{op.opt(f'{att}.in_proj_bias')}, {i}, {h})"))
        weights.append((f".{att}.output_dense",
                        f"_proj_out({op.w(f'{att}.out_proj.weight')}, "
                        f"{op.opt(f'{att}.out_proj.bias')}, {h})"))
    for lin in ("linear1", "linear2"):
        bias = f", {op.w(f'{lin}.bias')}" if op.has(f"{lin}.bias") else ""
        weights.append((f".{lin}", f"[{op.w(f'{lin}.weight')}.T{bias}]"))
    for i in range(1, norms + 1):
        bias = f", {op.w(f'norm{i}.bias')}" if op.has(f"norm{i}.bias") else ""
        weights.append((f".norm{i}", f"[{op.w(f'norm{i}.weight')}{bias}]"))
    return KerasLayer(ctor, weights, call="list" if len(op.in_types) > 1 else "one")


@emitter("TransformerEncoder")
def transformer_encoder(op: LayerOp, gen: Gen) -> KerasLayer:
    return _transformer(op, gen, "TransformerEncoder", ("self_attn",), 2)


@emitter("TransformerDecoder")
def transformer_decoder(op: LayerOp, gen: Gen) -> KerasLayer:
    return _transformer(op, gen, "TransformerDecoder", ("self_attn", "multihead_attn"), 3)
