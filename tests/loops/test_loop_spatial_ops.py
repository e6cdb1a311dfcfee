"""Loop lowering of the spatial tensor ops (``tensor.pool``, ``tensor.adaptive_pool``,
``tensor.pad``, ``tensor.resize``, ``tensor.conv_transpose``) and of ``tensor.iota``,
``tensor.compare`` and ``tensor.reverse``: the loop interpreter against the tensor interpreter
on hand-written tensor IR (1-D to 3-D, strides, odd sizes, "same" with sizes the stride does
not divide, symbolic spatial sizes at two values, batch 1 and 3), on whole layers and on the
example models at -O0 and -O2; plus a few values worked out by hand (the average count at the
borders, the linear weights, the transposed convolution's taps), which do not rely on the
reference at all.

Tolerances: float32 rtol = atol = 1e-5 (loop_check's default) where the loop level sums at
most a few dozen terms in another order than the reference (float64 pooling, per-tap float32
accumulation of the transposed convolution), 1e-4 relative for the example models (deeper
chains of convolutions). Max pooling, nearest resize, pad, reverse, iota and compare only move
or compare values: exact (0). f16: 2e-3 (one f16 rounding, 2^-10 relative, of a result the
two sides may round from slightly different float32/float64 sums); bf16: 1e-2 (the loop level
rounds the result to bf16, 2^-8 relative, and the reference keeps it in float32 unrounded).
bf16 inputs are given already rounded to bf16: the tensor interpreter rounds its inputs, the
loop interpreter takes them as they are.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from loop_check import check_source, check_tensor_ir, tensor_module, to_loops

from neuralc.ir.numeric import round_bf16
from neuralc.ir.printer import print_module
from neuralc.runtime.loop_interpreter import LoopInterpreter
from neuralc.runtime.signature import bind_inputs

RNG = np.random.default_rng(23)
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
EXACT = {"rtol": 0.0, "atol": 0.0}
LOW_TOL = {"f32": {}, "f16": {"rtol": 2e-3, "atol": 2e-3}, "bf16": {"rtol": 1e-2, "atol": 1e-2}}


def data(*shape: int, dtype: str = "f32") -> np.ndarray:
    x = RNG.standard_normal(shape).astype(np.float32)
    return round_bf16(x) if dtype == "bf16" else x


def one_op(op: str, attrs: str, in_type: str, out: str = "f32",
           weight: str | None = None) -> str:
    """A module applying ``op`` to one input (and a weight named "w" of type ``weight``)."""
    operands, types, pre = "%x", in_type, ""
    if weight is not None:
        pre = f'    %w = "tensor.constant"() {{weight = "w"}} : () -> {weight}\n'
        operands, types = "%x, %w", f"{in_type}, {weight}"
    return f"""
    module @T attributes {{dim_nominal = {{batch = 1}}}} {{
      func.func @T(%x: {in_type}) -> (tensor<* x {out}>) {{
    {pre}    %0 = "{op}"({operands}) {{{attrs}}} : ({types}) -> tensor<* x {out}>
        "func.return"(%0) : (tensor<* x {out}>) -> ()
      }}
    }}"""


def run_loops(text: str, inputs: list[np.ndarray], weights: dict | None = None) -> np.ndarray:
    """The loop interpreter's result alone (for values checked by hand)."""
    tensor = tensor_module(text)
    loops = to_loops(tensor)
    args, env = bind_inputs(tensor.networks[0], inputs, tensor.attributes.get("dims"))
    return LoopInterpreter(loops).load(weights or {}).run(args, env)[0]


def spatial_type(nd: int, channels: int, dtype: str = "f32") -> str:
    names = ["d", "h", "w"][3 - nd:]
    return f"tensor<batch x {' x '.join(names)} x {channels} x {dtype}>"


# Two sizes per rank: (batch, spatial...), odd sizes, the second with batch 3.
SIZES = {1: [(1, 7), (3, 10)], 2: [(1, 5, 7), (3, 8, 4)], 3: [(1, 3, 4, 5), (3, 5, 3, 4)]}


# -- tensor.pool -----------------------------------------------------------------------------

POOL_CASES = {
    1: [([3], [2], '"same"'), ([2], [3], '"valid"'), ([4], [1], "[[1, 2]]")],
    2: [([3, 2], [2, 3], '"same"'), ([2, 3], [2, 1], '"valid"'),
        ([3, 3], [2, 2], "[[2, 0], [1, 1]]")],
    3: [([2, 3, 2], [2, 2, 3], '"same"'), ([2, 2, 2], [1, 2, 1], '"valid"')],
}


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd,window,strides,padding",
                         [(nd, *c) for nd, cs in POOL_CASES.items() for c in cs])
def test_pool(kind: str, nd: int, window: list[int], strides: list[int], padding: str) -> None:
    text = one_op("tensor.pool", f'kind = "{kind}", padding = {padding}, strides = {strides}, '
                  f"window = {window}", spatial_type(nd, 3))
    tol = EXACT if kind == "max" else {}
    for shape in SIZES[nd]:
        check_tensor_ir(text, [data(*shape, 3)], **tol)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pool_low_precision(kind: str, dtype: str) -> None:
    """Max is exact in the input type; avg sums in float32 and rounds once at the end."""
    text = one_op("tensor.pool", f'kind = "{kind}", padding = "same", strides = [2, 2], '
                  "window = [3, 3]", spatial_type(2, 2, dtype), dtype)
    tol = EXACT if kind == "max" else LOW_TOL[dtype]
    for shape in SIZES[2]:
        check_tensor_ir(text, [data(*shape, 2, dtype=dtype)], **tol)


def test_avg_pool_counts_only_real_elements() -> None:
    """[1, 2, 3, 4, 5], window 3, stride 2, "same": Keras pads 1 before and 1 after, so the
    windows hold {1, 2}, {2, 3, 4}, {4, 5}; dividing by 3 at the borders would give 1, 4.5 * 2/3."""
    text = one_op("tensor.pool", 'kind = "avg", padding = "same", strides = [2], window = [3]',
                  "tensor<batch x t x 1 x f32>")
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 5, 1)
    np.testing.assert_array_equal(run_loops(text, [x])[0, :, 0], [1.5, 3.0, 4.5])
    # Explicit padding [2, 1] with window 4: windows {1, 2}, {1..4}, {3, 4, 5}.
    text = one_op("tensor.pool", 'kind = "avg", padding = [[2, 1]], strides = [2], window = [4]',
                  "tensor<batch x t x 1 x f32>")
    np.testing.assert_allclose(run_loops(text, [x])[0, :, 0], [1.5, 2.5, 4.0], rtol=1e-6)


def test_max_pool_ignores_padding() -> None:
    """All-negative input: a zero from the padding would win every border window."""
    text = one_op("tensor.pool", 'kind = "max", padding = "same", strides = [1, 1], '
                  "window = [3, 3]", spatial_type(2, 1))
    x = -1.0 - np.abs(data(2, 4, 5, 1))
    y = run_loops(text, [x])
    assert (y < 0).all()
    assert y[0, 0, 0, 0] == x[0, :2, :2, 0].max()


# -- tensor.adaptive_pool ------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("nd,out", [(1, [3]), (1, [1]), (2, [3, 2]), (2, [2, 4]), (3, [2, 1, 3])])
@pytest.mark.parametrize("symbolic", [True, False])
def test_adaptive_pool(kind: str, nd: int, out: list[int], symbolic: bool) -> None:
    """Output sizes that divide the input and that do not (7 into 3, 5 into 3, 4 into 3...),
    with symbolic sizes (a reduction over the longest window, guarded) or static ones."""
    tol = EXACT if kind == "max" else {}
    for shape in SIZES[nd]:
        in_type = spatial_type(nd, 2) if symbolic else \
            f"tensor<batch x {' x '.join(map(str, shape[1:]))} x 2 x f32>"
        text = one_op("tensor.adaptive_pool", f'kind = "{kind}", output_size = {out}', in_type)
        check_tensor_ir(text, [data(*shape, 2)], **tol)


def test_adaptive_pool_windows_by_hand() -> None:
    """PyTorch's windows of 5 into 3: [0, 2), [1, 4), [3, 5) (they overlap)."""
    x = np.arange(1, 6, dtype=np.float32).reshape(1, 5, 1)
    for kind, want in (("avg", [1.5, 3.0, 4.5]), ("max", [2.0, 4.0, 5.0])):
        text = one_op("tensor.adaptive_pool", f'kind = "{kind}", output_size = [3]',
                      "tensor<batch x t x 1 x f32>")
        np.testing.assert_array_equal(run_loops(text, [x])[0, :, 0], want)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_adaptive_pool_low_precision(dtype: str) -> None:
    text = one_op("tensor.adaptive_pool", 'kind = "avg", output_size = [3, 2]',
                  spatial_type(2, 2, dtype), dtype)
    for shape in SIZES[2]:
        check_tensor_ir(text, [data(*shape, 2, dtype=dtype)], **LOW_TOL[dtype])


# -- tensor.pad --------------------------------------------------------------------------------

@pytest.mark.parametrize("pads,value", [
    ("[[0, 0], [1, 2], [0, 0]]", 0.0),
    ("[[1, 0], [0, 3], [2, 1]]", -1.5),  # every axis, batch and channels too
    ("[[0, 0], [0, 0], [0, 0]]", 0.0),
])
def test_pad(pads: str, value: float) -> None:
    text = one_op("tensor.pad", f"pads = {pads}, value = {value}", spatial_type(1, 3))
    for shape in SIZES[1]:
        check_tensor_ir(text, [data(*shape, 3)], **EXACT)


def test_pad_2d_3d_low_precision() -> None:
    for nd, dtype in ((2, "f16"), (3, "bf16")):
        pads = ", ".join(["[0, 0]"] + ["[1, 2]"] * nd + ["[0, 0]"])
        text = one_op("tensor.pad", f"pads = [{pads}], value = 2.0", spatial_type(nd, 2, dtype),
                      dtype)
        for shape in SIZES[nd]:
            check_tensor_ir(text, [data(*shape, 2, dtype=dtype)], **EXACT)


PAD_AFTER_PRODUCER = """
    module @T attributes {dim_nominal = {batch = 1}} {
      func.func @T(%x: tensor<batch x t x 3 x f32>) -> (tensor<* x f32>) {
        %0 = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x t x 3 x f32>) -> tensor<* x f32>
        %1 = "tensor.pad"(%0) {pads = [[0, 0], [1, 2], [0, 0]], value = 0.5} : (tensor<* x f32>) -> tensor<* x f32>
        "func.return"(%1) : (tensor<* x f32>) -> ()
      }
    }"""


def test_pad_of_an_inlined_producer() -> None:
    check_tensor_ir(PAD_AFTER_PRODUCER, [data(2, 5, 3)], **EXACT)


def test_pad_of_a_producer_in_its_own_kernel() -> None:
    check_tensor_ir(PAD_AFTER_PRODUCER, [data(2, 5, 3)], fused=False, **EXACT)


# -- tensor.resize -----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["nearest", "linear"])
@pytest.mark.parametrize("nd,scale", [(1, [2]), (1, [3]), (2, [2, 3]), (2, [3, 1]), (3, [2, 1, 3])])
def test_resize(mode: str, nd: int, scale: list[int]) -> None:
    text = one_op("tensor.resize", f'mode = "{mode}", scale = {scale}', spatial_type(nd, 2))
    tol = EXACT if mode == "nearest" else {}
    for shape in SIZES[nd]:
        check_tensor_ir(text, [data(*shape, 2)], **tol)


def test_resize_linear_of_one_element_and_fused() -> None:
    """A side of 1 (both neighbours clamp to it) and a resize reading an inlined producer."""
    text = one_op("tensor.resize", 'mode = "linear", scale = [2, 3]', spatial_type(2, 2))
    check_tensor_ir(text, [data(2, 1, 1, 2)])
    check_tensor_ir(text, [data(1, 1, 4, 2)])
    fused = """
    module @T attributes {dim_nominal = {batch = 1}} {
      func.func @T(%x: tensor<batch x h x w x 2 x f32>) -> (tensor<* x f32>) {
        %0 = "tensor.unary"(%x) {fn = "tanh"} : (tensor<batch x h x w x 2 x f32>) -> tensor<* x f32>
        %1 = "tensor.resize"(%0) {mode = "linear", scale = [3, 2]} : (tensor<* x f32>) -> tensor<* x f32>
        %2 = "tensor.unary"(%1) {fn = "square"} : (tensor<* x f32>) -> tensor<* x f32>
        "func.return"(%2) : (tensor<* x f32>) -> ()
      }
    }"""
    for shape in SIZES[2]:
        check_tensor_ir(fused, [data(*shape, 2)])


def test_resize_linear_weights_by_hand() -> None:
    """Half-pixel centres, edges clamped: [0, 1] by 2 is [0, 1/4, 3/4, 1]; by 3, the sources
    are -1/3, 0, 1/3, 2/3, 1, 4/3, clamped into [0, 1]."""
    x = np.array([0.0, 1.0], np.float32).reshape(1, 2, 1)
    for f, want in ((2, [0, 0.25, 0.75, 1]), (3, [0, 0, 1 / 3, 2 / 3, 1, 1])):
        text = one_op("tensor.resize", f'mode = "linear", scale = [{f}]',
                      "tensor<batch x t x 1 x f32>")
        np.testing.assert_allclose(run_loops(text, [x])[0, :, 0], want, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_resize_low_precision(dtype: str) -> None:
    for mode, tol in (("nearest", EXACT), ("linear", LOW_TOL[dtype])):
        text = one_op("tensor.resize", f'mode = "{mode}", scale = [2, 3]',
                      spatial_type(2, 2, dtype), dtype)
        check_tensor_ir(text, [data(*SIZES[2][0], 2, dtype=dtype)], **tol)


# -- tensor.conv_transpose ---------------------------------------------------------------------

CT_CASES = [
    # nd, kernel, strides, dilation, groups, padding, output_padding
    (1, [3], [2], [1], 1, '"valid"', None),
    (1, [4], [3], [1], 1, '"same"', [2]),
    (1, [3], [1], [2], 3, '"same"', None),
    (1, [3], [2], [1], 1, "[[1, -1]]", None),
    (2, [3, 2], [2, 2], [1, 1], 1, '"same"', None),
    (2, [3, 3], [2, 1], [1, 2], 2, '"valid"', None),
    (2, [2, 3], [2, 3], [1, 1], 1, '"same"', [1, 0]),
    (2, [3, 2], [1, 2], [1, 1], 3, "[[1, 0], [0, 2]]", None),
    (3, [2, 3, 2], [2, 1, 2], [1, 1, 1], 1, '"same"', None),
    (3, [2, 2, 1], [1, 2, 1], [2, 1, 1], 2, '"valid"', [0, 1, 0]),
]


def conv_transpose_ir(nd: int, kernel: list[int], strides: list[int], dilation: list[int],
                      groups: int, padding: str, opad: list[int] | None,
                      dtype: str = "f32") -> tuple[str, tuple[int, ...]]:
    cin, per_group = 6, 2
    wshape = (cin, per_group, *kernel)
    extra = f", output_padding = {opad}" if opad is not None else ""
    attrs = (f"dilation = {dilation}, groups = {groups}, padding = {padding}, "
             f"strides = {strides}{extra}")
    wtype = f"tensor<{' x '.join(map(str, wshape))} x {dtype}>"
    return one_op("tensor.conv_transpose", attrs, spatial_type(nd, cin, dtype), dtype,
                  weight=wtype), wshape


@pytest.mark.parametrize("case", CT_CASES, ids=str)
def test_conv_transpose(case: tuple) -> None:
    text, wshape = conv_transpose_ir(*case)
    w = data(*wshape)
    for shape in SIZES[case[0]]:
        check_tensor_ir(text, [data(*shape, 6)], {"w": w})


def test_conv_transpose_static_sizes_and_f16() -> None:
    text, wshape = conv_transpose_ir(*CT_CASES[4])
    static = text.replace("batch x h x w x 6", "batch x 5 x 7 x 6")
    w = data(*wshape)
    check_tensor_ir(static, [data(3, 5, 7, 6)], {"w": w})
    low, wshape = conv_transpose_ir(*CT_CASES[5], dtype="f16")
    check_tensor_ir(low, [data(*SIZES[2][1], 6)], {"w": data(*wshape)}, **LOW_TOL["f16"])


def test_conv_transpose_taps_by_hand() -> None:
    """Input [1, 2], kernel [1, 10, 100], stride 2: input 0 lands on 0, 1, 2 and input 1 on
    2, 3, 4, so the full result is [1, 10, 102, 20, 200]; "same" keeps the first 4 (crop 0),
    explicit [[1, 0]] crops 1 at the start. The reduction is marked a contraction."""
    x = np.array([1.0, 2.0], np.float32).reshape(1, 2, 1)
    w = {"w": np.array([1.0, 10.0, 100.0], np.float32).reshape(1, 1, 3)}
    for padding, want in (('"valid"', [1, 10, 102, 20, 200]), ('"same"', [1, 10, 102, 20]),
                          ("[[1, 0]]", [10, 102, 20, 200])):
        text = one_op("tensor.conv_transpose", f"dilation = [1], groups = 1, padding = {padding}, "
                      "strides = [2]", "tensor<batch x t x 1 x f32>",
                      weight="tensor<1 x 1 x 3 x f32>")
        np.testing.assert_array_equal(run_loops(text, [x], w)[0, :, 0], want)
    assert "contraction = true" in print_module(to_loops(tensor_module(text)))


# -- tensor.iota, tensor.compare, tensor.reverse -----------------------------------------------

def test_iota_and_compare_causal_mask() -> None:
    """The causal mask ``j <= i`` of two i32 iotas (an i1 result), and a float iota added."""
    text = """
    module @T attributes {dim_nominal = {batch = 1}} {
      func.func @T(%x: tensor<batch x seq x f32>) -> (tensor<* x i1>, tensor<* x f32>) {
        %i = "tensor.iota"() {axis = 0} : () -> tensor<seq x 1 x i32>
        %j = "tensor.iota"() {axis = 1} : () -> tensor<1 x seq x i32>
        %m = "tensor.compare"(%j, %i) {fn = "le"} : (tensor<1 x seq x i32>, tensor<seq x 1 x i32>) -> tensor<* x i1>
        %p = "tensor.iota"() {axis = -1} : () -> tensor<batch x seq x f32>
        %y = "tensor.binary"(%x, %p) {fn = "mul"} : (tensor<batch x seq x f32>, tensor<batch x seq x f32>) -> tensor<* x f32>
        "func.return"(%m, %y) : (tensor<* x i1>, tensor<* x f32>) -> ()
      }
    }"""
    for batch, seq in ((1, 4), (3, 7)):
        check_tensor_ir(text, [data(batch, seq)], **EXACT)
    mask = run_loops(text, [data(1, 3)])
    np.testing.assert_array_equal(mask, np.tril(np.ones((3, 3), bool)))


@pytest.mark.parametrize("fn", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_compare_broadcast_nan_and_mixed_types(fn: str) -> None:
    """Broadcasting both ways, NaN (false except ne), ties, and an i32 against an f32 (numpy
    compares them in float64: 16777217 is not rounded to 16777216 first)."""
    text = f"""
    module @T attributes {{dim_nominal = {{batch = 1}}}} {{
      func.func @T(%x: tensor<batch x 4 x 3 x f32>, %y: tensor<4 x 1 x f32>, %k: tensor<3 x i32>) -> (tensor<* x i1>, tensor<* x i1>) {{
        %0 = "tensor.compare"(%x, %y) {{fn = "{fn}"}} : (tensor<batch x 4 x 3 x f32>, tensor<4 x 1 x f32>) -> tensor<* x i1>
        %1 = "tensor.compare"(%k, %x) {{fn = "{fn}"}} : (tensor<3 x i32>, tensor<batch x 4 x 3 x f32>) -> tensor<* x i1>
        "func.return"(%0, %1) : (tensor<* x i1>, tensor<* x i1>) -> ()
      }}
    }}"""
    for batch in (1, 3):
        x = np.round(data(batch, 4, 3))
        x[0, 0, 0], x[-1, 1, 2] = np.nan, np.float32(16777216.0)
        y = np.round(data(4, 1))
        y[2, 0] = np.nan
        k = np.array([0, 16777217, -1], np.int32)
        check_tensor_ir(text, [x, y, k], **EXACT)


@pytest.mark.parametrize("axes,dtype", [([1], "f32"), ([1, -1], "f32"), ([0, 2], "f16")])
def test_reverse(axes: list[int], dtype: str) -> None:
    text = f"""
    module @T attributes {{dim_nominal = {{batch = 1}}}} {{
      func.func @T(%x: tensor<batch x t x 3 x {dtype}>) -> (tensor<* x {dtype}>) {{
        %0 = "tensor.unary"(%x) {{fn = "neg"}} : (tensor<batch x t x 3 x {dtype}>) -> tensor<* x {dtype}>
        %1 = "tensor.reverse"(%0) {{axes = {axes}}} : (tensor<* x {dtype}>) -> tensor<* x {dtype}>
        %2 = "tensor.unary"(%1) {{fn = "abs"}} : (tensor<* x {dtype}>) -> tensor<* x {dtype}>
        %3 = "tensor.binary"(%1, %2) {{fn = "add"}} : (tensor<* x {dtype}>, tensor<* x {dtype}>) -> tensor<* x {dtype}>
        "func.return"(%3) : (tensor<* x {dtype}>) -> ()
      }}
    }}"""
    for shape in SIZES[1]:
        for fused in (True, False):
            check_tensor_ir(text, [data(*shape, 3)], fused=fused, **EXACT)


# -- whole layers and the example models ---------------------------------------------------------

LAYERS = {
    "max_pool2d_avg_pool1d_same": """
        network N {
          input: (h, w, 3)
          dims { h: 2..32, w: 2..32 }
          layers:
            MaxPooling2D(3, strides=2, padding="same")
            AveragePooling2D((3, 2), strides=(2, 3), padding="same")
            Reshape((-1, 3))
            AveragePooling1D(3, strides=2, padding="same")
        }""",
    "pool_3d_and_1d_valid": """
        network N {
          input: (d, h, w, 2)
          dims { d: 4..16, h: 4..16, w: 4..16 }
          layers:
            MaxPooling3D(2, strides=(1, 2, 1))
            AveragePooling3D((2, 1, 3), padding="same")
        }""",
    "adaptive_avg_and_max": """
        network N {
          input: (h, w, 3)
          dims { h: 3..32, w: 3..32 }
          layers:
            AdaptiveAveragePooling2D((3, 2))
            AdaptiveMaxPooling2D((2, 2))
        }""",
    "adaptive_static": """
        network N {
          input: (7, 6, 3)
          layers:
            AdaptiveMaxPooling2D((3, 4))
            AdaptiveAveragePooling2D((2, 2))
        }""",
    "zero_padding_upsampling": """
        network N {
          input: (h, w, 3)
          layers:
            ZeroPadding2D(((1, 2), (0, 1)))
            UpSampling2D(2)
            Conv2D(4, 3, activation="relu")
            UpSampling2D((3, 2), interpolation="bilinear")
            Conv2D(2, 1)
        }""",
    "upsampling_1d_3d": """
        network N {
          input: (d, h, w, 2)
          dims { d: 2..8, h: 2..8, w: 2..8 }
          layers:
            UpSampling3D((1, 2, 3))
            Conv3D(2, 1)
        }""",
    "conv2d_transpose": """
        network N {
          input: (h, w, 4)
          layers:
            Conv2DTranspose(6, 3, strides=2, padding="same", activation="relu")
            Conv2DTranspose(6, 3, strides=2, groups=2)
            Conv2DTranspose(3, (2, 3), strides=(2, 3), padding="same", output_padding=(1, 0))
        }""",
    "conv1d_transpose_dilation": """
        network N {
          input: (t, 4)
          layers:
            Conv1DTranspose(5, 3, dilation_rate=2, padding="same")
            Conv1DTranspose(3, 4, strides=3, output_padding=2, activation="tanh")
        }""",
    "compare_iota_layers": """
        network N {
          input: (seq, 8)
          dims { seq: 2..32 }
          layers:
            PositionalEncoding(32)
            ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3)
            PReLU()
        }""",
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_layers_lower_to_loops(name: str) -> None:
    check_source(LAYERS[name], sizes=((1, 5), (3, 8)))


# Static input shapes shrunk (the layers are what is checked, not the sizes); symbolic ones at
# two small sizes each (unet_symbolic's sides are multiples of 8 from 16).
EXAMPLE_CASES = {
    "mnist_cnn": ("(28, 28, 1)", "(12, 12, 1)", ((1, 8), (3, 8))),
    "inception_block": ("(32, 32, 3)", "(7, 9, 3)", ((1, 8), (3, 8))),
    "unet_small": ("(64, 64, 3)", "(8, 12, 3)", ((1, 8), (2, 8))),
    "two_inputs": ("(32, 32, 3)", "(9, 8, 3)", ((1, 8), (3, 8))),
    "unet_symbolic": (None, None, ((1, 16), (2, 24))),
    "sequence_dims": (None, None, ((1, 8), (3, 13))),
    "se_resnet_block": (None, None, ((1, 5), (2, 7))),
}


@pytest.mark.parametrize("name", sorted(EXAMPLE_CASES))
def test_examples_lower_to_loops(name: str) -> None:
    old, new, sizes = EXAMPLE_CASES[name]
    text = (EXAMPLES / f"{name}.nr").read_text()
    if old is not None:
        assert old in text
        text = text.replace(old, new)
    check_source(text, levels=(0, 2), sizes=sizes, rtol=1e-4)
