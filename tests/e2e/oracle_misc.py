"""Torch-oracle rules for issue 3's layers: regularisation (identity at inference), the extra
normalisations, the activation layers and SqueezeExcitation.

Written with torch.nn.functional only, independently of neuralc's numpy references; channels
are moved to dim 1 where the torch function wants channels-first (F.group_norm,
F.instance_norm, F.prelu), and normalised axes are moved to the end for F.rms_norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch_oracle import rule


@rule("spatial_dropout1d", "spatial_dropout2d", "spatial_dropout3d", "gaussian_noise",
      "gaussian_dropout", "alpha_dropout", "activity_regularization")
def _identity(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    """Random layers are inactive at inference; torch's eval-mode dropouts are the identity."""
    return xs[0]


def _channel_dim(a: dict, x: torch.Tensor) -> int:
    return a["axis"] % x.dim()


@rule("group_normalization")
def _group_norm(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    ax = _channel_dim(a, x)
    groups = x.shape[ax] if a["groups"] == -1 else a["groups"]
    y = F.group_norm(x.movedim(ax, 1), groups, w.get("weight"), w.get("bias"), eps=a["epsilon"])
    return y.movedim(1, ax)


@rule("instance_normalization")
def _instance_norm(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    ax = _channel_dim(a, x)
    y = F.instance_norm(x.movedim(ax, 1), weight=w.get("weight"), bias=w.get("bias"),
                        eps=a["epsilon"])
    return y.movedim(1, ax)


@rule("rms_normalization")
def _rms_norm(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    axes = sorted(ax % x.dim() for ax in a["axis"])
    k = len(axes)
    moved = x.movedim(axes, list(range(x.dim() - k, x.dim())))
    y = F.rms_norm(moved, moved.shape[-k:], w.get("weight"), eps=a["epsilon"])
    return y.movedim(list(range(x.dim() - k, x.dim())), axes)


@rule("re_lu")
def _relu(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    thr = a["threshold"]
    pos = F.threshold(x, thr, 0.0)  # x if x > threshold else 0
    if a["max_value"] is not None:
        pos = torch.clamp(pos, max=a["max_value"])
    return pos - a["negative_slope"] * F.relu(thr - x)


@rule("leaky_re_lu")
def _leaky_relu(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return F.leaky_relu(xs[0], a["negative_slope"])


@rule("p_re_lu")
def _prelu(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    return F.prelu(x.movedim(-1, 1), w["weight"]).movedim(1, -1)


@rule("elu")
def _elu(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return F.elu(xs[0], a["alpha"])


@rule("softmax")
def _softmax(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    axes = [ax % x.dim() for ax in a["axis"]]
    return torch.exp(x - torch.logsumexp(x, dim=axes, keepdim=True))


@rule("squeeze_excitation")
def _squeeze_excitation(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    s = x.mean(dim=list(range(1, x.dim() - 1)))
    h = F.relu(F.linear(s, w["fc1.weight"], w["fc1.bias"]))
    g = torch.sigmoid(F.linear(h, w["fc2.weight"], w["fc2.bias"]))
    return x * g.reshape(x.shape[0], *([1] * (x.dim() - 2)), x.shape[-1])
