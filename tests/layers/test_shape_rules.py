"""Shape rules on symbolic dims, their error messages, weight specs and FLOP counts.

The central property: for every windowed layer, the symbolic output dims evaluated at concrete
sizes equal the shape of the numpy reference's actual output on arrays of those sizes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from layer_helpers import SimpleContext, dims, make_attrs, spec, ttype

from neuralc.ir.dims import evaluate, floordiv, parse_dim, sym
from neuralc.ir.shapes import ShapeError
from neuralc.ir.types import TensorType, shape_str

B, H, W = sym("batch"), sym("h"), sym("w")


def infer(layer: str, in_types: list[TensorType], *args: object, ctx: SimpleContext | None = None,
          **kw: object) -> tuple:
    s = spec(layer)
    (out,) = s.shape(make_attrs(s, *args, **kw), in_types, ctx or SimpleContext())
    return out.shape


# -- conv and pooling: symbolic arithmetic ------------------------------------------------------


def test_conv2d_stride2_same_is_ceildiv() -> None:
    out = infer("Conv2D", [ttype("batch", "h", "w", 3)], 8, 3, strides=2, padding="same")
    assert out == (B, parse_dim("(h + 1) floordiv 2"), parse_dim("(w + 1) floordiv 2"), 8)
    assert out[1] == floordiv(H + 1, 2)
    assert "(h + 1) floordiv 2" in shape_str(out)


def test_conv2d_valid_symbolic() -> None:
    out = infer("Conv2D", [ttype("batch", "h", "w", 3)], 8, (3, 5))
    assert out == (B, H - 2, W - 4, 8)
    out = infer("Conv2D", [ttype("batch", "h", "w", 3)], 8, 3, strides=2)
    assert out == (B, floordiv(H - 3, 2) + 1, floordiv(W - 3, 2) + 1, 8)
    out = infer("Conv2D", [ttype("batch", "h", 32, 3)], 8, 3, dilation_rate=2)
    assert out == (B, H - 4, 28, 8)


def test_conv1d_causal_keeps_length() -> None:
    out = infer("Conv1D", [ttype("batch", "t", 4)], 5, 3, padding="causal")
    assert out == dims("batch", "t", 5)


def test_pooling_symbolic() -> None:
    assert infer("MaxPooling2D", [ttype("batch", "h", "w", 3)]) == \
        (B, floordiv(H, 2), floordiv(W, 2), 3)
    assert infer("AveragePooling2D", [ttype("batch", "h", 9, 3)], 3, 2, "same") == \
        (B, parse_dim("(h + 1) floordiv 2"), 5, 3)


def test_pooling_twice_is_one_canonical_form() -> None:
    once = infer("MaxPooling2D", [ttype("batch", "h", "w", 3)])
    twice = infer("MaxPooling2D", [TensorType(once)])
    assert twice[1] == floordiv(H, 4)


WINDOWED = [
    ("Conv2D", {"filters": 4, "kernel_size": 3}),
    ("Conv2D", {"filters": 4, "kernel_size": (3, 2), "strides": (2, 3)}),
    ("Conv2D", {"filters": 4, "kernel_size": 3, "strides": 3, "padding": "same"}),
    ("Conv2D", {"filters": 4, "kernel_size": (2, 3), "dilation_rate": (3, 2)}),
    ("Conv2D", {"filters": 4, "kernel_size": 4, "dilation_rate": 2, "padding": "same"}),
    ("MaxPooling2D", {"pool_size": 3}),
    ("MaxPooling2D", {"pool_size": 3, "strides": 2, "padding": "same"}),
    ("AveragePooling2D", {"pool_size": (2, 3), "strides": (3, 1)}),
    ("AveragePooling2D", {"pool_size": (4, 4), "padding": "same"}),
]


@pytest.mark.parametrize("layer,kw", WINDOWED, ids=str)
def test_symbolic_shape_matches_reference(layer: str, kw: dict, rng: np.random.Generator) -> None:
    s = spec(layer)
    attrs = make_attrs(s, **kw)
    (sym_t,) = s.shape(attrs, [ttype("batch", "h", "w", 2)], SimpleContext())
    assert sym_t.shape is not None
    w = None
    for h, wd in itertools.product(range(7, 16), range(7, 12)):
        x = rng.normal(size=(2, h, wd, 2)).astype(np.float32)
        (static_t,) = s.shape(attrs, [ttype("batch", h, wd, 2)], SimpleContext())
        if w is None:
            specs = s.weights(attrs, [static_t.with_shape((2, h, wd, 2))])
            w = {k: rng.normal(size=v.shape).astype(np.float32) for k, v in specs.items()}
        (y,) = s.reference(attrs, [x], w)
        env = {"batch": 2, "h": h, "w": wd}
        assert y.shape == tuple(evaluate(d, env) for d in sym_t.shape)
        assert y.shape == tuple(evaluate(d, env) for d in static_t.shape)


@pytest.mark.parametrize("n", [1, 2])
def test_conv1d_symbolic_shape_matches_reference(n: int, rng: np.random.Generator) -> None:
    s = spec("Conv1D")
    for pad, stride, dil in [("valid", 2, 1), ("same", 3, 1), ("causal", 1, 2), ("causal", 2, 1)]:
        attrs = make_attrs(s, 3, 3, padding=pad, strides=stride, dilation_rate=dil)
        (t,) = s.shape(attrs, [ttype("batch", "t", n)], SimpleContext())
        w = {"weight": np.ones((3, n, 3), np.float32), "bias": np.zeros(3, np.float32)}
        for length in range(5, 14):
            (y,) = s.reference(attrs, [np.ones((1, length, n), np.float32)], w)
            assert y.shape == tuple(evaluate(d, {"batch": 1, "t": length}) for d in t.shape)


# -- conv and pooling: errors -------------------------------------------------------------------


def test_conv2d_on_a_vector_is_the_section9_error() -> None:
    with pytest.raises(ShapeError) as e:
        infer("Conv2D", [ttype("batch", 128)], 64, (3, 3), "relu")
    assert e.value.message == ("Conv2D expects input (batch, height, width, channels), "
                               "got (batch, 128)")
    assert e.value.hint == "use Reshape((h, w, c)) to make it an image"


@pytest.mark.parametrize("layer", ["Conv1D", "MaxPooling1D", "GlobalAveragePooling1D"])
def test_1d_layers_want_sequences(layer: str) -> None:
    args = (4, 3) if layer == "Conv1D" else ()
    want = r"expects input \(batch, steps, channels\), got \(batch, 5, 5, 3\)"
    with pytest.raises(ShapeError, match=want):
        infer(layer, [ttype("batch", 5, 5, 3)], *args)


def test_window_larger_than_input() -> None:
    want = r"Conv2D kernel \(5, 5\) does not fit its input \(4, 9\)"
    with pytest.raises(ShapeError, match=want) as e:
        infer("Conv2D", [ttype("batch", 4, 9, 3)], 8, 5)
    assert e.value.hint is not None and 'padding="same"' in e.value.hint
    with pytest.raises(ShapeError, match=r"Conv2D dilated kernel \(5, 5\) does not fit"):
        infer("Conv2D", [ttype("batch", 4, 9, 3)], 8, 3, dilation_rate=2)
    want = r"MaxPooling2D pool_size \(2, 2\) does not fit its input \(1, 1\)"
    with pytest.raises(ShapeError, match=want) as e:
        infer("MaxPooling2D", [ttype("batch", 1, 1, 8)])
    assert e.value.hint is not None and "GlobalMaxPooling2D" in e.value.hint
    # 'same' padding always fits; symbolic sizes cannot be checked here.
    assert infer("Conv2D", [ttype("batch", 4, 9, 3)], 8, 5, padding="same") == (B, 4, 9, 8)
    assert infer("MaxPooling2D", [ttype("batch", "h", 1, 8)], padding="same")[2] == 1


def test_conv_groups_must_divide_input_channels() -> None:
    with pytest.raises(ShapeError, match="groups=4 needs input channels divisible by 4, got 6"):
        infer("Conv2D", [ttype("batch", 8, 8, 6)], 8, 3, groups=4)


def test_conv_weights_need_static_channels() -> None:
    s = spec("Conv2D")
    attrs = make_attrs(s, 8, 3)
    t = ttype("batch", "h", "w", "c")
    s.shape(attrs, [t], SimpleContext())  # the output shape does not need the channels
    with pytest.raises(ShapeError, match="Conv2D needs a fixed number of input channels.*'c'"):
        s.weights(attrs, [t])


def test_conv_weight_specs_are_torch_layout_and_init() -> None:
    s = spec("Conv2D")
    attrs = make_attrs(s, 12, (3, 5), groups=3)
    ws = s.weights(attrs, [ttype("batch", "h", "w", 6)])
    assert ws["weight"].shape == (12, 2, 3, 5) and ws["bias"].shape == (12,)
    bound = 1 / np.sqrt(2 * 3 * 5)
    assert ws["weight"].init.kind == "uniform" and ws["weight"].init.a == pytest.approx(bound)
    assert ws["bias"].init.kind == "uniform" and ws["bias"].init.a == pytest.approx(bound)
    assert "bias" not in s.weights(make_attrs(s, 12, 3, use_bias=False), [ttype("batch", 9, 9, 6)])


def test_flops() -> None:
    conv = spec("Conv2D")
    attrs = make_attrs(conv, 8, 3)
    ins = [ttype("batch", "h", "w", 4)]
    outs = conv.shape(attrs, ins, SimpleContext())
    assert conv.flops(attrs, ins, outs) == 2 * (H - 2) * (W - 2) * 8 * 4 * 9
    attrs = make_attrs(conv, 8, 3, groups=2, padding="same")
    ins = [ttype("batch", 10, 10, 4)]
    outs = conv.shape(attrs, ins, SimpleContext())
    assert conv.flops(attrs, ins, outs) == 2 * 100 * 8 * 2 * 9
    pool = spec("MaxPooling2D")
    attrs = make_attrs(pool)
    ins = [ttype("batch", 8, 8, 3)]
    assert pool.flops(attrs, ins, pool.shape(attrs, ins, SimpleContext())) == 16 * 3 * 4
    add = spec("Add")
    ins = [ttype("batch", 5, 6)] * 3
    assert add.flops({}, ins, add.shape({}, ins, SimpleContext())) == 2 * 30
    flat = spec("Flatten")
    assert flat.flops({}, ins[:1], flat.shape({}, ins[:1], SimpleContext())) == 0


# -- global pooling, flatten, reshape ------------------------------------------------------------


def test_global_pooling_shapes() -> None:
    assert infer("GlobalAveragePooling2D", [ttype("batch", "h", "w", 16)]) == dims("batch", 16)
    assert infer("GlobalMaxPooling2D", [ttype("batch", "h", "w", 16)], keepdims=True) == \
        dims("batch", 1, 1, 16)
    assert infer("GlobalMaxPooling1D", [ttype("batch", "t", 7)]) == dims("batch", 7)


def test_flatten_shapes() -> None:
    assert infer("Flatten", [ttype("batch", "h", "w", 3)]) == (B, H * W * 3)
    assert infer("Flatten", [ttype("batch", 7, 7, 64)]) == (B, 3136)
    assert infer("Flatten", [ttype("batch")]) == (B, 1)  # Keras: (batch,) -> (batch, 1)


def test_reshape_shapes() -> None:
    assert infer("Reshape", [ttype("batch", 3136)], (7, 7, 64)) == dims("batch", 7, 7, 64)
    assert infer("Reshape", [ttype("batch", "h", "w", 3)], (-1, 3)) == (B, H * W, 3)
    assert infer("Reshape", [ttype("batch", "t", 8)], (-1, 2, 4)) == (B, sym("t"), 2, 4)
    assert infer("Reshape", [ttype("batch", "t", 6)], (-1, 3)) == (B, sym("t") * 2, 3)
    assert infer("Reshape", [ttype("batch", 12)], (2, -1)) == dims("batch", 2, 6)


def test_reshape_errors() -> None:
    want = r"Reshape cannot turn \(12,\) into \(5, 2\): 12 elements per sample into 10"
    with pytest.raises(ShapeError, match=want):
        infer("Reshape", [ttype("batch", 12)], (5, 2))
    with pytest.raises(ShapeError, match=r"12 elements are not divisible by 5"):
        infer("Reshape", [ttype("batch", 3, 4)], (-1, 5))
    with pytest.raises(ShapeError, match=r"cannot prove that t \* 6 is divisible by 4") as e:
        infer("Reshape", [ttype("batch", "t", 6)], (-1, 4))
    assert e.value.hint
    with pytest.raises(ShapeError, match=r"into \(32, 4\): seq \* 4 elements per sample into 128, "
                                          r"which needs a fixed size") as e:
        infer("Reshape", [ttype("batch", "seq", 4)], (32, 4))
    assert e.value.hint is not None and "-1" in e.value.hint


# -- dropout, normalization, embedding, activation -----------------------------------------------


def test_shape_preserving_layers() -> None:
    t = ttype("batch", "h", "w", 8)
    assert infer("Dropout", [t], 0.5) == t.shape
    assert infer("BatchNormalization", [t]) == t.shape
    assert infer("LayerNormalization", [t], [-2, -1]) == t.shape
    assert infer("Activation", [t], "gelu") == t.shape


def test_dropout_noise_shape() -> None:
    t = ttype("batch", 5, 8)
    assert infer("Dropout", [t], 0.5, (None, 1, 8)) == t.shape
    want = r"noise_shape \(1, 8\) has rank 2, but the input \(batch, 5, 8\) has rank 3"
    with pytest.raises(ShapeError, match=want):
        infer("Dropout", [t], 0.5, (1, 8))
    with pytest.raises(ShapeError, match="does not broadcast"):
        infer("Dropout", [t], 0.5, (None, 3, 8))


@pytest.mark.parametrize("layer", ["BatchNormalization", "LayerNormalization"])
def test_norm_axis_errors(layer: str) -> None:
    t = ttype("batch", 4, 8)
    with pytest.raises(ShapeError, match=r"axis=3 is out of range for an input of rank 3"):
        infer(layer, [t], 3)
    with pytest.raises(ShapeError, match=r"axis=-4 is out of range"):
        infer(layer, [t], -4)
    with pytest.raises(ShapeError, match=r"cannot use the batch axis \(axis=0\)"):
        infer(layer, [t], 0)
    with pytest.raises(ShapeError, match=r"cannot use the batch axis \(axis=-3\)"):
        infer(layer, [t], -3)
    want = r"expects input \(batch, \.\.\., features\), got \(batch,\)"
    with pytest.raises(ShapeError, match=want):
        infer(layer, [ttype("batch")])


def test_layer_norm_duplicate_axes() -> None:
    with pytest.raises(ShapeError, match="names the same axis twice"):
        infer("LayerNormalization", [ttype("batch", 4, 8)], [2, -1])


def test_norm_weight_specs() -> None:
    bn = spec("BatchNormalization")
    ws = bn.weights(make_attrs(bn, 1), [ttype("batch", 16, "h", "w")])
    assert {k: (v.shape, v.init.kind, v.init.a, v.dtype) for k, v in ws.items()} == {
        "weight": ((16,), "const", 1.0, "f32"),
        "bias": ((16,), "const", 0.0, "f32"),
        "running_mean": ((16,), "const", 0.0, "f32"),
        "running_var": ((16,), "const", 1.0, "f32"),
        "num_batches_tracked": ((), "const", 0.0, "i64"),
    }
    with pytest.raises(ShapeError, match="needs a fixed number of features"):
        bn.weights(make_attrs(bn), [ttype("batch", 16, "c")])
    ln = spec("LayerNormalization")
    ws = ln.weights(make_attrs(ln, [-1, 2]), [ttype("batch", "t", 4, 6)])
    assert ws["weight"].shape == (4, 6) and ws["bias"].shape == (4, 6)
    with pytest.raises(ShapeError, match="LayerNormalization needs a fixed size of axis 1"):
        ln.weights(make_attrs(ln, [1, 2]), [ttype("batch", "t", 4)])


def test_embedding_shapes() -> None:
    out = infer("Embedding", [ttype("batch", "seq", dtype="i64")], 100, 16)
    assert out == dims("batch", "seq", 16)
    s = spec("Embedding")
    (out,) = s.shape(make_attrs(s, 100, 16), [ttype("batch", dtype="i32")], SimpleContext())
    assert out == ttype("batch", 16)  # float output
    with pytest.raises(ShapeError, match="Embedding expects integer indices, got f32 values") as e:
        infer("Embedding", [ttype("batch", 10)], 100, 16)
    assert e.value.hint is not None and "first consumer" in e.value.hint


# -- merges and residuals -----------------------------------------------------------------------


def test_merge_unifies_every_dim() -> None:
    ctx = SimpleContext()
    out = infer("Add", [ttype("batch", "h", 4), ttype("batch", "w", 4)], ctx=ctx)
    assert out[2] == 4 and ctx.resolve(out[1]) == ctx.resolve(sym("h")) == ctx.resolve(sym("w"))
    assert any("axis 1" in what for _, _, what in ctx.calls)
    assert any(a == B for a, _, _ in ctx.calls)  # the batch axis is unified too


@pytest.mark.parametrize("layer", ["Add", "Subtract", "Multiply", "Average", "Maximum"])
def test_merge_mismatch(layer: str) -> None:
    with pytest.raises(ShapeError, match=rf"{layer} inputs have incompatible shapes "
                                         r"\(batch, 8, 8, 16\), \(batch, 8, 8, 32\) \(axis 3\)"):
        infer(layer, [ttype("batch", 8, 8, 16), ttype("batch", 8, 8, 32)])
    with pytest.raises(ShapeError, match=rf"{layer} inputs have incompatible shapes") as e:
        infer(layer, [TensorType((B, H, 16)), TensorType((B, H - 2, 16))])
    assert e.value.hint is not None and "not equal" in e.value.hint
    with pytest.raises(ShapeError, match=rf"{layer} inputs have different ranks"):
        infer(layer, [ttype("batch", 8), ttype("batch", 8, 1)])


def test_merge_broadcasts_size_one() -> None:
    gate = ttype("batch", 1, 1, 32)
    fmap = ttype("batch", "h", "w", 32)
    assert infer("Multiply", [fmap, gate]) == fmap.shape
    assert infer("Multiply", [gate, fmap]) == fmap.shape
    assert infer("Add", [ttype("batch", 1, 5), ttype("batch", 4, 1)]) == dims("batch", 4, 5)


def test_concatenate() -> None:
    ctx = SimpleContext()
    ins = [ttype("batch", "h", 16), ttype("batch", "h", 8), ttype("batch", "h", "c")]
    out = infer("Concatenate", ins, ctx=ctx)
    assert out == (B, H, 24 + sym("c"))
    out = infer("Concatenate", [ttype("batch", "h", 3), ttype("batch", "w", 3)], 1)
    assert out == (B, H + W, 3)
    want = r"Concatenate inputs have incompatible shapes .* \(axis 1\)"
    with pytest.raises(ShapeError, match=want):
        infer("Concatenate", [ttype("batch", 4, 3), ttype("batch", 5, 3)])
    with pytest.raises(ShapeError, match=r"Concatenate cannot use the batch axis \(axis=0\)"):
        infer("Concatenate", [ttype("batch", 4), ttype("batch", 5)], 0)
    want = r"Concatenate axis=2 is out of range for an input of rank 2"
    with pytest.raises(ShapeError, match=want):
        infer("Concatenate", [ttype("batch", 4), ttype("batch", 5)], 2)


def test_residual_keeps_shape_and_unifies() -> None:
    ctx = SimpleContext()
    out = infer("ResidualConnection", [ttype("batch", "h", 8), ttype("batch", "t", 8)], ctx=ctx)
    assert ctx.resolve(out[1]) == ctx.resolve(sym("h")) == ctx.resolve(sym("t"))


def test_residual_shape_change_suggests_a_projection() -> None:
    with pytest.raises(ShapeError) as e:
        infer("Residual", [ttype("batch", 8, 8, 16), ttype("batch", 8, 8, 32)])
    assert e.value.message == ("ResidualConnection body changes the shape from (batch, 8, 8, 16) "
                               "to (batch, 8, 8, 32)")
    assert e.value.hint is not None
    assert "Add { { ...body... } { Conv2D(filters, 1) } }" in e.value.hint
    with pytest.raises(ShapeError, match="body changes the shape from"):
        infer("Residual", [TensorType((B, H, 16)), TensorType((B, H - 2, 16))])
    with pytest.raises(ShapeError, match="body changes the shape from"):
        infer("Residual", [ttype("batch", 8, 16), ttype("batch", 1, 16)])  # no broadcasting
    with pytest.raises(ShapeError, match="body changes the shape from"):
        infer("Residual", [ttype("batch", 128), ttype("batch", 8, 16)])
