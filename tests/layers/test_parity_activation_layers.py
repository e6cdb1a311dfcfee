"""ReLU, LeakyReLU, PReLU, ELU, Softmax and the activations hard_swish, mish, log_softmax
against torch.nn / torch.nn.functional.

Where torch has the exact function (F.relu, F.relu6, F.hardtanh, F.threshold, F.leaky_relu,
F.prelu, F.elu, torch.softmax, F.hardswish, F.mish, F.log_softmax) it is the reference; Keras's
general ReLU (cap, slope and threshold together) has no torch counterpart and is checked
against its formula written in torch ops and on hand-computed values. Shapes are inferred on
symbolic batch and spatial/sequence dims and the reference runs at two sizes of each.
Tolerance: float32 rtol=1e-5, atol=1e-5 (elementwise; softmax sums a few dozen terms).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layer_helpers import (
    ATOL,
    RTOL,
    SimpleContext,
    make_attrs,
    random_weights,
    run_layer,
    spec,
    to_cf,
    to_cl,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import LayerSpec, ParamError

SIZES = [(1, 5, 7), (3, 8, 4)]  # (batch, spatial 1, spatial 2): two of each


def run_symbolic(s: LayerSpec, attrs: dict, x: np.ndarray, sym_shape: tuple,
                 rng: np.random.Generator, weights: dict | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Infer on ``sym_shape`` (names are symbols), run the reference on ``x``, check the shape."""
    t = ttype(*sym_shape)
    ctx = SimpleContext()
    (out,) = s.shape(attrs, [t], ctx)
    if weights is None:
        weights = random_weights(s.weights(attrs, [t]), rng)
    x.setflags(write=False)
    (y,) = s.reference(attrs, [x], weights)
    env = {n: x.shape[i] for i, n in enumerate(sym_shape) if isinstance(n, str)}
    assert out.shape is not None
    assert y.shape == tuple(evaluate(ctx.resolve(d), env) for d in out.shape)
    assert y.dtype == np.float32
    return y, weights


def wide(rng: np.random.Generator, *shape: int) -> np.ndarray:
    """Inputs over [-8, 8] with exact zeros and the values at the branch points."""
    x = rng.uniform(-8, 8, size=shape).astype(np.float32)
    x.flat[:6] = [0.0, -0.0, 1.0, 6.0, 0.5, -3.0]
    return x


# -- ReLU ------------------------------------------------------------------------------------


def torch_keras_relu(t: torch.Tensor, max_value: float | None, slope: float,
                     threshold: float) -> torch.Tensor:
    """Keras's relu in torch ops: strict ``x > threshold`` keeps x (capped), else the slope."""
    pos = torch.where(t > threshold, t, torch.zeros_like(t))
    if max_value is not None:
        pos = torch.clamp(pos, max=max_value)
    return pos + slope * torch.clamp(t - threshold, max=0.0)


@pytest.mark.parametrize("kw,fn", [
    ({}, F.relu),
    ({"max_value": 6.0}, F.relu6),
    ({"max_value": 2.5}, lambda t: F.hardtanh(t, 0.0, 2.5)),
    ({"negative_slope": 0.1}, lambda t: F.leaky_relu(t, 0.1)),
    ({"threshold": 1.0}, lambda t: F.threshold(t, 1.0, 0.0)),
    ({"threshold": 0.5, "max_value": 3}, lambda t: torch.clamp(F.threshold(t, 0.5, 0.0), max=3)),
], ids=lambda v: str(v) if isinstance(v, dict) else "")  # stable ids: parallel workers agree
@pytest.mark.parametrize("batch,t,f", SIZES)
def test_relu_against_torch_functions(kw: dict, fn: Callable[[torch.Tensor], torch.Tensor], batch: int, t: int, f: int,
                                      rng: np.random.Generator) -> None:
    s = spec("ReLU")
    attrs = make_attrs(s, **kw)
    x = wide(rng, batch, t, f)
    y, _ = run_symbolic(s, attrs, x, ("batch", "t", f), rng)
    np.testing.assert_allclose(y, fn(tt(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("args", [(None, 0.2, 1.0), (4.0, 0.5, 0.0), (1.0, 0.3, 2.0), (0.0, 1.5, 0.0)],
                         ids=str)
@pytest.mark.parametrize("batch,h,w", SIZES)
def test_relu_general(args: tuple, batch: int, h: int, w: int, rng: np.random.Generator) -> None:
    s = spec("ReLU")
    attrs = make_attrs(s, *args)
    x = wide(rng, batch, h, w, 3)
    y, _ = run_symbolic(s, attrs, x, ("batch", "h", "w", 3), rng)
    np.testing.assert_allclose(y, torch_keras_relu(tt(x), *args).numpy(), rtol=RTOL, atol=ATOL)


def test_relu_hand_values() -> None:
    s = spec("ReLU")
    x = np.array([[-10.0, -5.0, 0.0, 5.0, 10.0]], np.float32)
    (y,) = s.reference(make_attrs(s, max_value=10, negative_slope=0.5), [x], {})
    np.testing.assert_array_equal(y, [[-5.0, -2.5, 0.0, 5.0, 10.0]])  # Keras's docstring example
    x = np.array([[-1.0, 0.5, 1.0, 1.5, 4.0]], np.float32)
    (y,) = s.reference(make_attrs(s, 3.0, 0.5, 1.0), [x], {})
    np.testing.assert_array_equal(y, [[-1.0, -0.25, 0.0, 1.5, 3.0]])
    np.testing.assert_array_equal(torch_keras_relu(tt(x), 3.0, 0.5, 1.0).numpy(), y)


def test_relu_binding() -> None:
    assert make_attrs("ReLU") == {"max_value": None, "negative_slope": 0.0, "threshold": 0.0}
    assert make_attrs("relu", 6) == {"max_value": 6.0, "negative_slope": 0.0, "threshold": 0.0}
    assert spec("ReLU").positional == ("max_value", "negative_slope", "threshold")
    assert spec("ReLU").keras_name == "re_lu"  # Keras's auto name for ReLU layers


# -- LeakyReLU and ELU --------------------------------------------------------------------------


@pytest.mark.parametrize("kw,slope", [({}, 0.3), ({"negative_slope": 0.01}, 0.01),
                                      ({"alpha": 0.2}, 0.2), ({"negative_slope": 2.0}, 2.0)],
                         ids=str)
@pytest.mark.parametrize("batch,t,f", SIZES)
def test_leaky_relu(kw: dict, slope: float, batch: int, t: int, f: int,
                    rng: np.random.Generator) -> None:
    s = spec("LeakyReLU")
    attrs = make_attrs(s, **kw)
    assert attrs == {"negative_slope": slope}
    x = wide(rng, batch, t, f)
    y, _ = run_symbolic(s, attrs, x, ("batch", "t", f), rng)
    m = torch.nn.LeakyReLU(slope)
    np.testing.assert_allclose(y, m(tt(x)).numpy(), rtol=RTOL, atol=ATOL)


def test_leaky_relu_default_is_the_keras_layer_default() -> None:
    s = spec("LeakyReLU")
    (y,) = s.reference(make_attrs(s), [np.array([[-1.0, 2.0]], np.float32)], {})
    np.testing.assert_allclose(y, [[-0.3, 2.0]], rtol=1e-7)


@pytest.mark.parametrize("alpha", [None, 0.5, 2.0])
@pytest.mark.parametrize("batch,h,w", SIZES)
def test_elu(alpha: float | None, batch: int, h: int, w: int, rng: np.random.Generator) -> None:
    s = spec("ELU")
    attrs = make_attrs(s) if alpha is None else make_attrs(s, alpha)
    x = wide(rng, batch, h, w, 4)
    y, _ = run_symbolic(s, attrs, x, ("batch", "h", "w", 4), rng)
    m = torch.nn.ELU(1.0 if alpha is None else alpha)
    np.testing.assert_allclose(y, m(tt(x)).numpy(), rtol=RTOL, atol=ATOL)


# -- PReLU --------------------------------------------------------------------------------------


@pytest.mark.parametrize("sym_shape", [("batch", 6), ("batch", "t", 6), ("batch", "h", "w", 6),
                                       ("batch", "d", "h", 3, 6)], ids=str)
def test_prelu_per_channel_is_torch_prelu(sym_shape: tuple, rng: np.random.Generator) -> None:
    s = spec("PReLU")
    attrs = make_attrs(s)
    w = None
    for batch, a, b in SIZES:
        sizes = iter((a, b))
        shape = tuple(batch if d == "batch" else next(sizes) if isinstance(d, str) else d
                      for d in sym_shape)
        x = wide(rng, *shape)
        y, w = run_symbolic(s, attrs, x, sym_shape, rng, w)
        assert w["weight"].shape == (6,)
        m = torch.nn.PReLU(num_parameters=6)
        m.load_state_dict({"weight": tt(w["weight"])})  # strict: torch's name and shape
        with torch.no_grad():
            ref = to_cl(m(to_cf(tt(x)))).numpy()
            ref_f = to_cl(F.prelu(to_cf(tt(x)), tt(w["weight"]))).numpy()
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)
        np.testing.assert_array_equal(ref, ref_f)


@pytest.mark.parametrize("batch,h,w", SIZES)
def test_prelu_shared_slope(batch: int, h: int, w: int, rng: np.random.Generator) -> None:
    s = spec("PReLU")
    attrs = make_attrs(s, 1, init=0.1)
    x = wide(rng, batch, h, w, 5)
    y, wts = run_layer(s, attrs, [x], rng)
    assert s.weights(attrs, [ttype("batch", "h", "w", "c")])["weight"].shape == (1,)
    m = torch.nn.PReLU()
    m.load_state_dict({"weight": tt(wts["weight"])})
    with torch.no_grad():
        np.testing.assert_allclose(y, to_cl(m(to_cf(tt(x)))).numpy(), rtol=RTOL, atol=ATOL)


def test_prelu_weights_are_torch_defaults() -> None:
    s = spec("PReLU")
    ws = s.weights(make_attrs(s), [ttype("batch", "h", "w", 16)])
    assert list(ws) == ["weight"] and ws["weight"].shape == (16,)
    assert (ws["weight"].init.kind, ws["weight"].init.a) == ("const", 0.25)
    assert torch.nn.PReLU(16).weight.detach().numpy().tolist() == [0.25] * 16
    ws = s.weights(make_attrs(s, init=0.0), [ttype("batch", 16)])
    assert ws["weight"].init.a == 0.0
    assert make_attrs(s, 16, 0.1) == {"num_parameters": 16, "init": 0.1}


def test_prelu_shape_errors() -> None:
    s = spec("PReLU")
    with pytest.raises(ShapeError, match=r"PReLU num_parameters=4 does not match the 6 channels") as e:
        s.shape(make_attrs(s, 4), [ttype("batch", "t", 6)], SimpleContext())
    assert "num_parameters=6" in (e.value.hint or "")
    with pytest.raises(ShapeError, match="fixed number of channels"):
        s.shape(make_attrs(s), [ttype("batch", "t", "c")], SimpleContext())
    # one shared slope needs no static channel count
    (out,) = s.shape(make_attrs(s, 1), [ttype("batch", "t", "c")], SimpleContext())
    assert out == ttype("batch", "t", "c")
    with pytest.raises(ShapeError, match=r"PReLU expects input \(batch, \.\.\., channels\)"):
        s.shape(make_attrs(s), [ttype("batch")], SimpleContext())


# -- Softmax ------------------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [-1, 1, 2, [1, 2], [-1, 1], [1, 2, 3]], ids=str)
@pytest.mark.parametrize("batch,h,w", SIZES)
def test_softmax(axis: int | list[int], batch: int, h: int, w: int,
                 rng: np.random.Generator) -> None:
    s = spec("Softmax")
    attrs = make_attrs(s, axis)
    x = rng.normal(0.0, 4.0, size=(batch, h, w, 3)).astype(np.float32)
    y, _ = run_symbolic(s, attrs, x, ("batch", "h", "w", 3), rng)
    axes = sorted(a % 4 for a in ([axis] if isinstance(axis, int) else axis))
    t = tt(x)
    if len(axes) == 1:
        ref = torch.softmax(t, dim=axes[0])
    else:  # flatten the axes into the last one, softmax there, and restore
        k = len(axes)
        moved = t.movedim(axes, list(range(4 - k, 4)))
        flat = torch.softmax(moved.reshape(*moved.shape[:4 - k], -1), dim=-1)
        ref = flat.reshape(moved.shape).movedim(list(range(4 - k, 4)), axes)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(y.sum(axis=tuple(axes)), 1.0, rtol=1e-5)


def test_softmax_binding_and_errors() -> None:
    s = spec("Softmax")
    assert make_attrs(s) == {"axis": [-1]}
    assert make_attrs(s, dim=1) == {"axis": [1]}
    with pytest.raises(ShapeError, match="cannot use the batch axis"):
        s.shape(make_attrs(s, 0), [ttype("batch", 4)], SimpleContext())
    with pytest.raises(ShapeError, match="out of range"):
        s.shape(make_attrs(s, 3), [ttype("batch", "t", 4)], SimpleContext())
    with pytest.raises(ShapeError, match="names the same axis twice"):
        s.shape(make_attrs(s, [2, -1]), [ttype("batch", "t", 4)], SimpleContext())
    with pytest.raises(ParamError, match="'axis' must be an axis or a list of axes"):
        make_attrs(s, "last")
    (y,) = s.reference(make_attrs(s), [np.array([[1000.0, 0.0, 1000.0]], np.float32)], {})
    np.testing.assert_array_equal(y, [[0.5, 0.0, 0.5]])  # no overflow


# -- the new activation functions, everywhere an activation is accepted --------------------------

NEW = {"hard_swish": F.hardswish, "mish": F.mish,
       "log_softmax": lambda t: F.log_softmax(t, dim=-1)}


@pytest.mark.parametrize("name", NEW)
@pytest.mark.parametrize("batch,t,f", SIZES)
def test_new_activations_via_activation_layer(name: str, batch: int, t: int, f: int,
                                              rng: np.random.Generator) -> None:
    s = spec("Activation")
    x = rng.uniform(-12, 12, size=(batch, t, f)).astype(np.float32)
    x.flat[:4] = [0.0, -3.0, 3.0, -0.0]
    y, _ = run_symbolic(s, make_attrs(s, name), x, ("batch", "t", f), rng)
    np.testing.assert_allclose(y, NEW[name](tt(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", NEW)
def test_new_activations_in_dense_and_conv(name: str, rng: np.random.Generator) -> None:
    d = spec("Dense")
    x = rng.normal(size=(3, 7, 5)).astype(np.float32)
    y, w = run_layer(d, make_attrs(d, 4, name), [x], rng)
    ref = NEW[name](F.linear(tt(x), tt(w["weight"]), tt(w["bias"])))
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)
    c = spec("Conv2D")
    x = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    y, w = run_layer(c, make_attrs(c, 4, 3, activation=name.upper()), [x], rng)
    conv = to_cl(F.conv2d(to_cf(tt(x)), tt(w["weight"]), tt(w["bias"])))
    np.testing.assert_allclose(y, NEW[name](conv).numpy(), rtol=RTOL, atol=ATOL)


def test_new_activation_aliases_and_hand_values() -> None:
    s = spec("Activation")
    assert make_attrs(s, "hard_silu")["activation"] == "hard_swish"
    assert make_attrs(s, "HardSwish")["activation"] == "hard_swish"
    assert make_attrs(s, "logsoftmax")["activation"] == "log_softmax"
    x = np.array([[-4.0, -3.0, 0.0, 1.0, 3.0, 5.0]], np.float32)
    (y,) = s.reference(make_attrs(s, "hard_swish"), [x], {})
    np.testing.assert_allclose(y, [[0.0, 0.0, 0.0, 4.0 / 6.0, 3.0, 5.0]], rtol=1e-7)
    (y,) = s.reference(make_attrs(s, "mish"), [np.array([[0.0, 1.0, -1.0]], np.float32)], {})
    sp = np.log1p(np.e)  # softplus(1)
    np.testing.assert_allclose(y, [[0.0, np.tanh(sp), -np.tanh(np.log1p(np.exp(-1.0)))]],
                               rtol=1e-6)
    (y,) = s.reference(make_attrs(s, "log_softmax"),
                       [np.array([[0.0, np.log(3.0)], [1000.0, 0.0]], np.float32)], {})
    np.testing.assert_allclose(y, [[np.log(0.25), np.log(0.75)], [0.0, -1000.0]], rtol=1e-6)
    with pytest.raises(ParamError, match="'alpha' applies only to"):
        make_attrs(s, "mish", 0.1)


# -- parameter validation and FLOPs --------------------------------------------------------------


@pytest.mark.parametrize("layer,args,kw,message", [
    ("ReLU", (-1,), {}, "'max_value' must be a number >= 0, got -1"),
    ("ReLU", (), {"negative_slope": -0.5}, "'negative_slope' must be a number >= 0"),
    ("ReLU", (), {"threshold": -1.0}, "'threshold' must be a number >= 0"),
    ("ReLU", ("six",), {}, "'max_value' must be a number >= 0, got \"six\""),
    ("ReLU", (), {"negative_slope": None}, "'negative_slope' must be a number"),
    ("LeakyReLU", (-0.1,), {}, "'negative_slope' must be a number >= 0"),
    ("LeakyReLU", (), {"alpha": None}, "'negative_slope' must be a number"),
    ("ELU", ("one",), {}, "'alpha' must be a number"),
    ("PReLU", (0,), {}, "'num_parameters' must be a positive integer, got 0"),
    ("PReLU", (), {"init": "zeros"}, "'init' must be a number"),
    ("Softmax", (1.5,), {}, "'axis' must be an axis or a list of axes"),
], ids=lambda v: str(v)[:40])
def test_param_validation(layer: str, args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args, **kw)
    assert message in str(e.value)


def test_flops() -> None:
    t = ttype("batch", "h", "w", 8)
    for layer, factor in [("ReLU", 1), ("LeakyReLU", 1), ("ELU", 1), ("PReLU", 1), ("Softmax", 4)]:
        s = spec(layer)
        attrs = make_attrs(s)
        f = s.flops(attrs, [t], s.shape(attrs, [t], SimpleContext()))
        assert evaluate(f, {"h": 3, "w": 5}) == factor * 3 * 5 * 8, layer
