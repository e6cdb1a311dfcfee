"""Torch-oracle rules for the recurrent family: SimpleRNN, LSTM, GRU, ConvLSTM2D, Bidirectional,
TimeDistributed.

Written with torch only, independently of neuralc's numpy references: layers PyTorch has run
through ``torch.nn.RNN/LSTM/GRU`` (loaded with the layer's weights, which must fit as they are);
what PyTorch lacks (other activations, GRU reset_after=false, ConvLSTM2D) is a step loop of
torch ops. Wrappers call the rule of the wrapped layer's graph op.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch_oracle import RULES, act, rule

from neuralc.layers import catalog

_MODULES = {"simple_rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}


def _torch_module(kind: str, a: dict, features: int, bidirectional: bool,
                  w: dict) -> torch.nn.Module | None:
    """The torch.nn module computing this layer, or None where PyTorch has none."""
    rec = a.get("recurrent_activation", "sigmoid")
    kw: dict = {}
    if kind == "simple_rnn":
        if a["activation"] not in ("tanh", "relu"):
            return None
        kw["nonlinearity"] = a["activation"]
    elif a["activation"] != "tanh" or rec != "sigmoid" or not a.get("reset_after", True):
        return None
    m = _MODULES[kind](features, a["units"], batch_first=True, bias=a["use_bias"],
                       bidirectional=bidirectional, **kw)
    m.load_state_dict(w)  # strict: the names and shapes must be torch's
    return m


def _loop(kind: str, a: dict, x: torch.Tensor, w: dict) -> tuple[torch.Tensor, torch.Tensor,
                                                                 torch.Tensor]:
    """Step loop in torch: (sequence, h, c) over x in the given order."""
    u = a["units"]
    rec = a.get("recurrent_activation", "sigmoid")
    n = x.shape[0]
    h = x.new_zeros(n, u)
    c = x.new_zeros(n, u)
    b_ih, b_hh = w.get("bias_ih_l0"), w.get("bias_hh_l0")
    outs = []
    for t in range(x.shape[1]):
        gi = F.linear(x[:, t], w["weight_ih_l0"], b_ih)
        if kind == "gru" and not a["reset_after"]:
            gh = F.linear(h, w["weight_hh_l0"][:2 * u], None if b_hh is None else b_hh[:2 * u])
            r = act(rec, gi[:, :u] + gh[:, :u])
            z = act(rec, gi[:, u:2 * u] + gh[:, u:])
            nh = F.linear(r * h, w["weight_hh_l0"][2 * u:], None if b_hh is None else b_hh[2 * u:])
            h = z * h + (1 - z) * act(a["activation"], gi[:, 2 * u:] + nh)
        else:
            gh = F.linear(h, w["weight_hh_l0"], b_hh)
            if kind == "simple_rnn":
                h = act(a["activation"], gi + gh)
            elif kind == "lstm":
                gates = (gi + gh).chunk(4, dim=1)
                c = act(rec, gates[1]) * c + act(rec, gates[0]) * act(a["activation"], gates[2])
                h = act(rec, gates[3]) * act(a["activation"], c)
            else:
                ir, iz, i_n = gi.chunk(3, dim=1)
                hr, hz, hn = gh.chunk(3, dim=1)
                r, z = act(rec, ir + hr), act(rec, iz + hz)
                h = z * h + (1 - z) * act(a["activation"], i_n + r * hn)
        outs.append(h)
    seq = torch.stack(outs, dim=1) if outs else x.new_zeros(n, 0, u)
    return seq, h, c


def _direction(kind: str, a: dict, x: torch.Tensor, w: dict
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(sequence in processed order, final h, final c) of one direction."""
    xs = x.flip(1) if a["go_backwards"] else x
    m = _torch_module(kind, a, x.shape[-1], False, w)
    if m is None:
        return _loop(kind, a, xs, w)
    out = m(xs)
    seq, hn = out[0], out[1]
    if kind == "lstm":
        hn, cn = hn
        return seq, hn[0], cn[0]
    return seq, hn[0], torch.zeros_like(hn[0])


def _recurrent(kind: str):
    def run(a: dict, xs: list[torch.Tensor], w: dict) -> object:
        seq, h, c = _direction(kind, a, xs[0], w)
        y = seq if a["return_sequences"] else h
        if not a["return_state"]:
            return y
        return (y, h, c) if kind == "lstm" else (y, h)
    return run


for _kind in _MODULES:
    rule(_kind)(_recurrent(_kind))


def _kind_of(layer: str) -> str:
    spec = catalog.lookup(layer)
    assert spec is not None, layer
    return spec.op_name.split(".", 1)[1]


@rule("bidirectional")
def _bidirectional(a: dict, xs: list[torch.Tensor], w: dict) -> object:
    inner = a["layer"]["params"]
    kind = _kind_of(a["layer"]["layer"])
    rev = {k[: -len("_reverse")]: v for k, v in w.items() if k.endswith("_reverse")}
    fwd = {k: v for k, v in w.items() if not k.endswith("_reverse")}
    x = xs[0]
    m = _torch_module(kind, inner, x.shape[-1], True, w)
    if m is not None:
        out = m(x)
        seq = out[0]
        hn, cn = out[1] if kind == "lstm" else (out[1], torch.zeros_like(out[1]))
        u = inner["units"]
        y_f = seq[..., :u] if inner["return_sequences"] else hn[0]
        y_b = seq[..., u:] if inner["return_sequences"] else hn[1]
        states_f, states_b = [hn[0], cn[0]], [hn[1], cn[1]]
    else:
        s_f, h_f, c_f = _direction(kind, inner, x, fwd)
        back = dict(inner, go_backwards=True)
        s_b, h_b, c_b = _direction(kind, back, x, rev)
        y_f = s_f if inner["return_sequences"] else h_f
        y_b = s_b.flip(1) if inner["return_sequences"] else h_b
        states_f, states_b = [h_f, c_f], [h_b, c_b]
    mode = a["merge_mode"]
    y = {"concat": lambda: torch.cat([y_f, y_b], dim=-1), "sum": lambda: y_f + y_b,
         "mul": lambda: y_f * y_b, "ave": lambda: (y_f + y_b) / 2}[mode]()
    if not inner["return_state"]:
        return y
    k = 2 if kind == "lstm" else 1
    return (y, *states_f[:k], *states_b[:k])


@rule("time_distributed")
def _time_distributed(a: dict, xs: list[torch.Tensor], w: dict) -> object:
    x = xs[0]
    n, t = x.shape[0], x.shape[1]
    y = RULES[_kind_of(a["layer"]["layer"])](a["layer"]["params"], [x.reshape(n * t, *x.shape[2:])], w)
    assert isinstance(y, torch.Tensor)
    return y.reshape(n, t, *y.shape[1:])


def _same_pads(size: int, k: int, s: int, d: int) -> list[int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return [total // 2, total - total // 2]


def _conv_cl(x: torch.Tensor, weight: torch.Tensor, strides: list[int], dil: list[int],
             padding: str) -> torch.Tensor:
    """Channels-last conv2d with Keras padding, through F.conv2d."""
    xc = x.movedim(-1, 1)
    if padding == "same":
        kh, kw = weight.shape[2:]
        ph = _same_pads(xc.shape[2], kh, strides[0], dil[0])
        pw = _same_pads(xc.shape[3], kw, strides[1], dil[1])
        xc = F.pad(xc, pw + ph)
    return F.conv2d(xc, weight, stride=strides, dilation=dil).movedim(1, -1)


@rule("conv_lstm2d")
def _conv_lstm2d(a: dict, xs: list[torch.Tensor], w: dict) -> object:
    x = xs[0].flip(1) if a["go_backwards"] else xs[0]
    f = a["filters"]
    h = c = None
    outs = []
    for t in range(x.shape[1]):
        gx = _conv_cl(x[:, t], w["weight_ih"], a["strides"], a["dilation_rate"], a["padding"])
        if "bias" in w:
            gx = gx + w["bias"]
        if h is None:
            h = gx.new_zeros(*gx.shape[:-1], f)
            c = torch.zeros_like(h)
        g = gx + _conv_cl(h, w["weight_hh"], [1, 1], [1, 1], "same")
        i, fg, cand, o = g.split(f, dim=-1)
        rec = a["recurrent_activation"]
        c = act(rec, fg) * c + act(rec, i) * act(a["activation"], cand)
        h = act(rec, o) * act(a["activation"], c)
        outs.append(h)
    y = torch.stack(outs, dim=1) if a["return_sequences"] else h
    return (y, h, c) if a["return_state"] else y
