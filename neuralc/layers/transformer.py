"""TransformerEncoder and TransformerDecoder: PyTorch's transformer layers, batch first.

Their semantics and weight names are exactly ``torch.nn.TransformerEncoderLayer`` and
``torch.nn.TransformerDecoderLayer`` with ``batch_first=True`` in eval mode, so a state_dict of
either loads as it is: ``self_attn.in_proj_weight`` ``(3 * d_model, d_model)`` (query, key and
value projections stacked), ``self_attn.in_proj_bias``, ``self_attn.out_proj.weight/bias``,
``linear1`` ``(ff_dim, d_model)``, ``linear2`` ``(d_model, ff_dim)``, ``norm1``, ``norm2`` (and
for the decoder ``multihead_attn.*`` and ``norm3``). ``d_model`` is the input's last dim and must
be static and divisible by ``num_heads``. Post-norm by default (``norm_first=false``:
``x = norm(x + sublayer(x))``), pre-norm with ``norm_first=true`` (``x = x + sublayer(norm(x))``),
as in PyTorch. Dropout is the identity at inference.

The decoder's self-attention is causal by default (PyTorch's ``tgt_mask`` =
``generate_square_subsequent_mask`` with ``tgt_is_causal=True``, and Keras-hub's decoder
default); its cross-attention reads ``memory``, a network input or named branch whose last dim
must equal ``d_model`` (PyTorch's ``kdim = vdim = d_model``), unmasked.

Lowering: each block becomes its parts in the reference's order: layer norms as the
normalisation layers build them (``normalize``: mean and variance reductions, rsqrt) times
weight plus bias, attention through ``attention.py``'s helpers (self-attention as one matmul
with the packed ``in_proj`` sliced into q, k, v), residual adds, and the feed-forward matmuls
with their activation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.activations import apply_activation
from neuralc.ir.dims import Dim
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.attention import (
    flat_positions,
    flat_sequence,
    layer_norm,
    linear,
    lower_flat_positions,
    lower_heads_attention,
    lower_linear,
    lower_unflat_positions,
    mha_flops,
    multi_head,
    sequence_shape,
    unify_batch,
    xavier_bound,
)
from neuralc.layers.catalog import (
    RATE,
    REQUIRED,
    Bool,
    Choice,
    Float,
    Int,
    LayerSpec,
    Param,
    ValueRef,
    WeightSpec,
    register,
)
from neuralc.layers.common import ONES, ZEROS, bias_bound, kaiming_uniform_bound, static_dim
from neuralc.layers.normalization import normalize

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

ENC = "TransformerEncoder"
DEC = "TransformerDecoder"


def _d_model(attrs: dict, t: TensorType, layer: str) -> tuple[tuple[Dim, ...], int]:
    """The input as (batch, positions, features) and its static width, divisible by num_heads.

    The encoder also takes a feature map (batch, h, w, c): it attends over all its positions
    (Keras's attention_axes), as over the sequence of the flattened positions."""
    shape = flat_sequence(t, layer) if layer == ENC else sequence_shape(t, layer)
    d = static_dim(shape[2], layer, "model width (d_model, the input's last dim)")
    h = attrs["num_heads"]
    if d % h:
        divisors = [k for k in range(1, d + 1) if d % k == 0 and k <= 16]
        raise ShapeError(
            f"{layer} needs d_model (the input's last dim, {d}) divisible by num_heads={h}",
            f"use num_heads in {', '.join(map(str, divisors))}, or project the input to a "
            f"multiple of {h} with Dense first",
        )
    return shape, d


def _memory_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext | None,
                  d: int) -> tuple[Dim, ...]:
    what = f"memory '{attrs['memory']}'"
    m = sequence_shape(ins[1], DEC, what)
    if ctx is not None:
        unify_batch(ctx, ins[0].shape[0], m[0], DEC, what)  # type: ignore[index]
        try:
            ctx.unify(m[2], d, f"{DEC} memory features")
        except ShapeError:
            raise ShapeError(
                f"{DEC} needs memory vectors of d_model={d} features, got {what} "
                f"{shape_str(m)}",
                f"project the memory to {d} features with Dense({d}) in its branch",
            ) from None
    return m


def _enc_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    _d_model(attrs, ins[0], ENC)
    return [ins[0]]


def _dec_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    shape, d = _d_model(attrs, ins[0], DEC)
    _memory_shape(attrs, ins, ctx, d)
    return [ins[0].with_shape((ctx.resolve(shape[0]), *shape[1:]))]


def _attn_weights(prefix: str, d: int, use_bias: bool) -> dict[str, WeightSpec]:
    """torch.nn.MultiheadAttention(d, h): packed in_proj (xavier), out_proj (bias zero)."""
    w = {f"{prefix}.in_proj_weight": WeightSpec((3 * d, d), xavier_bound(d, 3 * d))}
    if use_bias:
        w[f"{prefix}.in_proj_bias"] = WeightSpec((3 * d,), ZEROS)
    w[f"{prefix}.out_proj.weight"] = WeightSpec((d, d), kaiming_uniform_bound(d))
    if use_bias:
        w[f"{prefix}.out_proj.bias"] = WeightSpec((d,), ZEROS)
    return w


def _ff_norm_weights(d: int, ff: int, norms: int, use_bias: bool) -> dict[str, WeightSpec]:
    w: dict[str, WeightSpec] = {}
    for name, out, fan_in in (("linear1", ff, d), ("linear2", d, ff)):
        w[f"{name}.weight"] = WeightSpec((out, fan_in), kaiming_uniform_bound(fan_in))
        if use_bias:
            w[f"{name}.bias"] = WeightSpec((out,), bias_bound(fan_in))
    for i in range(1, norms + 1):
        w[f"norm{i}.weight"] = WeightSpec((d,), ONES)
        if use_bias:
            w[f"norm{i}.bias"] = WeightSpec((d,), ZEROS)
    return w


def _enc_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    _, d = _d_model(attrs, ins[0], ENC)
    return {**_attn_weights("self_attn", d, attrs["use_bias"]),
            **_ff_norm_weights(d, attrs["ff_dim"], 2, attrs["use_bias"])}


def _dec_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    _, d = _d_model(attrs, ins[0], DEC)
    return {**_attn_weights("self_attn", d, attrs["use_bias"]),
            **_attn_weights("multihead_attn", d, attrs["use_bias"]),
            **_ff_norm_weights(d, attrs["ff_dim"], 3, attrs["use_bias"])}


# -- semantics (float64 inside) ------------------------------------------------------------------


def _packed_attention(xq: np.ndarray, xkv: np.ndarray, w: dict[str, np.ndarray], prefix: str,
                      heads: int, causal: bool) -> np.ndarray:
    """torch.nn.MultiheadAttention's forward: split the packed in_proj into q, k, v."""
    wq, wk, wv = np.split(w[f"{prefix}.in_proj_weight"], 3, axis=0)
    b = w.get(f"{prefix}.in_proj_bias")
    bq, bk, bv = np.split(b, 3) if b is not None else (None, None, None)
    ws = {"wq": wq, "wk": wk, "wv": wv, "bq": bq, "bk": bk, "bv": bv,
          "wo": w[f"{prefix}.out_proj.weight"], "bo": w.get(f"{prefix}.out_proj.bias")}
    return multi_head(xq, xkv, ws, heads, causal)


def _norm(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray], i: int) -> np.ndarray:
    return layer_norm(x, w[f"norm{i}.weight"], w.get(f"norm{i}.bias"), attrs["epsilon"])


def _feed_forward(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    h = apply_activation(attrs["activation"], linear(x, w["linear1.weight"], w.get("linear1.bias")))
    return linear(h, w["linear2.weight"], w.get("linear2.bias"))


def _enc_reference(attrs: dict, xs: list[np.ndarray],
                   w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = flat_positions(xs[0]).astype(np.float64)
    h = attrs["num_heads"]

    def sa(t: np.ndarray) -> np.ndarray:
        return _packed_attention(t, t, w, "self_attn", h, attrs["causal"])

    if attrs["norm_first"]:
        x = x + sa(_norm(attrs, x, w, 1))
        x = x + _feed_forward(attrs, _norm(attrs, x, w, 2), w)
    else:
        x = _norm(attrs, x + sa(x), w, 1)
        x = _norm(attrs, x + _feed_forward(attrs, x, w), w, 2)
    return [x.reshape(xs[0].shape).astype(np.float32)]


def _dec_reference(attrs: dict, xs: list[np.ndarray],
                   w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    mem = xs[1].astype(np.float64)
    h = attrs["num_heads"]

    def sa(t: np.ndarray) -> np.ndarray:
        return _packed_attention(t, t, w, "self_attn", h, attrs["causal"])

    def ca(t: np.ndarray) -> np.ndarray:
        return _packed_attention(t, mem, w, "multihead_attn", h, False)

    if attrs["norm_first"]:
        x = x + sa(_norm(attrs, x, w, 1))
        x = x + ca(_norm(attrs, x, w, 2))
        x = x + _feed_forward(attrs, _norm(attrs, x, w, 3), w)
    else:
        x = _norm(attrs, x + sa(x), w, 1)
        x = _norm(attrs, x + ca(x), w, 2)
        x = _norm(attrs, x + _feed_forward(attrs, x, w), w, 3)
    return [x.astype(np.float32)]


# -- lowering to tensor ops ----------------------------------------------------------------------


def _slice(b: TensorBuilder, x: Value, axis: int, start: int, size: int) -> Value:
    return b.op("tensor.slice", [x], {"axis": axis, "start": start, "size": size})


def _lower_self_attention(b: TensorBuilder, attrs: dict, x: Value, prefix: str,
                          causal: bool) -> Value:
    """One matmul with the packed in_proj (as PyTorch's self-attention), sliced into q, k, v."""
    d = x.type.shape[-1]
    w = b.weight(f"{prefix}.in_proj_weight")
    bias = b.weight(f"{prefix}.in_proj_bias") if attrs["use_bias"] else None
    qkv = lower_linear(b, x, w, bias)
    q, k, v = (_slice(b, qkv, 2, i * d, d) for i in range(3))
    return _lower_out_proj(b, attrs, prefix,
                           lower_heads_attention(b, q, k, v, attrs["num_heads"], causal))


def _lower_cross_attention(b: TensorBuilder, attrs: dict, x: Value, mem: Value,
                           prefix: str) -> Value:
    """q from the input with rows [0, d) of in_proj; k and v from the memory with one matmul on
    rows [d, 3d), sliced apart; unmasked."""
    d = x.type.shape[-1]
    w = b.weight(f"{prefix}.in_proj_weight")
    bias = b.weight(f"{prefix}.in_proj_bias") if attrs["use_bias"] else None
    q = lower_linear(b, x, _slice(b, w, 0, 0, d),
                     _slice(b, bias, 0, 0, d) if bias is not None else None)
    kv = lower_linear(b, mem, _slice(b, w, 0, d, 2 * d),
                      _slice(b, bias, 0, d, 2 * d) if bias is not None else None)
    k, v = _slice(b, kv, 2, 0, d), _slice(b, kv, 2, d, d)
    return _lower_out_proj(b, attrs, prefix,
                           lower_heads_attention(b, q, k, v, attrs["num_heads"], False))


def _lower_out_proj(b: TensorBuilder, attrs: dict, prefix: str, o: Value) -> Value:
    w = b.weight(f"{prefix}.out_proj.weight")
    bias = b.weight(f"{prefix}.out_proj.bias") if attrs["use_bias"] else None
    return lower_linear(b, o, w, bias)


def _lower_norm(b: TensorBuilder, attrs: dict, x: Value, i: int) -> Value:
    """LayerNorm over the last axis: the normalisation layers' pattern, then weight and bias."""
    y = normalize(b, x, [-1], attrs["epsilon"])
    y = b.binary("mul", y, b.weight(f"norm{i}.weight"))
    return b.binary("add", y, b.weight(f"norm{i}.bias")) if b.has_weight(f"norm{i}.bias") else y


def _lower_feed_forward(b: TensorBuilder, attrs: dict, x: Value) -> Value:
    def linear_(name: str, t: Value) -> Value:
        w = b.weight(f"{name}.weight")
        bias = b.weight(f"{name}.bias") if attrs["use_bias"] else None
        return lower_linear(b, t, w, bias)

    return linear_("linear2", b.activation(attrs["activation"], linear_("linear1", x)))


def _lower_block(b: TensorBuilder, attrs: dict, x: Value,
                 sublayers: list[Callable[[Value], Value]]) -> Value:
    """Residual sublayers with their norms numbered 1, 2, ...: pre-norm ``x + f(norm(x))`` or
    post-norm ``norm(x + f(x))``, as the references."""
    for i, f in enumerate(sublayers, start=1):
        if attrs["norm_first"]:
            x = b.binary("add", x, f(_lower_norm(b, attrs, x, i)))
        else:
            x = _lower_norm(b, attrs, b.binary("add", x, f(x)), i)
    return x


def _enc_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    y = _lower_block(b, attrs, lower_flat_positions(b, xs[0]), [
        lambda t: _lower_self_attention(b, attrs, t, "self_attn", attrs["causal"]),
        lambda t: _lower_feed_forward(b, attrs, t),
    ])
    return [lower_unflat_positions(b, y, xs[0])]


def _dec_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    mem = xs[1]
    return [_lower_block(b, attrs, xs[0], [
        lambda t: _lower_self_attention(b, attrs, t, "self_attn", attrs["causal"]),
        lambda t: _lower_cross_attention(b, attrs, t, mem, "multihead_attn"),
        lambda t: _lower_feed_forward(b, attrs, t),
    ])]


def _block_flops(t: Dim, d: int, ff: int) -> Dim:
    """Feed-forward (two matmuls and the activation), a LayerNorm and residual add per sublayer."""
    return 4 * t * d * ff + t * ff + 9 * t * d


def _enc_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    shape, d = _d_model(attrs, ins[0], ENC)
    h = attrs["num_heads"]
    t = shape[1]
    return mha_flops(t, t, d, d, h, d // h, d // h, d) + 9 * t * d + \
        _block_flops(t, d, attrs["ff_dim"])


def _dec_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    shape, d = _d_model(attrs, ins[0], DEC)
    m = _memory_shape(attrs, ins, None, d)
    h = attrs["num_heads"]
    t = shape[1]
    return (mha_flops(t, t, d, d, h, d // h, d // h, d) + 9 * t * d
            + mha_flops(t, m[1], d, d, h, d // h, d // h, d) + 9 * t * d
            + _block_flops(t, d, attrs["ff_dim"]))


def _common_params(causal_default: bool, causal_aliases: tuple[str, ...]) -> tuple[Param, ...]:
    return (
        Param("dropout", RATE, 0.1, doc="dropout inside the block (identity at inference)"),
        Param("activation", Choice(("relu", "gelu")), "relu",
              doc="feed-forward activation (gelu is exact, as PyTorch's default)"),
        Param("norm_first", Bool(), False, aliases=("normalize_first",),
              doc="pre-norm (x + f(norm(x))) instead of post-norm (norm(x + f(x)))"),
        Param("epsilon", Float(0.0, min_open=True), 1e-5,
              aliases=("layer_norm_eps", "layer_norm_epsilon", "eps"),
              doc="LayerNorm epsilon (PyTorch's default 1e-5)"),
        Param("causal", Bool(), causal_default, aliases=causal_aliases,
              doc="self-attention of position i sees only positions j <= i"),
        Param("use_bias", Bool(), True, aliases=("bias",),
              doc="biases in the linear layers and the LayerNorms (PyTorch's bias)"),
    )


_HEADS = Param("num_heads", Int(min=1), aliases=("nhead",),
               doc="attention heads; must divide d_model")
_FF = Param("ff_dim", Int(min=1), aliases=("dim_feedforward", "intermediate_dim"),
            doc="width of the feed-forward layer")
# Neural's TensorFlow backend defaults (num_heads=8, ff_dim=512), so its programs mean the same.
_ENC_HEADS = Param("num_heads", Int(min=1), 8, aliases=("nhead",),
                   doc="attention heads; must divide d_model")
_ENC_FF = Param("ff_dim", Int(min=1), 512, aliases=("dim_feedforward", "intermediate_dim"),
                doc="width of the feed-forward layer")
_NUM_LAYERS = Param("num_layers", Int(min=1, max=1000), 1,
                    doc="N stacked encoder layers, each with its own weights (the frontend "
                        "writes them as N layers, named as with * N)")

TRANSFORMER_ENCODER = register(LayerSpec(
    name=ENC,
    params=(_ENC_HEADS, _ENC_FF, *_common_params(False, ("is_causal",)), _NUM_LAYERS),
    positional=("num_heads", "ff_dim", "dropout", "activation"),
    shape=_enc_shape, reference=_enc_reference, weights=_enc_weights, flops=_enc_flops,
    lower=_enc_lower,
    aliases=("TransformerEncoderLayer", "Transformer"),
    extra={"stack_param": "num_layers"},
    doc="torch.nn.TransformerEncoderLayer (batch_first): self-attention and feed-forward.",
    example="TransformerEncoder(4, 128, activation=\"gelu\")",
    unsupported={"use_attention_mask": (
        "neuralc carries no padding mask from an Embedding to the attention; every position "
        "attends to every other (use causal=true for a causal mask), so pad or trim the "
        "sequences to one length and drop use_attention_mask")},
))

TRANSFORMER_DECODER = register(LayerSpec(
    name=DEC,
    params=(
        _HEADS, _FF,
        Param("memory", ValueRef(), REQUIRED, aliases=("context",),
              doc="network input or named branch to cross-attend to (the encoder output)"),
        *_common_params(True, ("tgt_is_causal", "is_causal")),
    ),
    positional=("num_heads", "ff_dim", "memory", "dropout", "activation"),
    shape=_dec_shape, reference=_dec_reference, weights=_dec_weights, flops=_dec_flops,
    lower=_dec_lower,
    aliases=("TransformerDecoderLayer",),
    doc="torch.nn.TransformerDecoderLayer (batch_first): causal self-attention, cross-attention "
        "over memory, feed-forward.",
    example="TransformerDecoder(4, 128, memory=encoded)",
))
