"""An independent PyTorch executor for graph IR, used as the oracle of whole-model tests.

Each graph op is written here again with torch.nn.functional, channels-last at the op
boundary (as the DSL defines), so a model's reference-interpreter output can be compared with
PyTorch's on the same weights. It shares no numerics with neuralc's numpy references.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from neuralc.ir.core import Module, func_body


def act(name: str, x: torch.Tensor, alpha: float | None = None) -> torch.Tensor:
    table: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
        "linear": lambda t: t,
        "relu": F.relu,
        "leaky_relu": lambda t: F.leaky_relu(t, 0.2 if alpha is None else alpha),
        "elu": lambda t: F.elu(t, 1.0 if alpha is None else alpha),
        "selu": F.selu,
        "gelu": lambda t: F.gelu(t, approximate="none"),
        "swish": F.silu,
        "sigmoid": torch.sigmoid,
        "tanh": torch.tanh,
        "softmax": lambda t: torch.softmax(t, dim=-1),
        "softplus": F.softplus,
        "softsign": F.softsign,
        "relu6": F.relu6,
        "hard_sigmoid": F.hardsigmoid,
        "exponential": torch.exp,
        "hard_swish": F.hardswish,
        "mish": F.mish,
        "log_softmax": lambda t: F.log_softmax(t, dim=-1),
    }
    return table[name](x)


def _same_pads(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    out = math.ceil(size / s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def _spatial_pad(x: torch.Tensor, attrs: dict, ks: list[int], strides: list[int],
                 dil: list[int], value: float = 0.0) -> torch.Tensor:
    """Keras 'same' padding on a channels-first tensor (asymmetric: the extra at the end)."""
    if attrs.get("padding", "valid") != "same":
        return x
    pads: list[int] = []
    for i in reversed(range(len(ks))):
        lo, hi = _same_pads(x.shape[2 + i], ks[i], strides[i], dil[i])
        pads += [lo, hi]
    return F.pad(x, pads, value=value)


def _cf(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(-1, 1)


def _cl(x: torch.Tensor) -> torch.Tensor:
    return x.movedim(1, -1)


def _conv(a: dict, x: torch.Tensor, w: dict) -> torch.Tensor:
    nd = x.dim() - 2
    ks, st, dl = a["kernel_size"], a["strides"], a["dilation_rate"]
    xc = _spatial_pad(_cf(x), a, ks, st, dl)
    fn = F.conv1d if nd == 1 else F.conv2d
    y = fn(xc, w["weight"], w.get("bias"), stride=st, dilation=dl, groups=a.get("groups", 1))
    return act(a["activation"], _cl(y))


def _pool(kind: str, a: dict, x: torch.Tensor) -> torch.Tensor:
    nd = x.dim() - 2
    ks = a["pool_size"]
    st = a["strides"] or ks
    xc = _cf(x)
    ones = [1] * nd
    if kind == "max":
        xp = _spatial_pad(xc, a, ks, st, ones, value=-math.inf)
        fn = F.max_pool1d if nd == 1 else F.max_pool2d
        return _cl(fn(xp, ks, st))
    fn = F.avg_pool1d if nd == 1 else F.avg_pool2d
    xp = _spatial_pad(xc, a, ks, st, ones)
    mask = _spatial_pad(torch.ones_like(xc[:, :1]), a, ks, st, ones)
    return _cl(fn(xp, ks, st) / fn(mask, ks, st))


def _norm_axes(axes: int | list[int], rank: int) -> list[int]:
    axes = [axes] if isinstance(axes, int) else axes
    return sorted(ax % rank for ax in axes)


def _layer_norm(a: dict, x: torch.Tensor, w: dict) -> torch.Tensor:
    axes = _norm_axes(a["axis"], x.dim())
    mean = x.mean(dim=axes, keepdim=True)
    var = x.var(dim=axes, keepdim=True, unbiased=False)
    y = (x - mean) / torch.sqrt(var + a["epsilon"])
    if "weight" in w:
        y = y * w["weight"]
    if "bias" in w:
        y = y + w["bias"]
    return y


def _batch_norm(a: dict, x: torch.Tensor, w: dict) -> torch.Tensor:
    xc = x.movedim(a["axis"] % x.dim(), 1)
    y = F.batch_norm(xc, w["running_mean"], w["running_var"], w.get("weight"), w.get("bias"),
                     training=False, eps=a["epsilon"])
    return y.movedim(1, a["axis"] % x.dim())


# Per-op rules: kind (the graph op name without "graph.") -> fn(attrs, inputs, weights) ->
# one tensor or a tuple of tensors (one per result). Families register more in oracle_*.py.
RULES: dict[str, Callable[[dict, list[torch.Tensor], dict], object]] = {}


def rule(*kinds: str):
    def deco(fn):
        for k in kinds:
            assert k not in RULES, k
            RULES[k] = fn
        return fn
    return deco


def _core(kind: str, a: dict, xs: list[torch.Tensor], w: dict) -> torch.Tensor:
    x = xs[0]
    if kind in ("dense", "output"):
        return act(a["activation"], F.linear(x, w["weight"], w.get("bias")))
    if kind in ("conv1d", "conv2d"):
        return _conv(a, x, w)
    if kind in ("max_pooling1d", "max_pooling2d"):
        return _pool("max", a, x)
    if kind in ("average_pooling1d", "average_pooling2d"):
        return _pool("avg", a, x)
    if kind.startswith("global_"):
        dims = list(range(1, x.dim() - 1))
        y = x.amax(dim=dims, keepdim=True) if "max" in kind else x.mean(dim=dims, keepdim=True)
        return y if a.get("keepdims") else y.flatten(1) if x.dim() > 2 else y
    if kind == "flatten":
        return x.flatten(1)
    if kind == "reshape":
        return x.reshape(x.shape[0], *a["target_shape"])
    if kind == "dropout":
        return x
    if kind == "batch_normalization":
        return _batch_norm(a, x, w)
    if kind == "layer_normalization":
        return _layer_norm(a, x, w)
    if kind == "embedding":
        return F.embedding(x.long(), w["weight"])
    if kind == "activation":
        return act(a["activation"], x, a.get("alpha"))
    if kind == "add":
        return sum(xs[1:], xs[0])
    if kind == "subtract":
        return xs[0] - xs[1]
    if kind == "multiply":
        out = xs[0]
        for t in xs[1:]:
            out = out * t
        return out
    if kind == "average":
        return torch.stack(xs).mean(dim=0)
    if kind == "maximum":
        return torch.stack(xs).amax(dim=0)
    if kind == "concatenate":
        return torch.cat(xs, dim=a["axis"])
    if kind == "residual_connection":
        return act(a["activation"], xs[0] + xs[1])
    raise KeyError(kind)


_CORE_KINDS = (
    "dense", "output", "conv1d", "conv2d", "max_pooling1d", "max_pooling2d", "average_pooling1d",
    "average_pooling2d", "global_average_pooling1d", "global_average_pooling2d",
    "global_max_pooling1d", "global_max_pooling2d", "flatten", "reshape", "dropout",
    "batch_normalization", "layer_normalization", "embedding", "activation", "add", "subtract",
    "multiply", "average", "maximum", "concatenate", "residual_connection",
)
for _k in _CORE_KINDS:
    RULES[_k] = (lambda kind: lambda a, xs, w: _core(kind, a, xs, w))(_k)


def _load_family_rules() -> None:
    """Import tests/e2e/oracle_*.py: each registers the rules of one layer family."""
    import importlib
    from pathlib import Path

    for f in sorted(Path(__file__).parent.glob("oracle_*.py")):
        importlib.import_module(f.stem)





def run_torch(module: Module, inputs: list[np.ndarray], weights: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run the module's function with torch ops, float32 as the DSL."""
    _load_family_rules()
    body = func_body(module.funcs[0])
    env: dict[int, torch.Tensor] = {id(a): torch.from_numpy(np.ascontiguousarray(x))
                                    for a, x in zip(body.args, inputs)}
    tw = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()}
    with torch.no_grad():
        for op in body.ops:
            if op.name == "func.return":
                return [env[id(v)].numpy() for v in op.operands]
            kind = op.name.split(".", 1)[1]
            prefix = op.attributes["name"] + "."
            w = {k[len(prefix):]: t for k, t in tw.items() if k.startswith(prefix)}
            if kind not in RULES:
                raise NotImplementedError(f"torch oracle has no rule for graph.{kind}")
            out = RULES[kind](op.attributes, [env[id(v)] for v in op.operands], w)
            outs = out if isinstance(out, tuple) else (out,)
            for r, t in zip(op.results, outs):
                env[id(r)] = t
    raise AssertionError("function without return")
