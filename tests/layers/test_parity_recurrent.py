"""SimpleRNN, LSTM, GRU and ConvLSTM2D: references against PyTorch, and against Keras itself.

PyTorch is the parity oracle: ``torch.nn.RNN/LSTM/GRU`` loaded with the layer's weights as they
are (strict ``load_state_dict``, so the names and layouts are torch's). Where PyTorch has no such
layer the oracle is written out here: a torch step loop for other activations, a numpy formula
(checked on a hand-computed case) for GRU ``reset_after=false``, and a ConvLSTM built from
``F.conv2d``. The semantics where Keras and PyTorch could differ (go_backwards order, the GRU
formulations, ConvLSTM2D's padding of the recurrent convolution) are also checked against Keras 3
(a dev dependency, run on its torch backend) with the weights converted to Keras's layout.

Inputs carry a symbolic batch and time (``(batch, time, features)``); every case runs at two
(batch, time) sizes. Tolerance: float32 rtol=1e-5, atol=1e-5 (ConvLSTM2D: atol=2e-5, its
reductions run over up to 100 terms per step and its error grows with the steps); the
references compute in float64, torch and Keras in float32, and the recurrences are bounded by
tanh and sigmoid.
"""

from __future__ import annotations

import math
import os
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
    random_weights,
    spec,
    torch_act,
    torch_pad,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate, sym
from neuralc.ir.shapes import ShapeError
from neuralc.ir.types import TensorType
from neuralc.layers.catalog import Init, ParamError

KINDS = ("SimpleRNN", "LSTM", "GRU")
SIZES = [(1, 5), (3, 11)]  # (batch, time)
TORCH_RNN = {"SimpleRNN": torch.nn.RNN, "LSTM": torch.nn.LSTM, "GRU": torch.nn.GRU}
CONV_ATOL = 2e-5


@pytest.fixture(autouse=True)
def _native_torch_rnn_kernels() -> Iterator[None]:
    """torch's oneDNN RNN path builds a kernel per module and shape (up to a second without
    bias); the native kernels compute the same and keep these many small cases fast."""
    old = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    yield
    torch.backends.mkldnn.enabled = old


# -- running the layer ----------------------------------------------------------------------


def seq_type(x: np.ndarray) -> TensorType:
    """(batch, time, ...): symbolic batch and time, static features; int64 arrays are indices."""
    return TensorType((sym("batch"), sym("time"), *x.shape[2:]),
                      "i64" if x.dtype == np.int64 else "f32")


def run_all(layer: str, attrs: dict, x: np.ndarray, rng: np.random.Generator,
            weights: dict[str, np.ndarray] | None = None
            ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """Every result of the reference, each checked against the symbolic shape rule."""
    s = spec(layer)
    t = seq_type(x)
    ctx = SimpleContext()
    types = s.shape(attrs, [t], ctx)
    assert len(types) == s.results(attrs)
    if weights is None:
        weights = random_weights(s.weights(attrs, [t]), rng)
    x.setflags(write=False)
    outs = s.reference(attrs, [x], weights)
    env = {"batch": x.shape[0], "time": x.shape[1]}
    assert len(outs) == len(types)
    for o, ty in zip(outs, types):
        assert ty.shape is not None
        assert o.shape == tuple(evaluate(ctx.resolve(d), env) for d in ty.shape)
        assert o.dtype == np.float32
    return outs, weights


def rand_seq(rng: np.random.Generator, batch: int, time: int, features: int) -> np.ndarray:
    return rng.normal(size=(batch, time, features)).astype(np.float32)


# -- PyTorch oracles -----------------------------------------------------------------------------


def torch_rnn(layer: str, attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """torch.nn.RNN/LSTM/GRU with the layer's weights; go_backwards = run on the reversed input."""
    kw = {"nonlinearity": attrs["activation"]} if layer == "SimpleRNN" else {}
    m = TORCH_RNN[layer](x.shape[-1], attrs["units"], batch_first=True, bias=attrs["use_bias"], **kw)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    xt = tt(x).flip(1) if attrs["go_backwards"] else tt(x)
    with torch.no_grad():
        out, state = m(xt)
    h, c = state if layer == "LSTM" else (state, None)
    res = [out if attrs["return_sequences"] else h[0]]
    if attrs["return_state"]:
        res += [h[0], c[0]] if layer == "LSTM" else [h[0]]
    return [r.numpy() for r in res]


def torch_loop(layer: str, attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    """The cell equations written out with torch ops (any activation; reset_after=true GRU)."""
    u, act = attrs["units"], attrs["activation"]
    rec = attrs.get("recurrent_activation", "sigmoid")
    tw = {k: tt(v) for k, v in w.items()}
    xt = tt(x).flip(1) if attrs["go_backwards"] else tt(x)
    h = torch.zeros(x.shape[0], u)
    c = torch.zeros(x.shape[0], u)
    outs = []
    for t in range(x.shape[1]):
        gi = F.linear(xt[:, t], tw["weight_ih_l0"], tw.get("bias_ih_l0"))
        gh = F.linear(h, tw["weight_hh_l0"], tw.get("bias_hh_l0"))
        if layer == "SimpleRNN":
            h = torch_act(act, gi + gh)
        elif layer == "LSTM":
            i, f, g, o = (gi + gh).chunk(4, 1)
            c = torch_act(rec, f) * c + torch_act(rec, i) * torch_act(act, g)
            h = torch_act(rec, o) * torch_act(act, c)
        else:
            (ir, iz, i_n), (hr, hz, hn) = gi.chunk(3, 1), gh.chunk(3, 1)
            r, z = torch_act(rec, ir + hr), torch_act(rec, iz + hz)
            h = (1 - z) * torch_act(act, i_n + r * hn) + z * h
        outs.append(h)
    return (torch.stack(outs, 1) if attrs["return_sequences"] else h).numpy()


CASES = [
    {},
    {"return_sequences": True},
    {"go_backwards": True},
    {"go_backwards": True, "return_sequences": True},
    {"return_state": True},
    {"return_state": True, "return_sequences": True, "go_backwards": True},
    {"use_bias": False, "return_sequences": True},
    {"dropout": 0.5, "recurrent_dropout": 0.25},  # identity at inference
]


@pytest.mark.parametrize("kw", CASES, ids=str)
@pytest.mark.parametrize("batch,time", SIZES)
@pytest.mark.parametrize("layer", KINDS)
def test_recurrent_matches_torch_module(layer: str, kw: dict, batch: int, time: int,
                                        rng: np.random.Generator) -> None:
    attrs = make_attrs(layer, 7, **kw)
    x = rand_seq(rng, batch, time, 5)
    outs, w = run_all(layer, attrs, x, rng)
    want = torch_rnn(layer, attrs, x, w)
    assert len(outs) == len(want)
    for y, t in zip(outs, want):
        np.testing.assert_allclose(y, t, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("batch,time", SIZES)
def test_simple_rnn_relu_is_torch_nonlinearity_relu(batch: int, time: int,
                                                    rng: np.random.Generator) -> None:
    attrs = make_attrs("SimpleRNN", 6, "relu", return_sequences=True)
    x = rand_seq(rng, batch, time, 4)
    (y,), w = run_all("SimpleRNN", attrs, x, rng)
    np.testing.assert_allclose(y, torch_rnn("SimpleRNN", attrs, x, w)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("layer,kw", [
    ("SimpleRNN", {"activation": "swish"}),
    ("SimpleRNN", {"activation": "softsign", "go_backwards": True}),
    ("LSTM", {"activation": "softsign", "recurrent_activation": "hard_sigmoid"}),
    ("LSTM", {"activation": "relu", "go_backwards": True, "use_bias": False}),
    ("GRU", {"activation": "elu", "recurrent_activation": "hard_sigmoid"}),
    ("GRU", {"activation": "softsign", "go_backwards": True}),
], ids=str)
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("batch,time", SIZES)
def test_recurrent_other_activations(layer: str, kw: dict, return_sequences: bool, batch: int,
                                     time: int, rng: np.random.Generator) -> None:
    attrs = make_attrs(layer, 5, return_sequences=return_sequences, **kw)
    x = rand_seq(rng, batch, time, 3)
    (y,), w = run_all(layer, attrs, x, rng)
    np.testing.assert_allclose(y, torch_loop(layer, attrs, x, w), rtol=RTOL, atol=ATOL)


def test_torch_loop_agrees_with_torch_modules(rng: np.random.Generator) -> None:
    """The written-out oracle above is itself right where torch has a module."""
    for layer in KINDS:
        attrs = make_attrs(layer, 4, return_sequences=True, go_backwards=True)
        x = rand_seq(rng, 2, 6, 3)
        w = random_weights(spec(layer).weights(attrs, [seq_type(x)]), rng)
        np.testing.assert_allclose(torch_loop(layer, attrs, x, w),
                                   torch_rnn(layer, attrs, x, w)[0], rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("batch,time", SIZES)
def test_stacked_lstms_equal_a_two_layer_torch_lstm(batch: int, time: int,
                                                   rng: np.random.Generator) -> None:
    """LSTM(return_sequences=true) then LSTM: torch.nn.LSTM(num_layers=2), layer 2 as _l1."""
    first = make_attrs("LSTM", 6, return_sequences=True)
    second = make_attrs("LSTM", 6, return_state=True)
    x = rand_seq(rng, batch, time, 4)
    (seq,), w1 = run_all("LSTM", first, x, rng)
    (y, h, c), w2 = run_all("LSTM", second, seq, rng)
    m = torch.nn.LSTM(4, 6, num_layers=2, batch_first=True)
    sd = {k: tt(v) for k, v in w1.items()}
    sd.update({k.replace("_l0", "_l1"): tt(v) for k, v in w2.items()})
    m.load_state_dict(sd)
    with torch.no_grad():
        out, (hn, cn) = m(tt(x))
    np.testing.assert_allclose(y, out[:, -1].numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h, hn[1].numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(c, cn[1].numpy(), rtol=RTOL, atol=ATOL)


def test_weights_are_torch_modules_state_dicts() -> None:
    """Names, shapes, order and initialiser bounds as torch.nn.RNN/LSTM/GRU."""
    for layer in KINDS:
        for bias in (True, False):
            attrs = make_attrs(layer, 8, use_bias=bias)
            ws = spec(layer).weights(attrs, [ttype("batch", "t", 5)])
            kw = {"bias": bias}
            m = TORCH_RNN[layer](5, 8, batch_first=True, **kw)
            assert list(ws) == list(m.state_dict())
            for k, v in m.state_dict().items():
                assert ws[k].shape == tuple(v.shape)
                assert ws[k].init == Init("uniform", 1 / math.sqrt(8))


# -- GRU reset_after=false: no torch module; a numpy formula and a hand-computed case ----------


def sigmoid(v: np.ndarray | float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(v, np.float64)))


def gru_v1_numpy(x: np.ndarray, w: dict[str, np.ndarray], units: int,
                 return_sequences: bool) -> np.ndarray:
    """Keras's original GRU in torch's layout: the reset gate scales h before W_hn."""
    u = units
    w_ih, w_hh = w["weight_ih_l0"].astype(np.float64), w["weight_hh_l0"].astype(np.float64)
    b_ih = w.get("bias_ih_l0", np.zeros(3 * u)).astype(np.float64)
    b_hh = w.get("bias_hh_l0", np.zeros(3 * u)).astype(np.float64)
    h = np.zeros((x.shape[0], u))
    seq = []
    for t in range(x.shape[1]):
        xt = x[:, t].astype(np.float64)
        r = sigmoid(xt @ w_ih[:u].T + b_ih[:u] + h @ w_hh[:u].T + b_hh[:u])
        z = sigmoid(xt @ w_ih[u:2 * u].T + b_ih[u:2 * u] + h @ w_hh[u:2 * u].T + b_hh[u:2 * u])
        n = np.tanh(xt @ w_ih[2 * u:].T + b_ih[2 * u:] + (r * h) @ w_hh[2 * u:].T + b_hh[2 * u:])
        h = (1 - z) * n + z * h
        seq.append(h)
    return np.stack(seq, 1) if return_sequences else h


HAND = {
    "weight_ih_l0": np.array([[0.5], [-1.0], [2.0]], np.float32),  # r, z, n
    "weight_hh_l0": np.array([[1.0], [0.5], [-1.0]], np.float32),
    "bias_ih_l0": np.array([0.0, 0.1, 0.0], np.float32),
    "bias_hh_l0": np.array([0.2, 0.0, 0.3], np.float32),
}


def test_gru_reset_before_on_a_hand_computed_case(rng: np.random.Generator) -> None:
    """units=1, features=1, x = (1, -2), worked step by step."""
    s = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    # step 1 (h = 0): r = s(0.5 + 0.2), z = s(-1 + 0.1), n = tanh(2 + W_hn * (r * 0) + 0.3)
    h1 = (1 - s(-0.9)) * math.tanh(2.3)
    # step 2: r = s(-1 + h1 + 0.2), z = s(2 + 0.1 + 0.5 h1), n = tanh(-4 + (-1)(r h1) + 0.3)
    r2, z2 = s(-0.8 + h1), s(2.1 + 0.5 * h1)
    h2 = (1 - z2) * math.tanh(-3.7 - r2 * h1) + z2 * h1
    x = np.array([[[1.0], [-2.0]]], np.float32)
    attrs = make_attrs("GRU", 1, reset_after=False, return_sequences=True)
    (y,), _ = run_all("GRU", attrs, x, rng, weights=HAND)
    np.testing.assert_allclose(y[0, :, 0], [h1, h2], rtol=1e-6)
    # The formula runs on the float32 weights (0.1 is not exact in float32): rtol 1e-7.
    np.testing.assert_allclose(gru_v1_numpy(x, HAND, 1, True)[0, :, 0], [h1, h2], rtol=1e-7)
    # reset_after=true scales W_hn h + b_hn by r, so even step 1 differs: n = tanh(2 + r * 0.3).
    a1 = (1 - s(-0.9)) * math.tanh(2 + s(0.7) * 0.3)
    ra, za = s(-0.8 + a1), s(2.1 + 0.5 * a1)
    a2 = (1 - za) * math.tanh(-4 + ra * (-a1 + 0.3)) + za * a1
    after = make_attrs("GRU", 1, return_sequences=True)
    (y_after,), _ = run_all("GRU", after, x, rng, weights=HAND)
    np.testing.assert_allclose(y_after[0, :, 0], [a1, a2], rtol=1e-6)
    assert abs(h1 - a1) > 1e-3 and abs(h2 - a2) > 1e-3


@pytest.mark.parametrize("kw", [{}, {"return_sequences": True}, {"go_backwards": True},
                                {"use_bias": False, "return_sequences": True}], ids=str)
@pytest.mark.parametrize("batch,time", SIZES)
def test_gru_reset_before_matches_formula(kw: dict, batch: int, time: int,
                                          rng: np.random.Generator) -> None:
    attrs = make_attrs("GRU", 6, reset_after=False, **kw)
    x = rand_seq(rng, batch, time, 4)
    (y,), w = run_all("GRU", attrs, x, rng)
    xs = x[:, ::-1] if attrs["go_backwards"] else x
    want = gru_v1_numpy(xs, w, 6, attrs["return_sequences"])
    np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL)


# -- ConvLSTM2D against a ConvLSTM built from F.conv2d -------------------------------------------


def torch_conv_cl(x: torch.Tensor, weight: torch.Tensor, strides: list[int], dil: list[int],
                  padding: str) -> torch.Tensor:
    xc = x.movedim(-1, 1)
    if padding == "same":
        xc = torch_pad(xc, [keras_same_pads(xc.shape[2 + i], weight.shape[2 + i], strides[i],
                                            dil[i]) for i in range(2)])
    return F.conv2d(xc, weight, stride=strides, dilation=dil).movedim(1, -1)


def torch_conv_lstm(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """A PyTorch ConvLSTM: input conv (Keras padding/strides), recurrent conv stride 1 'same'."""
    tw = {k: tt(v) for k, v in w.items()}
    xt = tt(x).flip(1) if attrs["go_backwards"] else tt(x)
    f = attrs["filters"]
    act, rec = attrs["activation"], attrs["recurrent_activation"]
    outs = []
    h = c = None
    for t in range(x.shape[1]):
        g = torch_conv_cl(xt[:, t], tw["weight_ih"], attrs["strides"], attrs["dilation_rate"],
                          attrs["padding"])
        if "bias" in tw:
            g = g + tw["bias"]
        if h is None:
            h = torch.zeros(*g.shape[:-1], f)
            c = torch.zeros_like(h)
        g = g + torch_conv_cl(h, tw["weight_hh"], [1, 1], [1, 1], "same")
        i, fg, cand, o = g.split(f, dim=-1)
        c = torch_act(rec, fg) * c + torch_act(rec, i) * torch_act(act, cand)
        h = torch_act(rec, o) * torch_act(act, c)
        outs.append(h)
    res = [torch.stack(outs, 1) if attrs["return_sequences"] else h]
    if attrs["return_state"]:
        res += [h, c]
    return [r.numpy() for r in res]


def run_conv_lstm(attrs: dict, x: np.ndarray, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    s = spec("ConvLSTM2D")
    t = TensorType((sym("batch"), sym("time"), sym("h"), sym("w"), x.shape[-1]), "f32")
    ctx = SimpleContext()
    types = s.shape(attrs, [t], ctx)
    w = random_weights(s.weights(attrs, [t]), rng)
    x.setflags(write=False)
    outs = s.reference(attrs, [x], w)
    env = dict(zip(("batch", "time", "h", "w"), x.shape[:4]))
    assert len(outs) == len(types) == s.results(attrs)
    for o, ty in zip(outs, types):
        assert ty.shape is not None
        assert o.shape == tuple(evaluate(d, env) for d in ty.shape)
        assert o.dtype == np.float32
    return outs, w


CONV_CASES = [
    {},
    {"padding": "same"},
    {"padding": "same", "return_sequences": True},
    {"kernel_size": (2, 3), "padding": "same", "return_sequences": True},
    {"strides": 2, "padding": "same", "return_state": True},
    {"strides": (2, 1)},
    {"dilation_rate": 2, "padding": "same", "go_backwards": True, "return_sequences": True},
    {"use_bias": False, "activation": "relu", "recurrent_activation": "hard_sigmoid"},
    {"return_state": True, "return_sequences": True, "go_backwards": True},
]


@pytest.mark.parametrize("kw", CONV_CASES, ids=str)
@pytest.mark.parametrize("shape", [(1, 3, 7, 6, 2), (2, 5, 6, 9, 3)])
def test_conv_lstm2d_matches_torch_conv(kw: dict, shape: tuple[int, ...],
                                        rng: np.random.Generator) -> None:
    kw = dict(kw)
    attrs = make_attrs("ConvLSTM2D", 4, kw.pop("kernel_size", 3), **kw)
    x = rng.normal(size=shape).astype(np.float32)
    outs, w = run_conv_lstm(attrs, x, rng)
    want = torch_conv_lstm(attrs, x, w)
    assert len(outs) == len(want)
    for y, t in zip(outs, want):
        np.testing.assert_allclose(y, t, rtol=RTOL, atol=CONV_ATOL)


def test_conv_lstm2d_weights() -> None:
    attrs = make_attrs("ConvLSTM2D", 8, (3, 2))
    ws = spec("ConvLSTM2D").weights(attrs, [ttype("batch", "t", "h", "w", 5)])
    assert {k: v.shape for k, v in ws.items()} == {
        "weight_ih": (32, 5, 3, 2), "weight_hh": (32, 8, 3, 2), "bias": (32,)}
    assert ws["weight_ih"].init == Init("uniform", 1 / math.sqrt(5 * 6))
    assert ws["weight_hh"].init == Init("uniform", 1 / math.sqrt(8 * 6))
    assert "bias" not in spec("ConvLSTM2D").weights(
        make_attrs("ConvLSTM2D", 8, 3, use_bias=False), [ttype("batch", "t", "h", "w", 5)])


# -- Keras 3 itself, where the semantics could differ from PyTorch --------------------------------


@pytest.fixture(scope="module")
def keras():  # noqa: ANN201 - the keras module
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras as k

    return k


def _gates(m: np.ndarray, order: tuple[int, ...], u: int) -> np.ndarray:
    """Reorder the gate blocks (rows) of a torch-layout matrix or vector."""
    return np.concatenate([m[g * u:(g + 1) * u] for g in order], axis=0)


def keras_rnn_weights(layer: str, attrs: dict, w: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Torch layout -> Keras's get_weights() list (kernel (F, G*u), recurrent (u, G*u), bias).

    GRU gates are (z, r, h) in Keras, (r, z, n) in torch; LSTM (i, f, c, o) in both.
    """
    u = attrs["units"]
    order = (1, 0, 2) if layer == "GRU" else tuple(range(4 if layer == "LSTM" else 1))
    out = [_gates(w["weight_ih_l0"], order, u).T, _gates(w["weight_hh_l0"], order, u).T]
    if attrs["use_bias"]:
        b_ih, b_hh = _gates(w["bias_ih_l0"], order, u), _gates(w["bias_hh_l0"], order, u)
        if layer == "GRU" and attrs["reset_after"]:
            out.append(np.stack([b_ih, b_hh]))
        elif layer == "GRU":
            assert not b_hh.any(), "Keras's original GRU has one bias: bias_hh_l0 must be zero"
            out.append(b_ih)
        else:
            out.append(b_ih + b_hh)
    return out


def keras_layer(keras, layer: str, attrs: dict):  # noqa: ANN001, ANN201
    kw = {k: attrs[k] for k in ("activation", "use_bias", "return_sequences", "return_state",
                                "go_backwards")}
    if layer != "SimpleRNN":
        kw["recurrent_activation"] = attrs["recurrent_activation"]
    if layer == "GRU":
        kw["reset_after"] = attrs["reset_after"]
    return getattr(keras.layers, layer)(attrs["units"], **kw)


def keras_call(keras, layer, x: np.ndarray) -> list[np.ndarray]:  # noqa: ANN001
    out = layer(x)
    outs = out if isinstance(out, (list, tuple)) else [out]
    return [np.asarray(o.detach().cpu()) if isinstance(o, torch.Tensor)
            else keras.ops.convert_to_numpy(o) for o in outs]


@pytest.mark.parametrize("layer,kw", [
    ("SimpleRNN", {"go_backwards": True, "return_sequences": True}),
    ("LSTM", {"go_backwards": True, "return_sequences": True, "return_state": True}),
    ("LSTM", {"activation": "softsign", "use_bias": False}),
    ("GRU", {"return_sequences": True, "return_state": True}),
    ("GRU", {"reset_after": False, "return_sequences": True, "go_backwards": True}),
    ("GRU", {"reset_after": False, "use_bias": False, "return_state": True}),
], ids=str)
@pytest.mark.parametrize("batch,time", SIZES)
def test_recurrent_matches_keras(keras, layer: str, kw: dict, batch: int, time: int,  # noqa: ANN001
                                 rng: np.random.Generator) -> None:
    attrs = make_attrs(layer, 5, **kw)
    x = rand_seq(rng, batch, time, 3)
    s = spec(layer)
    w = random_weights(s.weights(attrs, [seq_type(x)]), rng)
    if layer == "GRU" and not attrs["reset_after"] and attrs["use_bias"]:
        w["bias_hh_l0"] = np.zeros_like(w["bias_hh_l0"])
    outs, _ = run_all(layer, attrs, x, rng, weights=w)
    k = keras_layer(keras, layer, attrs)
    k.build((None, None, 3))
    k.set_weights(keras_rnn_weights(layer, attrs, w))
    want = keras_call(keras, k, x)
    assert len(outs) == len(want)
    for y, t in zip(outs, want):
        np.testing.assert_allclose(y, t, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kw", [
    {"padding": "same", "return_sequences": True},
    {"kernel_size": (2, 3), "strides": 2, "padding": "same", "return_state": True},
    {"go_backwards": True, "return_sequences": True, "dilation_rate": 2},
], ids=str)
def test_conv_lstm2d_matches_keras(keras, kw: dict, rng: np.random.Generator) -> None:  # noqa: ANN001
    kw = dict(kw)
    attrs = make_attrs("ConvLSTM2D", 3, kw.pop("kernel_size", 3), **kw)
    x = rng.normal(size=(2, 4, 7, 8, 2)).astype(np.float32)
    outs, w = run_conv_lstm(attrs, x, rng)
    k = keras.layers.ConvLSTM2D(3, attrs["kernel_size"], strides=attrs["strides"],
                                padding=attrs["padding"], dilation_rate=attrs["dilation_rate"],
                                return_sequences=attrs["return_sequences"],
                                return_state=attrs["return_state"],
                                go_backwards=attrs["go_backwards"])
    k.build((None, None, 7, 8, 2))
    k.set_weights([w["weight_ih"].transpose(2, 3, 1, 0), w["weight_hh"].transpose(2, 3, 1, 0),
                   w["bias"]])
    want = keras_call(keras, k, x)
    assert len(outs) == len(want)
    for y, t in zip(outs, want):
        np.testing.assert_allclose(y, t, rtol=RTOL, atol=CONV_ATOL)


# -- shape rules ------------------------------------------------------------------------------


B, T = sym("batch"), sym("seq")


def shapes(layer: str, t: TensorType, *args: object, **kw: object) -> list[tuple]:
    s = spec(layer)
    return [o.shape for o in s.shape(make_attrs(s, *args, **kw), [t], SimpleContext())]


def test_recurrent_shapes_with_symbols() -> None:
    t = ttype("batch", "seq", 8)
    assert shapes("LSTM", t, 16) == [(B, 16)]
    assert shapes("LSTM", t, 16, return_sequences=True) == [(B, T, 16)]
    assert shapes("LSTM", t, 16, return_state=True) == [(B, 16)] * 3
    assert shapes("GRU", t, 4, return_state=True, return_sequences=True) == [(B, T, 4), (B, 4)]
    assert shapes("SimpleRNN", t, 2, return_state=True) == [(B, 2), (B, 2)]
    assert shapes("GRU", ttype("batch", 12, 8), 3, return_sequences=True) == [(B, 12, 3)]
    # Stacking: a sequence output is a valid input to the next recurrent layer.
    (seq,) = shapes("LSTM", t, 16, return_sequences=True)
    assert shapes("GRU", TensorType(seq), 5) == [(B, 5)]


def test_conv_lstm2d_shapes_with_symbols() -> None:
    t = ttype("batch", "seq", "h", "w", 3)
    H, W = sym("h"), sym("w")
    assert shapes("ConvLSTM2D", t, 8, 3) == [(B, H - 2, W - 2, 8)]
    assert shapes("ConvLSTM2D", t, 8, 3, padding="same", return_sequences=True) == \
        [(B, T, H, W, 8)]
    out = shapes("ConvLSTM2D", ttype("batch", "seq", 9, 10, 3), 8, (3, 2), 2, return_state=True)
    assert out == [(B, 4, 5, 8)] * 3


def test_num_results_follow_return_state() -> None:
    assert spec("LSTM").results(make_attrs("LSTM", 4, return_state=True)) == 3
    assert spec("GRU").results(make_attrs("GRU", 4, return_state=True)) == 2
    assert spec("SimpleRNN").results(make_attrs("SimpleRNN", 4, return_state=True)) == 2
    assert spec("ConvLSTM2D").results(make_attrs("ConvLSTM2D", 4, 3, return_state=True)) == 3
    for layer in KINDS:
        assert spec(layer).results(make_attrs(layer, 4)) == 1


@pytest.mark.parametrize("layer", KINDS)
@pytest.mark.parametrize("t,message,hint", [
    (ttype("batch", 128), "expects input (batch, time, features), got (batch, 128)",
     "Reshape((steps, features))"),
    (ttype("batch", 28, 28, 1), "expects input (batch, time, features), got (batch, 28, 28, 1)",
     "Reshape((28, 28))"),
    (ttype("batch", "t", "h", 2), "got (batch, t, h, 2)", "TimeDistributed(Flatten())"),
    (ttype("batch", 4, 8, 8, 3), "got (batch, 4, 8, 8, 3)", "ConvLSTM2D"),
    (ttype("batch", "seq", "f"), "needs a fixed number of input features", "give that dimension"),
    (ttype("batch", "seq", dtype="i64"), "expects float vectors, got i64", "Embedding"),
])
def test_recurrent_shape_errors(layer: str, t: TensorType, message: str, hint: str) -> None:
    with pytest.raises(ShapeError) as e:
        shapes(layer, t, 4)
    assert e.value.message.startswith(layer)
    assert message in e.value.message
    assert e.value.hint is not None and hint in e.value.hint


@pytest.mark.parametrize("t,args,message", [
    (ttype("batch", "seq", 8), (4, 3), "ConvLSTM2D expects input (batch, time, height, width, "
                                       "channels), got (batch, seq, 8)"),
    (ttype("batch", "seq", 4, 4, "c"), (4, 3), "needs a fixed number of input channels"),
    (ttype("batch", "seq", 2, 9, 3), (4, 3), "kernel (3, 3) does not fit its input (2, 9)"),
])
def test_conv_lstm2d_shape_errors(t: TensorType, args: tuple, message: str) -> None:
    with pytest.raises(ShapeError, match=message.replace("(", r"\(").replace(")", r"\)")):
        shapes("ConvLSTM2D", t, *args)


def test_flops_count_both_matmuls_per_step() -> None:
    s = spec("LSTM")
    attrs = make_attrs(s, 16)
    t = ttype("batch", "seq", 8)
    outs = s.shape(attrs, [t], SimpleContext())
    per_step = 2 * 64 * (8 + 16) + 2 * 64 + 9 * 16
    assert s.flops(attrs, [t], outs) == T * per_step
    g = spec("GRU")
    attrs = make_attrs(g, 16, use_bias=False)
    assert g.flops(attrs, [ttype("batch", 10, 8)], []) == 10 * (2 * 48 * 24 + 9 * 16)


# -- parameters ----------------------------------------------------------------------------------


def test_positional_orders_and_defaults() -> None:
    assert spec("SimpleRNN").positional == ("units", "activation", "use_bias")
    assert spec("LSTM").positional == ("units", "activation", "recurrent_activation", "use_bias")
    assert spec("GRU").positional == ("units", "activation", "recurrent_activation", "use_bias")
    assert spec("ConvLSTM2D").positional == ("filters", "kernel_size", "strides", "padding")
    assert make_attrs("LSTM", 32) == {
        "units": 32, "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
        "return_sequences": False, "return_state": False, "go_backwards": False,
        "dropout": 0.0, "recurrent_dropout": 0.0}
    assert make_attrs("GRU", 8)["reset_after"] is True
    assert "recurrent_activation" not in make_attrs("SimpleRNN", 8)
    assert make_attrs("SimpleRNN", 8, "relu", False) == make_attrs(
        "SimpleRNN", units=8, activation="relu", use_bias=False)
    a = make_attrs("ConvLSTM2D", 8, 3, 2, "same")
    assert (a["kernel_size"], a["strides"], a["padding"]) == ([3, 3], [2, 2], "same")


def test_pytorch_aliases() -> None:
    assert make_attrs("LSTM", hidden_size=12, bias=False) == make_attrs("LSTM", 12, use_bias=False)
    assert make_attrs("GRU", hidden_size=3)["units"] == 3
    assert make_attrs("ConvLSTM2D", 4, kernel=3, stride=2, dilation=1)["strides"] == [2, 2]


@pytest.mark.parametrize("layer,args,kw,message", [
    ("LSTM", (0,), {}, "'units' must be a positive integer, got 0"),
    ("GRU", (2.5,), {}, "'units' must be a positive integer"),
    ("LSTM", (4,), {"dropout": 1.5}, "'dropout' must be a number in [0, 1], got 1.5"),
    ("SimpleRNN", (4,), {"recurrent_dropout": -0.1}, "'recurrent_dropout' must be a number in [0, 1]"),
    ("LSTM", (4, "tahn"), {}, "unknown activation \"tahn\" for 'activation'; did you mean 'tanh'?"),
    ("GRU", (4,), {"recurrent_activation": "sigmod"}, "did you mean 'sigmoid'?"),
    ("LSTM", (4,), {"return_sequences": "yes"}, "'return_sequences' must be true or false"),
    ("GRU", (4,), {"reset_after": 1}, "'reset_after' must be true or false"),
    ("SimpleRNN", (4,), {"recurrent_activation": "sigmoid"}, "has no parameter 'recurrent_activation'"),
    ("ConvLSTM2D", (4, 3), {"padding": "causal"}, "'padding' must be one of \"valid\", \"same\""),
    ("ConvLSTM2D", (4, 3), {"strides": 2, "dilation_rate": 2}, "cannot be combined"),
    ("ConvLSTM2D", (4, (3,)), {}, "'kernel_size' must be a positive integer or a tuple of 2"),
])
def test_param_validation(layer: str, args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args, **kw)
    assert message in str(e.value)


def test_dropout_is_identity_at_inference(rng: np.random.Generator) -> None:
    x = rand_seq(rng, 2, 6, 3)
    plain = make_attrs("GRU", 4, return_sequences=True)
    (y0,), w = run_all("GRU", plain, x, rng)
    (y1,), _ = run_all("GRU", make_attrs("GRU", 4, return_sequences=True, dropout=0.9,
                                         recurrent_dropout=1.0), x, rng, weights=w)
    np.testing.assert_array_equal(y0, y1)
