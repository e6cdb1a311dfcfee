"""Torch-oracle rules for the attention family: attention, positional encodings, transformers.

Written with torch only, independently of neuralc's numpy references: the transformer blocks are
torch.nn.TransformerEncoderLayer / DecoderLayer loading the layer's weights, attention is
torch.nn.functional.scaled_dot_product_attention, the sinusoid table is PyTorch's tutorial form.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch_oracle import rule


def _causal_allowed(tq: int, tk: int) -> torch.Tensor:
    return torch.ones(tq, tk, dtype=torch.bool).tril()


@rule("multi_head_attention")
def _mha(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    mem = xs[1] if len(xs) > 1 else x
    h = a["num_heads"]

    def heads(t: torch.Tensor) -> torch.Tensor:
        n, s, e = t.shape
        return t.reshape(n, s, h, e // h).transpose(1, 2)

    q = heads(F.linear(x, w["q_proj.weight"], w.get("q_proj.bias")))
    k = heads(F.linear(mem, w["k_proj.weight"], w.get("k_proj.bias")))
    v = heads(F.linear(mem, w["v_proj.weight"], w.get("v_proj.bias")))
    o = F.scaled_dot_product_attention(q, k, v, is_causal=a["causal"])
    n, _, s, dv = o.shape
    return F.linear(o.transpose(1, 2).reshape(n, s, h * dv), w["out_proj.weight"],
                    w.get("out_proj.bias"))


@rule("attention")
def _attention(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    q = xs[0]
    v = xs[1] if len(xs) > 1 else q
    k = xs[2] if len(xs) > 2 else v
    scale = float(w["scale"]) if a["use_scale"] else 1.0
    if a["score_mode"] == "dot":
        return F.scaled_dot_product_attention(q, k, v, is_causal=a["causal"], scale=scale)
    scores = float(w["concat_score_weight"]) * torch.tanh(
        scale * (q.unsqueeze(2) + k.unsqueeze(1))).sum(-1)
    if a["causal"]:
        scores = scores.masked_fill(~_causal_allowed(q.shape[1], k.shape[1]), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


@rule("positional_encoding")
def _positional_encoding(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    t, d = x.shape[1], x.shape[2]
    if a["encoding"] == "learned":
        return x + w["weight"][:t]
    pos = torch.arange(t, dtype=torch.float64).unsqueeze(1)
    div = torch.exp(torch.arange(0, d, 2, dtype=torch.float64) * (-math.log(10000.0) / d))
    pe = torch.zeros(t, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(pos * div)
    pe[:, 1::2] = torch.cos(pos * div)[:, : d // 2]
    return x + pe.to(x.dtype)


def _block_kwargs(a: dict) -> dict:
    return {"dim_feedforward": a["ff_dim"], "dropout": a["dropout"],
            "activation": a["activation"], "layer_norm_eps": a["epsilon"], "batch_first": True,
            "norm_first": a["norm_first"], "bias": a["use_bias"]}


def _causal_mask(n: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.nn.Transformer.generate_square_subsequent_mask(n, dtype=dtype)


@rule("transformer_encoder")
def _encoder(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    m = torch.nn.TransformerEncoderLayer(x.shape[-1], a["num_heads"], **_block_kwargs(a))
    m.load_state_dict(w, strict=True)
    mask = _causal_mask(x.shape[1], x.dtype) if a["causal"] else None
    return m.eval()(x, src_mask=mask, is_causal=a["causal"])


@rule("transformer_decoder")
def _decoder(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x, mem = xs
    m = torch.nn.TransformerDecoderLayer(x.shape[-1], a["num_heads"], **_block_kwargs(a))
    m.load_state_dict(w, strict=True)
    mask = _causal_mask(x.shape[1], x.dtype) if a["causal"] else None
    return m.eval()(x, mem, tgt_mask=mask, tgt_is_causal=a["causal"])
