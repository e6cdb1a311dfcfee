"""Conv1D/2D/3D references against torch.nn.functional.convNd on the same weights.

Keras 'same' padding is reproduced on the torch side with F.pad (the asymmetric split, written
out independently in layer_helpers) followed by a valid convolution; 'causal' pads the start.
Tolerance: float32 rtol=1e-5, atol=1e-5; the reductions are at most a few hundred terms.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layer_helpers import (
    ATOL,
    RTOL,
    keras_same_pads,
    make_attrs,
    run_layer,
    spec,
    to_cf,
    to_cl,
    torch_act,
    torch_pad,
    tt,
)

from neuralc.ir.activations import activation_defs
from neuralc.ir.shapes import ShapeError

CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def torch_conv(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    n = len(attrs["kernel_size"])
    xc = to_cf(tt(x))
    k, s, d = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]
    if attrs["padding"] == "same":
        xc = torch_pad(xc, [keras_same_pads(xc.shape[2 + i], k[i], s[i], d[i]) for i in range(n)])
    elif attrs["padding"] == "causal":
        xc = torch_pad(xc, [((k[0] - 1) * d[0], 0)])
    bias = tt(w["bias"]) if "bias" in w else None
    y = CONV_FN[n](xc, tt(w["weight"]), bias, stride=s, dilation=d, groups=attrs["groups"])
    return torch_act(attrs["activation"], to_cl(y)).numpy()


def check(layer: str, x: np.ndarray, rng: np.random.Generator, *args: object, **kw: object) -> None:
    s = spec(layer)
    attrs = make_attrs(s, *args, **kw)
    eff = [(k - 1) * d + 1 for k, d in zip(attrs["kernel_size"], attrs["dilation_rate"])]
    if attrs["padding"] == "valid" and any(e > n for e, n in zip(eff, x.shape[1:-1])):
        with pytest.raises(ShapeError, match="does not fit its input"):
            run_layer(s, attrs, [x], rng)
        return
    y, w = run_layer(s, attrs, [x], rng)
    np.testing.assert_allclose(y, torch_conv(attrs, x, w), rtol=RTOL, atol=ATOL)


CASES_2D = [
    {},
    {"padding": "same"},
    {"strides": 2},
    {"strides": 2, "padding": "same"},
    {"strides": (3, 2), "padding": "same"},
    {"strides": (2, 3)},
    {"dilation_rate": 2},
    {"dilation_rate": (2, 3), "padding": "same"},
    {"groups": 2},
    {"groups": 4, "padding": "same", "strides": 2},
    {"use_bias": False},
]


@pytest.mark.parametrize("kw", CASES_2D, ids=str)
@pytest.mark.parametrize("batch,h,w", [(1, 9, 9), (3, 8, 11)])
@pytest.mark.parametrize("kernel", [(3, 3), (2, 4), 1, 5])
def test_conv2d(kw: dict, batch: int, h: int, w: int, kernel: object,
                rng: np.random.Generator) -> None:
    x = rng.normal(size=(batch, h, w, 8)).astype(np.float32)
    check("Conv2D", x, rng, 8, kernel, "relu", **kw)


@pytest.mark.parametrize("kw", [
    {}, {"padding": "same"}, {"padding": "causal"}, {"strides": 2, "padding": "same"},
    {"strides": 3}, {"dilation_rate": 3, "padding": "causal"},
    {"dilation_rate": 2, "padding": "same"},
    {"groups": 3, "padding": "same"}, {"use_bias": False, "strides": 2},
], ids=str)
@pytest.mark.parametrize("batch,t", [(2, 12), (5, 7)])
@pytest.mark.parametrize("kernel", [3, 4])
def test_conv1d(kw: dict, batch: int, t: int, kernel: int, rng: np.random.Generator) -> None:
    x = rng.normal(size=(batch, t, 6)).astype(np.float32)
    check("Conv1D", x, rng, 9, kernel, "tanh", **kw)


@pytest.mark.parametrize("kw", [
    {}, {"padding": "same", "strides": 2}, {"dilation_rate": (1, 2, 1)}, {"groups": 2},
], ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 6, 7, 4), (1, 4, 4, 4, 4)])
def test_conv3d(kw: dict, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    x = rng.normal(size=shape).astype(np.float32)
    check("Conv3D", x, rng, 6, (2, 3, 2), **kw)


@pytest.mark.parametrize("act", sorted(d.name for d in activation_defs()))
def test_conv2d_every_activation(act: str, rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    check("Conv2D", x, rng, 4, 3, act, padding="same")


def test_conv2d_pytorch_aliases_and_module_state_dict(rng: np.random.Generator) -> None:
    """The weights load into torch.nn.Conv2d as they are (names, layout, shapes)."""
    s = spec("Conv2D")
    attrs = make_attrs(s, out_channels=6, kernel=(3, 2), stride=1, dilation=2, bias=True, groups=3)
    x = rng.normal(size=(2, 10, 9, 6)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    m = torch.nn.Conv2d(6, 6, (3, 2), dilation=2, groups=3)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = to_cl(m(to_cf(tt(x)))).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
