"""UpSampling, ZeroPadding, Cropping, Permute, RepeatVector and symbolic Reshape against torch.

- UpSampling nearest: F.interpolate(mode="nearest") at integer factors (each element repeated);
  bilinear: F.interpolate(mode="bilinear", align_corners=False), which is Keras 3's
  ops.image.resize "bilinear" for integer upsampling (half-pixel centres); checked by hand and
  against Keras 3 itself.
- ZeroPadding / Cropping: F.pad with positive / negative amounts, every Keras argument form.
- Permute: Tensor.permute(0, *dims); RepeatVector: unsqueeze + expand.
Tolerance: exact for the layers that only move elements; bilinear float32 rtol=1e-5,
atol=1e-5 (neuralc interpolates in float64, torch in float32).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch.nn.functional as F
from layer_helpers import (
    ATOL,
    RTOL,
    SimpleContext,
    make_attrs,
    run_layer,
    spec,
    to_cf,
    to_cl,
    torch_pad,
    tt,
    ttype,
)

from neuralc.ir.dims import evaluate, floordiv, sym
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import ParamError

B, H, W = sym("batch"), sym("h"), sym("w")


def infer(layer: str, t, *args: object, **kw: object) -> tuple:
    s = spec(layer)
    (out,) = s.shape(make_attrs(s, *args, **kw), [t], SimpleContext())
    return out.shape


# -- UpSampling ----------------------------------------------------------------------------------


@pytest.mark.parametrize("n,size,shape", [
    (1, 2, (2, 5, 3)), (1, 3, (4, 4, 2)),
    (2, 2, (1, 5, 4, 3)), (2, (3, 1), (3, 4, 7, 2)), (2, (1, 4), (2, 3, 3, 1)),
    (3, 2, (2, 2, 3, 4, 2)), (3, (1, 2, 3), (1, 3, 2, 2, 3)),
])
def test_upsampling_nearest(n: int, size: object, shape: tuple[int, ...],
                            rng: np.random.Generator) -> None:
    s = spec(f"UpSampling{n}D")
    attrs = make_attrs(s, size)
    x = rng.normal(size=shape).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    factors = [attrs["size"]] if n == 1 else attrs["size"]
    out = [d * f for d, f in zip(shape[1:-1], factors)]
    ref = to_cl(F.interpolate(to_cf(tt(x)), size=out, mode="nearest")).numpy()
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("size", [2, 3, (2, 3), (4, 1)])
@pytest.mark.parametrize("batch,h,w", [(1, 5, 4), (3, 2, 7), (2, 1, 3)])
def test_upsampling2d_bilinear(size: object, batch: int, h: int, w: int,
                               rng: np.random.Generator) -> None:
    s = spec("UpSampling2D")
    attrs = make_attrs(s, size, "bilinear")
    x = rng.normal(size=(batch, h, w, 3)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    out = [h * attrs["size"][0], w * attrs["size"][1]]
    ref = to_cl(F.interpolate(to_cf(tt(x)), size=out, mode="bilinear",
                              align_corners=False)).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


def test_bilinear_by_hand() -> None:
    """[0, 4] doubled: sources -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)."""
    s = spec("UpSampling2D")
    x = np.array([0.0, 4.0], np.float32).reshape(1, 1, 2, 1)
    (y,) = s.reference(make_attrs(s, (1, 2), "bilinear"), [x], {})
    np.testing.assert_allclose(y.ravel(), [0.0, 1.0, 3.0, 4.0], rtol=1e-6)
    (y,) = s.reference(make_attrs(s, (1, 2)), [x], {})
    np.testing.assert_array_equal(y.ravel(), [0.0, 0.0, 4.0, 4.0])


def test_upsampling_against_keras(rng: np.random.Generator) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    x = rng.normal(size=(2, 3, 5, 2)).astype(np.float32)
    s = spec("UpSampling2D")
    for size, interp in (((2, 3), "bilinear"), (3, "bilinear"), ((2, 1), "nearest")):
        y, _ = run_layer(s, make_attrs(s, size, interp), [x], rng)
        ref = keras.layers.UpSampling2D(size, interpolation=interp)(x)
        np.testing.assert_allclose(y, np.asarray(ref.detach().cpu()), rtol=RTOL, atol=ATOL)


def test_upsampling_shapes_and_flops() -> None:
    assert infer("UpSampling2D", ttype("batch", "h", "w", 3)) == (B, H * 2, W * 2, 3)
    assert infer("UpSampling2D", ttype("batch", "h", 5, 3), (3, 2), "bilinear") == \
        (B, H * 3, 10, 3)
    assert infer("UpSampling1D", ttype("batch", "t", 4), 4) == (B, sym("t") * 4, 4)
    assert infer("UpSampling3D", ttype("batch", "d", "h", "w", 1), (1, 2, 3)) == \
        (B, sym("d"), H * 2, W * 3, 1)
    s = spec("UpSampling2D")
    ins = [ttype("batch", "h", "w", 3)]
    for interp, want in (("nearest", 0), ("bilinear", 8 * H * 2 * W * 2 * 3)):
        attrs = make_attrs(s, 2, interp)
        assert s.flops(attrs, ins, s.shape(attrs, ins, SimpleContext())) == want
    with pytest.raises(ShapeError, match=r"UpSampling2D expects input \(batch, height, width, "
                                         r"channels\), got \(batch, t, 4\)") as e:
        infer("UpSampling2D", ttype("batch", "t", 4))
    assert e.value.hint == "use Reshape((h, w, c)) to make it an image"
    with pytest.raises(ShapeError, match=r"UpSampling1D expects input \(batch, steps, channels\)"):
        infer("UpSampling1D", ttype("batch", 4, 4, 4))


# -- ZeroPadding and Cropping --------------------------------------------------------------------


PAD_FORMS = [
    # (n, argument, canonical attribute, (before, after) per axis)
    (1, 2, [2, 2], [(2, 2)]),
    (1, (0, 3), [0, 3], [(0, 3)]),
    (2, 1, [[1, 1], [1, 1]], [(1, 1), (1, 1)]),
    (2, (2, 0), [[2, 2], [0, 0]], [(2, 2), (0, 0)]),
    (2, ((1, 2), (3, 0)), [[1, 2], [3, 0]], [(1, 2), (3, 0)]),
    (2, (1, (0, 2)), [[1, 1], [0, 2]], [(1, 1), (0, 2)]),
    (3, 1, [[1, 1]] * 3, [(1, 1)] * 3),
    (3, ((0, 1), 2, (1, 0)), [[0, 1], [2, 2], [1, 0]], [(0, 1), (2, 2), (1, 0)]),
]


@pytest.mark.parametrize("n,arg,canon,pairs", PAD_FORMS, ids=str)
@pytest.mark.parametrize("batch,size", [(1, 5), (3, 8)])
def test_zero_padding(n: int, arg: object, canon: list, pairs: list, batch: int, size: int,
                      rng: np.random.Generator) -> None:
    s = spec(f"ZeroPadding{n}D")
    attrs = make_attrs(s, arg)
    assert attrs == {"padding": canon}
    x = rng.normal(size=(batch, *[size + i for i in range(n)], 2)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    np.testing.assert_array_equal(y, to_cl(torch_pad(to_cf(tt(x)), pairs)).numpy())


@pytest.mark.parametrize("n,arg,canon,pairs", PAD_FORMS, ids=str)
@pytest.mark.parametrize("batch,size", [(2, 7), (1, 10)])
def test_cropping(n: int, arg: object, canon: list, pairs: list, batch: int, size: int,
                  rng: np.random.Generator) -> None:
    s = spec(f"Cropping{n}D")
    attrs = make_attrs(s, arg)
    assert attrs == {"cropping": canon}
    x = rng.normal(size=(batch, *[size + i for i in range(n)], 2)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    ref = to_cl(torch_pad(to_cf(tt(x)), [(-b, -a) for b, a in pairs])).numpy()
    np.testing.assert_array_equal(y, ref)


def test_padding_and_cropping_against_keras(rng: np.random.Generator) -> None:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras

    x = rng.normal(size=(2, 6, 7, 3)).astype(np.float32)
    for arg in (1, (2, 0), ((1, 2), (3, 0))):
        for ours, theirs in (("ZeroPadding2D", keras.layers.ZeroPadding2D),
                             ("Cropping2D", keras.layers.Cropping2D)):
            s = spec(ours)
            y, _ = run_layer(s, make_attrs(s, arg), [x], rng)
            np.testing.assert_array_equal(y, np.asarray(theirs(arg)(x).detach().cpu()))
    x1 = x[:, :, :, 0]
    for arg in (2, (0, 3)):
        for ours, theirs in (("ZeroPadding1D", keras.layers.ZeroPadding1D),
                             ("Cropping1D", keras.layers.Cropping1D)):
            s = spec(ours)
            y, _ = run_layer(s, make_attrs(s, arg), [x1], rng)
            np.testing.assert_array_equal(y, np.asarray(theirs(arg)(x1).detach().cpu()))


def test_defaults_are_keras() -> None:
    assert make_attrs("ZeroPadding1D") == {"padding": [1, 1]}
    assert make_attrs("ZeroPadding2D") == {"padding": [[1, 1], [1, 1]]}
    assert make_attrs("Cropping1D") == {"cropping": [1, 1]}
    assert make_attrs("Cropping2D") == {"cropping": [[0, 0], [0, 0]]}
    assert make_attrs("Cropping3D") == {"cropping": [[1, 1], [1, 1], [1, 1]]}
    assert make_attrs("UpSampling2D") == {"size": [2, 2], "interpolation": "nearest"}
    assert make_attrs("UpSampling1D") == {"size": 2}


def test_pytorch_aliases() -> None:
    assert make_attrs("UpSampling2D", scale_factor=3, mode="BILINEAR") == \
        {"size": [3, 3], "interpolation": "bilinear"}
    assert make_attrs("UpSampling1D", scale_factor=4) == {"size": 4}
    assert make_attrs("UpSampling3D", scale_factor=(1, 2, 2)) == {"size": [1, 2, 2]}


def test_padding_cropping_symbolic_shapes() -> None:
    t = ttype("batch", "h", "w", 3)
    assert infer("ZeroPadding2D", t, ((1, 2), (0, 3))) == (B, H + 3, W + 3, 3)
    assert infer("Cropping2D", t, ((1, 2), (0, 3))) == (B, H - 3, W - 3, 3)
    assert infer("Cropping1D", ttype("batch", "t", 5), (2, 0)) == (B, sym("t") - 2, 5)
    half = infer("Cropping2D", ttype("batch", floordiv(H, 2), 9, 3), 1)
    assert half == (B, floordiv(H, 2) - 2, 7, 3)
    s = spec("Cropping2D")
    attrs = make_attrs(s, ((1, 2), 1))
    (sym_t,) = s.shape(attrs, [t], SimpleContext())
    rng = np.random.default_rng(0)
    for h, w in ((4, 3), (9, 6)):
        (y,) = s.reference(attrs, [rng.normal(size=(2, h, w, 3)).astype(np.float32)], {})
        assert y.shape == tuple(evaluate(d, {"batch": 2, "h": h, "w": w}) for d in sym_t.shape)


def test_cropping_everything_is_an_error() -> None:
    with pytest.raises(ShapeError, match=r"Cropping2D crops 2 \+ 3 from width 5, which leaves "
                                         r"nothing \(input \(batch, 8, 5, 3\)\)") as e:
        infer("Cropping2D", ttype("batch", 8, 5, 3), (1, (2, 3)))
    assert e.value.hint is not None
    with pytest.raises(ShapeError, match="Cropping1D crops 1 \\+ 1 from steps 2"):
        infer("Cropping1D", ttype("batch", 2, 5))
    s = spec("Cropping1D")
    with pytest.raises(ValueError, match="leaves nothing"):
        s.reference(make_attrs(s, (1, 1)), [np.zeros((1, 2, 1), np.float32)], {})


@pytest.mark.parametrize("layer,arg,message", [
    ("ZeroPadding2D", (1, 2, 3), "'padding' must be a non-negative integer or a tuple of 2 "
     "entries (height, width), each an integer or a pair (before, after)"),
    ("ZeroPadding2D", -1, "'padding' must be"),
    ("ZeroPadding2D", ((1, 2, 3), 1), "'padding' must be"),
    ("ZeroPadding1D", (1, 2, 3), "'padding' must be a non-negative integer or a pair "
     "(before, after), got (1, 2, 3)"),
    ("ZeroPadding1D", ((1, 1),), "'padding' must be"),
    ("Cropping2D", ((1, -2), 0), "'cropping' must be"),
    ("Cropping3D", (1, 1), "'cropping' must be a non-negative integer or a tuple of 3 entries"),
    ("Cropping1D", "all", "'cropping' must be"),
    ("UpSampling2D", (0,), "'size' must be a positive integer"),
    ("UpSampling1D", ((2, 2),), "'size' must be a positive integer"),
    ("UpSampling2D", (2, "bicubic"), "'interpolation' must be one of \"nearest\", \"bilinear\""),
    ("Permute", ((1, 1),), "'dims' must be a permutation of 1..n over the non-batch axes"),
    ("Permute", ((0, 1),), "'dims' must be a permutation"),
    ("Permute", (2,), "'dims' must be a permutation"),
    ("RepeatVector", (0,), "'n' must be a positive integer"),
])
def test_bad_values(layer: str, arg: object, message: str) -> None:
    args = arg if isinstance(arg, tuple) and layer in ("UpSampling2D", "UpSampling1D",
                                                        "Permute", "RepeatVector") else (arg,)
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args)
    assert message in str(e.value)


def test_integral_floats_from_macros() -> None:
    assert make_attrs("ZeroPadding2D", ((1.0, 2), 3.0)) == {"padding": [[1, 2], [3, 3]]}
    assert make_attrs("Permute", (2.0, 1)) == {"dims": [2, 1]}


# -- Permute, RepeatVector -----------------------------------------------------------------------


@pytest.mark.parametrize("dims,shape", [
    ((2, 1), (4, 5)), ((1, 2), (4, 5)), ((3, 1, 2), (3, 4, 5)), ((2, 3, 1), (6, 2, 3)),
    ((4, 3, 2, 1), (2, 3, 4, 5)),
])
@pytest.mark.parametrize("batch,grow", [(1, 0), (3, 2)])
def test_permute(dims: tuple[int, ...], shape: tuple[int, ...], batch: int, grow: int,
                 rng: np.random.Generator) -> None:
    s = spec("Permute")
    x = rng.normal(size=(batch, *[d + grow for d in shape])).astype(np.float32)
    y, _ = run_layer(s, make_attrs(s, dims), [x], rng)
    np.testing.assert_array_equal(y, tt(x).permute(0, *dims).numpy())


def test_permute_shapes() -> None:
    assert infer("Permute", ttype("batch", "t", 16), (2, 1)) == (B, 16, sym("t"))
    with pytest.raises(ShapeError, match=r"Permute\(\(2, 1\)\) expects input \(batch, d1, d2\), "
                                         r"got \(batch, 4, 5, 6\)") as e:
        infer("Permute", ttype("batch", 4, 5, 6), (2, 1))
    assert e.value.hint == "give one index per non-batch axis (3 here), counting from 1"


@pytest.mark.parametrize("n", [1, 4])
@pytest.mark.parametrize("batch,f", [(1, 3), (5, 8)])
def test_repeat_vector(n: int, batch: int, f: int, rng: np.random.Generator) -> None:
    s = spec("RepeatVector")
    x = rng.normal(size=(batch, f)).astype(np.float32)
    y, _ = run_layer(s, make_attrs(s, n), [x], rng)
    np.testing.assert_array_equal(y, tt(x).unsqueeze(1).expand(-1, n, -1).numpy())


def test_repeat_vector_shapes() -> None:
    assert infer("RepeatVector", ttype("batch", "f"), 7) == (B, 7, sym("f"))
    with pytest.raises(ShapeError, match=r"RepeatVector expects input \(batch, features\), got "
                                         r"\(batch, 3, 4\)") as e:
        infer("RepeatVector", ttype("batch", 3, 4), 2)
    assert e.value.hint is not None and "Flatten()" in e.value.hint


# -- Reshape on symbolic dims --------------------------------------------------------------------


@pytest.mark.parametrize("shape,target,want", [
    (("batch", "h", 8), (-1, 4), ("batch", H * 2, 4)),
    (("batch", "h", "w", 3), (-1,), ("batch", H * W * 3)),
    (("batch", "h", 6), (2, -1), ("batch", 2, H * 3)),
    (("batch", "t", 12), (-1, 3, 2), ("batch", sym("t") * 2, 3, 2)),
])
def test_reshape_symbolic(shape: tuple, target: tuple, want: tuple,
                          rng: np.random.Generator) -> None:
    s = spec("Reshape")
    attrs = make_attrs(s, target)
    (t,) = s.shape(attrs, [ttype(*shape)], SimpleContext())
    assert t.shape == tuple(sym(d) if isinstance(d, str) else d for d in want)
    for batch, size in ((1, 3), (4, 5)):
        env = {"batch": batch, "h": size, "w": size + 1, "t": size}
        concrete = tuple(env[d] if isinstance(d, str) else d for d in shape)
        x = rng.normal(size=concrete).astype(np.float32)
        (y,) = s.reference(attrs, [x], {})
        assert y.shape == tuple(evaluate(d, env) for d in t.shape)
        np.testing.assert_array_equal(y, tt(x).reshape(batch, *target).numpy())


def test_reshape_symbolic_unprovable() -> None:
    with pytest.raises(ShapeError, match="cannot prove that h \\* 6 is divisible by 4"):
        infer("Reshape", ttype("batch", "h", 6), (4, -1))
    with pytest.raises(ShapeError, match="needs a fixed size"):
        infer("Reshape", ttype("batch", "h", 6), (6, 2))
