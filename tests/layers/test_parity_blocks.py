"""SqueezeExcitation against a torch.nn module built from two nn.Linear children (fc1, fc2),
loaded strictly with the layer's weights, on sequences, images and volumes at two batch sizes
and two sizes of every symbolic dim; plus a hand-computed gate, weight specs, FLOPs, errors.
Tolerance: float32 rtol=1e-5, atol=1e-5 (the pooling sums at most a few hundred terms).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from layer_helpers import ATOL, RTOL, SimpleContext, make_attrs, random_weights, spec, tt, ttype
from torch import nn

from neuralc.ir.dims import evaluate
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import ParamError


class TorchSE(nn.Module):
    """The usual SE block on channels-first input: pool, fc1, relu, fc2, sigmoid, scale."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // ratio)
        self.fc2 = nn.Linear(channels // ratio, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spatial = list(range(2, x.dim()))
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=spatial)))))
        return x * g.reshape(*g.shape, *([1] * len(spatial)))


LAYOUTS = [
    (("batch", "t", 16), [(1, 5), (3, 11)]),
    (("batch", "h", "w", 16), [(1, 4, 6), (2, 7, 3)]),
    (("batch", "d", "h", 3, 16), [(1, 2, 5), (3, 4, 2)]),
]


@pytest.mark.parametrize("sym_shape,sizes", LAYOUTS, ids=lambda v: str(v))
@pytest.mark.parametrize("ratio", [1, 4, 16, 5])
def test_squeeze_excitation_module(sym_shape: tuple, sizes: list, ratio: int,
                                   rng: np.random.Generator) -> None:
    s = spec("SqueezeExcitation")
    attrs = make_attrs(s, ratio)
    t = ttype(*sym_shape)
    ctx = SimpleContext()
    (out,) = s.shape(attrs, [t], ctx)
    assert out == t
    w = random_weights(s.weights(attrs, [t]), rng)
    m = TorchSE(16, ratio)
    m.load_state_dict({k: tt(v) for k, v in w.items()})  # strict: torch names and layouts
    for size in sizes:
        it = iter(size)
        shape = tuple(next(it) if isinstance(d, str) else d for d in sym_shape)
        x = rng.normal(0.0, 2.0, size=shape).astype(np.float32)
        x.setflags(write=False)
        (y,) = s.reference(attrs, [x], w)
        env = {n: x.shape[i] for i, n in enumerate(sym_shape) if isinstance(n, str)}
        assert y.dtype == np.float32
        assert y.shape == tuple(evaluate(d, env) for d in out.shape)
        with torch.no_grad():
            ref = m(tt(x).movedim(-1, 1)).movedim(1, -1).numpy()
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_squeeze_excitation_hand_values() -> None:
    """Two channels, one hidden unit: mean (1, 3) -> h = relu(1 + 3 - 2) = 2 ->
    gates sigmoid(2 * 1 + 0) and sigmoid(2 * -1 + 1) scale channel 0 and 1."""
    s = spec("SqueezeExcitation")
    attrs = make_attrs(s, ratio=2)
    x = np.array([[[0.0, 2.0], [2.0, 4.0]]], np.float32)  # (1, t=2, c=2); channel means 1, 3
    w = {"fc1.weight": np.array([[1.0, 1.0]], np.float32), "fc1.bias": np.array([-2.0], np.float32),
         "fc2.weight": np.array([[1.0], [-1.0]], np.float32),
         "fc2.bias": np.array([0.0, 1.0], np.float32)}
    (y,) = s.reference(attrs, [x], w)
    g0, g1 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))
    np.testing.assert_allclose(y, [[[0.0, 2.0 * g1], [2.0 * g0, 4.0 * g1]]], rtol=1e-6)


def test_weight_specs_are_torch_linear_layout_and_init() -> None:
    s = spec("SqueezeExcitation")
    ws = s.weights(make_attrs(s), [ttype("batch", "h", "w", 64)])  # default ratio 16 -> 4
    assert {k: v.shape for k, v in ws.items()} == {
        "fc1.weight": (4, 64), "fc1.bias": (4,), "fc2.weight": (64, 4), "fc2.bias": (64,)}
    assert ws["fc1.weight"].init.kind == "uniform"
    assert ws["fc1.weight"].init.a == pytest.approx(1 / math.sqrt(64))
    assert ws["fc1.bias"].init.a == pytest.approx(1 / math.sqrt(64))
    assert ws["fc2.weight"].init.a == pytest.approx(1 / math.sqrt(4))
    assert ws["fc2.bias"].init.a == pytest.approx(1 / math.sqrt(4))
    assert set(ws) == set(TorchSE(64, 16).state_dict())


def test_flops() -> None:
    s = spec("SqueezeExcitation")
    attrs = make_attrs(s, 4)
    t = ttype("batch", "h", "w", 16)
    f = s.flops(attrs, [t], [t])
    # pool + scale: 2 per element; fc1 and fc2: 2 * 16 * 4 each; the gate: 16
    assert evaluate(f, {"h": 5, "w": 3}) == 2 * 5 * 3 * 16 + 4 * 16 * 4 + 16


def test_binding() -> None:
    s = spec("SqueezeExcitation")
    assert make_attrs(s) == {"ratio": 16}
    assert make_attrs(s, 4) == {"ratio": 4}
    assert make_attrs("SEBlock", reduction=8) == {"ratio": 8}
    assert s.keras_name == "squeeze_excitation" and s.positional == ("ratio",)
    with pytest.raises(ParamError, match="'ratio' must be a positive integer, got 0"):
        make_attrs(s, 0)
    with pytest.raises(ParamError, match="'ratio' must be a positive integer"):
        make_attrs(s, 2.5)


def test_shape_errors() -> None:
    s = spec("SqueezeExcitation")
    with pytest.raises(ShapeError) as e:
        s.shape(make_attrs(s), [ttype("batch", "h", "w", 8)], SimpleContext())
    assert e.value.message == ("SqueezeExcitation ratio=16 leaves 8 // 16 = 0 hidden units for "
                               "the 8 channels of its input (batch, h, w, 8)")
    assert e.value.hint == "use a ratio of at most 8"
    with pytest.raises(ShapeError, match="fixed number of channels"):
        s.shape(make_attrs(s), [ttype("batch", "h", "w", "c")], SimpleContext())
    with pytest.raises(ShapeError) as e:
        s.shape(make_attrs(s), [ttype("batch", 128)], SimpleContext())
    assert e.value.message == ("SqueezeExcitation expects input (batch, height, width, channels) "
                               "or (batch, steps, channels), got (batch, 128)")
    assert "after a convolution" in (e.value.hint or "")
    # 16 // 16 = 1 hidden unit is enough
    (out,) = s.shape(make_attrs(s), [ttype("batch", "t", 16)], SimpleContext())
    assert out == ttype("batch", "t", 16)
