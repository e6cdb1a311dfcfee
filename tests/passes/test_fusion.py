"""The ``fuse`` pass: kernel counts of the standard patterns, legality, choice, notes, numerics.

Models are hand-written tensor IR in the form ``lower-to-tensor`` produces (weights as
``tensor.constant {weight = "<layer>.<param>"}``, a bias as a broadcast add, softmax as
max-reduce / sub / exp / sum-reduce / div). Differential tests run each model in the reference
interpreter before and after fusion on random inputs, at two sizes of every symbol. Fusion
only regroups ops (a kernel body runs the same numpy code in the same order), so the outputs
must agree to float32 round-off: rtol = atol = 1e-6.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np
import pytest

from neuralc.driver import compile_source
from neuralc.ir.core import Module, Op, Value, func_body, func_op
from neuralc.ir.dims import Dim, sym
from neuralc.ir.opdef import lookup_op
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.shapes import Unifier
from neuralc.ir.types import TensorType
from neuralc.ir.verifier import verify
from neuralc.location import FileLoc, FusedLoc
from neuralc.passes import analysis
from neuralc.passes.base import PassContext
from neuralc.passes.fusion import FusePass
from neuralc.passes.lower_to_tensor import LowerToTensorPass
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

TOL = {"rtol": 1e-6, "atol": 1e-6}
B, S, H, W = sym("batch"), sym("seq"), sym("h"), sym("w")


class Graph:
    """A function under construction: typed ops appended in order, types inferred at once."""

    def __init__(self, **inputs: tuple[Dim, ...]):
        self.module = Module("T", attributes={"dim_nominal": {"batch": 1}})
        self.func = func_op("T", [TensorType(s) for s in inputs.values()], list(inputs))
        self.module.body.append(self.func)
        self.body = func_body(self.func)
        self.args = dict(zip(inputs, self.body.args))
        self.unifier = Unifier()
        self.weights: dict[str, tuple[int, ...]] = {}
        self.line = 1

    def op(self, name: str, *operands: Value, result: TensorType | None = None, **attrs) -> Value:
        types = [result or TensorType(None)]
        self.line += 1
        op = Op(name, list(operands), types, attrs, location=FileLoc("m.nr", self.line, 5))
        self.body.append(op)
        opdef = lookup_op(name)
        assert opdef is not None
        for r, t in zip(op.results, opdef.infer_types(op, self.unifier)):
            r.type = t
        return op.result

    def weight(self, name: str, *shape: int) -> Value:
        self.weights[name] = shape
        return self.op("tensor.constant", result=TensorType(shape), weight=name)

    def scalar(self, value: float) -> Value:
        return self.op("tensor.constant", result=TensorType(()), value=value)

    def unary(self, fn: str, x: Value) -> Value:
        return self.op("tensor.unary", x, fn=fn)

    def binary(self, fn: str, a: Value, b: Value) -> Value:
        return self.op("tensor.binary", a, b, fn=fn)

    def reduce(self, kind: str, x: Value, axes: list[int] | None = None) -> Value:
        return self.op("tensor.reduce", x, axes=axes or [-1], keepdims=True, kind=kind)

    def matmul(self, x: Value, w: Value) -> Value:
        return self.op("tensor.matmul", x, w, transpose_b=True)

    def conv(self, x: Value, w: Value) -> Value:
        return self.op("tensor.conv", x, w, dilation=[1, 1], groups=1, padding="same",
                       strides=[1, 1])

    def ret(self, *values: Value) -> Module:
        self.body.append(Op("func.return", list(values)))
        assert verify(self.module) == []
        return self.module


# -- the standard patterns ----------------------------------------------------------------------


def softmax(g: Graph, x: Value) -> Value:
    shifted = g.binary("sub", x, g.reduce("max", x))
    e = g.unary("exp", shifted)
    return g.binary("div", e, g.reduce("sum", e))


def layer_norm(g: Graph, x: Value, n: int, name: str = "ln") -> Value:
    mean = g.reduce("mean", x)
    d = g.binary("sub", x, mean)
    var = g.reduce("mean", g.binary("mul", d, d))
    r = g.unary("rsqrt", g.binary("add", var, g.scalar(1e-5)))
    y = g.binary("mul", d, r)
    y = g.binary("mul", y, g.weight(f"{name}.weight", n))
    return g.binary("add", y, g.weight(f"{name}.bias", n))


def dense(g: Graph, x: Value, n_in: int, n_out: int, name: str, act: str | None = None) -> Value:
    y = g.matmul(x, g.weight(f"{name}.weight", n_out, n_in))
    y = g.binary("add", y, g.weight(f"{name}.bias", n_out))
    return g.unary(act, y) if act else y


def conv_bn_relu() -> Module:
    g = Graph(x=(B, H, W, 3))
    y = g.conv(g.args["x"], g.weight("conv.weight", 8, 3, 3, 3))
    y = g.binary("add", y, g.weight("conv.bias", 8))
    y = g.binary("mul", y, g.weight("bn.scale", 8))
    y = g.binary("add", y, g.weight("bn.shift", 8))
    return g.ret(g.unary("relu", y))


def matmul_bias_gelu() -> Module:
    g = Graph(x=(B, S, 6))
    return g.ret(dense(g, g.args["x"], 6, 4, "dense", "gelu"))


def softmax_only() -> Module:
    g = Graph(x=(B, S, 10))
    return g.ret(softmax(g, g.args["x"]))


def layer_norm_only() -> Module:
    g = Graph(x=(B, S, 16))
    return g.ret(layer_norm(g, g.args["x"], 16))


def conv_residual() -> Module:
    g = Graph(x=(B, H, W, 4))
    x = g.args["x"]
    y = g.conv(x, g.weight("conv.weight", 4, 4, 3, 3))
    y = g.binary("add", y, g.weight("conv.bias", 4))
    return g.ret(g.unary("relu", g.binary("add", y, x)))


def two_matmuls() -> Module:
    g = Graph(x=(B, 6))
    y = dense(g, g.args["x"], 6, 8, "dense", "relu")
    return g.ret(dense(g, y, 8, 3, "dense_1"))


def global_pool_after_conv() -> Module:
    g = Graph(x=(B, H, W, 3))
    y = g.conv(g.args["x"], g.weight("conv.weight", 8, 3, 3, 3))
    y = g.unary("relu", g.binary("add", y, g.weight("conv.bias", 8)))
    return g.ret(g.op("tensor.reduce", y, axes=[1, 2], keepdims=False, kind="mean"))


def attention_block() -> Module:
    g = Graph(x=(B, S, 8))
    x = g.args["x"]
    a = g.unary("relu", x)
    t = g.op("tensor.attention", a, a, a, causal=False)
    return g.ret(g.binary("add", t, a))


MODELS: dict[str, tuple[Callable[[], Module], int]] = {
    "conv_bn_relu": (conv_bn_relu, 1),
    "matmul_bias_gelu": (matmul_bias_gelu, 1),
    "softmax": (softmax_only, 1),
    "layer_norm": (layer_norm_only, 1),
    "conv_residual": (conv_residual, 1),
    "two_matmuls": (two_matmuls, 2),
    "global_pool_after_conv": (global_pool_after_conv, 2),
    "attention_block": (attention_block, 3),
}


def fuse(m: Module, **options) -> FusePass:
    p = FusePass(**options)
    ctx = PassContext()
    p.run(m, ctx)
    assert not ctx.diags.has_errors(), [d.message for d in ctx.diags.diagnostics]
    problems = verify(m)
    assert problems == [], problems
    return p


def kernels(m: Module) -> list[Op]:
    return [op for op in func_body(m.funcs[0]).ops if op.name == "kernel.fused"]


def body_ops(k: Op) -> list[str]:
    return [op.name for op in k.regions[0].block.ops]


@pytest.mark.parametrize("name", list(MODELS))
def test_kernel_counts(name):
    build, expected = MODELS[name]
    m = build()
    before = analysis.kernel_count(m)
    fuse(m)
    assert analysis.kernel_count(m) == expected == len(kernels(m))
    assert before >= expected
    # Nothing but kernels and constants is left at function level.
    left = {op.name for op in func_body(m.funcs[0]).ops} - {"kernel.fused", "func.return"}
    assert left <= {"tensor.constant"}


def test_kinds_name_the_patterns():
    expect = {
        "conv_bn_relu": ["conv+elementwise"],
        "matmul_bias_gelu": ["matmul+elementwise"],
        "softmax": ["reduction+elementwise"],
        "layer_norm": ["reduction+elementwise"],
        "two_matmuls": ["matmul+elementwise", "matmul+elementwise"],
        "global_pool_after_conv": ["conv+elementwise", "reduction"],
        "attention_block": ["elementwise", "attention", "elementwise"],
    }
    for name, kinds in expect.items():
        m = MODELS[name][0]()
        fuse(m)
        assert [k.attributes["kind"] for k in kernels(m)] == kinds, name
        assert [k.attributes["name"] for k in kernels(m)] == [f"fused_{i}" for i in range(len(kinds))]


def test_softmax_and_layer_norm_bodies_hold_every_op():
    m = softmax_only()
    fuse(m)
    (k,) = kernels(m)
    assert body_ops(k) == ["tensor.reduce", "tensor.binary", "tensor.unary", "tensor.reduce",
                           "tensor.binary", "kernel.yield"]
    m = layer_norm_only()
    fuse(m)
    (k,) = kernels(m)
    # The eps fill is cloned into the body (an immediate); the two weights enter as operands.
    assert body_ops(k).count("tensor.constant") == 1
    assert [str(v.type) for v in k.operands] == [
        "tensor<batch x seq x 16 x f32>", "tensor<16 x f32>", "tensor<16 x f32>"]
    assert not any(op.attributes.get("value") for op in func_body(m.funcs[0]).ops
                   if op.name == "tensor.constant")  # the outside fill is gone


def test_residual_reads_the_input_once():
    m = conv_residual()
    fuse(m)
    (k,) = kernels(m)
    x = func_body(m.funcs[0]).args[0]
    assert list(k.operands).count(x) == 1
    assert body_ops(k)[:1] == ["tensor.conv"]


def test_two_output_fusible_ops_never_share_and_the_note_says_so():
    m = two_matmuls()
    p = fuse(m)
    k1, k2 = kernels(m)
    assert body_ops(k1) == ["tensor.matmul", "tensor.binary", "tensor.unary", "kernel.yield"]
    assert body_ops(k2) == ["tensor.matmul", "tensor.binary", "kernel.yield"]
    refused = [line for line in p.report if line.startswith("not fused")]
    assert refused == [
        "not fused: %6 (tensor.matmul, output_fusible) into fused_0 (matmul+elementwise): "
        "two output-fusible ops (%1 tensor.matmul, %6 tensor.matmul) never share a kernel"]


def test_reduction_refused_by_conv_kernel_note(capsys):
    m = global_pool_after_conv()
    p = fuse(m, debug=True)
    line = ("not fused: %5 (tensor.reduce, reduction) into fused_0 (conv+elementwise): "
            "a reduction cannot join an output-fusible kernel")
    assert line in p.report
    err = capsys.readouterr().err
    assert f"fuse: {line}\n" in err
    assert "fuse: fused: %1 (tensor.conv, output_fusible) -> %3 (tensor.binary, broadcast)" in err


def test_no_output_without_debug(capsys):
    m = global_pool_after_conv()
    p = fuse(m)
    assert p.report and capsys.readouterr().err == ""


def test_opaque_attention_stays_alone_and_no_cycle_is_made():
    m = attention_block()
    p = fuse(m)
    relu, att, add = kernels(m)
    assert body_ops(att) == ["tensor.attention", "kernel.yield"]
    # relu -> add directly and relu -> attention -> add: fusing relu and add would need the
    # attention kernel both before and after their kernel.
    assert "not fused: %2 (tensor.binary, elementwise) into fused_0 (elementwise): fusing would " \
           "create a cycle through %1 (tensor.attention)" in p.report
    assert "not fused: %1 (tensor.attention, opaque) into fused_0 (elementwise): %1 " \
           "(tensor.attention) is opaque and stays alone" in p.report


def test_injective_ops_fuse_into_elementwise_but_not_into_matmul():
    g = Graph(x=(B, 4, 6))
    t = g.op("tensor.transpose", g.args["x"], perm=[0, 2, 1])
    r = g.op("tensor.reshape", t, result=TensorType((B, 24)))
    y = g.unary("relu", r)
    z = g.matmul(y, g.weight("d.weight", 5, 24))
    out = g.op("tensor.reshape", z, result=TensorType((B, 5, 1)))
    m = g.ret(out)
    p = fuse(m)
    ks = kernels(m)
    assert [k.attributes["kind"] for k in ks] == ["injective+elementwise", "matmul", "injective"]
    assert any("an output-fusible kernel takes only an elementwise epilogue, and %5 "
               "(tensor.reshape) is injective" in line for line in p.report)
    assert ("not fused: %4 (tensor.matmul, output_fusible) into fused_0 (injective+elementwise): "
            "%2 (tensor.unary) would be a prologue of %4 (tensor.matmul); an output-fusible op "
            "takes only an epilogue") in p.report


def test_a_flatten_and_casts_are_loaded_by_the_matmul_kernel():
    g = Graph(x=(B, 4, 6))
    flat = g.op("tensor.reshape", g.args["x"], result=TensorType((B, 24)))
    half = g.op("tensor.cast", flat, to="f16")
    w = g.op("tensor.cast", g.weight("d.weight", 5, 24), to="f16")
    y = g.matmul(half, w)
    m = g.ret(g.op("tensor.cast", y, to="f32"))
    fuse(m)
    (k,) = kernels(m)
    assert k.attributes["kind"] == "matmul+injective+elementwise"
    # The weight's cast depends on the weight alone: it runs once at load time, outside.
    assert body_ops(k) == ["tensor.reshape", "tensor.cast", "tensor.matmul", "tensor.cast",
                           "kernel.yield"]
    assert analysis.kernel_count(m) == 1


def test_epilogue_must_keep_the_output_shape():
    g = Graph(x=(B, 6))
    z = dense(g, g.args["x"], 6, 4, "d")
    big = g.op("tensor.broadcast", z, result=TensorType((3, B, 4)))
    m = g.ret(g.unary("relu", big))
    p = fuse(m)
    assert [k.attributes["kind"] for k in kernels(m)] == ["matmul+elementwise", "elementwise"]
    assert any("the epilogue must keep the result shape of %1 (tensor.matmul), (batch, 4), "
               "but %4 gives (3, batch, 4)" in line for line in p.report)


def test_reductions_over_different_axes_stay_apart():
    g = Graph(x=(B, S, 8))
    a = g.reduce("sum", g.args["x"], [-1])
    b = g.op("tensor.reduce", a, axes=[1], keepdims=True, kind="max")
    m = g.ret(b)
    p = fuse(m)
    assert len(kernels(m)) == 2
    assert any("reduce over different shapes or axes" in line for line in p.report)


def test_choice_prefers_the_merge_that_saves_more_traffic():
    # add(y1, y2) may join mm1's kernel or mm2's, not both. y1 is also returned, so it is
    # written either way and joining mm1 saves only one read of y1; y2 is read only by the add,
    # so joining mm2 saves its write and its read: twice as much. The add joins mm2.
    g = Graph(x=(B, 6))
    x = g.args["x"]
    y1 = g.matmul(x, g.weight("a.weight", 8, 6))
    y2 = g.matmul(x, g.weight("b.weight", 8, 6))
    s = g.binary("add", y1, y2)
    m = g.ret(s, y1)
    p = fuse(m)
    k1, k2 = kernels(m)
    assert body_ops(k1) == ["tensor.matmul", "kernel.yield"]
    assert body_ops(k2) == ["tensor.matmul", "tensor.binary", "kernel.yield"]
    # Scores at the nominal sizes (batch = 1): y2 is 8 floats = 32 bytes.
    assert "fused: %3 (tensor.matmul, output_fusible) -> %4 (tensor.binary, elementwise) in " \
           "fused_1 (matmul+elementwise): saves 64 bytes" in p.report


def test_kernel_location_fuses_member_locations_in_order():
    m = matmul_bias_gelu()
    locs = [op.location for op in func_body(m.funcs[0]).ops if op.name != "tensor.constant"
            and op.name != "func.return"]
    fuse(m)
    (k,) = kernels(m)
    assert k.location == FusedLoc(tuple(locs))
    assert "loc(fused[" in print_module(m)


def test_fused_ir_round_trips_and_refusing_twice_changes_nothing():
    for name, (build, _) in MODELS.items():
        m = build()
        fuse(m)
        text = print_module(m)
        again = parse_module(text, "t.nir")
        assert print_module(again) == text, name
        fuse(again)
        assert print_module(again) == text, name


def test_unranked_types_are_an_error():
    text = textwrap.dedent("""\
        module @T {
          func.func @T(%x: tensor<batch x 4 x f32>) -> (tensor<* x f32>) {
            %0 = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x 4 x f32>) -> tensor<* x f32>
            "func.return"(%0) : (tensor<* x f32>) -> ()
          }
        }""")
    m = parse_module(text, "t.nir")
    ctx = PassContext()
    FusePass().run(m, ctx)
    assert ctx.diags.has_errors()
    assert "run shape-infer first" in ctx.diags.errors[0].message


# -- differential tests ------------------------------------------------------------------------


def _inputs(m: Module, sizes: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for a in func_body(m.funcs[0]).args:
        shape = tuple(analysis.eval_dim(d, sizes) for d in a.type.shape)
        out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def _weights(m: Module, rng: np.random.Generator) -> dict[str, np.ndarray]:
    w = {}
    for op in m.walk():
        if op.name == "tensor.constant" and "weight" in op.attributes:
            w[op.attributes["weight"]] = rng.standard_normal(op.result.type.shape).astype(
                np.float32)
    return w


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("sizes", [{"batch": 1, "seq": 5, "h": 7, "w": 6},
                                   {"batch": 3, "seq": 12, "h": 4, "w": 9}])
def test_fusion_keeps_the_outputs(name, sizes):
    rng = np.random.default_rng(7)
    m = MODELS[name][0]()
    weights = _weights(m, rng)
    xs = _inputs(m, sizes, rng)
    before = run_module(m, xs, weights)
    fuse(m)
    after = run_module(m, xs, weights)
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.shape == b.shape
        np.testing.assert_allclose(b, a, **TOL)


MLP = """
network Mlp {
  input: (12,)
  layers:
    Dense(16, "relu")
    Dense(16, "gelu")
    Output(5)
}
"""


@pytest.mark.parametrize("batch", [1, 4])
def test_lowered_model_fuses_to_four_kernels_and_keeps_its_outputs(batch):
    model = compile_source(MLP, "mlp.nr")
    weights = init_weights(model.module, seed=1)
    ctx = PassContext()
    LowerToTensorPass().run(model.module, ctx)
    assert not ctx.diags.has_errors()
    m = model.module
    x = np.random.default_rng(batch).standard_normal((batch, 12)).astype(np.float32)
    (before,) = run_module(m, [x], weights)
    fuse(m)
    # dense+relu, dense+gelu, dense (bias), softmax: the Output's bias cannot join softmax's
    # reduction kernel once it sits in the matmul's.
    assert [k.attributes["kind"] for k in kernels(m)] == [
        "matmul+elementwise", "matmul+elementwise", "matmul+elementwise",
        "reduction+elementwise"]
    (after,) = run_module(m, [x], weights)
    np.testing.assert_allclose(after, before, **TOL)


def test_dead_ops_become_a_kernel_that_dce_removes():
    from neuralc.passes.dce import dead_code_elimination

    g = Graph(x=(B, 4))
    x = g.args["x"]
    g.unary("exp", g.unary("neg", x))  # nobody reads it
    m = g.ret(g.unary("relu", x))
    fuse(m)
    dead = [k for k in kernels(m) if not any(r.uses for r in k.results)]
    assert len(dead) == 1 and len(dead[0].results) == 1
    dead_code_elimination(m)
    assert analysis.kernel_count(m) == 1 and verify(m) == []
