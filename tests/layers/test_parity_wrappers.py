"""Bidirectional and TimeDistributed: references against PyTorch (and Bidirectional against Keras).

Bidirectional with merge_mode="concat" is ``torch.nn.RNN/LSTM/GRU(bidirectional=True)`` loaded
with the layer's weights as they are (strict, so ``*_reverse`` are torch's names); sum, mul and
ave are computed from torch's two directions. Keras's own Bidirectional checks the rest of its
semantics (the backward output's alignment in time, the state order).
TimeDistributed is checked against the torch computation of the wrapped layer on the
(batch * time, ...) fold. The .nr forms compile end to end and their graph IR round-trips.

Inputs have a symbolic batch and time, two sizes each. Tolerance: float32 rtol=1e-5, atol=1e-5
(the references compute in float64, torch in float32; short bounded recurrences and small
reductions).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layer_helpers import (
    ATOL,
    RTOL,
    SimpleContext,
    keras_same_pads,
    make_attrs,
    spec,
    to_cf,
    to_cl,
    torch_act,
    torch_pad,
    tt,
    ttype,
)
from test_parity_recurrent import (  # noqa: F401
    keras,
    keras_call,
    keras_layer,
    keras_rnn_weights,
    run_all,
)

from neuralc.driver import compile_source
from neuralc.ir.core import func_body
from neuralc.ir.dims import evaluate, sym
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.shapes import ShapeError
from neuralc.ir.verifier import verify
from neuralc.layers.catalog import ParamError
from neuralc.layers.wrappers import validated_inner
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, weight_specs

KINDS = ("SimpleRNN", "LSTM", "GRU")
SIZES = [(1, 5), (3, 9)]  # (batch, time)
TORCH_RNN = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
B, T = sym("batch"), sym("seq")


@pytest.fixture(autouse=True)
def _native_torch_rnn_kernels() -> Iterator[None]:
    """As in test_parity_recurrent: torch's native RNN kernels, not oneDNN's slow set-up."""
    old = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = old


def wrap(wrapper: str, layer: str, *args: object, merge_mode: str | None = None,
         **kw: object) -> dict:
    """Wrapper attributes as the lowering binds them: the inner layer bound through the catalog."""
    inner = {"layer": spec(layer).name, "params": make_attrs(layer, *args, **kw)}
    extra = {} if merge_mode is None else {"merge_mode": merge_mode}
    return make_attrs(wrapper, inner, **extra)


def run_wrapper(wrapper: str, attrs: dict, x: np.ndarray, rng: np.random.Generator,
                weights: dict[str, np.ndarray] | None = None
                ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Every result, each checked against the shape rule on a symbolic (batch, time, ...)."""
    return run_all(wrapper, attrs, x, rng, weights)


def rand_seq(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.normal(size=shape).astype(np.float32)


# -- Bidirectional ----------------------------------------------------------------------------


def torch_bidirectional(layer: str, inner: dict, mode: str, x: np.ndarray,
                        w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """torch's bidirectional module; the merge modes other than concat from its two halves."""
    u = inner["units"]
    kw = {"nonlinearity": inner["activation"]} if layer == "SimpleRNN" else {}
    m = TORCH_RNN[layer](x.shape[-1], u, batch_first=True, bias=inner["use_bias"],
                         bidirectional=True, **kw)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        out, state = m(tt(x))
    hn, cn = state if layer == "LSTM" else (state, None)
    if inner["return_sequences"]:
        y_f, y_b = out[..., :u], out[..., u:]
    else:
        y_f, y_b = hn[0], hn[1]  # == out[:, -1, :u] and out[:, 0, u:]
        assert torch.allclose(y_b, out[:, 0, u:]) and torch.allclose(y_f, out[:, -1, :u])
    y = {"concat": lambda: torch.cat([y_f, y_b], -1), "sum": lambda: y_f + y_b,
         "mul": lambda: y_f * y_b, "ave": lambda: (y_f + y_b) / 2}[mode]()
    res = [y]
    if inner["return_state"]:
        res += [hn[0], cn[0], hn[1], cn[1]] if layer == "LSTM" else [hn[0], hn[1]]
    return [r.numpy() for r in res]


@pytest.mark.parametrize("kw", [
    {}, {"return_sequences": True}, {"return_state": True},
    {"return_sequences": True, "return_state": True, "use_bias": False},
], ids=str)
@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("batch,time", SIZES)
@pytest.mark.parametrize("layer", KINDS)
def test_bidirectional_matches_torch(layer: str, mode: str, kw: dict, batch: int, time: int,
                                     rng: np.random.Generator) -> None:
    attrs = wrap("Bidirectional", layer, 6, merge_mode=mode, **kw)
    x = rand_seq(rng, batch, time, 4)
    outs, w = run_wrapper("Bidirectional", attrs, x, rng)
    want = torch_bidirectional(layer, attrs["layer"]["params"], mode, x, w)
    assert len(outs) == len(want)
    for y, t in zip(outs, want):
        np.testing.assert_allclose(y, t, rtol=RTOL, atol=ATOL)


def keras_bidirectional_weights(layer: str, inner: dict, w: dict[str, np.ndarray]) -> list:
    fwd = {k: v for k, v in w.items() if not k.endswith("_reverse")}
    bwd = {k[:-8]: v for k, v in w.items() if k.endswith("_reverse")}
    return keras_rnn_weights(layer, inner, fwd) + keras_rnn_weights(layer, inner, bwd)


@pytest.mark.parametrize("layer,mode,kw", [
    ("LSTM", "concat", {"return_sequences": True, "return_state": True}),
    ("LSTM", "ave", {"return_state": True}),
    ("GRU", "sum", {"return_sequences": True}),
    ("GRU", "mul", {"return_state": True}),
    ("SimpleRNN", "concat", {"use_bias": False}),
], ids=str)
@pytest.mark.parametrize("batch,time", SIZES)
def test_bidirectional_matches_keras(keras, layer: str, mode: str, kw: dict,  # noqa: F811, ANN001
                                     batch: int, time: int, rng: np.random.Generator) -> None:
    attrs = wrap("Bidirectional", layer, 4, merge_mode=mode, **kw)
    inner = attrs["layer"]["params"]
    x = rand_seq(rng, batch, time, 3)
    outs, w = run_wrapper("Bidirectional", attrs, x, rng)
    k = keras.layers.Bidirectional(keras_layer(keras, layer, inner), merge_mode=mode)
    k.build((None, None, 3))
    k.set_weights(keras_bidirectional_weights(layer, inner, w))
    want = keras_call(keras, k, x)
    assert len(outs) == len(want)
    for y, t in zip(outs, want):
        np.testing.assert_allclose(y, t, rtol=RTOL, atol=ATOL)


def test_bidirectional_weights_are_torch_bidirectional_state_dicts() -> None:
    for layer in KINDS:
        for bias in (True, False):
            attrs = wrap("Bidirectional", layer, 8, use_bias=bias)
            ws = spec("Bidirectional").weights(attrs, [ttype("batch", "seq", 5)])
            m = TORCH_RNN[layer](5, 8, bias=bias, bidirectional=True)
            assert list(ws) == list(m.state_dict())
            assert {k: v.shape for k, v in ws.items()} == \
                {k: tuple(v.shape) for k, v in m.state_dict().items()}


def test_bidirectional_shapes_and_results() -> None:
    s = spec("Bidirectional")
    t = ttype("batch", "seq", 8)

    def shapes(attrs: dict) -> list:
        return [o.shape for o in s.shape(attrs, [t], SimpleContext())]

    assert shapes(wrap("Bidirectional", "LSTM", 16)) == [(B, 32)]
    assert shapes(wrap("Bidirectional", "GRU", 16, return_sequences=True)) == [(B, T, 32)]
    assert shapes(wrap("Bidirectional", "GRU", 16, merge_mode="sum",
                       return_sequences=True)) == [(B, T, 16)]
    lstm_state = wrap("Bidirectional", "LSTM", 4, merge_mode="ave", return_state=True)
    assert shapes(lstm_state) == [(B, 4)] + [(B, 4)] * 4
    assert s.results(lstm_state) == 5
    assert s.results(wrap("Bidirectional", "GRU", 4, return_state=True)) == 3
    assert s.results(wrap("Bidirectional", "SimpleRNN", 4)) == 1
    with pytest.raises(ShapeError, match=r"LSTM expects input \(batch, time, features\), "
                                         r"got \(batch, 8\)"):
        s.shape(wrap("Bidirectional", "LSTM", 4), [ttype("batch", 8)], SimpleContext())


def test_bidirectional_flops_are_both_directions_and_the_merge() -> None:
    b, lstm = spec("Bidirectional"), spec("LSTM")
    t = ttype("batch", "seq", 8)
    inner = make_attrs("LSTM", 16, return_sequences=True)
    one = lstm.flops(inner, [t], lstm.shape(inner, [t], SimpleContext()))
    for mode, merge in (("concat", 0), ("sum", 1), ("mul", 1), ("ave", 2)):
        attrs = wrap("Bidirectional", "LSTM", 16, merge_mode=mode, return_sequences=True)
        outs = b.shape(attrs, [t], SimpleContext())
        assert b.flops(attrs, [t], outs) == 2 * one + merge * T * 16


def test_bidirectional_params() -> None:
    s = spec("Bidirectional")
    assert s.positional == ("layer", "merge_mode")
    lstm = {"layer": "LSTM", "params": make_attrs("LSTM", 4)}
    assert make_attrs(s, lstm) == {"layer": lstm, "merge_mode": "concat"}
    assert make_attrs(s, lstm, "AVE")["merge_mode"] == "ave"
    with pytest.raises(ParamError, match="'layer' must be one of SimpleRNN, LSTM, GRU, got Dense"):
        make_attrs(s, {"layer": "Dense", "params": make_attrs("Dense", 3)})
    with pytest.raises(ParamError, match="'merge_mode' must be one of .*; did you mean 'ave'"):
        make_attrs(s, lstm, "avg")
    with pytest.raises(ParamError, match="'merge_mode' must be one of"):
        make_attrs(s, lstm, None)
    with pytest.raises(ParamError, match="'layer' must be a layer, such as Dense"):
        make_attrs(s, "LSTM")
    with pytest.raises(ParamError, match="'layer' must not set go_backwards: Bidirectional runs "
                                         "the GRU both ways itself"):
        wrap("Bidirectional", "GRU", 4, go_backwards=True)


# -- TimeDistributed ------------------------------------------------------------------------------


def fold(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])


def unfold(y: torch.Tensor, n: int, t: int) -> torch.Tensor:
    return y.reshape(n, t, *y.shape[1:])


def check_td(x: np.ndarray, rng: np.random.Generator, layer: str, torch_fn, *args: object,
             **kw: object) -> None:  # noqa: ANN001
    attrs = wrap("TimeDistributed", layer, *args, **kw)
    (y,), w = run_wrapper("TimeDistributed", attrs, x, rng)
    tw = {k: tt(v) for k, v in w.items()}
    with torch.no_grad():
        want = unfold(torch_fn(attrs["layer"]["params"], fold(tt(x)), tw), *x.shape[:2])
    np.testing.assert_allclose(y, want.numpy(), rtol=RTOL, atol=ATOL)


def torch_dense(a: dict, x: torch.Tensor, w: dict) -> torch.Tensor:
    return torch_act(a["activation"], F.linear(x, w["weight"], w.get("bias")))


def torch_conv2d(a: dict, x: torch.Tensor, w: dict) -> torch.Tensor:
    xc = to_cf(x)
    if a["padding"] == "same":
        xc = torch_pad(xc, [keras_same_pads(xc.shape[2 + i], a["kernel_size"][i],
                                            a["strides"][i]) for i in range(2)])
    y = F.conv2d(xc, w["weight"], w.get("bias"), stride=a["strides"])
    return torch_act(a["activation"], to_cl(y))


@pytest.mark.parametrize("batch,time", SIZES)
def test_time_distributed_dense(batch: int, time: int, rng: np.random.Generator) -> None:
    check_td(rand_seq(rng, batch, time, 6), rng, "Dense", torch_dense, 4, "softmax")
    check_td(rand_seq(rng, batch, time, 3, 6), rng, "Dense", torch_dense, 5, "relu",
             use_bias=False)


@pytest.mark.parametrize("kw", [{}, {"padding": "same", "strides": 2}], ids=str)
@pytest.mark.parametrize("batch,time", SIZES)
def test_time_distributed_conv2d(kw: dict, batch: int, time: int,
                                 rng: np.random.Generator) -> None:
    check_td(rand_seq(rng, batch, time, 7, 6, 3), rng, "Conv2D", torch_conv2d, 4, 3, "tanh", **kw)


@pytest.mark.parametrize("batch,time", SIZES)
def test_time_distributed_layers_without_weights(batch: int, time: int,
                                                 rng: np.random.Generator) -> None:
    x = rand_seq(rng, batch, time, 4, 6, 2)
    check_td(x, rng, "Flatten", lambda a, t, w: t.flatten(1))
    check_td(x, rng, "Dropout", lambda a, t, w: t, 0.5)
    check_td(x, rng, "MaxPooling2D",
             lambda a, t, w: to_cl(F.max_pool2d(to_cf(t), a["pool_size"])), 2)


@pytest.mark.parametrize("batch,time", SIZES)
def test_time_distributed_batch_normalization(batch: int, time: int,
                                              rng: np.random.Generator) -> None:
    def bn(a: dict, t: torch.Tensor, w: dict) -> torch.Tensor:
        y = F.batch_norm(to_cf(t), w["running_mean"], w["running_var"], w["weight"], w["bias"],
                         training=False, eps=a["epsilon"])
        return to_cl(y)

    check_td(rand_seq(rng, batch, time, 5, 3), rng, "BatchNormalization", bn)


@pytest.mark.parametrize("batch,time", SIZES)
def test_time_distributed_recurrent_layers(batch: int, time: int,
                                           rng: np.random.Generator) -> None:
    """An LSTM over axis 2 for every item of axis 1; and a wrapper inside the wrapper."""
    def lstm(a: dict, t: torch.Tensor, w: dict) -> torch.Tensor:
        m = torch.nn.LSTM(t.shape[-1], a["units"], batch_first=True)
        m.load_state_dict(w)
        return m(t)[1][0][0]

    check_td(rand_seq(rng, batch, time, 4, 3), rng, "LSTM", lstm, 5)

    inner = {"layer": "GRU", "params": make_attrs("GRU", 3, return_sequences=True)}
    attrs = wrap("TimeDistributed", "Bidirectional", inner)
    x = rand_seq(rng, batch, time, 4, 2)
    (y,), w = run_wrapper("TimeDistributed", attrs, x, rng)
    m = torch.nn.GRU(2, 3, batch_first=True, bidirectional=True)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        want = unfold(m(fold(tt(x)))[0], batch, time)
    np.testing.assert_allclose(y, want.numpy(), rtol=RTOL, atol=ATOL)


def test_time_distributed_embedding_takes_indices(rng: np.random.Generator) -> None:
    x = rng.integers(0, 10, size=(2, 3, 4)).astype(np.int64)
    check_td(x, rng, "Embedding", lambda a, t, w: F.embedding(t, w["weight"]), 10, 3)


def test_time_distributed_shapes_weights_flops() -> None:
    s = spec("TimeDistributed")
    H, W = sym("h"), sym("w")
    dense = wrap("TimeDistributed", "Dense", 16)
    t = ttype("batch", "seq", 8)
    (out,) = s.shape(dense, [t], SimpleContext())
    assert out.shape == (B, T, 16)
    assert {k: v.shape for k, v in s.weights(dense, [t]).items()} == \
        {"weight": (16, 8), "bias": (16,)}
    assert s.flops(dense, [t], [out]) == T * 2 * 8 * 16
    conv = wrap("TimeDistributed", "Conv2D", 4, 3)
    (out,) = s.shape(conv, [ttype("batch", "seq", "h", "w", 3)], SimpleContext())
    assert out.shape == (B, T, H - 2, W - 2, 4)
    flat = wrap("TimeDistributed", "Flatten")
    (out,) = s.shape(flat, [ttype("batch", 10, 4, 4, 2)], SimpleContext())
    assert out.shape == (B, 10, 32)


def test_time_distributed_shape_errors() -> None:
    s = spec("TimeDistributed")
    dense = wrap("TimeDistributed", "Dense", 16)
    with pytest.raises(ShapeError) as e:
        s.shape(dense, [ttype("batch", 128)], SimpleContext())
    assert e.value.message == "TimeDistributed expects input (batch, time, ...), got (batch, 128)"
    assert e.value.hint is not None and "use Dense on its own" in e.value.hint
    conv = wrap("TimeDistributed", "Conv2D", 4, 3)
    with pytest.raises(ShapeError) as e:
        s.shape(conv, [ttype("batch", "seq", 28, 28)], SimpleContext())
    assert e.value.message == (
        "TimeDistributed(Conv2D) runs Conv2D on each step (batch, 28, 28): Conv2D expects input "
        "(batch, height, width, channels), got (batch, 28, 28)")
    assert e.value.hint is not None and "Reshape((h, w, c))" in e.value.hint


def test_time_distributed_params() -> None:
    s = spec("TimeDistributed")
    assert s.positional == ("layer",)
    with pytest.raises(ParamError, match="'layer' must be a layer with one result, but this LSTM "
                                         "has 3; set return_state=false"):
        wrap("TimeDistributed", "LSTM", 4, return_state=True)


@pytest.mark.parametrize("attr,message", [
    ({"layer": "Dense", "params": {"units": 0, "activation": "linear", "use_bias": True}},
     "'units' must be a positive integer"),
    ({"layer": "Dense", "params": {"units": 3, "activation": "linear"}},
     "Dense is missing the parameter 'use_bias'"),
    ({"layer": "Dense", "params": {"units": 3, "activation": "linear", "use_bias": True, "x": 1}},
     "Dense has no parameter 'x'"),
    ({"layer": "Dense", "params": {"units": 3, "activation": "ReLU", "use_bias": True}},
     "'activation' is not in canonical form"),
    ({"layer": "Add", "params": {}}, "TimeDistributed cannot wrap Add: it takes one input"),
    ({"layer": "Nope", "params": {}}, "'layer' must be a layer"),
])
def test_inner_attributes_are_validated(attr: dict, message: str) -> None:
    with pytest.raises(ParamError, match=message.replace("(", r"\(")):
        validated_inner(attr, "TimeDistributed")


# -- the .nr forms, end to end ---------------------------------------------------------------------

SRC = """
network Tagger {
  input: (seq,)
  layers:
    Embedding(50, 8)
    Bidirectional(LSTM(6, return_sequences=true), merge_mode="concat")
    Bidirectional(GRU(5, return_sequences=true, reset_after=false), "ave")
    TimeDistributed(Dense(4, "softmax"))
}
"""


def test_wrappers_compile_from_nr_and_round_trip(rng: np.random.Generator) -> None:
    module = compile_source(SRC, "tagger.nr").module
    text = print_module(module)
    assert 'layer = {layer = "LSTM", params = {' in text
    again = parse_module(text, "rt.nir")
    assert verify(again) == []
    assert print_module(again) == text
    names = list(weight_specs(module))
    assert names[:9] == ["embedding.weight"] + [
        f"bidirectional.{w}_l0{r}" for r in ("", "_reverse")
        for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert names[-2:] == ["time_distributed.weight", "time_distributed.bias"]
    ret = func_body(module.funcs[0]).ops[-1]
    assert [evaluate(d, {"batch": 2, "seq": 7}) for d in ret.operands[0].type.shape] == [2, 7, 4]
    w = init_weights(module, seed=0)
    x = rng.integers(0, 50, size=(2, 7)).astype(np.int64)
    (y,) = run_module(module, [x], w)
    assert y.shape == (2, 7, 4)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-5)


def test_bidirectional_return_state_in_nr_passes_the_output_on() -> None:
    src = """network S { input: (seq, 3) layers:
      Bidirectional(LSTM(4, return_state=true))
      Dense(2) }"""
    module = compile_source(src, "s.nr").module
    op = func_body(module.funcs[0]).ops[0]
    assert [str(r.type) for r in op.results] == \
        ["tensor<batch x 8 x f32>"] + ["tensor<batch x 4 x f32>"] * 4
    text = print_module(module)
    assert print_module(parse_module(text, "rt.nir")) == text


def test_verifier_checks_the_wrapped_layer() -> None:
    text = print_module(compile_source(SRC, "tagger.nr").module)
    bad = text.replace("units = 6", "units = 0", 1)
    assert any("'units' must be a positive integer" in e for e in verify(parse_module(bad, "b")))
