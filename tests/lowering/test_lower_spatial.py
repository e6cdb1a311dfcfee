"""Lowering of the spatial families: convolutions (plain, transposed, depthwise, separable),
pooling (windowed, global, adaptive) and resampling (UpSampling, ZeroPadding, Cropping).

Each case compiles a small network, lowers it, and compares the tensor IR with the graph IR in
the reference interpreter on the same weights and fresh random inputs at two sizes of every
symbol (``check_lowering``); the cases mirror the parity tests in ``tests/layers``. The new
ops of ``tensor_spatial.py`` are also checked on their own (explicit padding forms, verifier
messages, shape errors) against PyTorch where it has the same operation.

Tolerance: float32, rtol = atol = 1e-5 throughout, the example models included (the graph
references sum in float64, the tensor ops' convolutions in float32; sums of at most a few
hundred products).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lowering_helpers import check_lowering

from neuralc.ir.core import func_body
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes.base import PassContext
from neuralc.passes.shape_infer import ShapeInferencePass
from neuralc.runtime.interpreter import run_module

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def net(inp: str, *layers: str) -> str:
    body = "\n".join(f"    {layer}" for layer in layers)
    return f"network N {{\n  input: {inp}\n  layers:\n{body}\n}}\n"


def op_names(low) -> list[str]:
    return [op.name for op in func_body(low.funcs[0]).ops if op.name != "func.return"]


def kw(d: dict) -> str:
    """Keyword arguments in DSL syntax: tuples stay tuples, strings are quoted."""
    def show(v: object) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v)

    return "".join(f", {k}={show(v)}" for k, v in d.items())


# -- Conv1D/2D/3D ------------------------------------------------------------------------------

CONV2D_CASES = [
    {},
    {"padding": "same"},
    {"strides": 2},
    {"strides": 2, "padding": "same"},
    {"strides": (3, 2), "padding": "same"},
    {"strides": (2, 3)},
    {"dilation_rate": 2},
    {"dilation_rate": (2, 3), "padding": "same"},
    {"groups": 2},
    {"groups": 4, "padding": "same", "strides": 2},
    {"use_bias": False},
]


@pytest.mark.parametrize("case", CONV2D_CASES, ids=str)
@pytest.mark.parametrize("kernel", ["(3, 3)", "(2, 4)", "1"])
def test_conv2d(case: dict, kernel: str) -> None:
    low = check_lowering(net("(h, w, 8)", f'Conv2D(8, {kernel}, "relu"{kw(case)})'))
    names = op_names(low)
    assert names.count("tensor.conv") == 1 and "tensor.unary" in names
    assert ("tensor.binary" in names) == case.get("use_bias", True)


@pytest.mark.parametrize("case", [
    {}, {"padding": "same"}, {"padding": "causal"}, {"strides": 2, "padding": "same"},
    {"strides": 3}, {"dilation_rate": 3, "padding": "causal"}, {"strides": 2, "padding": "causal"},
    {"dilation_rate": 2, "padding": "same"}, {"groups": 3, "padding": "same"},
    {"use_bias": False, "strides": 2},
], ids=str)
@pytest.mark.parametrize("kernel", [3, 4])
def test_conv1d(case: dict, kernel: int) -> None:
    low = check_lowering(net("(t, 6)", f'Conv1D(9, {kernel}, "tanh"{kw(case)})'))
    conv = next(op for op in func_body(low.funcs[0]).ops if op.name == "tensor.conv")
    if case.get("padding") == "causal":
        assert conv.attributes["padding"] == [[(kernel - 1) * case.get("dilation_rate", 1), 0]]


# 3-D convolutions (these once caught an einsum label collision in tensor.conv's reference).
@pytest.mark.parametrize("case", [
    {}, {"padding": "same", "strides": 2}, {"dilation_rate": (1, 2, 1)}, {"groups": 2},
], ids=str)
@pytest.mark.parametrize("inp", ["(5, 6, 7, 4)", "(d, h, 5, 4)"])
def test_conv3d(case: dict, inp: str) -> None:
    check_lowering(net(inp, f"Conv3D(6, (2, 3, 2){kw(case)})"))


@pytest.mark.parametrize("act", ["softmax", "log_softmax", "gelu", "selu", "linear", "swish"])
def test_conv_activations(act: str) -> None:
    check_lowering(net("(h, w, 3)", f'Conv2D(4, 3, "{act}", padding="same")'))


# -- transposed convolution ------------------------------------------------------------------------

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


@pytest.mark.parametrize("case", TRANSPOSE_CASES, ids=str)
@pytest.mark.parametrize("kernel", ["3", "(2, 4)", "1"])
def test_conv2d_transpose(case: dict, kernel: str) -> None:
    low = check_lowering(net("(h, w, 4)", f'Conv2DTranspose(6, {kernel}, "relu"{kw(case)})'))
    assert op_names(low).count("tensor.conv_transpose") == 1


@pytest.mark.parametrize("case", [
    {}, {"padding": "same"}, {"strides": 2}, {"strides": 3, "padding": "same"},
    {"strides": 2, "output_padding": 1}, {"strides": 3, "padding": "same", "output_padding": 2},
    {"dilation_rate": 3, "padding": "same"}, {"groups": 3}, {"use_bias": False, "strides": 2},
], ids=str)
@pytest.mark.parametrize("kernel", [3, 4])
def test_conv1d_transpose(case: dict, kernel: int) -> None:
    check_lowering(net("(t, 6)", f'Conv1DTranspose(9, {kernel}, "tanh"{kw(case)})'))


@pytest.mark.parametrize("case", [
    {}, {"strides": 2, "padding": "same"}, {"strides": (1, 2, 3), "output_padding": (0, 1, 2)},
    {"dilation_rate": (1, 2, 1)}, {"groups": 2, "padding": "same"},
], ids=str)
@pytest.mark.parametrize("inp", ["(3, 4, 5, 4)", "(d, h, 3, 4)"])
def test_conv3d_transpose(case: dict, inp: str) -> None:
    check_lowering(net(inp, f"Conv3DTranspose(4, (2, 3, 2){kw(case)})"))


# -- depthwise and separable ------------------------------------------------------------------

DEPTHWISE_CASES = [
    {}, {"padding": "same", "strides": 2}, {"depth_multiplier": 2},
    {"dilation_rate": 2, "padding": "same"}, {"use_bias": False, "depth_multiplier": 3},
    {"strides": 3},
]


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=str)
def test_depthwise_conv2d(case: dict) -> None:
    low = check_lowering(net("(h, w, 4)", f'DepthwiseConv2D((3, 2), "relu6"{kw(case)})'))
    conv = next(op for op in func_body(low.funcs[0]).ops if op.name == "tensor.conv")
    assert conv.attributes["groups"] == 4


@pytest.mark.parametrize("case", DEPTHWISE_CASES, ids=str)
def test_depthwise_conv1d(case: dict) -> None:
    check_lowering(net("(t, 5)", f"DepthwiseConv1D(3{kw(case)})"))


SEPARABLE_CASES = [
    {}, {"padding": "same"}, {"strides": 2, "padding": "same"}, {"depth_multiplier": 2},
    {"dilation_rate": 2}, {"use_bias": False, "depth_multiplier": 2, "strides": 2},
]


@pytest.mark.parametrize("case", SEPARABLE_CASES, ids=str)
def test_separable_conv2d(case: dict) -> None:
    low = check_lowering(net("(h, w, 3)", f'SeparableConv2D(7, 3, "elu"{kw(case)})'))
    convs = [op for op in func_body(low.funcs[0]).ops if op.name == "tensor.conv"]
    assert [c.attributes["groups"] for c in convs] == [3, 1]
    assert convs[1].operands[0] is convs[0].result  # no bias between the two convolutions


@pytest.mark.parametrize("case", SEPARABLE_CASES, ids=str)
def test_separable_conv1d(case: dict) -> None:
    check_lowering(net("(t, 4)", f"SeparableConv1D(5, 3{kw(case)})"))


# -- pooling -----------------------------------------------------------------------------------

POOL_ARGS = ["", "3", "(2, 3)", "2, 1", '3, 2, "same"', '(3, 2), 1, "same"', '2, padding="same"',
             "(2, 2), (3, 1)"]


@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("args", POOL_ARGS)
def test_pool2d(kind: str, args: str) -> None:
    low = check_lowering(net("(h, w, 3)", f"{kind}Pooling2D({args})"))
    assert op_names(low) == ["tensor.pool"]


@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("args", ["", "3", "2, 1", '3, 2, "same"', '4, padding="same"', "2, 3"])
def test_pool1d(kind: str, args: str) -> None:
    check_lowering(net("(t, 5)", f"{kind}Pooling1D({args})"))


@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("args", ["", '(2, 3, 2), 1, "same"', "(1, 2, 3)", '3, 2, "same"'])
def test_pool3d(kind: str, args: str) -> None:
    check_lowering(net("(d, h, 7, 2)", f"{kind}Pooling3D({args})"))


@pytest.mark.parametrize("kind", ["Max", "Average"])
@pytest.mark.parametrize("n,inp", [(1, "(t, 4)"), (2, "(h, w, 4)"), (3, "(d, 3, w, 4)")])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling(kind: str, n: int, inp: str, keepdims: bool) -> None:
    low = check_lowering(net(inp, f"Global{kind}Pooling{n}D(keepdims={str(keepdims).lower()})"))
    (op,) = func_body(low.funcs[0]).ops[:-1]
    assert op.name == "tensor.reduce"
    assert op.attributes == {"axes": list(range(1, n + 1)), "keepdims": keepdims,
                             "kind": "max" if kind == "Max" else "mean"}


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("inp,out,want", [
    ("(h, w, 3)", "(2, 3)", "tensor.adaptive_pool"),  # symbolic sizes
    ("(h, w, 3)", "1", "tensor.reduce"),  # global
    ("(8, 6, 3)", "(4, 3)", "tensor.pool"),  # sizes divide: equal disjoint windows
    ("(8, 6, 3)", "(8, 1)", "tensor.pool"),
    ("(7, 5, 3)", "(3, 2)", "tensor.adaptive_pool"),  # overlapping windows
    ("(3, 2, 3)", "(5, 4)", "tensor.adaptive_pool"),  # smaller than the output: repeats
])
def test_adaptive_pool2d(kind: str, inp: str, out: str, want: str) -> None:
    low = check_lowering(net(inp, f"Adaptive{kind}Pooling2D({out})"))
    assert op_names(low) == [want]


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("inp,out", [("(t, 3)", "4"), ("(9, 3)", "3"), ("(10, 2)", "4")])
def test_adaptive_pool1d(kind: str, inp: str, out: str) -> None:
    check_lowering(net(inp, f"Adaptive{kind}Pooling1D({out})"))


@pytest.mark.parametrize("kind", ["Average", "Max"])
@pytest.mark.parametrize("inp,out", [("(d, 5, 6, 2)", "(2, 3, 4)"), ("(4, 6, 2, 2)", "(2, 3, 1)")])
def test_adaptive_pool3d(kind: str, inp: str, out: str) -> None:
    check_lowering(net(inp, f"Adaptive{kind}Pooling3D({out})"))


# -- resampling ------------------------------------------------------------------------------


@pytest.mark.parametrize("n,inp,arg", [
    (1, "(t, 3)", "2"), (1, "(t, 3)", "(0, 3)"), (1, "(5, 3)", "(1, 0)"),
    (2, "(h, w, 3)", ""), (2, "(h, w, 3)", "((1, 2), (0, 1))"), (2, "(h, 4, 3)", "(2, 0)"),
    (3, "(d, h, 2, 2)", "1"), (3, "(2, 3, 4, 2)", "((0, 1), 2, (3, 0))"),
])
def test_zero_padding(n: int, inp: str, arg: str) -> None:
    low = check_lowering(net(inp, f"ZeroPadding{n}D({arg})"))
    assert op_names(low) == ["tensor.pad"]


def test_zero_padding_by_nothing_is_no_op() -> None:
    assert op_names(check_lowering(net("(h, w, 3)", "ZeroPadding2D(0)"))) == []


@pytest.mark.parametrize("n,inp,arg,slices", [
    (1, "(t, 3)", "", 1), (1, "(t, 3)", "(0, 3)", 1), (1, "(9, 3)", "(2, 1)", 1),
    (2, "(h, w, 3)", "((1, 2), (0, 1))", 2), (2, "(h, 7, 3)", "(2, 0)", 1),
    (2, "(h, w, 3)", "", 0),
    (3, "(d, h, 6, 2)", "", 3), (3, "(5, 6, 7, 2)", "((0, 1), 2, (3, 0))", 3),
])
def test_cropping(n: int, inp: str, arg: str, slices: int) -> None:
    low = check_lowering(net(inp, f"Cropping{n}D({arg})"))
    assert op_names(low) == ["tensor.slice"] * slices


@pytest.mark.parametrize("n,inp,arg", [
    (1, "(t, 3)", ""), (1, "(t, 3)", "3"), (2, "(h, w, 3)", ""), (2, "(h, w, 3)", "(1, 3)"),
    (2, "(h, w, 3)", '(2, 3), "nearest"'), (3, "(d, h, 2, 2)", "(1, 2, 2)"),
    (3, "(2, 3, 2, 2)", "2"),
])
def test_upsampling_nearest(n: int, inp: str, arg: str) -> None:
    low = check_lowering(net(inp, f"UpSampling{n}D({arg})"))
    (op,) = func_body(low.funcs[0]).ops[:-1]
    assert op.name == "tensor.resize" and op.attributes["mode"] == "nearest"


@pytest.mark.parametrize("size", ["2", "(2, 3)", "(1, 4)", "(3, 1)"])
@pytest.mark.parametrize("inp", ["(h, w, 3)", "(1, 5, 2)"])
def test_upsampling2d_bilinear(size: str, inp: str) -> None:
    low = check_lowering(net(inp, f'UpSampling2D({size}, interpolation="bilinear")'))
    (op,) = func_body(low.funcs[0]).ops[:-1]
    assert op.name == "tensor.resize" and op.attributes["mode"] == "linear"


def test_upsampling_by_one_is_no_op() -> None:
    assert op_names(check_lowering(net("(t, 3)", "UpSampling1D(1)"))) == []


# -- combinations and examples -------------------------------------------------------------------


def test_spatial_chain_with_symbolic_sizes() -> None:
    """Padding, convolution, pooling, upsampling and cropping compose with symbolic types,
    and the lowered text (symbolic slices, output_padding) parses back to the same text."""
    low = check_lowering(net(
        "(h, w, 3)",
        "ZeroPadding2D(((1, 0), (2, 1)))",
        'Conv2D(8, 3, "relu", strides=2)',
        'MaxPooling2D(3, 1, "same")',
        'DepthwiseConv2D(3, padding="same", depth_multiplier=2)',
        'Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1)',
        'UpSampling2D(2, interpolation="bilinear")',
        "Cropping2D(((1, 1), (0, 2)))",
        "AveragePooling2D(2, padding=\"same\")",
        "AdaptiveMaxPooling2D((2, 3))",
        "GlobalAveragePooling2D()",
    ))
    text = print_module(low)
    again = parse_module(text, "low.nir")
    assert verify(again) == [] and print_module(again) == text
    for name in ("tensor.pad", "tensor.slice", "tensor.pool", "tensor.conv_transpose",
                 "tensor.resize", "tensor.adaptive_pool", "tensor.reduce"):
        assert name in op_names(low)


# Every example that uses a layer of these families.
SPATIAL_EXAMPLES = ["mnist_cnn", "inception_block", "mobilenet_tiny", "unet_small",
                    "resnet_small", "se_resnet_block", "macros", "sequence_dims",
                    "text_embedding", "two_inputs", "transformer_classifier", "vit_tiny",
                    "unet_symbolic"]


def test_spatial_examples_are_all_listed() -> None:
    layers = ("Conv", "Pooling", "UpSampling", "ZeroPadding", "Cropping")
    using = {p.stem for p in EXAMPLES.glob("*.nr")
             if any(f"{name}" in p.read_text() for name in layers)}
    assert using == set(SPATIAL_EXAMPLES)


@pytest.mark.parametrize("name", SPATIAL_EXAMPLES)
def test_example_lowers(name: str) -> None:
    check_lowering(EXAMPLES / f"{name}.nr")


# -- the new ops on their own ------------------------------------------------------------------

TOL = {"rtol": 1e-5, "atol": 1e-5}


def infer(text: str):
    m = parse_module(text, "t.nir")
    ctx = PassContext()
    ShapeInferencePass().run(m, ctx)
    errors = [d.message for d in ctx.diags.diagnostics]
    return m, errors


def one_op(arg: str, op: str, operands: str = "%x", extra: str = "") -> str:
    return f"""module @T {{
  func.func @T(%x: {arg}) -> (tensor<* x f32>) {{
{extra}    %0 = {op.replace("OPERANDS", operands)} -> tensor<* x f32>
    "func.return"(%0) : (tensor<* x f32>) -> ()
  }}
}}"""


def result_type(m) -> str:
    return str(func_body(m.funcs[0]).ops[-1].operands[0].type)


@pytest.mark.parametrize("pads,strides,dil,groups", [
    ([[1, 1], [0, 0]], [2, 2], [1, 1], 1),
    ([[2, 1], [1, 0]], [3, 2], [1, 1], 2),  # PyTorch padding 2/1, output_padding 1/1
    ([[0, 0], [1, 1]], [1, 1], [2, 1], 1),
])
def test_conv_transpose_explicit_matches_torch(pads, strides, dil, groups) -> None:
    """Explicit ``[[p, p - output_padding]]`` is PyTorch's padding and output_padding."""
    rng = np.random.default_rng(0)
    text = one_op(
        "tensor<batch x h x w x 4 x f32>",
        f'"tensor.conv_transpose"(%x, %w) {{dilation = {dil}, groups = {groups}, '
        f'padding = {pads}, strides = {strides}}} : '
        f'(tensor<batch x h x w x 4 x f32>, tensor<4 x {6 // groups} x 3 x 2 x f32>)',
        extra=f'    %w = "tensor.constant"() {{weight = "w"}} : () -> '
              f'tensor<4 x {6 // groups} x 3 x 2 x f32>\n')
    m, errors = infer(text)
    assert errors == [] and verify(m) == []
    x = rng.standard_normal((2, 5, 6, 4)).astype(np.float32)
    w = rng.standard_normal((4, 6 // groups, 3, 2)).astype(np.float32)
    (y,) = run_module(m, [x], {"w": w})
    padding = [p[0] for p in pads]
    out_pad = [p[0] - p[1] for p in pads]
    ref = F.conv_transpose2d(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(w),
                             stride=strides, padding=padding, output_padding=out_pad,
                             dilation=dil, groups=groups).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(y, ref, **TOL)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_explicit_padding_matches_torch(kind: str) -> None:
    """Explicit padding is never counted: torch's count_include_pad=False, -inf for max."""
    rng = np.random.default_rng(1)
    text = one_op("tensor<batch x h x w x 3 x f32>",
                  f'"tensor.pool"(%x) {{kind = "{kind}", padding = [[1, 1], [2, 2]], '
                  f'strides = [2, 1], window = [3, 5]}} : (tensor<batch x h x w x 3 x f32>)')
    m, errors = infer(text)
    assert errors == []
    assert result_type(m) == "tensor<batch x ((h + 1) floordiv 2) x w x 3 x f32>"
    x = rng.standard_normal((2, 7, 6, 3)).astype(np.float32)
    (y,) = run_module(m, [x], {})
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    if kind == "max":
        ref = F.max_pool2d(xt, (3, 5), (2, 1), padding=(1, 2))
    else:
        ref = F.avg_pool2d(xt, (3, 5), (2, 1), padding=(1, 2), count_include_pad=False)
    np.testing.assert_allclose(y, ref.permute(0, 2, 3, 1).numpy(), **TOL)


def test_resize_linear_matches_torch_trilinear() -> None:
    rng = np.random.default_rng(2)
    text = one_op("tensor<batch x d x 3 x 4 x 2 x f32>",
                  '"tensor.resize"(%x) {mode = "linear", scale = [2, 3, 1]} : '
                  "(tensor<batch x d x 3 x 4 x 2 x f32>)")
    m, errors = infer(text)
    assert errors == [] and result_type(m) == "tensor<batch x (d * 2) x 9 x 4 x 2 x f32>"
    x = rng.standard_normal((2, 3, 3, 4, 2)).astype(np.float32)
    (y,) = run_module(m, [x], {})
    ref = F.interpolate(torch.from_numpy(x).permute(0, 4, 1, 2, 3), scale_factor=(2, 3, 1),
                        mode="trilinear", align_corners=False).permute(0, 2, 3, 4, 1).numpy()
    np.testing.assert_allclose(y, ref, **TOL)


def test_pad_any_axes_with_a_value() -> None:
    text = one_op("tensor<batch x n x f32>",
                  '"tensor.pad"(%x) {pads = [[0, 1], [2, 0]], value = -1.5} : '
                  "(tensor<batch x n x f32>)")
    m, errors = infer(text)
    assert errors == [] and result_type(m) == "tensor<(batch + 1) x (n + 2) x f32>"
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = run_module(m, [x], {})
    np.testing.assert_array_equal(y, np.pad(x, [(0, 1), (2, 0)], constant_values=-1.5))


@pytest.mark.parametrize("op,message", [
    ('"tensor.pool"(%x) {kind = "sum", padding = "valid", strides = [1], window = [2]}',
     "'kind' must be"),
    ('"tensor.pool"(%x) {kind = "max", padding = [[2, 0]], strides = [1], window = [2]}',
     "each in [0, window)"),
    ('"tensor.pool"(%x) {kind = "max", padding = "valid", strides = [1, 1], window = [2]}',
     "one entry per spatial axis"),
    ('"tensor.resize"(%x) {mode = "cubic", scale = [2]}', "'mode' must be"),
    ('"tensor.resize"(%x) {mode = "nearest", scale = [0]}', "positive ints"),
    ('"tensor.pad"(%x) {pads = [[0, -1], [0, 0], [0, 0]]}', "non-negative"),
    ('"tensor.adaptive_pool"(%x) {kind = "avg", output_size = []}', "'output_size'"),
])
def test_verifier_messages(op: str, message: str) -> None:
    m = parse_module(one_op("tensor<batch x 8 x 3 x f32>", op + " : (tensor<batch x 8 x 3 x f32>)"),
                     "t.nir")
    assert any(message in e for e in verify(m)), verify(m)


def test_conv_transpose_verifier() -> None:
    w = "tensor<3 x 2 x 2 x f32>"
    extra = f'    %w = "tensor.constant"() {{weight = "w"}} : () -> {w}\n'
    for rest, message in [
        ('padding = [[-1, 0]]', "lo >= 0"),
        ('output_padding = [1], padding = [[0, 0]]', "\"valid\" or \"same\" padding only"),
        ('padding = "full"', "'padding' must be"),
    ]:
        op = ('"tensor.conv_transpose"(%x, %w) {dilation = [1], groups = 1, ' + rest
              + f', strides = [2]}} : (tensor<batch x 8 x 3 x f32>, {w})')
        m = parse_module(one_op("tensor<batch x 8 x 3 x f32>", op, "%x, %w", extra), "t.nir")
        assert any(message in e for e in verify(m)), (rest, verify(m))


@pytest.mark.parametrize("op,message", [
    ('"tensor.pool"(%x) {kind = "max", padding = "valid", strides = [1], window = [9]}',
     "empty output"),
    ('"tensor.pool"(%x) {kind = "max", padding = "valid", strides = [1, 1], window = [2, 2]}',
     "rank 4"),
    ('"tensor.resize"(%x) {mode = "nearest", scale = [2, 2]}', "rank 4"),
    ('"tensor.pad"(%x) {pads = [[0, 1]]}', "rank 3"),
])
def test_shape_errors(op: str, message: str) -> None:
    _, errors = infer(one_op("tensor<batch x 8 x 3 x f32>", op + " : (tensor<batch x 8 x 3 x f32>)"))
    assert any(message in e for e in errors), errors


def test_fusion_kinds_and_precision() -> None:
    from neuralc.ir.opdef import lookup_op

    want = {
        "tensor.pool": ("output_fusible", "follow"),
        "tensor.adaptive_pool": ("output_fusible", "follow"),
        "tensor.conv_transpose": ("output_fusible", "low"),
        "tensor.pad": ("injective", "follow"),
        "tensor.resize": ("injective", "follow"),
    }
    for name, (fusion, precision) in want.items():
        opdef = lookup_op(name)
        assert opdef is not None
        assert (fusion, precision) == (opdef.FUSION, opdef.PRECISION)
