"""Attention, positional encoding and transformer blocks as ONNX nodes.

Multi-head attention is the opset's ``Attention`` operator from opset 23 (3-D query, key and
value with ``q_num_heads``/``kv_num_heads``; its ``is_causal`` mask is aligned at the top left,
as Keras's and PyTorch's), and before that the same computation decomposed: projections,
heads split by Reshape/Transpose, ``MatMul`` for the scores, ``Softmax``, ``MatMul`` with the
values. The causal mask of the decomposed form compares two ``Range``s, so any sequence
lengths work. Transformer blocks are PyTorch's layers in eval mode, written from the same
pieces and ``LayerNormalization``.
"""

from __future__ import annotations

import math

import numpy as np

from neuralc.backends.onnx.activations import activation
from neuralc.backends.onnx.builder import NEG_INF, Builder, Layer, Val
from neuralc.backends.onnx.emitters import emits
from neuralc.layers.attention import sinusoid_table


def _proj(b: Builder, x: str, w: np.ndarray, bias: np.ndarray | None, name: str) -> str:
    """``x @ w.T + bias`` with a PyTorch (out, in) weight."""
    y = b.op("MatMul", [x, b.init(f"{name}.weight_t", np.ascontiguousarray(w.T))])
    if bias is not None:
        y = b.op("Add", [y, b.init(f"{name}.bias", bias)])
    return y


def causal_mask(b: Builder, scores: str, q_axis: int, k_axis: int) -> str:
    """``scores`` with key j hidden from query i where j > i (top-left aligned)."""
    tq = b.squeeze(b.shape_of(scores, q_axis, q_axis + 1), [0])
    tk = b.squeeze(b.shape_of(scores, k_axis, k_axis + 1), [0])
    one = b.const(1, np.int64)
    zero = b.const(0, np.int64)
    rows = b.unsqueeze(b.op("Range", [zero, tq, one]), [1])
    cols = b.op("Range", [zero, tk, one])
    hidden = b.op("Greater", [cols, rows], hint="future")
    return b.op("Where", [hidden, b.scalar(NEG_INF), scores], hint="masked")


def multi_head(b: Builder, name: str, xq: str, xkv: str, w: dict[str, np.ndarray | None],
               heads: int, causal: bool) -> str:
    """Multi-head attention over (batch, seq, features) tensors with separate projections."""
    wq, wk, wv = w["wq"], w["wk"], w["wv"]
    assert wq is not None and wk is not None and wv is not None
    kd, vd = wq.shape[0] // heads, wv.shape[0] // heads
    scale = 1.0 / math.sqrt(kd)
    q = _proj(b, xq, wq, w["bq"], f"{name}.q_proj")
    k = _proj(b, xkv, wk, w["bk"], f"{name}.k_proj")
    v = _proj(b, xkv, wv, w["bv"], f"{name}.v_proj")
    if b.has("Attention"):
        o = b.op("Attention", [q, k, v], q_num_heads=heads, kv_num_heads=heads,
                 is_causal=int(causal), scale=scale)
    else:
        qh = b.op("Transpose", [b.op("Reshape", [q, b.ints([0, 0, heads, kd])])],
                  perm=[0, 2, 1, 3], hint="q_heads")
        kh = b.op("Transpose", [b.op("Reshape", [k, b.ints([0, 0, heads, kd])])],
                  perm=[0, 2, 3, 1], hint="k_heads_t")
        vh = b.op("Transpose", [b.op("Reshape", [v, b.ints([0, 0, heads, vd])])],
                  perm=[0, 2, 1, 3], hint="v_heads")
        s = b.op("Mul", [b.op("MatMul", [qh, kh]), b.scalar(scale)], hint="scores")
        if causal:
            s = causal_mask(b, s, 2, 3)
        p = b.op("Softmax", [s], axis=3)
        o = b.op("Transpose", [b.op("MatMul", [p, vh])], perm=[0, 2, 1, 3])
        o = b.op("Reshape", [o, b.ints([0, 0, heads * vd])], hint="merge_heads")
    wo = w["wo"]
    assert wo is not None
    return _proj(b, o, wo, w["bo"], f"{name}.out_proj")


def _opt(b: Builder, layer: Layer, param: str) -> np.ndarray | None:
    return b.weight(layer, param) if b.has_weight(layer, param) else None


@emits("multi_head_attention")
def multi_head_attention(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    a = layer.attrs
    xq = b.get(xs[0])
    xkv = b.get(xs[1]) if len(xs) > 1 else xq
    w = {"wq": b.weight(layer, "q_proj.weight"), "bq": _opt(b, layer, "q_proj.bias"),
         "wk": b.weight(layer, "k_proj.weight"), "bk": _opt(b, layer, "k_proj.bias"),
         "wv": b.weight(layer, "v_proj.weight"), "bv": _opt(b, layer, "v_proj.bias"),
         "wo": b.weight(layer, "out_proj.weight"), "bo": _opt(b, layer, "out_proj.bias")}
    y = multi_head(b, layer.name, _flat(b, xs[0], xq), _flat(b, xs[1], xkv) if len(xs) > 1
                   else _flat(b, xs[0], xq), w, a["num_heads"], a["causal"])
    return [b.val(layer.out_types[0], _unflat(b, xs[0], xq, y))]


def _flat(b: Builder, x: Val, name: str) -> str:
    """A feature map (batch, h, w, c) as the sequence of its positions (batch, h * w, c):
    attention attends over all of them, as Keras's attention_axes; a sequence as it is."""
    return b.op("Reshape", [name, b.ints([0, -1, int(x.shape[-1])])], hint="positions") \
        if len(x.shape) > 3 else name


def _unflat(b: Builder, x: Val, name: str, y: str) -> str:
    """``y`` (batch, h * w, features) back onto the positions of the feature map ``x``."""
    if len(x.shape) <= 3:
        return y
    lead = b.shape_of(name, 0, len(x.shape) - 1)
    last = b.shape_of(y, 2, 3)
    return b.op("Reshape", [y, b.op("Concat", [lead, last], axis=0)], hint="unflatten")


@emits("attention")
def dot_attention(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Keras's Attention: scores q k^T (or additive), optional learned scale, no projections."""
    a = layer.attrs
    q = b.get(xs[0])
    v = b.get(xs[1]) if len(xs) > 1 else q
    k = b.get(xs[2]) if len(xs) > 2 else v
    scale = b.param(layer, "scale") if a["use_scale"] else None
    if a["score_mode"] == "dot":
        s = b.op("MatMul", [q, b.op("Transpose", [k], perm=[0, 2, 1])], hint="scores")
        if scale is not None:
            s = b.op("Mul", [s, scale])
    else:
        pairs = b.op("Add", [b.unsqueeze(q, [2]), b.unsqueeze(k, [1])])
        if scale is not None:
            pairs = b.op("Mul", [pairs, scale])
        s = b.reduce("ReduceSum", b.op("Tanh", [pairs]), [3], False, hint="scores")
        s = b.op("Mul", [s, b.param(layer, "concat_score_weight")])
    if a["causal"]:
        s = causal_mask(b, s, 1, 2)
    p = b.op("Softmax", [s], axis=2)
    return [b.val(layer.out_types[0], b.op("MatMul", [p, v]))]


@emits("positional_encoding")
def positional_encoding(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """x + the first ``seq`` rows of the table (sliced at run time for a symbolic length)."""
    x = xs[0]
    t, d = x.shape[1], int(x.shape[2])
    if layer.attrs["encoding"] == "learned":
        table = b.param(layer, "weight")
    else:
        rows = t if isinstance(t, int) else layer.attrs["max_len"]
        table = b.init(f"{layer.name}.table", sinusoid_table(rows, d))
    xc = b.get(x)
    ends: list[int] | str = [t] if isinstance(t, int) else b.shape_of(xc, 1, 2)
    rows_t = b.slice(table, [0], ends, [0])
    return [b.val(layer.out_types[0], b.op("Add", [xc, rows_t], hint="positions"))]


# -- transformer blocks ----------------------------------------------------------------------------


def layer_norm_last(b: Builder, x: str, weight: np.ndarray, bias: np.ndarray | None,
                    eps: float, name: str) -> str:
    """LayerNorm over the last axis (the operator from opset 17; the formula before)."""
    if b.has("LayerNormalization"):
        ins = [x, b.init(f"{name}.weight", weight)]
        if bias is not None:
            ins.append(b.init(f"{name}.bias", bias))
        return b.op("LayerNormalization", ins, axis=-1, epsilon=eps, hint=name.split(".")[-1])
    centred = b.op("Sub", [x, b.reduce("ReduceMean", x, [-1], True)])
    var = b.reduce("ReduceMean", b.op("Mul", [centred, centred]), [-1], True)
    y = b.op("Div", [centred, b.op("Sqrt", [b.op("Add", [var, b.scalar(eps)])])])
    y = b.op("Mul", [y, b.init(f"{name}.weight", weight)])
    return y if bias is None else b.op("Add", [y, b.init(f"{name}.bias", bias)])


class _Block:
    """The pieces of a PyTorch transformer layer, reading its weights by their torch names."""

    def __init__(self, b: Builder, layer: Layer):
        self.b, self.layer, self.a = b, layer, layer.attrs

    def opt(self, param: str) -> np.ndarray | None:
        return _opt(self.b, self.layer, param)

    def attention(self, prefix: str, xq: str, xkv: str, causal: bool) -> str:
        wq, wk, wv = np.split(self.b.weight(self.layer, f"{prefix}.in_proj_weight"), 3, axis=0)
        packed = self.opt(f"{prefix}.in_proj_bias")
        bq, bk, bv = np.split(packed, 3) if packed is not None else (None, None, None)
        w = {"wq": wq, "wk": wk, "wv": wv, "bq": bq, "bk": bk, "bv": bv,
             "wo": self.b.weight(self.layer, f"{prefix}.out_proj.weight"),
             "bo": self.opt(f"{prefix}.out_proj.bias")}
        return multi_head(self.b, f"{self.layer.name}.{prefix}", xq, xkv, w,
                          self.a["num_heads"], causal)

    def norm(self, x: str, i: int) -> str:
        return layer_norm_last(self.b, x, self.b.weight(self.layer, f"norm{i}.weight"),
                               self.opt(f"norm{i}.bias"), float(self.a["epsilon"]),
                               f"{self.layer.name}.norm{i}")

    def feed_forward(self, x: str) -> str:
        b, n = self.b, self.layer.name
        h = _proj(b, x, b.weight(self.layer, "linear1.weight"), self.opt("linear1.bias"),
                  f"{n}.linear1")
        h = activation(b, self.a["activation"], h)
        return _proj(b, h, b.weight(self.layer, "linear2.weight"), self.opt("linear2.bias"),
                     f"{n}.linear2")

    def sublayer(self, x: str, i: int, f: object) -> str:
        """Post-norm ``norm(x + f(x))`` or pre-norm ``x + f(norm(x))``."""
        assert callable(f)
        if self.a["norm_first"]:
            return self.b.op("Add", [x, f(self.norm(x, i))], hint="residual")
        return self.norm(self.b.op("Add", [x, f(x)], hint="residual"), i)


@emits("transformer_encoder")
def transformer_encoder(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    blk = _Block(b, layer)
    causal = layer.attrs["causal"]
    x0 = b.get(xs[0])
    x = blk.sublayer(_flat(b, xs[0], x0), 1, lambda t: blk.attention("self_attn", t, t, causal))
    x = blk.sublayer(x, 2, blk.feed_forward)
    return [b.val(layer.out_types[0], _unflat(b, xs[0], x0, x))]


@emits("transformer_decoder")
def transformer_decoder(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    blk = _Block(b, layer)
    memory = b.get(xs[1])
    causal = layer.attrs["causal"]
    x = blk.sublayer(b.get(xs[0]), 1, lambda t: blk.attention("self_attn", t, t, causal))
    x = blk.sublayer(x, 2, lambda t: blk.attention("multihead_attn", t, memory, False))
    x = blk.sublayer(x, 3, blk.feed_forward)
    return [b.val(layer.out_types[0], x)]
