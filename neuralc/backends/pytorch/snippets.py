"""Source that generated PyTorch modules copy: the Keras pieces torch.nn lacks, and training.

The generator (``codegen.py``) copies the top-level functions, classes and constants of this file
that a model needs into the module it writes, so the generated file depends on torch, numpy and
safetensors only (and optuna for ``search``) and never imports neuralc. Keeping them here as
ordinary Python lets ruff and the tests see them; nothing in neuralc imports this module except
the tests. Every function takes what it needs as arguments: the generated file owns the model's
own constants and passes them in.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

# -- layout and padding -------------------------------------------------------------------------


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(batch, ..., channels) -> (batch, channels, ...), the layout torch's conv and pool take."""
    return x.movedim(-1, 1)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """(batch, channels, ...) -> (batch, ..., channels), the layout of the .nr model."""
    return x.movedim(1, -1)


def same_pad(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int],
             dilation: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """Keras 'same' padding of a channels-first tensor: ceil(size / stride) outputs, the odd
    element of padding at the end (torch's symmetric padding would put it at the start)."""
    pads: list[int] = []
    for axis in reversed(range(len(kernel))):
        size = x.shape[2 + axis]
        out = -(-size // strides[axis])
        window = (kernel[axis] - 1) * dilation[axis] + 1
        total = max((out - 1) * strides[axis] + window - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads, value=value)


def avg_pool_same(x: torch.Tensor, kernel: Sequence[int], strides: Sequence[int]) -> torch.Tensor:
    """Keras average pooling with 'same' padding on a channels-first tensor: each window's mean
    over its real (unpadded) elements."""
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[len(kernel)]
    ones = [1] * len(kernel)
    total = pool(same_pad(x, kernel, strides, ones), kernel, strides)
    count = pool(same_pad(torch.ones_like(x[:1, :1]), kernel, strides, ones), kernel, strides)
    return total / count


# -- activations --------------------------------------------------------------------------------

ACTIVATIONS: dict[str, Callable[..., torch.Tensor]] = {
    "linear": lambda x, alpha=None: x,
    "relu": lambda x, alpha=None: F.relu(x),
    "leaky_relu": lambda x, alpha=None: F.leaky_relu(x, 0.2 if alpha is None else alpha),
    "elu": lambda x, alpha=None: F.elu(x, 1.0 if alpha is None else alpha),
    "selu": lambda x, alpha=None: F.selu(x),
    "gelu": lambda x, alpha=None: F.gelu(x),
    "swish": lambda x, alpha=None: F.silu(x),
    "sigmoid": lambda x, alpha=None: torch.sigmoid(x),
    "tanh": lambda x, alpha=None: torch.tanh(x),
    "softmax": lambda x, alpha=None: torch.softmax(x, dim=-1),
    "softplus": lambda x, alpha=None: F.softplus(x),
    "softsign": lambda x, alpha=None: F.softsign(x),
    "relu6": lambda x, alpha=None: F.relu6(x),
    "hard_sigmoid": lambda x, alpha=None: F.hardsigmoid(x),
    "exponential": lambda x, alpha=None: torch.exp(x),
    "hard_swish": lambda x, alpha=None: F.hardswish(x),
    "mish": lambda x, alpha=None: F.mish(x),
    "log_softmax": lambda x, alpha=None: F.log_softmax(x, dim=-1),
}


def apply_activation(name: str, x: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
    """The activation called ``name`` (Keras 3's definitions; gelu is exact)."""
    return ACTIVATIONS[name](x, alpha)


def keras_relu(x: torch.Tensor, max_value: float | None, negative_slope: float,
               threshold: float) -> torch.Tensor:
    """Keras's ReLU layer: x above the threshold (a strict test) capped at max_value, else
    negative_slope * (x - threshold)."""
    y = torch.where(x > threshold, x, torch.zeros_like(x))
    if max_value is not None:
        y = y.clamp(max=max_value)
    return y + negative_slope * (x - threshold).clamp(max=0.0)


def softmax_over(x: torch.Tensor, dims: Sequence[int]) -> torch.Tensor:
    """Softmax normalised jointly over several axes (Keras's Softmax with a tuple of axes)."""
    return torch.exp(x - torch.logsumexp(x, dim=tuple(dims), keepdim=True))


# -- normalisation ------------------------------------------------------------------------------


def without(module: nn.Module, *names: str) -> nn.Module:
    """``module`` with the named parameters removed: Keras's ``center=False`` (no bias) or
    ``scale=False`` (no weight), which torch's norms can only switch off together."""
    for name in names:
        module.register_parameter(name, None)
    return module


# -- regularisation (active while training only) -------------------------------------------------


class SharedDropout(nn.Module):
    """Keras Dropout with a ``noise_shape``: one mask, shared along the axes where it is 1."""

    def __init__(self, rate: float, noise_shape: Sequence[int | None]) -> None:
        super().__init__()
        self.rate = rate
        self.noise_shape = list(noise_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        if keep == 0.0:
            return torch.zeros_like(x)
        shape = [x.shape[i] if n is None else n for i, n in enumerate(self.noise_shape)]
        mask = torch.empty(shape, device=x.device, dtype=x.dtype).bernoulli_(keep)
        return x * mask / keep


class GaussianNoise(nn.Module):
    """Keras GaussianNoise: adds N(0, stddev^2) noise while training."""

    def __init__(self, stddev: float) -> None:
        super().__init__()
        self.stddev = stddev

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x + self.stddev * torch.randn_like(x)


class GaussianDropout(nn.Module):
    """Keras GaussianDropout: multiplies by N(1, rate / (1 - rate)) noise while training."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        return x * (1.0 + stddev * torch.randn_like(x))


class SharedAlphaDropout(nn.Module):
    """Keras AlphaDropout with a ``noise_shape``: dropped units take SELU's negative saturation,
    then an affine map keeps the mean and variance; one mask shared where noise_shape is 1."""

    def __init__(self, rate: float, noise_shape: Sequence[int | None]) -> None:
        super().__init__()
        self.rate = rate
        self.noise_shape = list(noise_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        alpha_p = -1.6732632423543772 * 1.0507009873554805
        shape = [x.shape[i] if n is None else n for i, n in enumerate(self.noise_shape)]
        kept = (torch.rand(shape, device=x.device) >= self.rate).to(x.dtype)
        a = ((1.0 - self.rate) * (1.0 + self.rate * alpha_p**2)) ** -0.5
        b = -a * alpha_p * self.rate
        return a * (x * kept + alpha_p * (1.0 - kept)) + b


class ActivityRegularization(nn.Module):
    """Keras ActivityRegularization: the identity; while training it records the penalty
    ``(l1 * sum|x| + l2 * sum x^2) / batch`` that ``fit`` adds to the loss, as Keras does."""

    def __init__(self, l1: float, l2: float) -> None:
        super().__init__()
        self.l1 = l1
        self.l2 = l2
        self.activity_penalty: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            total = self.l1 * x.abs().sum() + self.l2 * x.square().sum()
            self.activity_penalty = total / x.shape[0]
        return x


def regularization_loss(model: nn.Module) -> torch.Tensor | float:
    """The activity penalties recorded by the last forward pass (each read once)."""
    total: torch.Tensor | float = 0.0
    for m in model.modules():
        penalty = getattr(m, "activity_penalty", None)
        if penalty is not None:
            total = total + penalty
            m.activity_penalty = None
    return total


# -- sequences -----------------------------------------------------------------------------------


def over_time(layer: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """TimeDistributed: ``layer`` on every step of axis 1, the steps folded into the batch."""
    n, t = x.shape[0], x.shape[1]
    y = layer(x.reshape(n * t, *x.shape[2:]))
    return y.reshape(n, t, *y.shape[1:])


def keras_states(out: tuple, return_sequences: bool) -> tuple[torch.Tensor, ...]:
    """Keras's ``return_state`` results from a torch RNN/GRU/LSTM call: (output, h[, c])."""
    seq, state = out
    y = seq if return_sequences else seq[:, -1]
    if isinstance(state, tuple):
        return y, state[0][0], state[1][0]
    return y, state[0]


def bidirectional_result(out: tuple, units: int, return_sequences: bool, merge_mode: str,
                         return_state: bool) -> torch.Tensor | tuple[torch.Tensor, ...]:
    """Keras's Bidirectional results from a bidirectional torch RNN/GRU/LSTM call.

    The backward half of torch's output is already in time order; without return_sequences
    each direction's output is its last processed step (the backward one's is at step 0).
    """
    seq, state = out
    if return_sequences:
        fwd, bwd = seq[..., :units], seq[..., units:]
    else:
        fwd, bwd = seq[:, -1, :units], seq[:, 0, units:]
    if merge_mode == "concat":
        y = torch.cat([fwd, bwd], dim=-1)
    elif merge_mode == "sum":
        y = fwd + bwd
    elif merge_mode == "mul":
        y = fwd * bwd
    else:
        y = (fwd + bwd) / 2
    if not return_state:
        return y
    if isinstance(state, tuple):
        h, c = state
        return y, h[0], c[0], h[1], c[1]
    return y, state[0], state[1]


class KerasRNN(nn.Module):
    """SimpleRNN, LSTM or GRU with any activations, GRU's ``reset_after=False``, and Keras's
    input and recurrent dropout masks, as a step loop.

    Parameters carry torch.nn.RNN/LSTM/GRU's names and layouts (``weight_ih_l0``, ...; the
    backward direction's end in ``_reverse``), and ``forward`` returns what those modules return
    (``batch_first=True``), so the same checkpoints load and the same result helpers apply.
    """

    GATES = {"SimpleRNN": 1, "LSTM": 4, "GRU": 3}

    def __init__(self, kind: str, input_size: int, units: int, *, activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", bias: bool = True,
                 reset_after: bool = True, bidirectional: bool = False, dropout: float = 0.0,
                 recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        self.kind, self.units = kind, units
        self.act, self.rec = activation, recurrent_activation
        self.reset_after, self.bias = reset_after, bias
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        self.suffixes = ["", "_reverse"] if bidirectional else [""]
        rows = self.GATES[kind] * units
        bound = 1.0 / math.sqrt(units)
        for s in self.suffixes:
            shapes = {"weight_ih_l0": (rows, input_size), "weight_hh_l0": (rows, units)}
            if bias:
                shapes.update({"bias_ih_l0": (rows,), "bias_hh_l0": (rows,)})
            for name, shape in shapes.items():
                p = nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
                self.register_parameter(name + s, p)

    def _mask(self, like: torch.Tensor, rate: float) -> torch.Tensor | None:
        """One dropout mask for the whole sequence, as Keras's recurrent cells draw it."""
        if not self.training or rate == 0.0:
            return None
        return torch.empty_like(like).bernoulli_(1.0 - rate) / (1.0 - rate)

    def _direction(self, x: torch.Tensor, s: str) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor]:
        u = self.units
        w_ih, w_hh = getattr(self, "weight_ih_l0" + s), getattr(self, "weight_hh_l0" + s)
        b_ih = getattr(self, "bias_ih_l0" + s) if self.bias else None
        b_hh = getattr(self, "bias_hh_l0" + s) if self.bias else None
        n = x.shape[0]
        h = x.new_zeros(n, u)
        c = x.new_zeros(n, u)
        in_mask = self._mask(x[:, 0] if x.shape[1] else x.new_zeros(n, x.shape[2]),
                             self.dropout)
        rec_mask = self._mask(h, self.recurrent_dropout)
        steps = []
        for t in range(x.shape[1]):
            xt = x[:, t] if in_mask is None else x[:, t] * in_mask
            hr = h if rec_mask is None else h * rec_mask
            gi = F.linear(xt, w_ih, b_ih)
            if self.kind == "GRU" and not self.reset_after:
                gh = F.linear(hr, w_hh[:2 * u], None if b_hh is None else b_hh[:2 * u])
                r = apply_activation(self.rec, gi[:, :u] + gh[:, :u])
                z = apply_activation(self.rec, gi[:, u:2 * u] + gh[:, u:])
                hn = F.linear(r * hr, w_hh[2 * u:], None if b_hh is None else b_hh[2 * u:])
                h = z * h + (1 - z) * apply_activation(self.act, gi[:, 2 * u:] + hn)
            else:
                gh = F.linear(hr, w_hh, b_hh)
                if self.kind == "SimpleRNN":
                    h = apply_activation(self.act, gi + gh)
                elif self.kind == "LSTM":
                    i, f, g, o = (gi + gh).chunk(4, dim=1)
                    c = (apply_activation(self.rec, f) * c
                         + apply_activation(self.rec, i) * apply_activation(self.act, g))
                    h = apply_activation(self.rec, o) * apply_activation(self.act, c)
                else:
                    ir, iz, i_n = gi.chunk(3, dim=1)
                    hr_, hz, hn = gh.chunk(3, dim=1)
                    r = apply_activation(self.rec, ir + hr_)
                    z = apply_activation(self.rec, iz + hz)
                    h = z * h + (1 - z) * apply_activation(self.act, i_n + r * hn)
            steps.append(h)
        seq = torch.stack(steps, dim=1) if steps else x.new_zeros(n, 0, u)
        return seq, h, c

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        seq, h, c = self._direction(x, "")
        seqs, hs, cs = [seq], [h], [c]
        if len(self.suffixes) == 2:
            seq_b, h_b, c_b = self._direction(x.flip(1), "_reverse")
            seqs.append(seq_b.flip(1))
            hs.append(h_b)
            cs.append(c_b)
        out = torch.cat(seqs, dim=-1)
        h_n, c_n = torch.stack(hs), torch.stack(cs)
        return out, ((h_n, c_n) if self.kind == "LSTM" else h_n)


class ConvLSTM2D(nn.Module):
    """Keras's ConvLSTM2D on channels-last (batch, time, h, w, c) input: an LSTM whose input
    and recurrent transforms are convolutions (input: Keras's strides, padding and dilation;
    recurrent: stride 1, 'same'), gates i, f, g, o; returns Keras's results."""

    def __init__(self, in_channels: int, filters: int, kernel_size: Sequence[int], *,
                 strides: Sequence[int] = (1, 1), padding: str = "valid",
                 dilation: Sequence[int] = (1, 1), activation: str = "tanh",
                 recurrent_activation: str = "sigmoid", bias: bool = True,
                 return_sequences: bool = False, return_state: bool = False,
                 dropout: float = 0.0, recurrent_dropout: float = 0.0) -> None:
        super().__init__()
        kh, kw = kernel_size
        self.filters, self.kernel = filters, [kh, kw]
        self.strides, self.padding, self.dilation = list(strides), padding, list(dilation)
        self.act, self.rec = activation, recurrent_activation
        self.return_sequences, self.return_state = return_sequences, return_state
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        fan_ih, fan_hh = in_channels * kh * kw, filters * kh * kw
        self.weight_ih = nn.Parameter(torch.empty(4 * filters, in_channels, kh, kw).uniform_(
            -1 / math.sqrt(fan_ih), 1 / math.sqrt(fan_ih)))
        self.weight_hh = nn.Parameter(torch.empty(4 * filters, filters, kh, kw).uniform_(
            -1 / math.sqrt(fan_hh), 1 / math.sqrt(fan_hh)))
        if bias:
            self.bias = nn.Parameter(torch.empty(4 * filters).uniform_(
                -1 / math.sqrt(fan_ih), 1 / math.sqrt(fan_ih)))
        else:
            self.register_parameter("bias", None)

    def _mask(self, like: torch.Tensor, rate: float) -> torch.Tensor | None:
        if not self.training or rate == 0.0:
            return None
        return torch.empty_like(like).bernoulli_(1.0 - rate) / (1.0 - rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        n, steps = x.shape[0], x.shape[1]
        frames = channels_first(x.reshape(n * steps, *x.shape[2:]))
        if self.padding == "same":
            frames = same_pad(frames, self.kernel, self.strides, self.dilation)
        in_mask = self._mask(frames[::steps], self.dropout) if steps else None
        if in_mask is not None:  # one mask per sample, the same at every step (Keras)
            frames = frames * in_mask.repeat_interleave(steps, dim=0)
        gx = F.conv2d(frames,
                      self.weight_ih, self.bias, stride=self.strides, dilation=self.dilation)
        gx = gx.reshape(n, steps, *gx.shape[1:])
        h = gx.new_zeros(n, self.filters, *gx.shape[3:])
        c = torch.zeros_like(h)
        rec_mask = self._mask(h, self.recurrent_dropout)
        seq = []
        for t in range(steps):
            hr = h if rec_mask is None else h * rec_mask
            gh = F.conv2d(same_pad(hr, self.kernel, [1, 1], [1, 1]), self.weight_hh)
            i, f, g, o = (gx[:, t] + gh).chunk(4, dim=1)
            c = (apply_activation(self.rec, f) * c
                 + apply_activation(self.rec, i) * apply_activation(self.act, g))
            h = apply_activation(self.rec, o) * apply_activation(self.act, c)
            seq.append(h)
        y = torch.stack([channels_last(s) for s in seq], dim=1) if self.return_sequences \
            else channels_last(h)
        if self.return_state:
            return y, channels_last(h), channels_last(c)
        return y


# -- attention ----------------------------------------------------------------------------------


def causal_mask(x: torch.Tensor) -> torch.Tensor:
    """The additive mask that lets position i of ``x`` (batch, seq, ...) see positions <= i."""
    t = x.shape[1]
    return torch.full((t, t), float("-inf"), device=x.device, dtype=x.dtype).triu(1)


class MultiHeadAttention(nn.Module):
    """Keras MultiHeadAttention (key_dim per head, any output width) with separate
    q/k/v/out_proj nn.Linear projections; scaled dot-product attention, top-left causal mask."""

    def __init__(self, query_dim: int, context_dim: int, num_heads: int, key_dim: int,
                 value_dim: int, output_dim: int, *, bias: bool = True, dropout: float = 0.0,
                 causal: bool = False) -> None:
        super().__init__()
        self.heads, self.key_dim, self.value_dim = num_heads, key_dim, value_dim
        self.dropout, self.causal = dropout, causal
        self.q_proj = nn.Linear(query_dim, num_heads * key_dim, bias=bias)
        self.k_proj = nn.Linear(context_dim, num_heads * key_dim, bias=bias)
        self.v_proj = nn.Linear(context_dim, num_heads * value_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * value_dim, output_dim, bias=bias)
        for proj in (self.q_proj, self.k_proj, self.v_proj):
            nn.init.xavier_uniform_(proj.weight)
        for proj in (self.q_proj, self.k_proj, self.v_proj, self.out_proj):
            if proj.bias is not None:
                nn.init.zeros_(proj.bias)

    def forward(self, query: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = query if context is None else context
        n, tq, tk = query.shape[0], query.shape[1], context.shape[1]
        q = self.q_proj(query).view(n, tq, self.heads, self.key_dim).transpose(1, 2)
        k = self.k_proj(context).view(n, tk, self.heads, self.key_dim).transpose(1, 2)
        v = self.v_proj(context).view(n, tk, self.heads, self.value_dim).transpose(1, 2)
        o = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out_proj(o.transpose(1, 2).reshape(n, tq, self.heads * self.value_dim))


class DotAttention(nn.Module):
    """Keras's Attention layer: softmax(scores(query, key)) @ value, no projections; the scores
    are ``q k^T`` (times a learned ``scale``) or, with score_mode="concat",
    ``concat_score_weight * sum(tanh(scale * (q + k)))``."""

    def __init__(self, *, use_scale: bool = False, score_mode: str = "dot",
                 dropout: float = 0.0, causal: bool = False) -> None:
        super().__init__()
        self.score_mode, self.dropout, self.causal = score_mode, dropout, causal
        if use_scale:
            self.scale = nn.Parameter(torch.ones(()))
        else:
            self.register_parameter("scale", None)
        if score_mode == "concat":
            self.concat_score_weight = nn.Parameter(torch.ones(()))
        else:
            self.register_parameter("concat_score_weight", None)

    def forward(self, query: torch.Tensor, value: torch.Tensor | None = None,
                key: torch.Tensor | None = None) -> torch.Tensor:
        value = query if value is None else value
        key = value if key is None else key
        if self.score_mode == "dot":
            scores = query @ key.transpose(-1, -2)
            if self.scale is not None:
                scores = scores * self.scale
        else:
            scale = 1.0 if self.scale is None else self.scale
            pairs = torch.tanh(scale * (query[:, :, None, :] + key[:, None, :, :]))
            scores = self.concat_score_weight * pairs.sum(dim=-1)
        if self.causal:
            keep = torch.ones(scores.shape[-2:], dtype=torch.bool, device=scores.device).tril()
            scores = scores.masked_fill(~keep, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0.0:
            weights = F.dropout(weights, self.dropout)
        return weights @ value


class SinusoidalPositions(nn.Module):
    """Adds Vaswani et al.'s position table to (batch, seq, features): sin on even features,
    cos on odd ones, computed in float64; no weights."""

    def __init__(self, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, d = x.shape[1], x.shape[2]
        if t > self.max_len:
            raise ValueError(f"the sequence has {t} positions, more than max_len={self.max_len}")
        pos = torch.arange(t, dtype=torch.float64, device=x.device)[:, None]
        i = torch.arange(d, device=x.device)
        rate = torch.pow(10000.0, -(2 * (i // 2)).to(torch.float64) / d)
        angle = pos * rate[None, :]
        table = torch.where(i % 2 == 0, torch.sin(angle), torch.cos(angle))
        return x + table.to(x.dtype)


class LearnedPositions(nn.Module):
    """Adds a learned (max_len, features) position table (init N(0, 0.02^2)) to the input."""

    def __init__(self, max_len: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(max_len, dim).normal_(0.0, 0.02))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.weight.shape[0]:
            raise ValueError(f"the sequence has {t} positions, more than max_len="
                             f"{self.weight.shape[0]}")
        return x + self.weight[:t]


# -- blocks -------------------------------------------------------------------------------------


class SqueezeExcitation(nn.Module):
    """Squeeze-and-excitation gate on channels-last maps: mean over space -> relu(fc1) ->
    sigmoid(fc2) -> rescale each channel."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=tuple(range(1, x.dim() - 1)))
        gate = torch.sigmoid(self.fc2(F.relu(self.fc1(s))))
        return x * gate.reshape(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])


class SeparableConv(nn.Module):
    """Keras's separable convolution on channels-first input: a depthwise convolution without
    bias, then a 1x1 (pointwise) convolution with the only bias."""

    def __init__(self, depthwise: nn.Module, pointwise: nn.Module) -> None:
        super().__init__()
        self.depthwise = depthwise
        self.pointwise = pointwise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


# -- training -----------------------------------------------------------------------------------


def resolve_device(name: str) -> torch.device:
    """``"auto"`` is CUDA where there is one, else the CPU; ``"gpu"`` means CUDA."""
    name = name.lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda" if name == "gpu" else name)


def autocast_for(device: torch.device, precision: str) -> Any:
    """Autocast for the .nr file's precision: bf16/fp16 as said, "mixed" fp16 on CUDA and bf16
    on the CPU; fp32 runs as it is."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16" or (precision == "mixed" and device.type != "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, dtype=torch.float16)


def split_batch(batch: Sequence[Any], device: torch.device
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
    """A batch ``(x, y)``, ``((x1, x2), y)`` or ``(x1, x2, y)`` as (inputs, target) on device."""
    *xs, y = batch
    if len(xs) == 1 and isinstance(xs[0], (list, tuple)):
        xs = list(xs[0])
    return [x.to(device) for x in xs], y.to(device)


def split_validation(dataset: Dataset, fraction: float) -> tuple[Dataset, Dataset | None]:
    """Keras's validation_split: the last ``fraction`` of the samples, taken before shuffling."""
    if fraction <= 0.0:
        return dataset, None
    n = len(dataset)  # type: ignore[arg-type]
    cut = int(math.floor(n * (1.0 - fraction)))
    if cut <= 0 or cut >= n:
        raise ValueError(f"validation_split={fraction} leaves no training or no validation "
                         f"samples out of {n}")
    return Subset(dataset, range(cut)), Subset(dataset, range(cut, n))


def evaluate(model: nn.Module, dataset: Dataset, loss_fn: Callable, metrics: dict[str, Callable],
             *, batch_size: int, device: torch.device, precision: str = "fp32"
             ) -> dict[str, float]:
    """Mean loss and metrics over ``dataset``, in eval mode, weighted by batch size."""
    model.eval()
    totals = dict.fromkeys(["loss", *metrics], 0.0)
    seen = 0
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size):
            xs, y = split_batch(batch, device)
            with autocast_for(device, precision):
                out = model(*xs)
            out = out.float()
            n = y.shape[0]
            totals["loss"] += float(loss_fn(out, y)) * n
            for name, fn in metrics.items():
                totals[name] += float(fn(out, y)) * n
            seen += n
    return {k: v / max(seen, 1) for k, v in totals.items()}


def fit(model: nn.Module, dataset: Dataset, loss_fn: Callable, metrics: dict[str, Callable],
        optimizer: torch.optim.Optimizer, scheduler: Any, *, epochs: int, batch_size: int,
        validation_split: float = 0.0, validation_data: Dataset | None = None,
        device: str = "auto", precision: str = "fp32", clip: dict[str, float] | None = None,
        seed: int | None = None, log: Callable[[str], None] | None = print
        ) -> dict[str, list[float]]:
    """Keras-style training: shuffled batches each epoch, the learning-rate schedule stepped
    per batch, activity penalties added to the loss, one progress line per epoch.

    Returns the history: per-epoch ``loss``, each metric, and ``val_*`` with validation data.
    """
    dev = resolve_device(device)
    model.to(dev)
    train_set, val_set = split_validation(dataset, validation_split)
    if validation_data is not None:
        val_set = validation_data
    generator = torch.Generator()
    generator.manual_seed(seed if seed is not None else int(torch.randint(2**31, ()).item()))
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    clip = clip or {}
    scaler = torch.amp.GradScaler(dev.type, enabled=dev.type == "cuda"
                                  and precision in ("fp16", "mixed"))
    history: dict[str, list[float]] = {}
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        model.train()
        totals = dict.fromkeys(["loss", *metrics], 0.0)
        seen = 0
        for batch in loader:
            xs, y = split_batch(batch, dev)
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(dev, precision):
                out = model(*xs)
            out = out.float()
            loss = loss_fn(out, y) + regularization_loss(model)
            scaler.scale(loss).backward()
            if clip:
                scaler.unscale_(optimizer)
                params = [p for p in model.parameters() if p.grad is not None]
                if "clipvalue" in clip:
                    torch.nn.utils.clip_grad_value_(params, clip["clipvalue"])
                if "clipnorm" in clip:
                    for p in params:  # Keras's clipnorm bounds each variable's gradient
                        torch.nn.utils.clip_grad_norm_([p], clip["clipnorm"])
                if "global_clipnorm" in clip:
                    torch.nn.utils.clip_grad_norm_(params, clip["global_clipnorm"])
            scaler.step(optimizer)
            scaler.update()
            if scheduler is not None:
                scheduler.step()
            n = y.shape[0]
            totals["loss"] += float(loss.detach()) * n
            with torch.no_grad():
                for name, fn in metrics.items():
                    totals[name] += float(fn(out, y)) * n
            seen += n
        row = {k: v / max(seen, 1) for k, v in totals.items()}
        if val_set is not None:
            val = evaluate(model, val_set, loss_fn, metrics, batch_size=batch_size, device=dev,
                           precision=precision)
            row.update({f"val_{k}": v for k, v in val.items()})
        for k, v in row.items():
            history.setdefault(k, []).append(v)
        if log is not None:
            parts = "  ".join(f"{k} {v:.4f}" for k, v in row.items())
            log(f"epoch {epoch}/{epochs}  {parts}  ({time.perf_counter() - start:.1f}s)")
    return history


# -- files and the command line -------------------------------------------------------------------


def load_array(path: str) -> np.ndarray:
    """One array from a .npy file; pickles are refused (allow_pickle=False), so no code runs."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise SystemExit(f"error: {path} is not a readable .npy array ({e})") from None
    if not isinstance(arr, np.ndarray):
        raise SystemExit(f"error: {path} holds several arrays (.npz); give one .npy per array")
    return arr


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """float32 for float arrays, int64 for integer ones (class labels, token indices)."""
    if a.dtype.kind == "f":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))
    if a.dtype.kind in "iub":
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))
    raise SystemExit(f"error: arrays of dtype {a.dtype} are not numbers a model can take")


def check_inputs(arrays: list[np.ndarray], inputs: list[tuple[str, tuple, str]]) -> None:
    """Each array against its input: rank, the fixed dims, integer indices where needed."""
    if len(arrays) != len(inputs):
        names = ", ".join(name for name, _, _ in inputs)
        raise SystemExit(f"error: the model takes {len(inputs)} input(s) ({names}), "
                         f"got {len(arrays)}")
    for arr, (name, shape, dtype) in zip(arrays, inputs):
        if arr.ndim != len(shape):
            raise SystemExit(f"error: input '{name}' has shape {arr.shape}, expected rank "
                             f"{len(shape)} {shape} (batch first)")
        for axis, (want, got) in enumerate(zip(shape, arr.shape)):
            if isinstance(want, int) and want != got:
                raise SystemExit(f"error: input '{name}' has shape {arr.shape}: dim {axis} "
                                 f"is {got}, expected {want}")
        if dtype.startswith("int") and arr.dtype.kind not in "iu":
            raise SystemExit(f"error: input '{name}' takes integer indices, got {arr.dtype}")


def read_inputs(specs: list[str], inputs: list[tuple[str, tuple, str]]) -> list[np.ndarray]:
    """``--x FILE`` once per input in order, or ``--x NAME=FILE`` for each named input."""
    names = [name for name, _, _ in inputs]
    named = [s for s in specs if "=" in s and s.split("=", 1)[0] in names]
    if named and len(named) != len(specs):
        raise SystemExit("error: give every --x as NAME=FILE, or none of them")
    if named:
        given = dict(s.split("=", 1) for s in named)
        missing = [n for n in names if n not in given]
        if missing:
            raise SystemExit(f"error: no --x for input(s) {', '.join(missing)}")
        return [load_array(given[n]) for n in names]
    return [load_array(s) for s in specs]


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a safetensors state_dict (neuralc's weight names) exactly: strict=True."""
    from safetensors.torch import load_file

    model.load_state_dict(load_file(str(path)), strict=True)


def weights_fit(model: nn.Module, path: str | Path) -> bool:
    """Whether a safetensors file holds exactly the model's state_dict names and shapes."""
    from safetensors.torch import load_file

    return {k: tuple(v.shape) for k, v in load_file(str(path)).items()} == \
        {k: tuple(v.shape) for k, v in model.state_dict().items()}


def save_weights(model: nn.Module, path: str) -> None:
    """Save the state_dict as safetensors: the file neuralc's --weights reads."""
    from safetensors.torch import save_file

    # The metadata tells neuralc the tensors are in its layouts (its channels-last Flatten).
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, path,
              metadata={"neuralc_layout": "channels_last"})


def parse_value(text: str) -> Any:
    """A --hparam value: an int, a float, true/false, else the string itself."""
    t = text.strip()
    if t.lower() in ("true", "false"):
        return t.lower() == "true"
    for cast in (int, float):
        try:
            return cast(t)
        except ValueError:
            pass
    return t.strip("\"'")


def dsl_literal(value: Any) -> str:
    """A value as .nr text: true/false, None, double-quoted strings, numbers as Python."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "None"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(dsl_literal(v) for v in value) + ")"
    if isinstance(value, float):
        return repr(float(f"{value:.12g}"))  # 0.30000000000000004 -> 0.3
    return repr(value)


def write_best(source: str, spans: dict[str, list[tuple[int, int]]], values: dict[str, Any],
               path: str) -> None:
    """A copy of the .nr text with each HPO(...) replaced by the value chosen for it."""
    edits = sorted(((s, e, values[name]) for name, ss in spans.items() for s, e in ss),
                   reverse=True)
    text = source
    for start, end, value in edits:
        text = text[:start] + dsl_literal(value) + text[end:]
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def suggest(trial: Any, space: list[dict[str, Any]]) -> dict[str, Any]:
    """One Optuna suggestion per search parameter, given to every hyperparameter it stands for."""
    hp: dict[str, Any] = {}
    for p in space:
        if p["kind"] == "choice":
            value = trial.suggest_categorical(p["name"], p["choices"])
        elif p["kind"] == "int":
            value = trial.suggest_int(p["name"], p["low"], p["high"], step=p["step"] or 1,
                                      log=p["log"])
        else:
            value = trial.suggest_float(p["name"], p["low"], p["high"], step=p["step"],
                                        log=p["log"])
            value = float(f"{value:.12g}")  # a step of 0.1 gives 0.3, not 0.30000000000000004
        for path in p["paths"]:
            hp[path] = value
    return hp


def hpo_search(dataset: Dataset, space: list[dict[str, Any]], build: Callable[[dict], nn.Module],
               train: Callable[..., dict[str, list[float]]], *, trials: int, sampler: str,
               seed: int | None = None, log: Callable[[str], None] | None = print
               ) -> tuple[Any, nn.Module | None]:
    """An Optuna study over ``space``: each trial rebuilds the model with its suggestions, trains
    it, and scores it by the last epoch's val_loss (loss without validation data)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if sampler == "random":
        chosen = optuna.samplers.RandomSampler(seed=seed)
    elif sampler == "grid":
        chosen = optuna.samplers.GridSampler({p["name"]: p["choices"] for p in space}, seed=seed)
    else:
        chosen = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction="minimize", sampler=chosen)
    best: dict[str, Any] = {"score": math.inf, "model": None}

    def objective(trial: Any) -> float:
        hp = suggest(trial, space)
        if seed is not None:
            torch.manual_seed(seed)
        model = build(hp)
        history = train(model, dataset, hp=hp, seed=seed, log=None)
        metric = "val_loss" if "val_loss" in history else "loss"  # what the score is
        score = history[metric][-1]
        study.set_user_attr("score", f"{metric} (last epoch)")
        if log is not None:
            shown = ", ".join(f"{p['name']}={trial.params[p['name']]!r}" for p in space)
            log(f"trial {trial.number}: {shown}  {metric} {score:.4f}")
        if score < best["score"]:
            best["score"], best["model"] = score, model.cpu()
        return score

    study.optimize(objective, n_trials=trials)
    return study, best["model"]


def _run_trained(args: argparse.Namespace, arrays: list[np.ndarray], prog: str,
                 build: Callable[..., nn.Module], hparams: dict[str, Any] | None,
                 weights_file: str | Path | None, evaluate_model: Callable[..., dict] | None
                 ) -> int:
    """``predict`` and ``evaluate``: the model with its weights, in eval mode."""
    model = build() if hparams is None else build(dict(hparams))
    start = args.weights
    if start is None and weights_file is not None and Path(weights_file).exists():
        start = weights_file
    if start is None:
        print("note: no weights file; running PyTorch's initial weights", file=sys.stderr)
    else:
        load_weights(model, start)
    batch = args.batch_size or 256
    if args.command == "evaluate":
        assert evaluate_model is not None
        dataset = TensorDataset(*(to_tensor(a) for a in arrays), to_tensor(load_array(args.y)))
        result = evaluate_model(model, dataset, batch_size=batch, device=args.device)
        print("  ".join(f"{k} {v:.4f}" for k, v in result.items()))
        return 0
    dev = resolve_device(args.device)
    model.to(dev).eval()
    tensors = [to_tensor(a) for a in arrays]
    parts: list[list[np.ndarray]] = []
    with torch.no_grad():
        for i in range(0, len(arrays[0]), batch):
            out = model(*(t[i:i + batch].to(dev) for t in tensors))
            outs = out if isinstance(out, (tuple, list)) else (out,)
            parts.append([o.float().cpu().numpy() for o in outs])
    results = [np.concatenate(p) for p in zip(*parts)]
    path = args.out or f"{prog}.predictions.npy"
    if len(results) == 1:
        np.save(path, results[0])
    else:
        np.savez(path, *results)
    for i, y in enumerate(results):
        print(f"output {i}: shape {tuple(y.shape)} {y.dtype}")
    print(f"wrote {path}")
    return 0


def run_cli(argv: list[str] | None, *, prog: str, inputs: list[tuple[str, tuple, str]],
            build: Callable[..., nn.Module], train: Callable[..., dict], defaults: dict[str, Any],
            weights_file: str | Path | None = None, hparams: dict[str, Any] | None = None,
            search: Callable[..., tuple] | None = None,
            evaluate_model: Callable[..., dict] | None = None) -> int:
    """``train``, ``predict``, ``evaluate`` (and, for a model with HPO values, ``search``) from
    .npy files.

    ``train`` starts from ``--weights``, else from ``weights_file`` (the weights neuralc wrote
    beside the module) where it exists and fits (the .nr file's own hyperparameters), else from
    PyTorch's initialisers (``--no-weights`` asks for those); ``predict`` and ``evaluate`` run
    ``--weights`` (default ``weights_file``) in eval mode."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Train or run {prog} on .npy "
                                     "arrays.")
    sub = parser.add_subparsers(dest="command", required=True)
    commands = {"train": "train the model and save its weights (safetensors)",
                "predict": "run the model and save its output (.npy)"}
    if evaluate_model is not None:
        commands["evaluate"] = "the .nr file's loss and metrics on --x, --y"
    if search is not None:
        commands["search"] = "search the HPO values with Optuna, then keep the best"
    for name, text in commands.items():
        p = sub.add_parser(name, help=text)
        p.add_argument("--x", action="append", required=True, metavar="[NAME=]FILE",
                       help="input .npy, once per input (NAME=FILE for named inputs)")
        if name != "predict":
            p.add_argument("--y", required=True, metavar="FILE", help="target .npy")
        p.add_argument("--batch-size", type=int, help="batch size (default from the .nr file)")
        p.add_argument("--device", default=defaults["device"], help="auto, cpu, cuda, cuda:N")
        if name in ("predict", "evaluate"):
            default = f" (default {Path(weights_file).name} beside the module)" \
                if weights_file is not None else ""
            p.add_argument("--weights", help=f"weights to run (.safetensors){default}")
            if name == "predict":
                p.add_argument("--out", help=f"where to save the output (default "
                                             f"{prog}.predictions.npy)")
            continue
        p.add_argument("--epochs", type=int, help=f"epochs (default {defaults['epochs']})")
        p.add_argument("--validation-split", type=float,
                       help=f"last fraction held out (default {defaults['validation_split']})")
        p.add_argument("--seed", type=int, help="seed of the initial weights and the shuffling")
        p.add_argument("--out", help="where to save the weights "
                                     f"(default {prog}.trained.safetensors)")
        if name == "train":
            default = f"; default {Path(weights_file).name} beside the module" \
                if weights_file is not None else ""
            p.add_argument("--weights", help="initial weights (.safetensors, neuralc's names"
                                             f"{default})")
            p.add_argument("--no-weights", action="store_true",
                           help="start from PyTorch's initialisers, not a weights file")
            if hparams is not None:
                p.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                               help="set a hyperparameter (default: the .nr file's)")
        else:
            p.add_argument("--trials", type=int, default=10, help="Optuna trials (default 10)")
            p.add_argument("--write-best", metavar="FILE.nr",
                           help="a copy of the .nr file with the best values in place of HPO")
    args = parser.parse_args(argv)
    arrays = read_inputs(args.x, inputs)
    check_inputs(arrays, inputs)
    if args.command in ("predict", "evaluate"):
        return _run_trained(args, arrays, prog, build, hparams, weights_file, evaluate_model)
    dataset = TensorDataset(*(to_tensor(a) for a in arrays), to_tensor(load_array(args.y)))
    if args.seed is not None:
        torch.manual_seed(args.seed)
    options: dict[str, Any] = {"device": args.device, "seed": args.seed}
    for key in ("epochs", "batch_size", "validation_split"):
        if getattr(args, key) is not None:
            options[key] = getattr(args, key)
    if args.command == "search":
        assert search is not None
        study, model = search(dataset, trials=args.trials, write_best_to=args.write_best,
                              **options)
        print("best: " + ", ".join(f"{k}={v!r}" for k, v in study.best_params.items())
              + f"  {study.user_attrs.get('score', 'score')} {study.best_value:.4f}")
        if args.write_best:
            print(f"wrote {args.write_best}")
    else:
        if hparams is None:
            model = build()
        else:
            hp = dict(hparams)
            for item in args.hparam:
                key, _, value = item.partition("=")
                if key not in hp:
                    raise SystemExit(f"error: no hyperparameter '{key}'; known: {', '.join(hp)}")
                hp[key] = parse_value(value)
            model = build(hp)
            options["hp"] = hp
        start = args.weights
        if start is None and not args.no_weights and weights_file is not None:
            if not Path(weights_file).exists():
                why = "there is none"
            elif not weights_fit(model, weights_file):
                why = "its names and shapes do not fit the model built"
                if hparams is not None:
                    why += " with these hyperparameters"
            else:
                start, why = weights_file, ""
            if why:
                print(f"note: not starting from {Path(weights_file).name} ({why}); starting "
                      "from PyTorch's initialisers", file=sys.stderr)
        if start is not None:
            load_weights(model, start)
        train(model, dataset, **options)
    out = args.out or f"{prog}.trained.safetensors"
    if model is not None:
        save_weights(model, out)
        print(f"saved the weights to {out}")
    return 0
