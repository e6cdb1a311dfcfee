"""Transposed, depthwise and separable convolutions (and Conv3D's dilation/groups) against torch.

- Conv*Transpose: F.conv_transposeNd without padding, then F.pad with the crop/extension that
  Keras's JAX backend gives (its dilated-input padding ``left = min(ceil(p / 2), eff - 1)``,
  ``right = p - left``, written out again here); checked on hand-computed impulse responses,
  against TensorFlow's rule (the adjoint of a forward 'same' convolution) where TensorFlow
  runs, and against Keras 3 itself (PyTorch backend).
- DepthwiseConv*D: F.convNd with groups=in_channels after Keras's asymmetric 'same' F.pad.
- SeparableConv*D: that depthwise convolution without bias, then a 1x1 F.convNd with bias.
Tolerance: float32 rtol=1e-5, atol=1e-5 (sums of at most a few hundred products, computed in
float64 by neuralc and float32 by torch).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings

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
    torch_act,
    torch_pad,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate, floordiv, sym
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import ParamError

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
CONV_T = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
B, H, W = sym("batch"), sym("h"), sym("w")


# -- transposed convolution ----------------------------------------------------------------------


def jax_pads(k: int, s: int, d: int, padding: str, op: int | None) -> tuple[int, int]:
    """Keras's JAX-backend padding of the dilated input for a transposed convolution."""
    eff = (k - 1) * d + 1
    if padding == "valid":
        extra = max(eff, s) - eff if op is None else op
        return eff - 1, eff - 1 + extra
    total = s + eff - 2 if op is None else eff + eff % 2 - 2 + op
    left = min(total // 2 + total % 2, eff - 1)
    return left, total - left


def torch_conv_transpose(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    k, s, d = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]
    n = len(k)
    y = CONV_T[n](to_cf(tt(x)), tt(w["weight"]), None, stride=s, dilation=d,
                  groups=attrs["groups"])
    op = attrs["output_padding"] or [None] * n
    pads = []
    for i in range(n):
        eff = (k[i] - 1) * d[i] + 1
        left, right = jax_pads(k[i], s[i], d[i], attrs["padding"], op[i])
        pads.append((-(eff - 1 - left), right - (eff - 1)))  # negative: crop
    y = torch_pad(y, pads)
    if "bias" in w:
        y = y + tt(w["bias"]).reshape(-1, *([1] * n))
    return torch_act(attrs["activation"], to_cl(y)).numpy()


def check_transpose(layer: str, x: np.ndarray, rng: np.random.Generator, *args: object,
                    **kw: object) -> None:
    s = spec(layer)
    attrs = make_attrs(s, *args, **kw)
    y, w = run_layer(s, attrs, [x], rng)
    np.testing.assert_allclose(y, torch_conv_transpose(attrs, x, w), rtol=RTOL, atol=ATOL)


TRANSPOSE_CASES = [
    {},
    {"padding": "same"},
    {"strides": 2},
    {"strides": 2, "padding": "same"},
    {"strides": 3, "padding": "same"},
    {"strides": (2, 3), "padding": "same", "output_padding": (1, 0)},
    {"strides": (3, 2), "output_padding": (2, 1)},
    {"strides": 2, "padding": "same", "output_padding": 1},
    {"strides": 2, "padding": "same", "output_padding": 0},
    {"dilation_rate": 2},
    {"dilation_rate": (2, 3), "padding": "same"},
    {"groups": 2, "strides": 2, "padding": "same"},
    {"use_bias": False, "strides": 4},
]


@pytest.mark.parametrize("kw", TRANSPOSE_CASES, ids=str)
@pytest.mark.parametrize("batch,h,w", [(1, 5, 5), (3, 4, 7)])
@pytest.mark.parametrize("kernel", [3, (2, 4), 1, 5])
def test_conv2d_transpose(kw: dict, batch: int, h: int, w: int, kernel: object,
                          rng: np.random.Generator) -> None:
    x = rng.normal(size=(batch, h, w, 4)).astype(np.float32)
    check_transpose("Conv2DTranspose", x, rng, 6, kernel, "relu", **kw)


@pytest.mark.parametrize("kw", [
    {}, {"padding": "same"}, {"strides": 2}, {"strides": 3, "padding": "same"},
    {"strides": 2, "output_padding": 1}, {"strides": 3, "padding": "same", "output_padding": 2},
    {"dilation_rate": 3, "padding": "same"}, {"groups": 3}, {"use_bias": False, "strides": 2},
], ids=str)
@pytest.mark.parametrize("batch,t", [(2, 9), (5, 6)])
@pytest.mark.parametrize("kernel", [3, 4])
def test_conv1d_transpose(kw: dict, batch: int, t: int, kernel: int,
                          rng: np.random.Generator) -> None:
    x = rng.normal(size=(batch, t, 6)).astype(np.float32)
    check_transpose("Conv1DTranspose", x, rng, 9, kernel, "tanh", **kw)


@pytest.mark.parametrize("kw", [
    {}, {"strides": 2, "padding": "same"}, {"strides": (1, 2, 3), "output_padding": (0, 1, 2)},
    {"dilation_rate": (1, 2, 1)}, {"groups": 2, "padding": "same"},
], ids=str)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5, 4), (1, 4, 3, 3, 4)])
def test_conv3d_transpose(kw: dict, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    x = rng.normal(size=shape).astype(np.float32)
    check_transpose("Conv3DTranspose", x, rng, 4, (2, 3, 2), **kw)


@pytest.mark.parametrize("kernel,strides,want", [
    # Impulse at position 0 of a length-4 input, kernel [1, 2, ..., k], padding "same":
    # the full response is [1..k] at positions 0..k-1; Keras crops max(k - s, 0) // 2 at the start
    # and keeps 4 * s elements.
    (3, 2, [1, 2, 3, 0, 0, 0, 0, 0]),
    (4, 2, [2, 3, 4, 0, 0, 0, 0, 0]),
    (5, 2, [2, 3, 4, 5, 0, 0, 0, 0]),
    (3, 1, [2, 3, 0, 0]),
    (2, 1, [1, 2, 0, 0]),
    (2, 3, [1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
])
def test_transpose_same_impulse_by_hand(kernel: int, strides: int, want: list[int]) -> None:
    s = spec("Conv1DTranspose")
    attrs = make_attrs(s, 1, kernel, strides=strides, padding="same", use_bias=False)
    x = np.zeros((1, 4, 1), np.float32)
    x[0, 0, 0] = 1.0
    w = {"weight": np.arange(1, kernel + 1, dtype=np.float32).reshape(1, 1, kernel)}
    (y,) = s.reference(attrs, [x], w)
    np.testing.assert_array_equal(y.ravel(), np.array(want, np.float32))


def test_transpose_valid_output_padding_by_hand() -> None:
    """'valid' with output_padding: the full result, then zeros (bias only) at the end."""
    s = spec("Conv1DTranspose")
    attrs = make_attrs(s, 1, 2, strides=3, output_padding=2)
    x = np.array([[[1.0], [10.0]]], np.float32)
    w = {"weight": np.array([[[1.0, 2.0]]], np.float32), "bias": np.array([0.5], np.float32)}
    (y,) = s.reference(attrs, [x], w)
    # positions 0, 1 from x[0]; 3, 4 from x[1]; length (2 - 1) * 3 + 2 + 2 = 7
    np.testing.assert_array_equal(y.ravel(), [1.5, 2.5, 0.5, 10.5, 20.5, 0.5, 0.5])


def test_transpose_matches_tensorflow_rule() -> None:
    """TensorFlow runs a 'same' transposed convolution when the forward 'same' convolution from
    the output length gives the input length back; its crop is then that convolution's leading
    pad, and so is ours. It refuses exactly the even kernels with output_padding=0."""
    from neuralc.ir.windows import transpose_crop, transpose_out_dim

    checked = 0
    for (k, s, d), op, size in itertools.product(
            [(k, s, 1) for k in (1, 2, 3, 4, 5) for s in (1, 2, 3)] + [(3, 1, 2), (2, 1, 3)],
            [None, 0, 1, 2], [1, 4, 7]):
        if op is not None and op >= s:
            continue  # refused by Keras's parameter check
        out = transpose_out_dim(size, k, s, d, "same", op)
        assert isinstance(out, int)
        eff = (k - 1) * d + 1
        tf_runs = out >= 1 and math.ceil(out / s) == size
        assert tf_runs == (op is None or eff % 2 == 1 or op > 0), (k, s, d, op, size)
        if tf_runs:
            assert transpose_crop(size, k, s, d, out) == keras_same_pads(out, k, s, d)[0]
            checked += 1
    assert checked > 100


def _keras():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    return keras


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("k,s,d", [(1, 1, 1), (2, 2, 1), (3, 2, 1), (4, 2, 1), (5, 3, 1),
                                   (4, 3, 1), (2, 1, 1), (3, 1, 2), (2, 4, 1)])
@pytest.mark.parametrize("op", [None, 0, 1, 2])
def test_transpose_against_keras(padding: str, k: int, s: int, d: int, op: int | None,
                                 rng: np.random.Generator) -> None:
    """Keras 3 itself: output shape rule and values (kernel (k, k, F, C) <- torch (C, F, k, k))."""
    if op is not None and op >= s:
        with pytest.raises(ParamError, match="'output_padding' must be smaller than 'strides'"):
            make_attrs("Conv2DTranspose", 3, k, strides=s, output_padding=op)
        return
    keras = _keras()
    layer = keras.layers.Conv2DTranspose(3, k, strides=s, padding=padding, output_padding=op,
                                         dilation_rate=d)
    s_ = spec("Conv2DTranspose")
    attrs = make_attrs(s_, 3, k, strides=s, padding=padding, output_padding=op, dilation_rate=d)
    for h, w in ((4, 5), (1, 3)):
        x = rng.normal(size=(2, h, w, 2)).astype(np.float32)
        want_shape = tuple(layer.compute_output_shape((2, h, w, 2)))
        if min(want_shape[1:3]) < 1:
            with pytest.raises(ShapeError, match="empty output"):
                run_layer(s_, attrs, [x], rng)
            continue
        y, wt = run_layer(s_, attrs, [x], rng)
        assert y.shape == want_shape
        if not layer.built:
            layer.build(x.shape)
        layer.kernel.assign(np.transpose(wt["weight"], (2, 3, 1, 0)))
        layer.bias.assign(wt["bias"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = np.asarray(layer(x).detach().cpu())
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_transpose_empty_output() -> None:
    with pytest.raises(ShapeError, match=r"Conv2DTranspose gives an empty output \(0, 2\)") as e:
        spec("Conv2DTranspose").shape(
            make_attrs("Conv2DTranspose", 4, 2, strides=(2, 1), padding="same",
                       output_padding=0), [ttype("batch", 1, 3, 2)], SimpleContext())
    assert e.value.hint is not None and "output_padding=None" in e.value.hint


def test_conv_transpose_torch_module_state_dict(rng: np.random.Generator) -> None:
    """Where Keras's 'same' is torch's symmetric padding (kernel 4, stride 2: crop 1 each side),
    torch.nn.ConvTranspose2d loads the weights as they are and computes the same."""
    s = spec("Conv2DTranspose")
    attrs = make_attrs(s, out_channels=6, kernel=4, stride=2, padding="same", groups=2)
    x = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    m = torch.nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = to_cl(m(to_cf(tt(x)))).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    m = torch.nn.ConvTranspose1d(3, 5, 3, stride=2, output_padding=1)
    s1 = spec("Conv1DTranspose")
    a1 = make_attrs(s1, 5, 3, strides=2, output_padding=1)
    x1 = rng.normal(size=(3, 7, 3)).astype(np.float32)
    y1, w1 = run_layer(s1, a1, [x1], rng)
    m.load_state_dict({k: tt(v) for k, v in w1.items()})
    with torch.no_grad():
        ref1 = to_cl(m(to_cf(tt(x1)))).numpy()
    np.testing.assert_allclose(y1, ref1, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("layer,torch_cls,kw", [
    ("Conv2DTranspose", torch.nn.ConvTranspose2d, {"groups": 2}),
    ("Conv1DTranspose", torch.nn.ConvTranspose1d, {}),
    ("Conv3DTranspose", torch.nn.ConvTranspose3d, {}),
])
def test_transpose_weight_layout_and_init(layer: str, torch_cls: type, kw: dict) -> None:
    s = spec(layer)
    n = int(layer[4])
    k = [3, 2, 2][:n]
    attrs = make_attrs(s, 6, k, **kw)
    ws = s.weights(attrs, [ttype("batch", *([5] * n), 4)])
    m = torch_cls(4, 6, k, **kw)
    assert ws["weight"].shape == tuple(m.weight.shape) and ws["bias"].shape == (6,)
    fan_in, _ = torch.nn.init._calculate_fan_in_and_fan_out(m.weight)
    assert ws["weight"].init.a == pytest.approx(1 / math.sqrt(fan_in))
    assert ws["bias"].init.a == pytest.approx(1 / math.sqrt(fan_in))
    assert float(m.weight.detach().abs().max()) <= ws["weight"].init.a


# -- depthwise and separable ----------------------------------------------------------------------


def _same_pads(attrs: dict, xc: torch.Tensor) -> torch.Tensor:
    k, s, d = attrs["kernel_size"], attrs["strides"], attrs["dilation_rate"]
    if attrs["padding"] != "same":
        return xc
    return torch_pad(xc, [keras_same_pads(xc.shape[2 + i], k[i], s[i], d[i])
                          for i in range(len(k))])


def torch_depthwise(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    xc = _same_pads(attrs, to_cf(tt(x)))
    bias = tt(w["bias"]) if "bias" in w else None
    y = CONV[len(attrs["kernel_size"])](xc, tt(w["weight"]), bias, stride=attrs["strides"],
                                        dilation=attrs["dilation_rate"], groups=x.shape[-1])
    return torch_act(attrs["activation"], to_cl(y)).numpy()


def torch_separable(attrs: dict, x: np.ndarray, w: dict[str, np.ndarray]) -> np.ndarray:
    conv = CONV[len(attrs["kernel_size"])]
    xc = _same_pads(attrs, to_cf(tt(x)))
    mid = conv(xc, tt(w["depthwise.weight"]), None, stride=attrs["strides"],
               dilation=attrs["dilation_rate"], groups=x.shape[-1])
    bias = tt(w["pointwise.bias"]) if "pointwise.bias" in w else None
    y = conv(mid, tt(w["pointwise.weight"]), bias)
    return torch_act(attrs["activation"], to_cl(y)).numpy()


def fits(attrs: dict, x: np.ndarray) -> bool:
    eff = [(k - 1) * d + 1 for k, d in zip(attrs["kernel_size"], attrs["dilation_rate"])]
    return attrs["padding"] == "same" or all(e <= n for e, n in zip(eff, x.shape[1:-1]))


DW_CASES = [
    {}, {"padding": "same"}, {"strides": 2}, {"strides": 2, "padding": "same"},
    {"strides": (3, 2), "padding": "same"}, {"depth_multiplier": 3},
    {"depth_multiplier": 2, "dilation_rate": 2, "padding": "same"}, {"dilation_rate": (1, 3)},
    {"use_bias": False, "strides": 3},
]


@pytest.mark.parametrize("layer", ["DepthwiseConv2D", "SeparableConv2D"])
@pytest.mark.parametrize("kw", DW_CASES, ids=str)
@pytest.mark.parametrize("batch,h,w", [(1, 9, 9), (3, 8, 11)])
@pytest.mark.parametrize("kernel", [3, (2, 4)])
def test_depthwise_separable_2d(layer: str, kw: dict, batch: int, h: int, w: int,
                                kernel: object, rng: np.random.Generator) -> None:
    x = rng.normal(size=(batch, h, w, 5)).astype(np.float32)
    s = spec(layer)
    args = (kernel, "relu6") if layer.startswith("Depthwise") else (7, kernel, "relu6")
    attrs = make_attrs(s, *args, **kw)
    if not fits(attrs, x):
        with pytest.raises(ShapeError, match="does not fit its input"):
            run_layer(s, attrs, [x], rng)
        return
    y, wt = run_layer(s, attrs, [x], rng)
    ref = (torch_depthwise if layer.startswith("Depthwise") else torch_separable)(attrs, x, wt)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("layer", ["DepthwiseConv1D", "SeparableConv1D"])
@pytest.mark.parametrize("kw", [
    {}, {"padding": "same"}, {"strides": 2, "padding": "same"}, {"strides": 3},
    {"depth_multiplier": 2, "dilation_rate": 2}, {"use_bias": False, "padding": "same"},
], ids=str)
@pytest.mark.parametrize("batch,t", [(2, 12), (4, 7)])
def test_depthwise_separable_1d(layer: str, kw: dict, batch: int, t: int,
                                rng: np.random.Generator) -> None:
    x = rng.normal(size=(batch, t, 3)).astype(np.float32)
    s = spec(layer)
    args = (4, "tanh") if layer.startswith("Depthwise") else (5, 4, "tanh")
    attrs = make_attrs(s, *args, **kw)
    y, wt = run_layer(s, attrs, [x], rng)
    ref = (torch_depthwise if layer.startswith("Depthwise") else torch_separable)(attrs, x, wt)
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_depthwise_channel_order_by_hand() -> None:
    """Output channel c * dm + m is input channel c's m-th filter (Keras and torch alike)."""
    s = spec("DepthwiseConv1D")
    attrs = make_attrs(s, 1, depth_multiplier=2, use_bias=False)
    x = np.array([[[1.0, 10.0]]], np.float32)  # one step, channels (1, 10)
    w = {"weight": np.array([1.0, 2.0, 3.0, 4.0], np.float32).reshape(4, 1, 1)}
    (y,) = s.reference(attrs, [x], w)
    np.testing.assert_array_equal(y.ravel(), [1.0, 2.0, 30.0, 40.0])


def test_depthwise_and_separable_against_keras(rng: np.random.Generator) -> None:
    """Keras 3 itself, with its kernels made from the torch-layout weights."""
    keras = _keras()
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    s = spec("DepthwiseConv2D")
    attrs = make_attrs(s, 3, strides=2, padding="same", depth_multiplier=2)
    y, w = run_layer(s, attrs, [x], rng)
    kl = keras.layers.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2)
    kl.build(x.shape)
    kl.kernel.assign(np.transpose(w["weight"].reshape(3, 2, 3, 3), (2, 3, 0, 1)))
    kl.bias.assign(w["bias"])
    np.testing.assert_allclose(y, np.asarray(kl(x).detach().cpu()), rtol=RTOL, atol=ATOL)
    s = spec("SeparableConv2D")
    attrs = make_attrs(s, 4, (3, 2), padding="same", depth_multiplier=2, dilation_rate=2)
    y, w = run_layer(s, attrs, [x], rng)
    kl = keras.layers.SeparableConv2D(4, (3, 2), padding="same", depth_multiplier=2,
                                      dilation_rate=2)
    kl.build(x.shape)
    kl.depthwise_kernel.assign(
        np.transpose(w["depthwise.weight"].reshape(3, 2, 3, 2), (2, 3, 0, 1)))
    kl.pointwise_kernel.assign(np.transpose(w["pointwise.weight"], (2, 3, 1, 0)))
    kl.bias.assign(w["pointwise.bias"])
    np.testing.assert_allclose(y, np.asarray(kl(x).detach().cpu()), rtol=RTOL, atol=ATOL)


def test_separable_torch_modules_state_dict(rng: np.random.Generator) -> None:
    """depthwise.* / pointwise.* load into a torch module with those two Conv2d children."""
    s = spec("SeparableConv2D")
    attrs = make_attrs(s, 8, 3, padding="valid", depth_multiplier=2)
    x = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    m = torch.nn.Module()
    m.depthwise = torch.nn.Conv2d(3, 6, 3, groups=3, bias=False)
    m.pointwise = torch.nn.Conv2d(6, 8, 1)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = to_cl(m.pointwise(m.depthwise(to_cf(tt(x))))).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
    assert set(w) == {"depthwise.weight", "pointwise.weight", "pointwise.bias"}


def test_depthwise_separable_weight_specs() -> None:
    dw = spec("DepthwiseConv2D")
    ws = dw.weights(make_attrs(dw, (3, 5), depth_multiplier=2), [ttype("batch", 9, 9, 4)])
    m = torch.nn.Conv2d(4, 8, (3, 5), groups=4)
    assert ws["weight"].shape == tuple(m.weight.shape) == (8, 1, 3, 5)
    assert ws["weight"].init.a == pytest.approx(1 / math.sqrt(15))
    assert ws["bias"].shape == (8,) and ws["bias"].init.a == pytest.approx(1 / math.sqrt(15))
    sep = spec("SeparableConv1D")
    ws = sep.weights(make_attrs(sep, 10, 3, depth_multiplier=3, use_bias=False),
                     [ttype("batch", "t", 2)])
    assert ws["depthwise.weight"].shape == (6, 1, 3)
    assert ws["pointwise.weight"].shape == (10, 6, 1)
    assert ws["pointwise.weight"].init.a == pytest.approx(1 / math.sqrt(6))
    assert "pointwise.bias" not in ws
    with pytest.raises(ShapeError, match="SeparableConv1D needs a fixed number of input channels"):
        sep.weights(make_attrs(sep, 10, 3), [ttype("batch", "t", "c")])


# -- Conv3D: dilation, groups, asymmetric 'same' ----------------------------------------------


@pytest.mark.parametrize("kw", [
    {"dilation_rate": (2, 1, 2), "groups": 2},
    {"strides": 2, "padding": "same", "groups": 4},
    {"strides": (3, 2, 1), "padding": "same"},
    {"dilation_rate": 2, "padding": "same"},
], ids=str)
@pytest.mark.parametrize("shape", [(2, 5, 7, 6, 4), (1, 6, 5, 9, 4)])
def test_conv3d_dilation_groups_same(kw: dict, shape: tuple[int, ...],
                                     rng: np.random.Generator) -> None:
    s = spec("Conv3D")
    attrs = make_attrs(s, 8, (3, 2, 3), "relu", **kw)
    x = rng.normal(size=shape).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    xc = _same_pads(attrs, to_cf(tt(x)))
    ref = F.conv3d(xc, tt(w["weight"]), tt(w["bias"]), stride=attrs["strides"],
                   dilation=attrs["dilation_rate"], groups=attrs["groups"])
    np.testing.assert_allclose(y, F.relu(to_cl(ref)).numpy(), rtol=RTOL, atol=ATOL)


# -- shape rules on symbols ---------------------------------------------------------------------


def infer(layer: str, t, *args: object, **kw: object) -> tuple:
    s = spec(layer)
    (out,) = s.shape(make_attrs(s, *args, **kw), [t], SimpleContext())
    return out.shape


def test_transpose_symbolic_shapes() -> None:
    t = ttype("batch", "h", "w", 3)
    assert infer("Conv2DTranspose", t, 8, 3, strides=2, padding="same") == (B, H * 2, W * 2, 8)
    assert infer("Conv2DTranspose", t, 8, 3, strides=2) == (B, H * 2 + 1, W * 2 + 1, 8)
    assert infer("Conv2DTranspose", t, 8, 2, strides=3) == (B, H * 3, W * 3, 8)
    assert infer("Conv2DTranspose", t, 8, 3, strides=2, padding="same", output_padding=0) == \
        (B, H * 2 - 1, W * 2 - 1, 8)
    assert infer("Conv2DTranspose", t, 8, 4, strides=(2, 3), output_padding=(1, 2)) == \
        (B, H * 2 + 3, W * 3 + 3, 8)
    assert infer("Conv1DTranspose", ttype("batch", "t", 3), 4, 3, dilation_rate=2) == \
        (B, sym("t") + 4, 4)


@pytest.mark.parametrize("layer,args,kw", [
    ("Conv2DTranspose", (4, 3), {"strides": 2, "padding": "same"}),
    ("Conv2DTranspose", (4, (2, 3)), {"strides": (3, 2), "output_padding": (1, 1)}),
    ("Conv2DTranspose", (4, 5), {"padding": "same", "dilation_rate": 2}),
    ("DepthwiseConv2D", (3,), {"strides": 2, "padding": "same", "depth_multiplier": 2}),
    ("DepthwiseConv2D", ((2, 3),), {"strides": (2, 3)}),
    ("SeparableConv2D", (4, 3), {"strides": 3, "padding": "same"}),
    ("SeparableConv2D", (4, 3), {"dilation_rate": 2}),
])
def test_symbolic_shape_matches_reference(layer: str, args: tuple, kw: dict,
                                          rng: np.random.Generator) -> None:
    s = spec(layer)
    attrs = make_attrs(s, *args, **kw)
    (t,) = s.shape(attrs, [ttype("batch", "h", "w", 2)], SimpleContext())
    w = None
    for h, wd in itertools.product(range(5, 12), (5, 8, 9)):
        x = rng.normal(size=(2, h, wd, 2)).astype(np.float32)
        if w is None:
            specs = s.weights(attrs, [ttype(2, h, wd, 2)])
            w = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in specs.items()}
        (y,) = s.reference(attrs, [x], w)
        assert y.shape == tuple(evaluate(d, {"batch": 2, "h": h, "w": wd}) for d in t.shape)


def test_depthwise_separable_symbolic_shapes() -> None:
    t = ttype("batch", "h", "w", "c")
    assert infer("DepthwiseConv2D", t, 3, depth_multiplier=2) == \
        (B, H - 2, W - 2, sym("c") * 2)
    assert infer("SeparableConv2D", ttype("batch", "h", 9, 3), 6, 3, strides=2,
                 padding="same") == (B, floordiv(H + 1, 2), 5, 6)
    assert infer("DepthwiseConv1D", ttype("batch", "t", 4), 3, padding="same") == \
        (B, sym("t"), 4)


@pytest.mark.parametrize("layer,args,t,message", [
    ("Conv2DTranspose", (4, 3), ("batch", 16), r"Conv2DTranspose expects input \(batch, height, "
     r"width, channels\), got \(batch, 16\)"),
    ("Conv1DTranspose", (4, 3), ("batch", 5, 5, 3), r"expects input \(batch, steps, channels\)"),
    ("DepthwiseConv2D", (3,), ("batch", 8, 3), r"DepthwiseConv2D expects input \(batch, height"),
    ("SeparableConv1D", (4, 3), ("batch", 2, 5, 3), r"SeparableConv1D expects input \(batch, st"),
    ("DepthwiseConv2D", (5,), ("batch", 4, 9, 3), r"DepthwiseConv2D kernel \(5, 5\) does not fit "
     r"its input \(4, 9\)"),
    ("SeparableConv2D", (4, 3), ("batch", 4, 9, 3), r"dilated kernel \(5, 5\) does not fit"),
])
def test_shape_errors(layer: str, args: tuple, t: tuple, message: str) -> None:
    kw = {"dilation_rate": 2} if "dilated" in message else {}
    with pytest.raises(ShapeError, match=message) as e:
        infer(layer, ttype(*t), *args, **kw)
    assert e.value.hint


def test_transpose_groups_must_divide_channels() -> None:
    with pytest.raises(ShapeError, match="groups=4 needs input channels divisible by 4, got 6"):
        infer("Conv2DTranspose", ttype("batch", 8, 8, 6), 8, 3, groups=4)


def test_flops() -> None:
    ct = spec("Conv2DTranspose")
    attrs = make_attrs(ct, 8, 3, strides=2, groups=2)
    ins = [ttype("batch", "h", "w", 4)]
    outs = ct.shape(attrs, ins, SimpleContext())
    assert ct.flops(attrs, ins, outs) == 2 * H * W * 4 * 4 * 9
    dw = spec("DepthwiseConv2D")
    attrs = make_attrs(dw, 3, depth_multiplier=2, padding="same")
    ins = [ttype("batch", 10, 10, 4)]
    assert dw.flops(attrs, ins, dw.shape(attrs, ins, SimpleContext())) == 2 * 100 * 8 * 9
    sep = spec("SeparableConv2D")
    attrs = make_attrs(sep, 16, 3, depth_multiplier=2, padding="same")
    assert sep.flops(attrs, ins, sep.shape(attrs, ins, SimpleContext())) == \
        2 * 100 * 8 * 9 + 2 * 100 * 8 * 16


# -- parameters ------------------------------------------------------------------------------------


def test_binding_defaults_and_aliases() -> None:
    assert make_attrs("Conv2DTranspose", 16, 3, "relu") == {
        "filters": 16, "kernel_size": [3, 3], "activation": "relu", "strides": [1, 1],
        "padding": "valid", "dilation_rate": [1, 1], "output_padding": None, "groups": 1,
        "use_bias": True}
    assert make_attrs("Conv1DTranspose", out_channels=4, kernel=3, stride=2, output_padding=1,
                      bias=False)["output_padding"] == [1]
    assert make_attrs("DepthwiseConv2D", 3, "relu6") == {
        "kernel_size": [3, 3], "activation": "relu6", "strides": [1, 1], "padding": "valid",
        "dilation_rate": [1, 1], "depth_multiplier": 1, "use_bias": True}
    assert make_attrs("SeparableConv1D", 8, 5)["depth_multiplier"] == 1
    assert spec("Convolution2DTranspose") is spec("Conv2DTranspose")
    assert spec("SeparableConvolution2D") is spec("SeparableConv2D")


@pytest.mark.parametrize("layer,args,kw,message", [
    ("Conv2DTranspose", (8, 3), {"strides": 2, "output_padding": 2},
     "'output_padding' must be smaller than 'strides' (as in Keras), got output_padding=(2, 2)"),
    ("Conv2DTranspose", (8, 3), {"output_padding": -1}, "'output_padding' must be"),
    ("Conv2DTranspose", (8, 3), {"strides": 2, "dilation_rate": 2},
     "'strides' > 1 cannot be combined with 'dilation_rate' > 1"),
    ("Conv2DTranspose", (9, 3), {"groups": 2}, "'filters' (9) must be divisible by 'groups' (2)"),
    ("Conv2DTranspose", (8, 3), {"padding": "causal"}, "'padding' must be one of"),
    ("DepthwiseConv2D", (3,), {"depth_multiplier": 0}, "'depth_multiplier' must be a positive"),
    ("DepthwiseConv1D", (3,), {"padding": "causal"}, "'padding' must be one of \"valid\", \"same\""),
    ("DepthwiseConv2D", (3,), {"strides": 2, "dilation_rate": 2}, "cannot be combined"),
    ("SeparableConv2D", (0, 3), {}, "'filters' must be a positive integer, got 0"),
    ("SeparableConv2D", (8, (3, 3, 3)), {}, "'kernel_size' must be"),
    ("SeparableConv1D", (8, 3), {"strides": 2, "dilation_rate": 2}, "cannot be combined"),
    ("DepthwiseConv2D", (3, "rellu"), {}, "unknown activation \"rellu\""),
])
def test_bad_values(layer: str, args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args, **kw)
    assert message in str(e.value)
