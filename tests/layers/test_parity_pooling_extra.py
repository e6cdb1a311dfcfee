"""Adaptive pooling against torch's F.adaptive_*_poolNd, and Keras's 'same' pooling on odd sizes.

Adaptive windows are PyTorch's: output i of an axis of n elements pools
[floor(i * n / out), ceil((i + 1) * n / out)); checked by hand on one case and against torch on
sizes that divide, do not divide, and are smaller than the output. 'same' pooling: max pads
with -inf, average divides by the real elements (Keras), the extra padding at the end; checked
by hand and against torch (F.pad + valid pooling, and a mask of ones for the count).
Tolerance: float32 rtol=1e-5, atol=1e-5 (means of at most a few dozen elements).
"""

from __future__ import annotations

import os

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
    run_layer,
    spec,
    to_cf,
    to_cl,
    torch_pad,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate, sym
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import ParamError

ADAPTIVE = {
    ("Average", 1): F.adaptive_avg_pool1d, ("Average", 2): F.adaptive_avg_pool2d,
    ("Average", 3): F.adaptive_avg_pool3d, ("Max", 1): F.adaptive_max_pool1d,
    ("Max", 2): F.adaptive_max_pool2d, ("Max", 3): F.adaptive_max_pool3d,
}


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("out", [1, 3, 4, (2, 5), (7, 1)])
@pytest.mark.parametrize("batch,h,w", [(1, 8, 8), (3, 7, 5), (2, 3, 2)])
def test_adaptive_pool2d(kind: str, out: object, batch: int, h: int, w: int,
                         rng: np.random.Generator) -> None:
    s = spec(f"Adaptive{kind}Pooling2D")
    attrs = make_attrs(s, out)
    x = rng.normal(size=(batch, h, w, 3)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    ref = to_cl(ADAPTIVE[(kind, 2)](to_cf(tt(x)), attrs["output_size"])).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("out", [1, 2, 5, 9])
@pytest.mark.parametrize("batch,t", [(2, 10), (4, 7)])
def test_adaptive_pool1d(kind: str, out: int, batch: int, t: int,
                         rng: np.random.Generator) -> None:
    s = spec(f"Adaptive{kind}Pooling1D")
    attrs = make_attrs(s, out)
    x = rng.normal(size=(batch, t, 4)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    ref = to_cl(ADAPTIVE[(kind, 1)](to_cf(tt(x)), out)).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("out", [2, (1, 3, 2)])
@pytest.mark.parametrize("shape", [(2, 4, 5, 6, 2), (1, 3, 3, 7, 3)])
def test_adaptive_pool3d(kind: str, out: object, shape: tuple[int, ...],
                         rng: np.random.Generator) -> None:
    s = spec(f"Adaptive{kind}Pooling3D")
    attrs = make_attrs(s, out)
    x = rng.normal(size=shape).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    ref = to_cl(ADAPTIVE[(kind, 3)](to_cf(tt(x)), attrs["output_size"])).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_adaptive_windows_by_hand() -> None:
    """5 -> 3: windows [0, 2), [1, 4), [3, 5) (they overlap); 2 -> 3: [0, 1), [0, 2), [1, 2)."""
    x = np.array([1.0, 2.0, 6.0, 4.0, 5.0], np.float32).reshape(1, 5, 1)
    avg, mx = spec("AdaptiveAveragePooling1D"), spec("AdaptiveMaxPooling1D")
    (y,) = avg.reference(make_attrs(avg, 3), [x], {})
    np.testing.assert_allclose(y.ravel(), [1.5, 4.0, 4.5], rtol=1e-6)
    (y,) = mx.reference(make_attrs(mx, 3), [x], {})
    np.testing.assert_array_equal(y.ravel(), [2.0, 6.0, 5.0])
    x2 = np.array([3.0, 5.0], np.float32).reshape(1, 2, 1)
    (y,) = avg.reference(make_attrs(avg, 3), [x2], {})
    np.testing.assert_allclose(y.ravel(), [3.0, 4.0, 5.0], rtol=1e-6)


def test_adaptive_against_keras(rng: np.random.Generator) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    x = rng.normal(size=(2, 7, 5, 3)).astype(np.float32)
    for kind in ("Average", "Max"):
        s = spec(f"Adaptive{kind}Pooling2D")
        y, _ = run_layer(s, make_attrs(s, (3, 2)), [x], rng)
        layer = getattr(keras.layers, f"Adaptive{kind}Pooling2D")((3, 2))
        np.testing.assert_allclose(y, np.asarray(layer(x).detach().cpu()), rtol=RTOL, atol=ATOL)


def test_adaptive_shapes_flops_and_errors() -> None:
    s = spec("AdaptiveAveragePooling2D")
    attrs = make_attrs(s, (7, 7))
    (t,) = s.shape(attrs, [ttype("batch", "h", "w", 32)], SimpleContext())
    assert t.shape == (sym("batch"), 7, 7, 32)
    flops = s.flops(attrs, [ttype("batch", "h", "w", 32)], [t])
    for h, w in ((7, 7), (14, 9), (5, 30), (3, 3)):
        rows = sum(min(-(-(i + 1) * h // 7), h) - i * h // 7 for i in range(7))
        cols = sum(min(-(-(i + 1) * w // 7), w) - i * w // 7 for i in range(7))
        assert evaluate(flops, {"h": h, "w": w}) == rows * cols * 32
    assert s.flops(attrs, [ttype("batch", 14, 14, 2)], [t]) == 14 * 14 * 2
    with pytest.raises(ShapeError, match=r"AdaptiveAveragePooling2D expects input \(batch, height"):
        s.shape(attrs, [ttype("batch", "t", 8)], SimpleContext())
    m1 = spec("AdaptiveMaxPool1D")
    assert m1 is spec("AdaptiveMaxPooling1D")
    assert m1.shape(make_attrs(m1, 4), [ttype("batch", "t", 8)], SimpleContext())[0].shape == \
        (sym("batch"), 4, 8)


@pytest.mark.parametrize("layer,args,message", [
    ("AdaptiveAveragePooling2D", (0,), "'output_size' must be a positive integer"),
    ("AdaptiveMaxPooling2D", ((2, 2, 2),), "'output_size' must be a positive integer or a tuple "
     "of 2"),
    ("AdaptiveMaxPooling1D", ("big",), "'output_size' must be"),
])
def test_adaptive_bad_values(layer: str, args: tuple, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args)
    assert message in str(e.value)
    with pytest.raises(ParamError, match="missing the required parameter 'output_size'"):
        make_attrs(layer)


# -- 'same' pooling on odd sizes (asymmetric padding) -------------------------------------------


def torch_same_pool(kind: str, attrs: dict, x: np.ndarray) -> np.ndarray:
    k = attrs["pool_size"]
    s = attrs["strides"] or k
    n = len(k)
    xc = to_cf(tt(x))
    pads = [keras_same_pads(xc.shape[2 + i], k[i], s[i]) for i in range(n)]
    mx = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}[n]
    av = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[n]
    if kind == "Max":
        return to_cl(mx(torch_pad(xc, pads, -float("inf")), k, s)).numpy()
    ones = torch.ones_like(xc[:, :1])
    return to_cl(av(torch_pad(xc, pads), k, s) / av(torch_pad(ones, pads), k, s)).numpy()


@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("n,args,shape", [
    (1, (2, 2), (2, 7, 3)), (1, (3, 2), (3, 9, 2)), (1, (4, 3), (2, 5, 2)),
    (2, ((3, 2), (2, 3)), (2, 7, 9, 2)), (2, (2, None), (1, 5, 5, 3)), (2, (5, 3), (3, 11, 7, 2)),
    (3, (2, None), (2, 3, 5, 7, 2)), (3, ((3, 2, 2), (2, 1, 3)), (1, 5, 4, 7, 2)),
])
def test_same_pooling_odd_sizes(kind: str, n: int, args: tuple, shape: tuple[int, ...],
                                rng: np.random.Generator) -> None:
    s = spec(f"{kind}Pooling{n}D")
    attrs = make_attrs(s, *args, "same")
    x = rng.normal(size=shape).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    np.testing.assert_allclose(y, torch_same_pool(kind, attrs, x), rtol=RTOL, atol=ATOL)


def test_same_pooling_by_hand() -> None:
    """Length 3, window 2, stride 2: Keras pads one element at the end, outside the average."""
    x = np.array([-1.0, -2.0, -3.0], np.float32).reshape(1, 3, 1)
    avg, mx = spec("AveragePooling1D"), spec("MaxPooling1D")
    (y,) = avg.reference(make_attrs(avg, 2, 2, "same"), [x], {})
    np.testing.assert_allclose(y.ravel(), [-1.5, -3.0])
    (y,) = mx.reference(make_attrs(mx, 2, 2, "same"), [x], {})
    np.testing.assert_array_equal(y.ravel(), [-1.0, -3.0])
    # Window 4, stride 1 over 3: pads 1 before and 2 after; every window has 2 or 3 real elements.
    (y,) = avg.reference(make_attrs(avg, 4, 1, "same"), [x], {})
    np.testing.assert_allclose(y.ravel(), [-2.0, -2.0, -2.5], rtol=1e-6)
