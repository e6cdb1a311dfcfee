"""Attention layers: MultiHeadAttention, Attention (Keras dot-product) and PositionalEncoding.

Sequences are ``(batch, seq, features)``. Attention reads other values through ``ValueRef``
parameters (``context=memory``, ``value=memory``): the lowering passes each named input or
branch as an extra operand after the layer's own input, so cross-attention is one op with two
operands and self-attention one op with one. Each layer stays a single graph op, so later
passes can fuse attention whole.

MultiHeadAttention keeps Keras's semantics (``key_dim`` per head, any ``num_heads * key_dim``,
an output width that defaults to the query's) with separate projections named after the
modules of a hand-written PyTorch attention block: ``q_proj``, ``k_proj``, ``v_proj`` and
``out_proj`` (``torch.nn.Linear`` layouts, ``(out, in)``). A ``torch.nn.MultiheadAttention``
state_dict maps onto it by splitting the packed input projection in three along dim 0:
``q_proj.weight, k_proj.weight, v_proj.weight = in_proj_weight.chunk(3)`` (likewise
``in_proj_bias``), ``out_proj.*`` unchanged, with ``key_dim = embed_dim // num_heads``.
Scores are scaled by ``1/sqrt(key_dim)`` and the softmax runs in float64 in the reference
(float32 at least anywhere else); dropout is the identity at inference. The causal mask lets
query ``i`` see keys ``j <= i``, aligned at the top left as both Keras's ``use_causal_mask``
and ``torch.nn.functional.scaled_dot_product_attention(is_causal=True)`` align it.

The numpy helpers here (``multi_head``, ``layer_norm``, ``linear``, the FLOP counts) are shared
with the transformer blocks in ``transformer.py``, and so are the lowering helpers
(``lower_linear``, ``lower_heads_attention``, ...): projections lower to ``tensor.matmul`` plus
a bias add, heads are split to (batch, heads, seq, head_dim) by reshape/transpose, and each
attention is one ``tensor.attention`` (one fused kernel in a backend) except where a causal
mask over two different lengths must keep the top-left alignment, which that op does not
have (see :func:`lower_attention`). The sinusoidal table and causal masks use
``tensor.iota``/``tensor.compare`` from ``neuralc/ir/dialects/tensor_attention.py``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.activations import softmax
from neuralc.ir.dims import Dim, Expr
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    RATE,
    Bool,
    Choice,
    Init,
    Int,
    LayerSpec,
    Optional_,
    Param,
    ParamError,
    ValueRef,
    WeightSpec,
    register,
)
from neuralc.layers.common import ONES, ZEROS, kaiming_uniform_bound, static_dim

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

FLOAT_TYPES = ("f32", "f16", "bf16", "f64")

# -- shared shape helpers ----------------------------------------------------------------------


def sequence_shape(t: TensorType, layer: str, what: str = "input") -> tuple[Dim, ...]:
    """The shape of a float ``(batch, seq, features)`` value, or the section 9 error."""
    assert t.shape is not None
    shape = t.shape
    if len(shape) != 3:
        if len(shape) == 2:
            hint = ("a (batch, features) tensor has no sequence axis: keep the sequence "
                    "(no global pooling or Flatten before attention), or Reshape((1, features))")
        elif len(shape) == 4:
            hint = "use Reshape((h * w, channels)) to make an image a sequence of positions"
        else:
            hint = "use Reshape((seq, features)) to make it a sequence"
        raise ShapeError(f"{layer} expects {what} (batch, seq, features), got {shape_str(shape)}",
                         hint)
    if t.dtype not in FLOAT_TYPES:
        raise ShapeError(f"{layer} expects float vectors as {what}, got {t.dtype} values",
                         "put Embedding(vocab, dim) first to turn token indices into vectors")
    return shape


def positions_shape(t: TensorType, layer: str, what: str = "input") -> tuple[Dim, ...]:
    """A sequence ``(batch, seq, features)`` or a feature map ``(batch, h, w[, d], features)``.

    On a feature map attention runs over every axis but batch and features, jointly (Keras's
    default ``attention_axes``), which is attention over the flattened positions: see
    :func:`flat_positions`. Returns the shape as given.
    """
    assert t.shape is not None
    if len(t.shape) in (4, 5):
        return sequence_shape(t.with_shape((t.shape[0], _positions(t.shape), t.shape[-1])),
                              layer, what) and t.shape
    return sequence_shape(t, layer, what)


def _positions(shape: tuple[Dim, ...]) -> Dim:
    n: Dim = 1
    for d in shape[1:-1]:
        n = n * d
    return n


def flat_sequence(t: TensorType, layer: str, what: str = "input") -> tuple[Dim, ...]:
    """The ``(batch, positions, features)`` that attention sees for a sequence or feature map."""
    shape = positions_shape(t, layer, what)
    return (shape[0], _positions(shape), shape[-1])


def flat_positions(x: np.ndarray) -> np.ndarray:
    """(N, h, w, C) -> (N, h * w, C): a feature map as the sequence of its positions."""
    return x.reshape(x.shape[0], -1, x.shape[-1]) if x.ndim > 3 else x


def lower_flat_positions(b: TensorBuilder, x: Value) -> Value:
    """The lowering of :func:`flat_positions` (a reshape; nothing for a sequence)."""
    shape = x.type.shape
    return b.reshape(x, (shape[0], _positions(shape), shape[-1])) if len(shape) > 3 else x


def lower_unflat_positions(b: TensorBuilder, y: Value, like: Value) -> Value:
    """The inverse of :func:`lower_flat_positions`: ``y``'s features on ``like``'s positions."""
    shape = like.type.shape
    if len(shape) <= 3:
        return y
    return b.reshape(y, (*shape[:-1], y.type.shape[-1]))


def unify_batch(ctx: ShapeContext, a: Dim, b: Dim, layer: str, what: str) -> Dim:
    """Query and context come from the same samples: their batch dims are one dim."""
    try:
        return ctx.unify(a, b, f"{layer} batch of the input and {what}")
    except ShapeError as e:
        raise ShapeError(e.message, f"the input and {what} must have the same batch") from None


def xavier_bound(fan_in: int, fan_out: int) -> Init:
    """PyTorch's xavier_uniform_ (gain 1): U(+-sqrt(6 / (fan_in + fan_out)))."""
    return Init("uniform", math.sqrt(6.0 / (fan_in + fan_out)))


# -- shared numpy semantics (float64 inside) ------------------------------------------------------


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``x @ weight.T + bias`` in float64 (torch.nn.Linear)."""
    y = x.astype(np.float64) @ weight.astype(np.float64).T
    return y if bias is None else y + bias.astype(np.float64)


def layer_norm(x: np.ndarray, weight: np.ndarray | None, bias: np.ndarray | None,
               eps: float) -> np.ndarray:
    """LayerNorm over the last axis with the biased variance (torch.nn.LayerNorm)."""
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * weight.astype(np.float64)
    if bias is not None:
        y = y + bias.astype(np.float64)
    return y


def causal_mask(tq: int, tk: int) -> np.ndarray:
    """True where query ``i`` may see key ``j``: ``j <= i`` (top-left aligned)."""
    return np.tril(np.ones((tq, tk), dtype=bool))


def scaled_attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, scale: float,
                     causal: bool) -> np.ndarray:
    """``softmax(q k^T * scale) v`` over the last two axes, masked when ``causal``."""
    s = (q @ np.swapaxes(k, -1, -2)) * scale
    if causal:
        s = np.where(causal_mask(s.shape[-2], s.shape[-1]), s, -np.inf)
    return softmax(s, axis=-1) @ v


def _split_heads(x: np.ndarray, heads: int) -> np.ndarray:
    """(N, T, H * d) -> (N, H, T, d), heads major as in PyTorch."""
    n, t, hd = x.shape
    return x.reshape(n, t, heads, hd // heads).transpose(0, 2, 1, 3)


def multi_head(xq: np.ndarray, xkv: np.ndarray, w: dict[str, np.ndarray | None], heads: int,
               causal: bool) -> np.ndarray:
    """Multi-head attention with separate projections ``wq, bq, wk, bk, wv, bv, wo, bo``.

    Returns float64 ``(N, Tq, d_out)``; the per-head width is the projection width / heads.
    """
    q = _split_heads(linear(xq, w["wq"], w["bq"]), heads)  # type: ignore[arg-type]
    k = _split_heads(linear(xkv, w["wk"], w["bk"]), heads)  # type: ignore[arg-type]
    v = _split_heads(linear(xkv, w["wv"], w["bv"]), heads)  # type: ignore[arg-type]
    o = scaled_attention(q, k, v, 1.0 / math.sqrt(q.shape[-1]), causal)  # (N, H, Tq, dv)
    n, h, t, dv = o.shape
    o = o.transpose(0, 2, 1, 3).reshape(n, t, h * dv)
    return linear(o, w["wo"], w["bo"])  # type: ignore[arg-type]


def attention_flops(tq: Dim, tk: Dim, heads: int, kd: int, vd: int) -> Dim:
    """Scores (2*kd per pair), softmax (about 5 per score) and the weighted sum (2*vd)."""
    return heads * tq * tk * (2 * kd + 2 * vd + 5)


def mha_flops(tq: Dim, tk: Dim, dq: Dim, dkv: Dim, heads: int, kd: int, vd: int,
              dout: Dim) -> Dim:
    """Projections of query, key, value and output plus the attention itself, per sample."""
    proj = 2 * tq * dq * heads * kd + 2 * tk * dkv * heads * (kd + vd)
    return proj + attention_flops(tq, tk, heads, kd, vd) + 2 * tq * heads * vd * dout


# -- shared lowering to tensor ops ---------------------------------------------------------------


def lower_linear(b: TensorBuilder, x: Value, weight: Value, bias: Value | None) -> Value:
    """``x @ weight.T + bias``: a matmul (PyTorch's (out, in) layout) and a bias-add epilogue."""
    y = b.op("tensor.matmul", [x, weight], {"transpose_b": True})
    return y if bias is None else b.binary("add", y, bias)


def lower_split_heads(b: TensorBuilder, x: Value, heads: int) -> Value:
    """(N, T, H * d) -> (N, H, T, d), heads major as in :func:`_split_heads`."""
    n, t, width = x.type.shape
    return b.transpose(b.reshape(x, (n, t, heads, width // heads)), [0, 2, 1, 3])


def lower_merge_heads(b: TensorBuilder, o: Value) -> Value:
    """(N, H, T, d) -> (N, T, H * d), the inverse of :func:`lower_split_heads`."""
    n, h, t, d = o.type.shape
    return b.reshape(b.transpose(o, [0, 2, 1, 3]), (n, t, h * d))


def lower_causal_mask(b: TensorBuilder, tq: Dim, tk: Dim) -> Value:
    """An i1 (tq, tk) mask, true where query ``i`` may see key ``j``: ``j <= i`` (top left)."""
    i = b.op("tensor.iota", [], {"axis": 0}, TensorType((tq, 1), "i32"))
    j = b.op("tensor.iota", [], {"axis": 1}, TensorType((1, tk), "i32"))
    return b.op("tensor.compare", [j, i], {"fn": "le"})


def lower_softmax_attend(b: TensorBuilder, scores: Value, v: Value, causal: bool) -> Value:
    """``softmax(scores [masked]) @ v`` for scores (..., tq, tk) built by the caller."""
    if causal:
        tq, tk = scores.type.shape[-2:]
        scores = b.op("tensor.select", [lower_causal_mask(b, tq, tk), scores,
                                        b.scalar(float("-inf"), scores.type.dtype)])
    return b.op("tensor.matmul", [b.activation("softmax", scores), v])


def lower_attention(b: TensorBuilder, q: Value, k: Value, v: Value, scale: float,
                    causal: bool) -> Value:
    """Scaled dot-product attention on (..., seq, d): one ``tensor.attention`` where it means the
    layers' semantics, so a backend emits one fused kernel.

    ``tensor.attention``'s causal mask is aligned at the bottom right (query ``i`` sees keys
    ``j <= i + tk - tq``, FlashAttention's convention) while the layers align it at the top left
    (``j <= i``, Keras and PyTorch's ``is_causal``); the two agree when query and key lengths
    are one dim. Otherwise the scores are written out: matmul, scale, an iota/compare mask, the
    softmax as reductions, matmul.
    """
    tq, tk = q.type.shape[-2], k.type.shape[-2]
    if not causal or b.unifier.resolve(tq) == b.unifier.resolve(tk):
        return b.op("tensor.attention", [q, k, v], {"causal": causal, "scale": scale})
    scores = b.op("tensor.matmul", [q, k], {"transpose_b": True})
    if scale != 1.0:
        scores = b.binary("mul", scores, b.scalar(scale, scores.type.dtype))
    return lower_softmax_attend(b, scores, v, causal)


def lower_heads_attention(b: TensorBuilder, q: Value, k: Value, v: Value, heads: int,
                          causal: bool) -> Value:
    """Projected q, k, v (N, T, H * d) -> attention per head -> (N, Tq, H * dv), merged."""
    qh, kh, vh = (lower_split_heads(b, t, heads) for t in (q, k, v))
    scale = 1.0 / math.sqrt(qh.type.shape[-1])
    return lower_merge_heads(b, lower_attention(b, qh, kh, vh, scale, causal))


# -- MultiHeadAttention ------------------------------------------------------------------------

MHA = "MultiHeadAttention"


def _mha_dims(attrs: dict) -> tuple[int, int, int]:
    h, kd = attrs["num_heads"], attrs["key_dim"]
    vd = attrs["value_dim"] if attrs["value_dim"] is not None else kd
    return h, kd, vd


def _mha_shapes(attrs: dict, ins: list[TensorType]) -> tuple[tuple[Dim, ...], tuple[Dim, ...]]:
    """Query and context as (batch, positions, features): a feature map's positions flattened."""
    q = flat_sequence(ins[0], MHA, "input")
    kv = flat_sequence(ins[1], MHA, f"context '{attrs['context']}'") if len(ins) > 1 else q
    return q, kv


def _mha_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    q, kv = _mha_shapes(attrs, ins)
    batch = q[0]
    if len(ins) > 1:
        batch = unify_batch(ctx, q[0], kv[0], MHA, f"context '{attrs['context']}'")
    static_dim(q[-1], MHA, "number of query features")
    static_dim(kv[-1], MHA, "number of context features")
    out = attrs["output_shape"] if attrs["output_shape"] is not None else q[-1]
    assert ins[0].shape is not None
    return [ins[0].with_shape((batch, *ins[0].shape[1:-1], out))]


def _mha_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    q, kv = _mha_shapes(attrs, ins)
    dq = static_dim(q[-1], MHA, "number of query features")
    dkv = static_dim(kv[-1], MHA, "number of context features")
    h, kd, vd = _mha_dims(attrs)
    dout = attrs["output_shape"] if attrs["output_shape"] is not None else dq
    w: dict[str, WeightSpec] = {}
    for proj, rows, cols in (("q_proj", h * kd, dq), ("k_proj", h * kd, dkv),
                             ("v_proj", h * vd, dkv)):
        w[f"{proj}.weight"] = WeightSpec((rows, cols), xavier_bound(cols, rows))
        if attrs["use_bias"]:
            w[f"{proj}.bias"] = WeightSpec((rows,), ZEROS)
    w["out_proj.weight"] = WeightSpec((dout, h * vd), kaiming_uniform_bound(h * vd))
    if attrs["use_bias"]:
        w["out_proj.bias"] = WeightSpec((dout,), ZEROS)
    return w


def _mha_reference(attrs: dict, xs: list[np.ndarray],
                   w: dict[str, np.ndarray]) -> list[np.ndarray]:
    xq = flat_positions(xs[0])
    xkv = flat_positions(xs[1]) if len(xs) > 1 else xq
    ws = {
        "wq": w["q_proj.weight"], "wk": w["k_proj.weight"], "wv": w["v_proj.weight"],
        "wo": w["out_proj.weight"],
        "bq": w.get("q_proj.bias"), "bk": w.get("k_proj.bias"), "bv": w.get("v_proj.bias"),
        "bo": w.get("out_proj.bias"),
    }
    y = multi_head(xq, xkv, ws, attrs["num_heads"], attrs["causal"])
    return [y.reshape(*xs[0].shape[:-1], y.shape[-1]).astype(np.float32)]


def _mha_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Four projections (matmul + bias), heads split by reshape/transpose, one attention op."""
    xq = lower_flat_positions(b, xs[0])
    xkv = lower_flat_positions(b, xs[1]) if len(xs) > 1 else xq

    def proj(name: str, x: Value) -> Value:
        weight = b.weight(f"{name}.weight")
        bias = b.weight(f"{name}.bias") if attrs["use_bias"] else None
        return lower_linear(b, x, weight, bias)

    o = lower_heads_attention(b, proj("q_proj", xq), proj("k_proj", xkv), proj("v_proj", xkv),
                              attrs["num_heads"], attrs["causal"])
    return [lower_unflat_positions(b, proj("out_proj", o), xs[0])]


def _mha_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    q, kv = _mha_shapes(attrs, ins)
    h, kd, vd = _mha_dims(attrs)
    assert outs[0].shape is not None
    return mha_flops(q[1], kv[1], q[-1], kv[-1], h, kd, vd, outs[0].shape[-1])


MULTI_HEAD_ATTENTION = register(LayerSpec(
    name=MHA,
    params=(
        Param("num_heads", Int(min=1), aliases=("nhead",), doc="number of attention heads"),
        Param("key_dim", Int(min=1), aliases=("head_dim",),
              doc="size of each head's query and key vectors"),
        Param("value_dim", Optional_(Int(min=1)), None,
              doc="size of each head's value vectors (None: key_dim)"),
        Param("dropout", RATE, 0.0, doc="dropout on the attention weights (identity at inference)"),
        Param("use_bias", Bool(), True, aliases=("bias",),
              doc="biases on the four projections"),
        Param("output_shape", Optional_(Int(min=1)), None,
              doc="size of the output's last axis (None: the query's feature size)"),
        Param("causal", Bool(), False, aliases=("use_causal_mask", "is_causal"),
              doc="query i attends only to keys j <= i"),
        Param("context", Optional_(ValueRef()), None, aliases=("value", "memory"),
              doc="network input or named branch to attend to (cross-attention: key = value = "
                  "context); None: self-attention"),
    ),
    positional=("num_heads", "key_dim", "value_dim", "dropout", "use_bias", "output_shape"),
    shape=_mha_shape, reference=_mha_reference, weights=_mha_weights, flops=_mha_flops,
    lower=_mha_lower,
    doc="Multi-head scaled dot-product attention (Keras semantics; q/k/v/out_proj weights).",
    example="MultiHeadAttention(4, 16, context=memory)",
))


# -- Attention (Keras dot-product attention) ---------------------------------------------------

ATT = "Attention"


def _att_check(attrs: dict) -> None:
    if attrs["key"] is not None and attrs["value"] is None:
        raise ParamError("'key' needs 'value': give value=<name> (key defaults to value)")


def _att_shapes(attrs: dict, ins: list[TensorType]
                ) -> tuple[tuple[Dim, ...], tuple[Dim, ...], tuple[Dim, ...]]:
    q = sequence_shape(ins[0], ATT, "query input")
    v = sequence_shape(ins[1], ATT, f"value '{attrs['value']}'") if len(ins) > 1 else q
    k = sequence_shape(ins[2], ATT, f"key '{attrs['key']}'") if len(ins) > 2 else v
    return q, v, k


def _att_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    q, v, k = _att_shapes(attrs, ins)
    batch = q[0]
    if len(ins) > 1:
        batch = unify_batch(ctx, q[0], v[0], ATT, f"value '{attrs['value']}'")
    if len(ins) > 2:
        unify_batch(ctx, batch, k[0], ATT, f"key '{attrs['key']}'")
        try:
            ctx.unify(v[1], k[1], f"{ATT} value and key lengths")
        except ShapeError as e:
            raise ShapeError(f"{ATT} value and key must have the same length: {e.message}",
                             "key and value hold one vector per position of the same sequence"
                             ) from None
    if len(ins) > 1:  # the query is its own key otherwise
        try:
            ctx.unify(q[2], k[2], f"{ATT} query and key features")
        except ShapeError:
            raise ShapeError(
                f"{ATT} needs query and key vectors of one size, got query "
                f"{shape_str(q)} and key {shape_str(k)}",
                "project one of them with Dense first, or use MultiHeadAttention, which "
                "learns the projections",
            ) from None
    return [ins[0].with_shape((batch, q[1], v[2]))]


def _att_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    w: dict[str, WeightSpec] = {}
    if attrs["use_scale"]:
        w["scale"] = WeightSpec((), ONES)
    if attrs["score_mode"] == "concat":
        w["concat_score_weight"] = WeightSpec((), ONES)
    return w


def _att_reference(attrs: dict, xs: list[np.ndarray],
                   w: dict[str, np.ndarray]) -> list[np.ndarray]:
    q = xs[0].astype(np.float64)
    v = xs[1].astype(np.float64) if len(xs) > 1 else q
    k = xs[2].astype(np.float64) if len(xs) > 2 else v
    scale = float(w["scale"]) if attrs["use_scale"] else 1.0
    if attrs["score_mode"] == "dot":
        scores = (q @ np.swapaxes(k, -1, -2)) * scale
    else:  # concat (additive): c * sum(tanh(scale * (q_i + k_j)))
        pairs = np.tanh(scale * (q[:, :, None, :] + k[:, None, :, :]))
        scores = float(w["concat_score_weight"]) * pairs.sum(axis=-1)
    if attrs["causal"]:
        scores = np.where(causal_mask(scores.shape[-2], scores.shape[-1]), scores, -np.inf)
    return [(softmax(scores, axis=-1) @ v).astype(np.float32)]


def _att_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """dot: one attention op (scale 1; a learned scale multiplies the query, which scales the
    scores alike). concat: the additive scores written out, softmax as reductions, matmul."""
    q = xs[0]
    v = xs[1] if len(xs) > 1 else q
    k = xs[2] if len(xs) > 2 else v
    scale = b.weight("scale") if attrs["use_scale"] else None
    if attrs["score_mode"] == "dot":
        if scale is not None:
            q = b.binary("mul", q, scale)
        return [lower_attention(b, q, k, v, 1.0, attrs["causal"])]
    n, tq, d = q.type.shape
    tk = k.type.shape[1]
    pairs = b.binary("add", b.reshape(q, (n, tq, 1, d)), b.reshape(k, (n, 1, tk, d)))
    if scale is not None:
        pairs = b.binary("mul", pairs, scale)
    scores = b.reduce("sum", b.unary("tanh", pairs), [-1], False)
    scores = b.binary("mul", scores, b.weight("concat_score_weight"))
    return [lower_softmax_attend(b, scores, v, attrs["causal"])]


def _att_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    q, v, k = _att_shapes(attrs, ins)
    per_pair = 2 * q[2] + 2 * v[2] + 5
    if attrs["score_mode"] == "concat":
        per_pair = per_pair + 2 * q[2]  # the add and tanh of each pair's features
    return q[1] * v[1] * per_pair


ATTENTION = register(LayerSpec(
    name=ATT,
    params=(
        Param("use_scale", Bool(), False, doc="learn a scalar 'scale' for the scores (init 1)"),
        Param("score_mode", Choice(("dot", "concat")), "dot",
              doc='"dot": q k^T; "concat": sum(tanh(q + k)) times a learned scalar'),
        Param("dropout", RATE, 0.0, doc="dropout on the attention weights (identity at inference)"),
        Param("causal", Bool(), False, aliases=("use_causal_mask",),
              doc="query i attends only to positions j <= i"),
        Param("value", Optional_(ValueRef()), None,
              doc="network input or named branch holding the values (None: the input itself)"),
        Param("key", Optional_(ValueRef()), None,
              doc="network input or named branch holding the keys (None: the values)"),
    ),
    positional=("use_scale", "score_mode", "dropout"),
    shape=_att_shape, reference=_att_reference, weights=_att_weights, flops=_att_flops,
    check=_att_check, lower=_att_lower,
    doc="Keras dot-product (Luong) attention of the input over value (and key); no projections.",
    example="Attention(value=memory)",
))


# -- PositionalEncoding ------------------------------------------------------------------------

PE = "PositionalEncoding"
LEARNED_INIT = Init("normal", 0.02)  # BERT / ViT's position tables: N(0, 0.02^2)


def _seq_bounds(d: Dim, ctx: ShapeContext) -> tuple[int | None, int | None]:
    """Lowest and highest value of a sequence dim: itself when static, else its dims range."""
    d = ctx.resolve(d)
    if isinstance(d, int):
        return d, d
    if isinstance(d, Expr) and d.is_atomic():
        ranges = getattr(ctx, "ranges", None) or {}
        lo, hi = ranges.get(next(iter(d.symbols())), [None, None])
        return lo, hi
    return None, None


def _pe_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    shape = sequence_shape(ins[0], PE)
    m = attrs["max_len"]
    seq = ctx.resolve(shape[1])
    lo, hi = _seq_bounds(seq, ctx)
    if lo is not None and lo > m:
        count = f"{lo} positions" if isinstance(seq, int) else f"{seq}: at least {lo} positions"
        raise ShapeError(f"{PE} max_len={m} is shorter than the sequence ({count})",
                         f"raise max_len to {hi if hi is not None else lo} or more")
    if hi is not None and hi > m:
        raise ShapeError(f"{PE} max_len={m} is shorter than the sequence: {seq} may be up to "
                         f"{hi}",
                         f"raise max_len to {hi}, or narrow the range of {seq} in dims {{ }}")
    if attrs["encoding"] == "learned":
        static_dim(shape[2], PE, "number of features (a learned table needs it)")
    return [ins[0]]


def _pe_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    if attrs["encoding"] != "learned":
        return {}
    shape = sequence_shape(ins[0], PE)
    d = static_dim(shape[2], PE, "number of features (a learned table needs it)")
    return {"weight": WeightSpec((attrs["max_len"], d), LEARNED_INIT)}


def sinusoid_table(length: int, d: int) -> np.ndarray:
    """Vaswani et al.'s table in float64: sin on even channels, cos on odd ones.

    ``pe[p, 2i] = sin(p / 10000^(2i/d))`` and ``pe[p, 2i+1] = cos(p / 10000^(2i/d))``; an odd
    ``d`` ends with a sine channel.
    """
    pos = np.arange(length, dtype=np.float64)[:, None]
    i = np.arange(d)
    rate = np.power(10000.0, -(2 * (i // 2)).astype(np.float64) / d)
    angle = pos * rate[None, :]
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))


def _pe_reference(attrs: dict, xs: list[np.ndarray],
                  w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    t, d = x.shape[1], x.shape[2]
    if t > attrs["max_len"]:
        raise ValueError(f"{PE}: the sequence has {t} positions, more than max_len="
                         f"{attrs['max_len']}; raise max_len or feed shorter sequences")
    if attrs["encoding"] == "learned":
        table = w["weight"][:t].astype(np.float64)
    else:
        table = sinusoid_table(t, d)
    return [(x.astype(np.float64) + table[None]).astype(np.float32)]


def lower_sinusoid_table(b: TensorBuilder, length: Dim, d: Dim) -> Value:
    """:func:`sinusoid_table` as f64 tensor ops on ``tensor.iota`` (no operands, so a constant
    folder can make it a weight). f64 as the reference: in f32 the angle ``p * rate`` of a late
    position is off by up to ~3e-5, and so is its sine."""
    f = "f64"
    pos = b.op("tensor.iota", [], {"axis": 0}, TensorType((length, 1), f))
    ch = b.op("tensor.iota", [], {"axis": 1}, TensorType((1, d), f))
    pair = b.binary("mul", b.unary("floor", b.binary("mul", ch, b.scalar(0.5, f))),
                    b.scalar(2.0, f))  # 2 * (i // 2)
    if isinstance(d, int):
        width = b.scalar(d, f)
    else:  # a symbolic width, read off the channel index
        width = b.binary("add", b.reduce("max", ch, [1], True), b.scalar(1.0, f))
    rate = b.binary("pow", b.scalar(10000.0, f), b.binary("div", b.unary("neg", pair), width))
    angle = b.binary("mul", pos, rate)
    even = b.op("tensor.compare", [ch, pair], {"fn": "eq"})
    return b.op("tensor.select", [even, b.unary("sin", angle), b.unary("cos", angle)])


def _pe_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """The first ``seq`` rows of a (max_len, d) table (learned: the weight; sinusoidal: built
    by :func:`lower_sinusoid_table`), sliced with the symbolic length, added with broadcasting."""
    x = xs[0]
    _, t, d = x.type.shape
    if attrs["encoding"] == "learned":
        table = b.weight("weight")
    else:
        table = lower_sinusoid_table(b, attrs["max_len"], d)
    rows = b.op("tensor.slice", [table], {"axis": 0, "start": 0},
                TensorType((t, d), table.type.dtype))
    if rows.type.dtype != x.type.dtype:
        rows = b.op("tensor.cast", [rows], {"to": x.type.dtype})
    return [b.binary("add", x, rows)]


def _pe_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    assert ins[0].shape is not None
    return ins[0].shape[1] * ins[0].shape[2]


POSITIONAL_ENCODING = register(LayerSpec(
    name=PE,
    params=(
        Param("max_len", Int(min=1), 512, aliases=("max_length", "sequence_length"),
              doc="longest sequence; the learned table has this many rows"),
        Param("encoding", Choice(("sinusoidal", "learned")), "sinusoidal",
              doc='"sinusoidal": the fixed Vaswani table (sin on even, cos on odd channels, '
                  'no weights); "learned": a (max_len, features) weight, init N(0, 0.02^2)'),
    ),
    positional=("max_len", "encoding"),
    shape=_pe_shape, reference=_pe_reference, weights=_pe_weights, flops=_pe_flops,
    lower=_pe_lower,
    doc="Adds a position code to (batch, seq, features): sinusoidal, or a learned table.",
    example='PositionalEncoding(64, "learned")',
    extra={"max_length": "max_len"},
))
