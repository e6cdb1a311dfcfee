"""GroupNormalization, InstanceNormalization, RMSNormalization and LayerNormalization over
several axes, against torch.nn modules (weights loaded strictly, so names and shapes are
PyTorch's) and torch.nn.functional where a module cannot express the case (channel axis not
last, center/scale apart, non-trailing axes).

Shapes are inferred on symbolic batch and spatial/sequence dims; the reference runs at two
sizes of each with the same weights. Tolerance: float32 rtol=1e-5, atol=1e-5 (the statistics
reduce over at most a few hundred elements; the reference computes them in float64).
"""

from __future__ import annotations

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
    spec,
    to_cf,
    to_cl,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import LayerSpec, ParamError

CENTER_SCALE = [(True, True), (False, True), (True, False), (False, False)]
# (symbolic per-sample shape, two concrete size pairs for its symbols)
LAYOUTS = [
    (("batch", 12), []),
    (("batch", "t", 12), [(5,), (9,)]),
    (("batch", "h", "w", 12), [(4, 6), (7, 3)]),
    (("batch", "d", "h", 3, 12), [(2, 4), (3, 2)]),
]
BATCHES = (1, 3)


def concrete(sym_shape: tuple, batch: int, sizes: tuple) -> tuple[int, ...]:
    it = iter(sizes)
    return tuple(batch if d == "batch" else next(it) if isinstance(d, str) else d
                 for d in sym_shape)


def cases(layouts: list) -> list[tuple[tuple, tuple[int, ...]]]:
    """(symbolic shape, concrete shape) at two batch sizes and two sizes of every symbol."""
    out = []
    for sym_shape, size_list in layouts:
        for i, batch in enumerate(BATCHES):
            sizes = size_list[i] if size_list else ()
            out.append((sym_shape, concrete(sym_shape, batch, sizes)))
    return out


def run_symbolic(s: LayerSpec, attrs: dict, x: np.ndarray, sym_shape: tuple,
                 rng: np.random.Generator, weights: dict | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Infer on ``sym_shape`` (names are symbols), run the reference on ``x``, check the shape.

    Affine weights are drawn away from their ones/zeros defaults, so they matter."""
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


# -- GroupNormalization ----------------------------------------------------------------------


@pytest.mark.parametrize("sym_shape,shape", cases(LAYOUTS), ids=str)
@pytest.mark.parametrize("groups", [1, 3, 4, 12, -1])
def test_group_norm_module(sym_shape: tuple, shape: tuple, groups: int,
                           rng: np.random.Generator) -> None:
    s = spec("GroupNormalization")
    attrs = make_attrs(s, groups)
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, sym_shape, rng)
    assert set(w) == {"weight", "bias"} and w["weight"].shape == (12,)
    g = 12 if groups == -1 else groups
    if x[0].size == g:  # one value per group: torch refuses; x - mean is 0, so y is the bias
        np.testing.assert_array_equal(y, np.broadcast_to(w["bias"], x.shape))
        return
    m = torch.nn.GroupNorm(g, 12, eps=1e-3)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = to_cl(m(to_cf(tt(x)))).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("center,scale", CENTER_SCALE)
@pytest.mark.parametrize("axis", [-1, 1, 2])
@pytest.mark.parametrize("batch,h", [(1, 6), (2, 8)])
def test_group_norm_axis_center_scale(center: bool, scale: bool, axis: int, batch: int, h: int,
                                      rng: np.random.Generator) -> None:
    s = spec("GroupNormalization")
    attrs = make_attrs(s, groups=2, axis=axis, eps=1e-5, center=center, scale=scale)
    sym_shape = ("batch", "h", 4, 6)
    sym_shape = tuple(4 if i == axis % 4 else d for i, d in enumerate(sym_shape))
    x = rng.normal(size=concrete(sym_shape, batch, (h,) * 2)).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, sym_shape, rng)
    assert ("weight" in w) == scale and ("bias" in w) == center
    ax = axis % 4
    ref = F.group_norm(tt(x).movedim(ax, 1), 2, tt(w["weight"]) if scale else None,
                       tt(w["bias"]) if center else None, eps=1e-5).movedim(1, ax)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


def test_group_norm_hand_values() -> None:
    """Two groups of two channels, one pixel: each group is normalised on its own."""
    s = spec("GroupNormalization")
    attrs = make_attrs(s, 2, epsilon=1e-12, center=False, scale=False)
    x = np.array([[1.0, 3.0, 10.0, 30.0]], np.float32)
    (y,) = s.reference(attrs, [x], {})
    np.testing.assert_allclose(y, [[-1.0, 1.0, -1.0, 1.0]], rtol=1e-6)


def test_group_norm_binding_and_shape_errors() -> None:
    s = spec("GroupNormalization")
    assert make_attrs(s) == {"groups": 32, "axis": -1, "epsilon": 1e-3, "center": True,
                             "scale": True}
    assert make_attrs(s, num_groups=8)["groups"] == 8
    assert s.positional == ("groups", "axis", "epsilon", "center", "scale")
    with pytest.raises(ShapeError) as e:
        s.shape(make_attrs(s), [ttype("batch", "h", "w", 48)], SimpleContext())
    assert e.value.message.startswith(
        "GroupNormalization groups=32 must divide the number of channels 48")
    assert "1, 2, 3, 4, 6, 8, 12, 16, 24, 48" in (e.value.hint or "")
    with pytest.raises(ShapeError, match="groups=32 must divide the number of channels 16"):
        s.shape(make_attrs(s), [ttype("batch", "t", 16)], SimpleContext())  # more groups
    with pytest.raises(ShapeError, match="fixed number of channels"):
        s.shape(make_attrs(s, 4), [ttype("batch", "t", "c")], SimpleContext())
    with pytest.raises(ShapeError, match="cannot use the batch axis"):
        s.shape(make_attrs(s, 1, axis=0), [ttype("batch", 4)], SimpleContext())
    with pytest.raises(ShapeError, match=r"expects input \(batch, \.\.\., features\)"):
        s.shape(make_attrs(s, 1), [ttype("batch")], SimpleContext())
    (out,) = s.shape(make_attrs(s, 8), [ttype("batch", "h", "w", 64)], SimpleContext())
    assert out == ttype("batch", "h", "w", 64)


# -- InstanceNormalization --------------------------------------------------------------------

IN_MODULE = {3: torch.nn.InstanceNorm1d, 4: torch.nn.InstanceNorm2d, 5: torch.nn.InstanceNorm3d}


@pytest.mark.parametrize("sym_shape,shape", cases(LAYOUTS[1:]), ids=str)
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_instance_norm_module(sym_shape: tuple, shape: tuple, epsilon: float,
                              rng: np.random.Generator) -> None:
    s = spec("InstanceNormalization")
    attrs = make_attrs(s, epsilon=epsilon)
    x = rng.normal(-1.0, 3.0, size=shape).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, sym_shape, rng)
    m = IN_MODULE[len(shape)](12, eps=epsilon, affine=True)
    m.load_state_dict({k: tt(v) for k, v in w.items()})  # no running statistics
    m.eval()
    with torch.no_grad():
        ref = to_cl(m(to_cf(tt(x)))).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("center,scale", CENTER_SCALE)
@pytest.mark.parametrize("axis", [-1, 1, 2])
@pytest.mark.parametrize("batch,t", [(1, 5), (3, 9)])
def test_instance_norm_axis_center_scale(center: bool, scale: bool, axis: int, batch: int,
                                         t: int, rng: np.random.Generator) -> None:
    s = spec("InstanceNormalization")
    attrs = make_attrs(s, axis, center=center, scale=scale)
    sym_shape = tuple(5 if i == axis % 4 else d for i, d in enumerate(("batch", "t", 3, 6)))
    x = rng.normal(size=concrete(sym_shape, batch, (t,))).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, sym_shape, rng)
    assert ("weight" in w) == scale and ("bias" in w) == center
    ax = axis % 4
    ref = F.instance_norm(tt(x).movedim(ax, 1), weight=tt(w["weight"]) if scale else None,
                          bias=tt(w["bias"]) if center else None, eps=1e-3).movedim(1, ax)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


def test_instance_norm_is_group_norm_with_one_group_per_channel(rng: np.random.Generator) -> None:
    """The documented default: InstanceNormalization() == GroupNormalization(groups=-1)."""
    x = rng.normal(size=(2, 5, 4, 6)).astype(np.float32)
    i, g = spec("InstanceNormalization"), spec("GroupNormalization")
    w = {"weight": rng.normal(size=6).astype(np.float32), "bias": rng.normal(size=6).astype(np.float32)}
    (a,) = i.reference(make_attrs(i), [x], w)
    (b,) = g.reference(make_attrs(g, -1), [x], w)
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_instance_norm_binding_and_shape_errors() -> None:
    s = spec("InstanceNormalization")
    assert make_attrs(s) == {"axis": -1, "epsilon": 1e-3, "center": True, "scale": True}
    assert make_attrs("InstanceNorm", eps=1e-5)["epsilon"] == 1e-5
    with pytest.raises(ShapeError) as e:
        s.shape(make_attrs(s), [ttype("batch", 64)], SimpleContext())
    assert "at least one spatial or time axis, got (batch, 64)" in e.value.message
    assert "LayerNormalization" in (e.value.hint or "")
    with pytest.raises(ShapeError, match="fixed number of channels"):
        s.weights(make_attrs(s), [ttype("batch", "t", "c")])
    # without an affine the channel count may stay symbolic
    assert s.weights(make_attrs(s, center=False, scale=False), [ttype("batch", "t", "c")]) == {}
    ws = s.weights(make_attrs(s), [ttype("batch", "h", "w", 8)])
    assert {k: (v.shape, v.init.kind, v.init.a) for k, v in ws.items()} == \
        {"weight": ((8,), "const", 1.0), "bias": ((8,), "const", 0.0)}


# -- RMSNormalization -------------------------------------------------------------------------


@pytest.mark.parametrize("sym_shape,shape", cases(LAYOUTS), ids=str)
@pytest.mark.parametrize("epsilon", [None, 1e-5])
def test_rms_norm_module(sym_shape: tuple, shape: tuple, epsilon: float | None,
                         rng: np.random.Generator) -> None:
    s = spec("RMSNormalization")
    attrs = make_attrs(s) if epsilon is None else make_attrs(s, eps=epsilon)
    x = rng.normal(0.5, 2.0, size=shape).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, sym_shape, rng)
    m = torch.nn.RMSNorm(12, eps=attrs["epsilon"])
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = m(tt(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis", [[-2, -1], [2, 3], [1, 2, 3]], ids=str)
@pytest.mark.parametrize("batch", BATCHES)
def test_rms_norm_trailing_axes_module(axis: list[int], batch: int,
                                       rng: np.random.Generator) -> None:
    s = spec("RMSNormalization")
    attrs = make_attrs(s, axis, 1e-4)
    x = rng.normal(size=(batch, 3, 4, 5)).astype(np.float32)
    sym_shape = ("batch",) + tuple(x.shape[1:])
    y, w = run_symbolic(s, attrs, x, sym_shape, rng)
    k = len(axis)
    m = torch.nn.RMSNorm(x.shape[-k:], eps=1e-4)
    m.load_state_dict({n: tt(v) for n, v in w.items()})
    with torch.no_grad():
        np.testing.assert_allclose(y, m(tt(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis", [1, [1, 3], -3])
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("batch,t", [(1, 6), (2, 9)])
def test_rms_norm_inner_axes(axis: int | list[int], scale: bool, batch: int, t: int,
                             rng: np.random.Generator) -> None:
    """Axes that are not trailing (torch.nn.RMSNorm cannot): moved last for F.rms_norm."""
    s = spec("RMSNormalization")
    attrs = make_attrs(s, axis, scale=scale)
    x = rng.normal(size=(batch, 4, t, 5)).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, ("batch", 4, "t", 5), rng)
    assert ("weight" in w) == scale
    axes = sorted(a % 4 for a in attrs["axis"])
    k = len(axes)
    moved = tt(x).movedim(axes, list(range(4 - k, 4)))
    ref = F.rms_norm(moved, moved.shape[-k:], tt(w["weight"]) if scale else None, eps=1e-6)
    ref = ref.movedim(list(range(4 - k, 4)), axes)
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


def test_rms_norm_binding_weights_and_errors() -> None:
    s = spec("RMSNormalization")
    assert make_attrs(s) == {"axis": [-1], "epsilon": 1e-6, "scale": True}  # Keras 3's defaults
    assert make_attrs("RMSNorm", elementwise_affine=False)["scale"] is False
    ws = s.weights(make_attrs(s, [1, -1]), [ttype("batch", 3, "t", 7)])
    assert {k: (v.shape, v.init.kind, v.init.a) for k, v in ws.items()} == \
        {"weight": ((3, 7), "const", 1.0)}
    assert s.weights(make_attrs(s, scale=False), [ttype("batch", "t", "f")]) == {}
    with pytest.raises(ShapeError, match="needs a fixed size of axis 2"):
        s.weights(make_attrs(s), [ttype("batch", "t", "f")])
    with pytest.raises(ShapeError, match="names the same axis twice"):
        s.shape(make_attrs(s, [2, -1]), [ttype("batch", "t", 4)], SimpleContext())
    with pytest.raises(ShapeError, match="cannot use the batch axis"):
        s.shape(make_attrs(s, [0]), [ttype("batch", 4)], SimpleContext())
    x = np.array([[3.0, 4.0]], np.float32)  # rms = sqrt(12.5)
    (y,) = s.reference(make_attrs(s, epsilon=1e-12), [x], {"weight": np.array([1.0, 2.0], np.float32)})
    np.testing.assert_allclose(y, [[3.0 / np.sqrt(12.5), 8.0 / np.sqrt(12.5)]], rtol=1e-6)


# -- LayerNormalization: several axes and symbolic sizes ---------------------------------------


@pytest.mark.parametrize("axis", [-1, [-2, -1], [1, 2, 3]], ids=str)
@pytest.mark.parametrize("batch", BATCHES)
def test_layer_norm_several_axes_module(axis: int | list[int], batch: int,
                                        rng: np.random.Generator) -> None:
    s = spec("LayerNormalization")
    attrs = make_attrs(s, axis)
    x = rng.normal(1.0, 3.0, size=(batch, 3, 4, 5)).astype(np.float32)
    y, w = run_symbolic(s, attrs, x, ("batch", 3, 4, 5), rng)
    k = len(attrs["axis"])
    m = torch.nn.LayerNorm(x.shape[-k:], eps=1e-3)
    m.load_state_dict({n: tt(v) for n, v in w.items()})
    with torch.no_grad():
        np.testing.assert_allclose(y, m(tt(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis", [-1, [1, 3]], ids=str)
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_layer_norm_symbolic_sequence(axis: int | list[int], center: bool, scale: bool,
                                      rng: np.random.Generator) -> None:
    """The same weights at two batch sizes and two sequence lengths (a symbolic axis that is
    not normalised may stay symbolic)."""
    s = spec("LayerNormalization")
    attrs = make_attrs(s, axis, center=center, scale=scale)
    sym_shape = ("batch", 3, "t", 6)
    w = None
    for batch, t in ((1, 5), (4, 11)):
        x = rng.normal(size=(batch, 3, t, 6)).astype(np.float32)
        y, w = run_symbolic(s, attrs, x, sym_shape, rng, w)
        axes = sorted(a % 4 for a in attrs["axis"])
        k = len(axes)
        moved = tt(x).movedim(axes, list(range(4 - k, 4)))
        ref = F.layer_norm(moved, moved.shape[-k:], tt(w["weight"]) if scale else None,
                           tt(w["bias"]) if center else None, eps=1e-3)
        ref = ref.movedim(list(range(4 - k, 4)), axes)
        np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)


def test_layer_norm_over_a_symbolic_axis_needs_a_fixed_size() -> None:
    s = spec("LayerNormalization")
    with pytest.raises(ShapeError, match="needs a fixed size of axis 1"):
        s.weights(make_attrs(s, [1, 2]), [ttype("batch", "t", 6)])
    assert s.weights(make_attrs(s, [1, 2], center=False, scale=False),
                     [ttype("batch", "t", 6)]) == {}


# -- parameter validation ------------------------------------------------------------------------


@pytest.mark.parametrize("layer,args,kw,message", [
    ("GroupNormalization", (0,), {}, "'groups' must be a positive integer or -1"),
    ("GroupNormalization", (-2,), {}, "'groups' must be a positive integer or -1"),
    ("GroupNormalization", (2.5,), {}, "'groups' must be an integer, got 2.5"),
    ("GroupNormalization", (4,), {"axis": [1, 2]}, "'axis' must be an integer axis"),
    ("GroupNormalization", (4,), {"epsilon": 0}, "'epsilon' must be a number > 0"),
    ("GroupNormalization", (4,), {"center": "no"}, "'center' must be true or false"),
    ("InstanceNormalization", (), {"epsilon": -1e-5}, "'epsilon' must be a number > 0"),
    ("InstanceNormalization", ("last",), {}, "'axis' must be an integer axis"),
    ("InstanceNormalization", (), {"scale": 1}, "'scale' must be true or false"),
    ("RMSNormalization", (), {"eps": 0.0}, "'epsilon' must be a number > 0"),
    ("RMSNormalization", ("last",), {}, "'axis' must be an axis or a list of axes"),
    ("RMSNormalization", (), {"scale": "yes"}, "'scale' must be true or false"),
    ("LayerNormalization", ([],), {}, "'axis' must be an axis or a list of axes"),
], ids=lambda v: str(v)[:40])
def test_param_validation(layer: str, args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args, **kw)
    assert message in str(e.value)
