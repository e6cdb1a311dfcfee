"""SpatialDropout1D/2D/3D, GaussianNoise, GaussianDropout, AlphaDropout and ActivityRegularization
are the identity at inference: the output must equal the input exactly (as torch's eval-mode
Dropout1d/2d/3d and AlphaDropout give), at two batch sizes and two sizes of every symbolic dim.
Their parameters are validated (Keras's ranges) and kept as canonical attributes, and the
spatial variants check the rank Keras requires.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layer_helpers import SimpleContext, make_attrs, spec, to_cf, to_cl, tt, ttype

from neuralc.ir.dims import evaluate
from neuralc.ir.shapes import ShapeError
from neuralc.layers.catalog import ParamError

IDENTITY = [
    ("SpatialDropout1D", {"rate": 0.3}, ("batch", "t", 4), torch.nn.Dropout1d(0.3)),
    ("SpatialDropout2D", {"rate": 0.5, "seed": 1}, ("batch", "h", "w", 3), torch.nn.Dropout2d(0.5)),
    ("SpatialDropout3D", {"p": 0.2}, ("batch", "d", "h", 2, 3), torch.nn.Dropout3d(0.2)),
    ("GaussianNoise", {"stddev": 0.5}, ("batch", "t", 4), None),
    ("GaussianNoise", {"stddev": 1.0, "seed": 3}, ("batch", "h", "w", 3), None),
    ("GaussianDropout", {"rate": 0.4}, ("batch", "h", "w", 3), None),
    ("AlphaDropout", {"rate": 0.1}, ("batch", "t", 4), torch.nn.AlphaDropout(0.1)),
    ("AlphaDropout", {"rate": 0.2, "noise_shape": (None, 1, 4)}, ("batch", "t", 4),
     torch.nn.AlphaDropout(0.2)),
    ("ActivityRegularization", {"l1": 0.01, "l2": 0.001}, ("batch", 7), None),
    ("ActivityRegularization", {}, ("batch", "h", "w", 3), None),
]


@pytest.mark.parametrize("layer,kw,sym_shape,module", IDENTITY,
                         ids=[f"{c[0]}-{c[1]}" for c in IDENTITY])
def test_identity_at_inference(layer: str, kw: dict, sym_shape: tuple,
                               module: torch.nn.Module | None, rng: np.random.Generator) -> None:
    s = spec(layer)
    attrs = make_attrs(s, **kw)
    assert s.weights(attrs, [ttype(*sym_shape)]) == {}
    ctx = SimpleContext()
    (out,) = s.shape(attrs, [ttype(*sym_shape)], ctx)
    assert out == ttype(*sym_shape)
    for batch, size in ((1, 5), (3, 8)):
        shape = tuple(batch if d == "batch" else size if isinstance(d, str) else d
                      for d in sym_shape)
        x = rng.normal(size=shape).astype(np.float32)
        x.setflags(write=False)
        (y,) = s.reference(attrs, [x], {})
        assert y.dtype == np.float32 and y.shape == x.shape
        assert y.shape == tuple(evaluate(d, {"batch": batch, "t": size, "h": size, "w": size,
                                             "d": size}) for d in out.shape)
        np.testing.assert_array_equal(y, x)
        if module is not None:  # torch's eval-mode counterpart (channels-first for Dropout*d)
            module.eval()
            with torch.no_grad():
                cf = layer.startswith("Spatial")
                ref = module(to_cf(tt(x)) if cf else tt(x))
                ref = to_cl(ref) if cf else ref
            np.testing.assert_array_equal(y, ref.numpy())


def test_parameters_are_stored_canonically() -> None:
    assert make_attrs("SpatialDropout1D", 0.25, 7) == {"rate": 0.25, "seed": 7}
    assert make_attrs("SpatialDropout2D", 0.25) == {"rate": 0.25, "seed": None}
    assert make_attrs("SpatialDropout3D", p=1) == {"rate": 1.0, "seed": None}
    assert make_attrs("GaussianNoise", 0.1, 4) == {"stddev": 0.1, "seed": 4}
    assert make_attrs("GaussianDropout", 0.5) == {"rate": 0.5, "seed": None}
    assert make_attrs("AlphaDropout", 0.1, (None, 1, 8), 2) == \
        {"rate": 0.1, "noise_shape": [None, 1, 8], "seed": 2}
    assert make_attrs("ActivityRegularization") == {"l1": 0.0, "l2": 0.0}
    assert make_attrs("ActivityRegularization", 0.01, 1) == {"l1": 0.01, "l2": 1.0}
    assert spec("SpatialDropout2D").positional == ("rate",)
    assert spec("SpatialDropout1D").positional == ("rate", "seed")
    assert spec("GaussianNoise").positional == ("stddev", "seed")
    assert spec("AlphaDropout").positional == ("rate", "noise_shape", "seed")
    assert spec("ActivityRegularization").positional == ("l1", "l2")


@pytest.mark.parametrize("layer,args,kw,message", [
    ("SpatialDropout1D", (1.5,), {}, "'rate' must be a number in [0, 1], got 1.5"),
    ("SpatialDropout2D", (-0.1,), {}, "'rate' must be a number in [0, 1]"),
    ("SpatialDropout3D", ("half",), {}, "'rate' must be a number"),
    ("SpatialDropout2D", (0.1,), {"seed": 1.5}, "'seed' must be an integer"),
    ("SpatialDropout2D", (0.1, "channels_last"), {}, "takes at most 1 positional"),
    ("SpatialDropout2D", (), {}, "missing the required parameter 'rate'"),
    ("GaussianNoise", (1.5,), {}, "'stddev' must be a number in [0, 1], got 1.5"),
    ("GaussianNoise", (-0.5,), {}, "'stddev' must be a number in [0, 1]"),
    ("GaussianNoise", (), {}, "missing the required parameter 'stddev'"),
    ("GaussianDropout", (1.0,), {}, "'rate' must be a number in [0, 1), got 1.0"),
    ("GaussianDropout", (2,), {}, "'rate' must be a number in [0, 1], got 2"),
    ("AlphaDropout", (1.0,), {}, "'rate' must be a number in [0, 1), got 1.0"),
    ("AlphaDropout", (0.1,), {"noise_shape": (None, 0)}, "'noise_shape' must be"),
    ("ActivityRegularization", (-0.1,), {}, "'l1' must be a number >= 0, got -0.1"),
    ("ActivityRegularization", (), {"l2": "big"}, "'l2' must be a number >= 0"),
], ids=lambda v: str(v)[:40])
def test_param_validation(layer: str, args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args, **kw)
    assert message in str(e.value)


@pytest.mark.parametrize("layer,shape,message,hint", [
    ("SpatialDropout2D", ("batch", 128), "SpatialDropout2D expects input (batch, height, width, "
     "channels), got (batch, 128)", "use Dropout"),
    ("SpatialDropout2D", ("batch", "t", 8), "got (batch, t, 8)", "use SpatialDropout1D"),
    ("SpatialDropout1D", ("batch", 4, 4, 8), "SpatialDropout1D expects input (batch, steps, "
     "channels)", "use SpatialDropout2D"),
    ("SpatialDropout3D", ("batch", 4, 4, 8), "SpatialDropout3D expects input (batch, depth, "
     "height, width, channels)", "use SpatialDropout2D"),
    ("SpatialDropout1D", ("batch", 2, 3, 4, 5, 6), "got (batch, 2, 3, 4, 5, 6)", "use Dropout"),
])
def test_spatial_dropout_rank(layer: str, shape: tuple, message: str, hint: str) -> None:
    s = spec(layer)
    with pytest.raises(ShapeError) as e:
        s.shape(make_attrs(s, 0.1), [ttype(*shape)], SimpleContext())
    assert message in e.value.message
    assert hint in (e.value.hint or "")


def test_alpha_dropout_noise_shape_is_checked() -> None:
    s = spec("AlphaDropout")
    with pytest.raises(ShapeError, match=r"AlphaDropout noise_shape \(None, 1\) has rank 2"):
        s.shape(make_attrs(s, 0.1, (None, 1)), [ttype("batch", "t", 4)], SimpleContext())
    with pytest.raises(ShapeError, match="does not broadcast"):
        s.shape(make_attrs(s, 0.1, (None, 1, 3)), [ttype("batch", "t", 4)], SimpleContext())
    (out,) = s.shape(make_attrs(s, 0.1, (None, 1, 4)), [ttype("batch", "t", 4)], SimpleContext())
    assert out == ttype("batch", "t", 4)


@pytest.mark.parametrize("layer", ["SpatialDropout1D", "GaussianNoise", "GaussianDropout",
                                   "AlphaDropout", "ActivityRegularization"])
def test_no_flops(layer: str) -> None:
    s = spec(layer)
    p = s.positional[0]
    attrs = make_attrs(s, **({p: 0.1} if s.param(p).required else {}))
    t = ttype("batch", "t", 4)
    assert s.flops(attrs, [t], [t]) == 0
