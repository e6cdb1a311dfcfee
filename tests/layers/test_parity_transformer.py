"""TransformerEncoder/Decoder against torch.nn.TransformerEncoderLayer/DecoderLayer.

The torch modules (batch_first=True, eval mode) load our weights with load_state_dict(strict),
so the names and shapes are PyTorch's exactly; causal masks go in as PyTorch wants them
(generate_square_subsequent_mask plus is_causal). Every case runs at two batch sizes and two
sequence lengths; the decoder's memory is longer and shorter than its target.
Tolerance: the torch side runs in float64 on the same float32 weights and inputs, and the
result is compared in float32 with rtol=1e-5, atol=1e-5. (In float32 the two LayerNorms and
residual adds of a block put torch's own rounding near 1e-5; float64 checks the semantics
without that noise. The whole-model tests compare with float32 torch.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from layer_helpers import ATOL, RTOL, SimpleContext, make_attrs, run_layer, spec, tt, ttype

from neuralc.ir.dims import evaluate, sym
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import Init, ParamError

BATCHES = [1, 3]
LENGTHS = [5, 9]
MEMORY_LENGTHS = [4, 11]
D, HEADS, FF = 16, 4, 24


def torch_kwargs(attrs: dict) -> dict:
    return {"dim_feedforward": attrs["ff_dim"], "dropout": attrs["dropout"],
            "activation": attrs["activation"], "layer_norm_eps": attrs["epsilon"],
            "batch_first": True, "norm_first": attrs["norm_first"], "bias": attrs["use_bias"]}


def load(module: torch.nn.Module, w: dict[str, np.ndarray]) -> torch.nn.Module:
    module.load_state_dict({k: tt(v) for k, v in w.items()}, strict=True)
    return module.double().eval()


def causal_mask(n: int) -> torch.Tensor:
    return torch.nn.Transformer.generate_square_subsequent_mask(n, dtype=torch.float64)


ENC_CASES = [
    {},
    {"activation": "gelu"},
    {"norm_first": True},
    {"norm_first": True, "activation": "gelu", "epsilon": 1e-6},
    {"causal": True},
    {"use_bias": False},
    {"norm_first": True, "use_bias": False, "causal": True, "dropout": 0.0},
]


@pytest.mark.parametrize("kw", ENC_CASES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
def test_encoder_against_torch(kw: dict, batch: int, length: int,
                               rng: np.random.Generator) -> None:
    s = spec("TransformerEncoder")
    attrs = make_attrs(s, HEADS, FF, **kw)
    x = rng.normal(size=(batch, length, D)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    m = load(torch.nn.TransformerEncoderLayer(D, HEADS, **torch_kwargs(attrs)), w)
    causal = attrs["causal"]
    with torch.no_grad():
        ref = m(tt(x).double(), src_mask=causal_mask(length) if causal else None,
                is_causal=causal)
    np.testing.assert_allclose(y, ref.float().numpy(), rtol=RTOL, atol=ATOL)


DEC_CASES = [
    {},
    {"activation": "gelu"},
    {"norm_first": True},
    {"causal": False},
    {"use_bias": False, "epsilon": 1e-6},
    {"norm_first": True, "activation": "gelu", "causal": False, "use_bias": False},
]


@pytest.mark.parametrize("kw", DEC_CASES, ids=str)
@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("mem_len", MEMORY_LENGTHS)
def test_decoder_against_torch(kw: dict, batch: int, length: int, mem_len: int,
                               rng: np.random.Generator) -> None:
    s = spec("TransformerDecoder")
    attrs = make_attrs(s, HEADS, FF, "enc", **kw)
    x = rng.normal(size=(batch, length, D)).astype(np.float32)
    mem = rng.normal(size=(batch, mem_len, D)).astype(np.float32)
    y, w = run_layer(s, attrs, [x, mem], rng)
    m = load(torch.nn.TransformerDecoderLayer(D, HEADS, **torch_kwargs(attrs)), w)
    causal = attrs["causal"]
    with torch.no_grad():
        ref = m(tt(x).double(), tt(mem).double(),
                tgt_mask=causal_mask(length) if causal else None, tgt_is_causal=causal)
    np.testing.assert_allclose(y, ref.float().numpy(), rtol=RTOL, atol=ATOL)


def test_float32_torch_agrees_too(rng: np.random.Generator) -> None:
    """The float32 torch modules agree to 1e-4 (the whole-model tests' tolerance)."""
    enc, dec = spec("TransformerEncoder"), spec("TransformerDecoder")
    x = rng.normal(size=(3, 9, D)).astype(np.float32)
    mem = rng.normal(size=(3, 4, D)).astype(np.float32)
    ea, da = make_attrs(enc, HEADS, FF), make_attrs(dec, HEADS, FF, "m")
    y, w = run_layer(enc, ea, [x], rng)
    m = torch.nn.TransformerEncoderLayer(D, HEADS, **torch_kwargs(ea))
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        np.testing.assert_allclose(y, m.eval()(tt(x)).numpy(), rtol=1e-4, atol=1e-5)
    y, w = run_layer(dec, da, [x, mem], rng)
    m = torch.nn.TransformerDecoderLayer(D, HEADS, **torch_kwargs(da))
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = m.eval()(tt(x), tt(mem), tgt_mask=causal_mask(9).float(), tgt_is_causal=True)
    np.testing.assert_allclose(y, ref.numpy(), rtol=1e-4, atol=1e-5)


# -- weights ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("use_bias", [True, False])
def test_weight_specs_are_torch_state_dicts(use_bias: bool) -> None:
    """Names, order and shapes equal the torch modules' state_dicts; initialisers are torch's."""
    enc, dec = spec("TransformerEncoder"), spec("TransformerDecoder")
    ea = make_attrs(enc, 4, 40, use_bias=use_bias)
    ws = enc.weights(ea, [ttype("batch", "t", 32)])
    m = torch.nn.TransformerEncoderLayer(32, 4, **torch_kwargs(ea))
    assert [(k, v.shape) for k, v in ws.items()] == \
        [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    da = make_attrs(dec, 4, 40, "m", use_bias=use_bias)
    ws_d = dec.weights(da, [ttype("batch", "t", 32), ttype("batch", "s", 32)])
    m = torch.nn.TransformerDecoderLayer(32, 4, **torch_kwargs(da))
    assert [(k, v.shape) for k, v in ws_d.items()] == \
        [(k, tuple(v.shape)) for k, v in m.state_dict().items()]
    assert ws["self_attn.in_proj_weight"].init == Init("uniform", math.sqrt(6 / (32 + 96)))
    assert ws["self_attn.out_proj.weight"].init == Init("uniform", 1 / math.sqrt(32))
    assert ws["linear1.weight"].init == Init("uniform", 1 / math.sqrt(32))
    assert ws["linear2.weight"].init == Init("uniform", 1 / math.sqrt(40))
    assert ws["norm1.weight"].init == Init("const", 1.0)
    if use_bias:
        assert ws["self_attn.in_proj_bias"].init == Init("const", 0.0)
        assert ws["linear2.bias"].init == Init("uniform", 1 / math.sqrt(40))
        assert ws["norm2.bias"].init == Init("const", 0.0)


# -- shapes ------------------------------------------------------------------------------------------


def test_shapes_are_symbolic_in_batch_and_sequence() -> None:
    enc, dec = spec("TransformerEncoder"), spec("TransformerDecoder")
    ctx = SimpleContext()
    assert enc.shape(make_attrs(enc, 4, 8), [ttype("batch", "seq", 16)], ctx) == \
        [ttype("batch", "seq", 16)]
    (t,) = dec.shape(make_attrs(dec, 4, 8, "m"), [ttype("batch", "tgt", 16),
                                                  ttype("b2", "src", 16)], ctx)
    assert t == ttype("batch", "tgt", 16)
    assert ctx.resolve(sym("b2")) == sym("batch")


@pytest.mark.parametrize("length", [3, 7])
def test_symbolic_sequence_matches_reference(length: int, rng: np.random.Generator) -> None:
    dec = spec("TransformerDecoder")
    attrs = make_attrs(dec, 2, 6, "m")
    ins = [ttype("batch", "t", 4), ttype("batch", "s", 4)]
    (t,) = dec.shape(attrs, ins, SimpleContext())
    w = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in dec.weights(attrs, ins).items()}
    for batch in BATCHES:
        xs = [rng.normal(size=(batch, length, 4)).astype(np.float32),
              rng.normal(size=(batch, length * 2, 4)).astype(np.float32)]
        (y,) = dec.reference(attrs, xs, w)
        assert t.shape is not None
        assert y.shape == tuple(evaluate(d, {"batch": batch, "t": length}) for d in t.shape)


@pytest.mark.parametrize("layer", ["TransformerEncoder", "TransformerDecoder"])
def test_d_model_must_divide_into_heads(layer: str) -> None:
    s = spec(layer)
    attrs = make_attrs(s, 4, 8, "m") if layer == "TransformerDecoder" else make_attrs(s, 4, 8)
    ins = [ttype("batch", "t", 30), ttype("batch", "s", 30)][: 2 if "Decoder" in layer else 1]
    with pytest.raises(ShapeError, match=rf"{layer} needs d_model \(the input's last dim, 30\) "
                                         "divisible by num_heads=4") as e:
        s.shape(attrs, ins, SimpleContext())
    assert e.value.hint and "num_heads in 1, 2, 3, 5, 6, 10, 15" in e.value.hint
    sym_ins = [ttype("batch", "t", "d"), ttype("batch", "s", "d")][: len(ins)]
    with pytest.raises(ShapeError, match="needs a fixed model width"):
        s.shape(attrs, sym_ins, SimpleContext())
    with pytest.raises(ShapeError, match=rf"{layer} expects input \(batch, seq, features\), "
                                         r"got \(batch, 32\)"):
        s.shape(attrs, [ttype("batch", 32), *ins[1:]], SimpleContext())


def test_decoder_memory_errors() -> None:
    s = spec("TransformerDecoder")
    attrs = make_attrs(s, 4, 8, "src")
    with pytest.raises(ShapeError, match=r"needs memory vectors of d_model=16 features, got "
                                         r"memory 'src' \(batch, s, 24\)") as e:
        s.shape(attrs, [ttype("batch", "t", 16), ttype("batch", "s", 24)], SimpleContext())
    assert e.value.hint and "Dense(16)" in e.value.hint
    with pytest.raises(ShapeError, match=r"expects memory 'src' \(batch, seq, features\)"):
        s.shape(attrs, [ttype("batch", "t", 16), ttype("batch", 16)], SimpleContext())
    ctx = SimpleContext()
    s.shape(attrs, [ttype("batch", "t", 16), ttype("batch", "s", "w")], ctx)
    assert ctx.resolve(sym("w")) == 16  # a symbolic memory width is unified with d_model


def test_flops() -> None:
    enc, dec = spec("TransformerEncoder"), spec("TransformerDecoder")
    d, h, ff, t, m = 8, 2, 12, 5, 3
    attn_self = 4 * 2 * t * d * d + h * t * t * (4 * (d // h) + 5)
    attn_cross = 2 * t * d * d + 2 * 2 * m * d * d + h * t * m * (4 * (d // h) + 5) \
        + 2 * t * d * d
    ffn = 4 * t * d * ff + t * ff
    ea, da = make_attrs(enc, h, ff), make_attrs(dec, h, ff, "m")
    ins = [ttype("batch", t, d)]
    assert enc.flops(ea, ins, ins) == attn_self + ffn + 2 * 9 * t * d
    dins = [ttype("batch", t, d), ttype("batch", m, d)]
    assert dec.flops(da, dins, ins) == attn_self + attn_cross + ffn + 3 * 9 * t * d
    sym_flops = enc.flops(ea, [ttype("batch", "t", d)], ins)
    assert evaluate(sym_flops, {"t": t}) == attn_self + ffn + 2 * 9 * t * d


# -- parameters ----------------------------------------------------------------------------------


def test_params_defaults_and_aliases() -> None:
    enc, dec = spec("TransformerEncoder"), spec("TransformerDecoder")
    common = {"dropout": 0.1, "activation": "relu", "norm_first": False, "epsilon": 1e-5,
              "use_bias": True}
    assert make_attrs(enc, 4, 64) == {"num_heads": 4, "ff_dim": 64, **common, "causal": False,
                                      "num_layers": 1}
    assert make_attrs(dec, 4, 64, "src") == {"num_heads": 4, "ff_dim": 64, "memory": "src",
                                             **common, "causal": True}
    assert make_attrs(enc, nhead=2, dim_feedforward=8, layer_norm_eps=1e-6, normalize_first=True,
                      activation="GELU") == \
        {"num_heads": 2, "ff_dim": 8, **common, "epsilon": 1e-6, "norm_first": True,
         "activation": "gelu", "causal": False, "num_layers": 1}
    assert make_attrs(dec, 2, 8, context="enc", tgt_is_causal=False)["causal"] is False
    assert make_attrs(enc, 2, 8, 0.2, "gelu")["dropout"] == 0.2
    with pytest.raises(ParamError, match="missing the required parameter 'memory'"):
        make_attrs(dec, 4, 64)
    with pytest.raises(ParamError, match="'activation' must be one of \"relu\", \"gelu\""):
        make_attrs(enc, 4, 64, activation="tanh")
    with pytest.raises(ParamError, match="'num_heads' must be a positive integer"):
        make_attrs(enc, 0, 64)
    with pytest.raises(ParamError, match="'epsilon' must be a number > 0"):
        make_attrs(enc, 4, 64, epsilon=0)
    with pytest.raises(ParamError, match="'memory' must be the name of an input"):
        make_attrs(dec, 4, 64, memory="not a name")
