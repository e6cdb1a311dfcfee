"""Windowed and global pooling references against torch.nn.functional.

'same' max pooling: F.pad with -inf, then a valid max_pool. 'same' average pooling divides by
the number of real elements (Keras), computed in torch as avg_pool(pad(x)) / avg_pool(pad(1)).
Tolerance: float32 rtol=1e-5, atol=1e-5 (windows of at most 27 elements; global means over a
few hundred).
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
    torch_pad,
    tt,
)

from neuralc.ir.shapes import ShapeError

MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}


def torch_pool(kind: str, attrs: dict, x: np.ndarray) -> np.ndarray:
    k = attrs["pool_size"]
    s = attrs["strides"] if attrs["strides"] is not None else k
    n = len(k)
    xc = to_cf(tt(x))
    pads = [(0, 0)] * n
    if attrs["padding"] == "same":
        pads = [keras_same_pads(xc.shape[2 + i], k[i], s[i]) for i in range(n)]
    if kind == "max":
        y = MAX[n](torch_pad(xc, pads, -float("inf")), k, s)
    else:
        ones = torch.ones_like(xc[:, :1])
        y = AVG[n](torch_pad(xc, pads), k, s) / AVG[n](torch_pad(ones, pads), k, s)
    return to_cl(y).numpy()


def check(layer: str, x: np.ndarray, rng: np.random.Generator, *args: object, **kw: object) -> None:
    s = spec(layer)
    attrs = make_attrs(s, *args, **kw)
    too_big = any(k > n for k, n in zip(attrs["pool_size"], x.shape[1:-1]))
    if attrs["padding"] == "valid" and too_big:
        with pytest.raises(ShapeError, match="does not fit its input"):
            run_layer(s, attrs, [x], rng)
        return
    y, _ = run_layer(s, attrs, [x], rng)
    kind = "max" if layer.startswith("Max") else "avg"
    np.testing.assert_allclose(y, torch_pool(kind, attrs, x), rtol=RTOL, atol=ATOL)


ARGS_2D = [
    ((2, 2),), ((3, 3),), ((2, 2), None, "same"), ((3, 3), None, "same"), ((3, 3), 1, "same"),
    ((3, 3), 2), ((3, 3), 2, "same"), ((2, 3), (1, 2), "same"), ((4, 2), (3, 1)), (5, 3, "same"),
    (7,),
]


@pytest.mark.parametrize("layer", ["MaxPooling2D", "AveragePooling2D"])
@pytest.mark.parametrize("args", ARGS_2D, ids=str)
@pytest.mark.parametrize("shape", [(2, 7, 9, 3), (1, 6, 6, 5)])
def test_pool2d(layer: str, args: tuple, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    check(layer, rng.normal(size=shape).astype(np.float32), rng, *args)


@pytest.mark.parametrize("layer", ["MaxPooling1D", "AveragePooling1D"])
@pytest.mark.parametrize(
    "args", [(), (3,), (3, 2), (3, 2, "same"), (4, None, "same"), (2, 3, "same")], ids=str)
@pytest.mark.parametrize("shape", [(3, 11, 4), (2, 8, 2)])
def test_pool1d(layer: str, args: tuple, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    check(layer, rng.normal(size=shape).astype(np.float32), rng, *args)


@pytest.mark.parametrize("layer", ["MaxPooling3D", "AveragePooling3D"])
@pytest.mark.parametrize("args", [(), ((2, 3, 2), None, "same"), (3, 2, "same")], ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 6, 7, 3), (1, 4, 4, 4, 2)])
def test_pool3d(layer: str, args: tuple, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    check(layer, rng.normal(size=shape).astype(np.float32), rng, *args)


def test_pool_pytorch_aliases(rng: np.random.Generator) -> None:
    x = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)
    check("MaxPooling2D", x, rng, kernel_size=3, stride=2)
    check("AvgPool2D", x, rng, kernel_size=3, stride=2, padding="SAME")


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("batch", [1, 4])
def test_global_pooling(n: int, kind: str, keepdims: bool, batch: int,
                        rng: np.random.Generator) -> None:
    layer = f"Global{kind}Pooling{n}D"
    s = spec(layer)
    attrs = make_attrs(s, keepdims=keepdims)
    x = rng.normal(size=(batch, *[5 + i for i in range(n)], 6)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    t = tt(x)
    axes = list(range(1, n + 1))
    if kind == "Max":
        ref = t.amax(dim=axes, keepdim=keepdims)
    else:
        ref = t.mean(dim=axes, keepdim=keepdims)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)
