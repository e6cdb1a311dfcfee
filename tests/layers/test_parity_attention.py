"""MultiHeadAttention, Attention and PositionalEncoding against PyTorch on the same weights.

MultiHeadAttention is checked against torch.nn.MultiheadAttention (eval mode) where its shapes
fit that module (num_heads * key_dim == features, value_dim == key_dim), and against
torch.nn.functional.linear + scaled_dot_product_attention otherwise; a torch MultiheadAttention
state_dict is mapped onto q_proj/k_proj/v_proj/out_proj as the layer's doc says. Attention's
dot mode is scaled_dot_product_attention with an explicit scale; its concat mode and the
sinusoidal table are torch formulas written out here and checked on hand-computed cases.
Every case runs at two batch sizes and two sequence lengths, cross-attention with memories
longer and shorter than the query, with and without the causal mask.
Tolerance: float32, rtol=1e-5, atol=1e-5 (our reference computes in float64; torch in float32
over reductions of at most a few dozen terms).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layer_helpers import (
    ATOL,
    RTOL,
    SimpleContext,
    make_attrs,
    run_layer,
    spec,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate, sym
from neuralc.ir.shapes import ShapeError, Unifier
from neuralc.ir.types import TensorType
from neuralc.layers.catalog import Init, ParamError

BATCHES = [1, 3]
LENGTHS = [5, 9]
MEMORY_LENGTHS = [4, 11]


def causal_bool(tq: int, tk: int) -> torch.Tensor:
    """PyTorch's is_causal convention: True where attending is allowed (top-left lower part)."""
    return torch.ones(tq, tk, dtype=torch.bool).tril()


def torch_mha(attrs: dict, xq: np.ndarray, xkv: np.ndarray, w: dict[str, np.ndarray]
              ) -> np.ndarray:
    """Projections with F.linear, heads split as PyTorch does, scaled_dot_product_attention."""
    h = attrs["num_heads"]
    q = F.linear(tt(xq), tt(w["q_proj.weight"]), tt(w["q_proj.bias"]) if "q_proj.bias" in w else None)
    k = F.linear(tt(xkv), tt(w["k_proj.weight"]), tt(w["k_proj.bias"]) if "k_proj.bias" in w else None)
    v = F.linear(tt(xkv), tt(w["v_proj.weight"]), tt(w["v_proj.bias"]) if "v_proj.bias" in w else None)

    def heads(t: torch.Tensor) -> torch.Tensor:
        n, s, e = t.shape
        return t.view(n, s, h, e // h).transpose(1, 2)

    o = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=attrs["causal"])
    n, _, s, dv = o.shape
    o = o.transpose(1, 2).reshape(n, s, h * dv)
    bo = tt(w["out_proj.bias"]) if "out_proj.bias" in w else None
    return F.linear(o, tt(w["out_proj.weight"]), bo).numpy()


# -- MultiHeadAttention --------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("causal", [False, True])
def test_mha_self_attention_against_torch_module(batch: int, length: int, causal: bool,
                                                 rng: np.random.Generator) -> None:
    """num_heads * key_dim == features: exactly torch.nn.MultiheadAttention, in_proj split."""
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, 4, 6, causal=causal)
    x = rng.normal(size=(batch, length, 24)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    m = torch.nn.MultiheadAttention(24, 4, batch_first=True).eval()
    m.load_state_dict({
        "in_proj_weight": tt(np.concatenate([w["q_proj.weight"], w["k_proj.weight"],
                                             w["v_proj.weight"]])),
        "in_proj_bias": tt(np.concatenate([w["q_proj.bias"], w["k_proj.bias"], w["v_proj.bias"]])),
        "out_proj.weight": tt(w["out_proj.weight"]), "out_proj.bias": tt(w["out_proj.bias"]),
    })
    mask = ~causal_bool(length, length) if causal else None  # torch: True = masked out
    with torch.no_grad():
        ref, _ = m(tt(x), tt(x), tt(x), attn_mask=mask, need_weights=False)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("mem_len", MEMORY_LENGTHS)
@pytest.mark.parametrize("causal", [False, True])
def test_mha_cross_attention_against_torch_module(batch: int, length: int, mem_len: int,
                                                  causal: bool, rng: np.random.Generator) -> None:
    """Cross-attention over a memory of another length and width (torch's kdim = vdim)."""
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, 2, 8, causal=causal, context="memory")
    x = rng.normal(size=(batch, length, 16)).astype(np.float32)
    mem = rng.normal(size=(batch, mem_len, 10)).astype(np.float32)
    y, w = run_layer(s, attrs, [x, mem], rng)
    assert y.shape == (batch, length, 16)
    m = torch.nn.MultiheadAttention(16, 2, kdim=10, vdim=10, batch_first=True).eval()
    m.load_state_dict({
        "q_proj_weight": tt(w["q_proj.weight"]), "k_proj_weight": tt(w["k_proj.weight"]),
        "v_proj_weight": tt(w["v_proj.weight"]),
        "in_proj_bias": tt(np.concatenate([w["q_proj.bias"], w["k_proj.bias"], w["v_proj.bias"]])),
        "out_proj.weight": tt(w["out_proj.weight"]), "out_proj.bias": tt(w["out_proj.bias"]),
    })
    mask = ~causal_bool(length, mem_len) if causal else None
    with torch.no_grad():
        ref, _ = m(tt(x), tt(mem), tt(mem), attn_mask=mask, need_weights=False)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


MHA_CASES = [
    {"num_heads": 3, "key_dim": 5},  # heads * key_dim != features
    {"num_heads": 2, "key_dim": 4, "value_dim": 7},
    {"num_heads": 1, "key_dim": 12, "output_shape": 5},
    {"num_heads": 4, "key_dim": 3, "use_bias": False},
    {"num_heads": 2, "key_dim": 6, "value_dim": 3, "causal": True, "dropout": 0.5},
]


@pytest.mark.parametrize("kw", MHA_CASES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("mem_len", [None, *MEMORY_LENGTHS])
def test_mha_keras_shapes_against_sdpa(kw: dict, batch: int, length: int, mem_len: int | None,
                                       rng: np.random.Generator) -> None:
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, **kw, context=None if mem_len is None else "mem")
    x = rng.normal(size=(batch, length, 12)).astype(np.float32)
    xs = [x] if mem_len is None else [x, rng.normal(size=(batch, mem_len, 9)).astype(np.float32)]
    y, w = run_layer(s, attrs, xs, rng)
    assert y.shape == (batch, length, kw.get("output_shape", 12))
    np.testing.assert_allclose(y, torch_mha(attrs, x, xs[-1], w), rtol=RTOL, atol=ATOL)


def test_mha_weight_specs_follow_torch_init() -> None:
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, 2, 4, value_dim=3, output_shape=7, context="m")
    ws = s.weights(attrs, [ttype("batch", "t", 10), ttype("batch", "s", 6)])
    assert {k: v.shape for k, v in ws.items()} == {
        "q_proj.weight": (8, 10), "q_proj.bias": (8,),
        "k_proj.weight": (8, 6), "k_proj.bias": (8,),
        "v_proj.weight": (6, 6), "v_proj.bias": (6,),
        "out_proj.weight": (7, 6), "out_proj.bias": (7,),
    }
    assert ws["q_proj.weight"].init == Init("uniform", math.sqrt(6 / (10 + 8)))  # xavier
    assert ws["out_proj.weight"].init == Init("uniform", 1 / math.sqrt(6))  # Linear default
    assert ws["q_proj.bias"].init == Init("const", 0.0)  # torch zeroes the MHA biases
    no_bias = s.weights(make_attrs(s, 2, 4, use_bias=False), [ttype("batch", "t", 10)])
    assert sorted(no_bias) == ["k_proj.weight", "out_proj.weight", "q_proj.weight",
                               "v_proj.weight"]


def test_mha_symbolic_shapes() -> None:
    s = spec("MultiHeadAttention")
    ctx = SimpleContext()
    (t,) = s.shape(make_attrs(s, 4, 8), [ttype("batch", "seq", 32)], ctx)
    assert t == ttype("batch", "seq", 32)
    (t,) = s.shape(make_attrs(s, 4, 8, output_shape=5, context="mem"),
                   [ttype("batch", "seq", 32), ttype("b2", "mlen", 7)], ctx)
    assert t == ttype("batch", "seq", 5)
    assert ctx.resolve(sym("b2")) == sym("batch")  # one batch for query and context


@pytest.mark.parametrize("shape,match", [
    (("batch", 2, 2, 2, 2, 1),
     r"expects input \(batch, seq, features\), got \(batch, 2, 2, 2, 2, 1\)"),
    (("batch", 16), r"expects input \(batch, seq, features\), got \(batch, 16\)"),
])
def test_mha_wants_sequences(shape: tuple, match: str) -> None:
    """A sequence, or a feature map of rank 4 or 5 (issue 15: attention over its positions)."""
    s = spec("MultiHeadAttention")
    with pytest.raises(ShapeError, match=match) as e:
        s.shape(make_attrs(s, 2, 4), [ttype(*shape)], SimpleContext())
    assert e.value.hint and "Reshape" in e.value.hint


def test_mha_errors() -> None:
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, 2, 4)
    with pytest.raises(ShapeError, match="fixed number of query features") as e:
        s.shape(attrs, [ttype("batch", "seq", "d")], SimpleContext())
    assert e.value.hint
    with pytest.raises(ShapeError, match="float vectors") as e:
        s.shape(attrs, [ttype("batch", "seq", 8, dtype="i64")], SimpleContext())
    assert e.value.hint and "Embedding" in e.value.hint
    cross = make_attrs(s, 2, 4, context="mem")
    with pytest.raises(ShapeError, match=r"expects context 'mem' \(batch, seq, features\)"):
        s.shape(cross, [ttype("batch", "seq", 8), ttype("batch", 8)], SimpleContext())
    with pytest.raises(ShapeError, match="batch"):
        s.shape(cross, [ttype(2, "seq", 8), ttype(3, "m", 8)], SimpleContext())


def test_mha_flops() -> None:
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, 2, 4, value_dim=3, output_shape=5, context="m")
    ins = [ttype("batch", 7, 10), ttype("batch", 6, 9)]
    outs = s.shape(attrs, ins, SimpleContext())
    want = (2 * 7 * 10 * 8 + 2 * 6 * 9 * 8 + 2 * 6 * 9 * 6  # q, k, v projections
            + 2 * 7 * 6 * (2 * 4 + 2 * 3 + 5)  # scores, softmax, weighted sum
            + 2 * 7 * 6 * 5)  # output projection
    assert s.flops(attrs, ins, outs) == want
    sym_flops = s.flops(attrs, [ttype("batch", "t", 10), ttype("batch", "m", 9)], outs)
    assert evaluate(sym_flops, {"t": 7, "m": 6}) == want


@pytest.mark.parametrize("length", [3, 8])
def test_mha_symbolic_sequence_matches_reference(length: int, rng: np.random.Generator) -> None:
    """The symbolic shape rule, evaluated at two lengths, is the reference's output shape."""
    s = spec("MultiHeadAttention")
    attrs = make_attrs(s, 2, 3, context="m")
    (t,) = s.shape(attrs, [ttype("batch", "t", 6), ttype("batch", "m", 4)], SimpleContext())
    ws = s.weights(attrs, [ttype("batch", "t", 6), ttype("batch", "m", 4)])
    w = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in ws.items()}
    for batch in BATCHES:
        xs = [rng.normal(size=(batch, length, 6)).astype(np.float32),
              rng.normal(size=(batch, length + 2, 4)).astype(np.float32)]
        (y,) = s.reference(attrs, xs, w)
        assert t.shape is not None
        assert y.shape == tuple(evaluate(d, {"batch": batch, "t": length}) for d in t.shape)


def test_mha_params() -> None:
    s = spec("MultiHeadAttention")
    a = make_attrs(s, 4, 16)
    assert a == {"num_heads": 4, "key_dim": 16, "value_dim": None, "dropout": 0.0,
                 "use_bias": True, "output_shape": None, "causal": False, "context": None}
    assert make_attrs(s, nhead=2, head_dim=3, use_causal_mask=True, value="enc") == \
        {**a, "num_heads": 2, "key_dim": 3, "causal": True, "context": "enc"}
    with pytest.raises(ParamError, match="'num_heads' must be a positive integer"):
        make_attrs(s, 0, 16)
    with pytest.raises(ParamError, match="missing the required parameter 'key_dim'"):
        make_attrs(s, 4)
    with pytest.raises(ParamError, match="'context' must be the name of an input"):
        make_attrs(s, 4, 8, context=3)
    with pytest.raises(ParamError, match="'dropout' must be a number in"):
        make_attrs(s, 4, 8, dropout=1.5)


# -- Attention -------------------------------------------------------------------------------------


def torch_attention(attrs: dict, q: np.ndarray, v: np.ndarray, k: np.ndarray,
                    w: dict[str, np.ndarray]) -> np.ndarray:
    scale = float(w["scale"]) if attrs["use_scale"] else 1.0
    if attrs["score_mode"] == "dot":
        return F.scaled_dot_product_attention(tt(q), tt(k), tt(v), is_causal=attrs["causal"],
                                              scale=scale).numpy()
    # Keras concat mode, written with torch ops: c * sum_f tanh(scale * (q_if + k_jf)).
    qt, kt = tt(q).unsqueeze(2), tt(k).unsqueeze(1)
    scores = float(w["concat_score_weight"]) * torch.tanh(scale * (qt + kt)).sum(-1)
    if attrs["causal"]:
        scores = scores.masked_fill(~causal_bool(q.shape[1], k.shape[1]), float("-inf"))
    return (torch.softmax(scores, dim=-1) @ tt(v)).numpy()


ATT_CASES = [
    {},
    {"use_scale": True},
    {"causal": True},
    {"use_scale": True, "causal": True},
    {"score_mode": "concat"},
    {"score_mode": "concat", "use_scale": True, "causal": True},
]


@pytest.mark.parametrize("kw", ATT_CASES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("inputs", ["self", "value", "value+key"])
def test_attention_against_torch(kw: dict, batch: int, length: int, inputs: str,
                                 rng: np.random.Generator) -> None:
    s = spec("Attention")
    refs = {"self": {}, "value": {"value": "v"}, "value+key": {"value": "v", "key": "k"}}[inputs]
    attrs = make_attrs(s, **kw, **refs)
    q = rng.normal(size=(batch, length, 6)).astype(np.float32)
    v_len = length + 3
    xs = [q]
    if "value" in refs:  # without a key the value is the key too, so it has the query's width
        width = 5 if "key" in refs else 6
        xs.append(rng.normal(size=(batch, v_len, width)).astype(np.float32))
    if "key" in refs:
        xs.append(rng.normal(size=(batch, v_len, 6)).astype(np.float32))
    y, w = run_layer(s, attrs, xs, rng)
    v = xs[1] if len(xs) > 1 else q
    k = xs[2] if len(xs) > 2 else v
    np.testing.assert_allclose(y, torch_attention(attrs, q, v, k, w), rtol=RTOL, atol=ATOL)


def test_attention_concat_hand_computed() -> None:
    """One query, two keys: scores tanh(1+1)+tanh(0+2) and tanh(1-1)+tanh(0+0), times c=2."""
    s = spec("Attention")
    attrs = make_attrs(s, score_mode="concat", value="v", key="k")
    q = np.array([[[1.0, 0.0]]], np.float32)
    k = np.array([[[1.0, 2.0], [-1.0, 0.0]]], np.float32)
    v = np.array([[[10.0], [20.0]]], np.float32)
    (y,) = s.reference(attrs, [q, v, k], {"concat_score_weight": np.array(2.0, np.float32)})
    s0 = 2 * (math.tanh(2.0) + math.tanh(2.0))
    s1 = 2 * (math.tanh(0.0) + math.tanh(0.0))
    p0 = math.exp(s0) / (math.exp(s0) + math.exp(s1))
    np.testing.assert_allclose(y, [[[10 * p0 + 20 * (1 - p0)]]], rtol=1e-6)


def test_attention_shapes_and_errors() -> None:
    s = spec("Attention")
    ctx = SimpleContext()
    (t,) = s.shape(make_attrs(s, value="v"), [ttype("batch", "t", 8), ttype("batch", "s", 8)], ctx)
    assert t == ttype("batch", "t", 8)
    (t,) = s.shape(make_attrs(s, value="v", key="k"),
                   [ttype("batch", "t", 8), ttype("batch", "s", 3), ttype("batch", "s2", 8)], ctx)
    assert t == ttype("batch", "t", 3) and ctx.resolve(sym("s2")) == sym("s")
    with pytest.raises(ShapeError, match="query and key vectors of one size") as e:
        s.shape(make_attrs(s, value="v"), [ttype("batch", "t", 8), ttype("batch", "s", 4)],
                SimpleContext())
    assert e.value.hint and "Dense" in e.value.hint
    with pytest.raises(ShapeError, match="value and key must have the same length"):
        s.shape(make_attrs(s, value="v", key="k"),
                [ttype("batch", 3, 8), ttype("batch", 4, 2), ttype("batch", 5, 8)],
                SimpleContext())
    with pytest.raises(ShapeError, match=r"Attention expects query input \(batch, seq, features\)"):
        s.shape(make_attrs(s), [ttype("batch", 8)], SimpleContext())


def test_attention_params_and_weights() -> None:
    s = spec("Attention")
    assert make_attrs(s) == {"use_scale": False, "score_mode": "dot", "dropout": 0.0,
                             "causal": False, "value": None, "key": None}
    assert make_attrs(s, True, "Concat")["score_mode"] == "concat"
    with pytest.raises(ParamError, match="'key' needs 'value'"):
        make_attrs(s, key="k")
    with pytest.raises(ParamError, match="'score_mode' must be one of"):
        make_attrs(s, score_mode="additive")
    assert s.weights(make_attrs(s), [ttype("batch", 3, 4)]) == {}
    ws = s.weights(make_attrs(s, use_scale=True, score_mode="concat"), [ttype("batch", 3, 4)])
    assert {k: (v.shape, v.init) for k, v in ws.items()} == {
        "scale": ((), Init("const", 1.0)), "concat_score_weight": ((), Init("const", 1.0))}


# -- PositionalEncoding ------------------------------------------------------------------------------


def torch_sinusoid(length: int, d: int) -> torch.Tensor:
    """The PyTorch tutorial's table (div_term form), padded for an odd width."""
    pos = torch.arange(length, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return pe


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("d", [8, 7])
def test_sinusoidal_encoding(batch: int, length: int, d: int, rng: np.random.Generator) -> None:
    s = spec("PositionalEncoding")
    attrs = make_attrs(s, 16)
    x = rng.normal(size=(batch, length, d)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    assert w == {}
    ref = (tt(x).double() + torch_sinusoid(length, d)).float().numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_sinusoidal_hand_computed() -> None:
    """Position 1 of a width-4 table: sin(1), cos(1), sin(1/100), cos(1/100)."""
    s = spec("PositionalEncoding")
    (y,) = s.reference(make_attrs(s), [np.zeros((1, 2, 4), np.float32)], {})
    np.testing.assert_allclose(y[0, 0], [0, 1, 0, 1], atol=1e-7)
    np.testing.assert_allclose(y[0, 1], [math.sin(1), math.cos(1), math.sin(0.01),
                                         math.cos(0.01)], rtol=1e-6)


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
def test_learned_encoding(batch: int, length: int, rng: np.random.Generator) -> None:
    s = spec("PositionalEncoding")
    attrs = make_attrs(s, 12, "learned")
    x = rng.normal(size=(batch, length, 6)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    table = torch.nn.Embedding(12, 6)
    table.load_state_dict({"weight": tt(w["weight"])})
    with torch.no_grad():
        ref = tt(x) + table(torch.arange(length))
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


def test_positional_encoding_weights_and_params() -> None:
    s = spec("PositionalEncoding")
    assert make_attrs(s) == {"max_len": 512, "encoding": "sinusoidal"}
    assert make_attrs(s, max_length=8, encoding="LEARNED") == {"max_len": 8, "encoding": "learned"}
    with pytest.raises(ParamError, match="'encoding' must be one of"):
        make_attrs(s, encoding="sinusoid")
    with pytest.raises(ParamError, match="'max_len' must be a positive integer"):
        make_attrs(s, 0)
    assert s.weights(make_attrs(s), [ttype("batch", "t", 8)]) == {}
    ws = s.weights(make_attrs(s, 20, "learned"), [ttype("batch", "t", 8)])
    assert ws["weight"].shape == (20, 8) and ws["weight"].init == Init("normal", 0.02)


def test_positional_encoding_length_checks() -> None:
    s = spec("PositionalEncoding")
    attrs = make_attrs(s, 16)
    (t,) = s.shape(attrs, [ttype("batch", "seq", 8)], SimpleContext())
    assert t == ttype("batch", "seq", 8)
    with pytest.raises(ShapeError, match=r"max_len=16 is shorter than the sequence \(20 positions\)"):
        s.shape(attrs, [ttype("batch", 20, 8)], SimpleContext())
    ok = Unifier({"seq": [1, 16]})
    assert s.shape(attrs, [ttype("batch", "seq", 8)], ok) == [ttype("batch", "seq", 8)]
    with pytest.raises(ShapeError, match="seq may be up to 64") as e:
        s.shape(attrs, [ttype("batch", "seq", 8)], Unifier({"seq": [1, 64]}))
    assert e.value.hint and "raise max_len to 64" in e.value.hint
    bound = Unifier({"seq": [1, 64]})
    bound.unify(sym("seq"), 12, "test")  # a symbol bound to a number is checked as that number
    s.shape(attrs, [ttype("batch", "seq", 8)], bound)
    bound.unify(sym("n"), 30, "test")
    with pytest.raises(ShapeError, match=r"shorter than the sequence \(30 positions\)"):
        s.shape(attrs, [ttype("batch", "n", 8)], bound)
    with pytest.raises(ValueError, match="the sequence has 17 positions, more than max_len=16"):
        s.reference(attrs, [np.zeros((1, 17, 8), np.float32)], {})
    with pytest.raises(ShapeError, match="fixed number of features"):
        s.shape(make_attrs(s, 16, "learned"), [ttype("batch", "seq", "d")], SimpleContext())
    with pytest.raises(ShapeError, match=r"expects input \(batch, seq, features\)"):
        s.shape(attrs, [TensorType((sym("batch"), 4, 4, 3))], SimpleContext())
