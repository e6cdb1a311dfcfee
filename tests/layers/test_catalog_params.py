"""Parameter binding and validation: positional orders, aliases, defaults, ParamError messages.

Every ParamError must name the parameter it is about, since the frontend reports it at the
argument's place in the .nr text.
"""

from __future__ import annotations

import pytest
from layer_helpers import make_attrs, spec

from neuralc.layers import catalog
from neuralc.layers.catalog import REQUIRED, ParamError

THIS_ISSUE = [
    "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
    "GlobalAveragePooling1D", "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D",
    "Flatten", "Reshape", "Dropout", "BatchNormalization", "LayerNormalization", "Embedding",
    "Activation", "Add", "Subtract", "Multiply", "Average", "Maximum", "Concatenate",
    "ResidualConnection",
]


def test_every_layer_is_registered() -> None:
    names = set(catalog.layer_names())
    assert set(THIS_ISSUE) <= names
    assert catalog.lookup("residual") is catalog.lookup("ResidualConnection")
    assert catalog.lookup("conv2d") is catalog.lookup("CONV2D")


@pytest.mark.parametrize("s", catalog.all_specs(), ids=lambda s: s.name)
def test_spec_hygiene(s: catalog.LayerSpec) -> None:
    """Docs for the generated reference, canonical defaults, no clash with common attributes."""
    assert s.doc and "\n" not in s.doc and s.doc.endswith(".")
    assert s.example and s.example.split("(")[0].split(" ")[0].lower() in \
        {n.lower() for n in (s.name, *s.aliases)}
    for p in s.params:
        assert p.name not in ("name", "device") and not {"name", "device"} & set(p.aliases)
        assert p.doc, f"{s.name}.{p.name} has no doc"
        if p.default is not REQUIRED and p.default is not None:
            assert p.type.convert(p.default, p.name) == p.default, f"{s.name}.{p.name}"
    required = [p.name for p in s.params if p.required]
    assert all(r in s.positional for r in required), "required params are positional"
    if s.kind == "merge":
        assert s.arity in (None, 2)


POSITIONAL = {
    "Conv1D": ("filters", "kernel_size", "activation"),
    "Conv2D": ("filters", "kernel_size", "activation"),
    "MaxPooling1D": ("pool_size", "strides", "padding"),
    "MaxPooling2D": ("pool_size", "strides", "padding"),
    "AveragePooling1D": ("pool_size", "strides", "padding"),
    "AveragePooling2D": ("pool_size", "strides", "padding"),
    "Dropout": ("rate",),
    "Activation": ("activation", "alpha"),
    "Embedding": ("input_dim", "output_dim"),
    "Reshape": ("target_shape",),
    "Concatenate": ("axis",),
}


@pytest.mark.parametrize("layer,order", POSITIONAL.items())
def test_positional_order(layer: str, order: tuple[str, ...]) -> None:
    assert spec(layer).positional[:len(order)] == order


def test_binding_and_defaults() -> None:
    a = make_attrs("Conv2D", 32, 3, "ReLU")
    assert a == {"filters": 32, "kernel_size": [3, 3], "activation": "relu", "strides": [1, 1],
                 "padding": "valid", "dilation_rate": [1, 1], "groups": 1, "use_bias": True}
    assert make_attrs("MaxPooling2D", (2, 3), None, "SAME") == \
        {"pool_size": [2, 3], "strides": None, "padding": "same"}
    assert make_attrs("AveragePooling1D") == {"pool_size": [2], "strides": None, "padding": "valid"}
    assert make_attrs("BatchNormalization") == \
        {"axis": -1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True}
    assert make_attrs("LayerNormalization") == \
        {"axis": [-1], "epsilon": 1e-3, "center": True, "scale": True}
    assert make_attrs("LayerNormalization", (1, 2))["axis"] == [1, 2]
    assert make_attrs("Activation", "leaky_relu", 0.1) == {"activation": "leaky_relu", "alpha": 0.1}
    assert make_attrs("Activation", "silu")["activation"] == "swish"
    assert make_attrs("Dropout", 0.25) == {"rate": 0.25, "noise_shape": None, "seed": None}
    assert make_attrs("Reshape", (7, 7, 64)) == {"target_shape": [7, 7, 64]}
    assert make_attrs("Concatenate") == {"axis": -1}
    assert make_attrs("Residual") == {"activation": "linear"}
    assert make_attrs("Residual", activation=None) == {"activation": "linear"}
    assert make_attrs("GlobalAveragePooling2D") == {"keepdims": False}


@pytest.mark.parametrize("layer,kw,canon", [
    ("Conv2D", {"out_channels": 4, "kernel": 3, "stride": 2},
     {"filters": 4, "kernel_size": [3, 3], "strides": [2, 2]}),
    ("Conv1D", {"filters": 4, "kernel_size": 3, "dilation": 2, "bias": False},
     {"dilation_rate": [2], "use_bias": False}),
    ("MaxPooling2D", {"kernel_size": 3, "stride": 1}, {"pool_size": [3, 3], "strides": [1, 1]}),
    ("Dropout", {"p": 0.1}, {"rate": 0.1}),
    ("BatchNormalization", {"eps": 1e-5}, {"epsilon": 1e-5}),
    ("LayerNormalization", {"eps": 1e-5}, {"epsilon": 1e-5}),
    ("Embedding", {"num_embeddings": 10, "embedding_dim": 3}, {"input_dim": 10, "output_dim": 3}),
    ("Concatenate", {"dim": 1}, {"axis": 1}),
])
def test_pytorch_aliases(layer: str, kw: dict, canon: dict) -> None:
    a = make_attrs(layer, **kw)
    assert {k: a[k] for k in canon} == canon


BAD = [
    ("Conv2D", (0, 3), {}, "'filters' must be a positive integer, got 0"),
    ("Conv2D", (8, (3,)), {}, "'kernel_size' must be a positive integer or a tuple of 2"),
    ("Conv2D", (8, 3), {"strides": 0}, "'strides' must be"),
    ("Conv2D", (8, 3), {"padding": "sme"},
     "'padding' must be one of \"valid\", \"same\", got \"sme\"; did you mean 'same'?"),
    ("Conv2D", (8, 3), {"padding": "causal"}, "'padding' must be one of"),
    ("Conv2D", (8, 3, "rellu"), {},
     "unknown activation \"rellu\" for 'activation'; did you mean 'relu'?"),
    ("Conv2D", (8, 3), {"groups": 0}, "'groups' must be a positive integer"),
    ("Conv2D", (8, 3), {"use_bias": "yes"}, "'use_bias' must be true or false"),
    ("Conv2D", (8, 3), {"strides": 2, "dilation_rate": 2},
     "'strides' > 1 cannot be combined with 'dilation_rate' > 1"),
    ("Conv1D", (8, 3), {"strides": (2,), "dilation_rate": 3}, "'strides' > 1 cannot be combined"),
    ("Conv2D", (10, 3), {"groups": 3}, "'filters' (10) must be divisible by 'groups' (3)"),
    ("MaxPooling2D", (0,), {}, "'pool_size' must be"),
    ("MaxPooling2D", ((2, 2), (1, 2, 3)), {}, "'strides' must be"),
    ("AveragePooling1D", (2, None, "full"), {}, "'padding' must be one of"),
    ("GlobalMaxPooling2D", (), {"keepdims": 1}, "'keepdims' must be true or false"),
    ("Dropout", (1.5,), {}, "'rate' must be a number in [0, 1], got 1.5"),
    ("Dropout", (-0.1,), {}, "'rate' must be a number in [0, 1]"),
    ("Dropout", ("half",), {}, "'rate' must be a number"),
    ("Dropout", (0.5,), {"noise_shape": (None, 0)}, "'noise_shape' must be"),
    ("Dropout", (0.5,), {"seed": 1.5}, "'seed' must be an integer"),
    ("BatchNormalization", (), {"epsilon": 0}, "'epsilon' must be a number > 0, got 0"),
    ("BatchNormalization", (), {"momentum": 1.5}, "'momentum' must be a number in [0, 1]"),
    ("BatchNormalization", (), {"axis": (1, 2)}, "'axis' must be an integer axis"),
    ("LayerNormalization", (), {"axis": "last"}, "'axis' must be an axis or a list of axes"),
    ("LayerNormalization", (), {"eps": -1.0}, "'epsilon' must be a number > 0"),
    ("Embedding", (0, 8), {}, "'input_dim' must be a positive integer"),
    ("Embedding", (10, 2.5), {}, "'output_dim' must be a positive integer, got 2.5"),
    ("Reshape", ((-1, -1),), {},
     "'target_shape' must be a tuple of positive integers (at most one -1)"),
    ("Reshape", ((0, 3),), {}, "'target_shape' must be"),
    ("Activation", ("sigmoidd",), {}, "unknown activation \"sigmoidd\" for 'activation'"),
    ("Activation", ("relu", 0.1), {},
     "'alpha' applies only to leaky_relu and elu, not to \"relu\""),
    ("Activation", ("elu", "big"), {}, "'alpha' must be a number"),
    ("Concatenate", ("last",), {}, "'axis' must be an integer axis"),
    ("ResidualConnection", (), {"activation": 3}, "unknown activation 3 for 'activation'"),
]


@pytest.mark.parametrize("layer,args,kw,message", BAD, ids=[f"{b[0]}-{b[3][:30]}" for b in BAD])
def test_bad_values(layer: str, args: tuple, kw: dict, message: str) -> None:
    with pytest.raises(ParamError) as e:
        make_attrs(layer, *args, **kw)
    assert message in str(e.value)


def test_unknown_and_missing_parameters() -> None:
    with pytest.raises(ParamError, match="Conv2D has no parameter 'kernal_size'"):
        make_attrs("Conv2D", 8, kernal_size=3)
    with pytest.raises(ParamError, match="missing the required parameter 'kernel_size'"):
        make_attrs("Conv2D", 8)
    with pytest.raises(ParamError, match="missing the required parameter 'rate'"):
        make_attrs("Dropout")
    with pytest.raises(ParamError, match="'rate' is given twice"):
        make_attrs("Dropout", 0.1, p=0.2)


def test_defaults_are_not_shared() -> None:
    a = make_attrs("Conv2D", 8, 3)
    a["strides"][0] = 5
    assert make_attrs("Conv2D", 8, 3)["strides"] == [1, 1]


def test_spec_defaults_are_fresh_copies() -> None:
    s = spec("Conv2D")
    s.defaults()["strides"].append(9)
    assert s.defaults()["strides"] == [1, 1]


def test_integral_floats_from_macro_arithmetic() -> None:
    """``$n / 2`` gives a float; an integral one is accepted wherever an int is, tuples too."""
    assert make_attrs("Conv2D", 8.0, (3.0, 3))["kernel_size"] == [3, 3]
    assert make_attrs("Reshape", (7.0, -1.0))["target_shape"] == [7, -1]
    assert make_attrs("LayerNormalization", (1.0, 2))["axis"] == [1, 2]
    with pytest.raises(ParamError, match="'kernel_size' must be"):
        make_attrs("Conv2D", 8, (3.5, 3))


@pytest.mark.parametrize("layer,args,kw", [
    ("Conv2D", (8, (3, 2), "relu"), {"strides": 2, "padding": "same", "bias": False}),
    ("Conv1D", (8, 3), {"padding": "causal", "dilation": 2}),
    ("MaxPooling2D", ((2, 2), (1, 1), "same"), {}),
    ("AveragePooling1D", (3,), {}),
    ("GlobalMaxPooling2D", (), {"keepdims": True}),
    ("Reshape", ((-1, 4),), {}),
    ("Dropout", (0.5, (None, 1, 3), 3), {}),
    ("BatchNormalization", (1, 0.9, 1e-5), {}),
    ("LayerNormalization", ((1, -1),), {}),
    ("Embedding", (10, 4), {}),
    ("Activation", ("LeakyReLU", 0.1), {}),
    ("Concatenate", (1,), {}),
    ("Residual", ("relu",), {}),
    ("Add", (), {}),
])
def test_bound_attributes_pass_graph_verification(layer: str, args: tuple, kw: dict) -> None:
    """What make_attrs (the frontend's binding) produces is what graph ops accept as canonical."""
    from neuralc.ir.core import Block, Op
    from neuralc.ir.types import unranked
    from neuralc.layers.graph_dialect import LayerOp

    s = spec(layer)
    attrs = make_attrs(s, *args, **kw)
    block = Block([unranked()] * (s.arity or 2))
    op = Op(s.op_name, block.args, [unranked()], {**attrs, "name": s.keras_name})
    assert isinstance(op, LayerOp)
    assert op.verify_structure() + op.verify_extra() == []


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(ParamError, match="'rate' must be a number in"):
        make_attrs("Dropout", value)
    with pytest.raises(ParamError, match="'epsilon' must be a number > 0"):
        make_attrs("BatchNormalization", epsilon=value)
