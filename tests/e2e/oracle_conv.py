"""Torch-oracle rules for the convolution and pooling family, resampling and shape layers.

Written with torch ops only, independently of neuralc's numpy references: channels move to
dim 1 for torch's functions and back. Keras's 'same' padding is F.pad with the asymmetric split
(written again here). Transposed convolutions run F.conv_transposeNd without padding and then
F.pad the result with the pads Keras's JAX backend gives its dilated-input convolution
(``left = min(ceil(p / 2), eff - 1)``, ``right = p - left`` for a total ``p``), translated to a
crop of ``eff - 1 - left`` at the start and an extension of ``right - (eff - 1)`` at the end.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch_oracle import act, rule


def _cf(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 1)


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def _same(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _pad(xc: torch.Tensor, pads: list[tuple[int, int]], value: float = 0.0) -> torch.Tensor:
    flat: list[int] = []
    for lo, hi in reversed(pads):
        flat += [lo, hi]
    return F.pad(xc, flat, value=value)


def _keras_pad(xc: torch.Tensor, a: dict, ks: list[int], st: list[int], dl: list[int],
               value: float = 0.0) -> torch.Tensor:
    if a["padding"] != "same":
        return xc
    return _pad(xc, [_same(xc.shape[2 + i], ks[i], st[i], dl[i]) for i in range(len(ks))], value)


CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


@rule("conv3d")
def _conv3d(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    ks, st, dl = a["kernel_size"], a["strides"], a["dilation_rate"]
    xc = _keras_pad(_cf(xs[0]), a, ks, st, dl)
    y = F.conv3d(xc, w["weight"], w.get("bias"), stride=st, dilation=dl, groups=a["groups"])
    return act(a["activation"], _cl(y))


@rule("conv1d_transpose", "conv2d_transpose", "conv3d_transpose")
def _conv_transpose(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    ks, st, dl = a["kernel_size"], a["strides"], a["dilation_rate"]
    n = len(ks)
    y = CONV_T[n](_cf(xs[0]), w["weight"], None, stride=st, dilation=dl, groups=a["groups"])
    op = a["output_padding"]
    flat: list[int] = []
    for i in reversed(range(n)):
        eff = (ks[i] - 1) * dl[i] + 1
        if a["padding"] == "valid":
            extra = max(eff, st[i]) - eff if op is None else op[i]
            left, right = eff - 1, eff - 1 + extra
        else:
            total = st[i] + eff - 2 if op is None else eff + eff % 2 - 2 + op[i]
            left = min(total // 2 + total % 2, eff - 1)
            right = total - left
        flat += [-(eff - 1 - left), right - (eff - 1)]
    y = F.pad(y, flat)
    if "bias" in w:
        y = y + w["bias"].reshape(-1, *([1] * n))
    return act(a["activation"], _cl(y))


@rule("depthwise_conv1d", "depthwise_conv2d")
def _depthwise(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    ks, st, dl = a["kernel_size"], a["strides"], a["dilation_rate"]
    xc = _keras_pad(_cf(xs[0]), a, ks, st, dl)
    y = CONV[len(ks)](xc, w["weight"], w.get("bias"), stride=st, dilation=dl,
                      groups=xc.shape[1])
    return act(a["activation"], _cl(y))


@rule("separable_conv1d", "separable_conv2d")
def _separable(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    ks, st, dl = a["kernel_size"], a["strides"], a["dilation_rate"]
    conv = CONV[len(ks)]
    xc = _keras_pad(_cf(xs[0]), a, ks, st, dl)
    mid = conv(xc, w["depthwise.weight"], None, stride=st, dilation=dl, groups=xc.shape[1])
    y = conv(mid, w["pointwise.weight"], w.get("pointwise.bias"))
    return act(a["activation"], _cl(y))


@rule("max_pooling3d")
def _max3d(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    ks = a["pool_size"]
    st = a["strides"] or ks
    xc = _keras_pad(_cf(xs[0]), a, ks, st, [1, 1, 1], value=-math.inf)
    return _cl(F.max_pool3d(xc, ks, st))


@rule("average_pooling3d")
def _avg3d(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    """Keras's 'same' average divides by the real elements: count_include_pad=False."""
    ks = a["pool_size"]
    st = a["strides"] or ks
    xc = _cf(xs[0])
    if a["padding"] == "same":
        # Zero-pad both the data and a mask of ones; the mask's average counts the real elements.
        pads = [_same(xc.shape[2 + i], ks[i], st[i]) for i in range(3)]
        xp, mask = _pad(xc, pads), _pad(torch.ones_like(xc[:, :1]), pads)
        return _cl(F.avg_pool3d(xp, ks, st) / F.avg_pool3d(mask, ks, st))
    return _cl(F.avg_pool3d(xc, ks, st))


@rule("global_max_pooling3d")
def _global_max3d(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return xs[0].amax(dim=(1, 2, 3), keepdim=a["keepdims"])


@rule("global_average_pooling3d")
def _global_avg3d(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return xs[0].mean(dim=(1, 2, 3), keepdim=a["keepdims"])


ADAPTIVE = {
    ("avg", 1): F.adaptive_avg_pool1d, ("avg", 2): F.adaptive_avg_pool2d,
    ("avg", 3): F.adaptive_avg_pool3d, ("max", 1): F.adaptive_max_pool1d,
    ("max", 2): F.adaptive_max_pool2d, ("max", 3): F.adaptive_max_pool3d,
}


def _adaptive(kind: str):
    def fn(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
        size = a["output_size"]
        return _cl(ADAPTIVE[(kind, len(size))](_cf(xs[0]), size))
    return fn


for _n in (1, 2, 3):
    rule(f"adaptive_average_pooling{_n}d")(_adaptive("avg"))
    rule(f"adaptive_max_pooling{_n}d")(_adaptive("max"))


def _factors(a: dict) -> list[int]:
    return [a["size"]] if isinstance(a["size"], int) else a["size"]


@rule("up_sampling1d", "up_sampling2d", "up_sampling3d")
def _up(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    xc = _cf(xs[0])
    size = [d * f for d, f in zip(xc.shape[2:], _factors(a))]
    if a.get("interpolation", "nearest") == "bilinear":
        return _cl(F.interpolate(xc, size=size, mode="bilinear", align_corners=False))
    return _cl(F.interpolate(xc, size=size, mode="nearest"))


def _pairs(v: list) -> list[tuple[int, int]]:
    return [(v[0], v[1])] if isinstance(v[0], int) else [(p[0], p[1]) for p in v]


@rule("zero_padding1d", "zero_padding2d", "zero_padding3d")
def _zero_pad(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return _cl(_pad(_cf(xs[0]), _pairs(a["padding"])))


@rule("cropping1d", "cropping2d", "cropping3d")
def _crop(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return _cl(_pad(_cf(xs[0]), [(-lo, -hi) for lo, hi in _pairs(a["cropping"])]))


@rule("permute")
def _permute(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return xs[0].permute(0, *a["dims"])


@rule("repeat_vector")
def _repeat(a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    return xs[0].unsqueeze(1).expand(-1, a["n"], -1)
