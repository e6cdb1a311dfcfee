"""The ``precision`` pass: where casts go, that none is redundant, constants, and numerics.

Differential tests compare each low-precision module with its fp32 original in the reference
interpreter, on random inputs at two sizes of every symbol. The error measure is norm-wise:
``max|low - fp32| / max|fp32|``. Bounds, with their reasons:

- fp16 (and mixed): 1e-2. Every rounding to f16 costs at most 2^-11 ~ 4.9e-4 relative; an
  input, a weight and a result are rounded per layer and products accumulate in f32, so a few
  layers of width <= 64 stay an order of magnitude under 1e-2 (measured here: at most 9e-4).
- bf16: 5e-2. bf16 keeps 8 significand bits, 2^-8 ~ 3.9e-3 per rounding, eight times fp16's;
  the same few layers land near 1e-2 in the worst case (measured here: at most 6.3e-3).

The reference interpreter rounds to f16 on every f16 op (numpy float16) but rounds to bf16
only in ``tensor.cast`` (other ops keep float32 values under a bf16 type), so the bf16 numbers
here bound the cast placement, not a bf16 device.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from neuralc.driver import compile_source
from neuralc.ir.core import Module, Op, OpResult, func_body
from neuralc.ir.dims import sym
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes import analysis
from neuralc.passes.base import PassContext
from neuralc.passes.fusion import FusePass
from neuralc.passes.lower_to_tensor import LowerToTensorPass
from neuralc.passes.precision import PrecisionPass, fill_problem, simplify_casts
from neuralc.passes.registry import get_pass, parse_pipeline
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

B, S = sym("batch"), sym("seq")
BOUND = {"fp16": 1e-2, "mixed": 1e-2, "bf16": 5e-2}


def run_pass(m: Module, mode: str) -> PassContext:
    ctx = PassContext()
    PrecisionPass(mode=mode).run(m, ctx)
    assert not ctx.diags.has_errors(), [d.message for d in ctx.diags.diagnostics]
    problems = verify(m)
    assert problems == [], problems
    return ctx


def ops(m: Module) -> list[Op]:
    return [op for op in m.walk() if op.name != "func.func"]


def casts(m: Module) -> list[Op]:
    return [op for op in ops(m) if op.name == "tensor.cast"]


def assert_no_redundant_casts(m: Module) -> None:
    seen = set()
    for c in casts(m):
        x = c.operands[0]
        assert x.type.dtype != c.attributes["to"], f"identity cast {c}"
        assert c.result.uses, "dead cast"
        if isinstance(x, OpResult) and x.op.name == "tensor.cast":
            # Only a rounding cast may feed another cast (f32 -> f16 -> f32 rounds).
            assert x.op.operands[0].type.dtype == "f32" and x.type.dtype in ("f16", "bf16")
        key = (id(x), c.attributes["to"])
        assert key not in seen, "duplicate cast"
        seen.add(key)


def dtype_of(m: Module, name: str) -> list[str]:
    return [op.result.type.dtype for op in ops(m) if op.name == name]


MLP = """
network Mlp {
  input: (12,)
  layers:
    Dense(32, "relu")
    Dense(32, "gelu")
    Dense(16)
    Output(5)
}
"""


def lowered(src: str = MLP) -> tuple[Module, dict[str, np.ndarray]]:
    model = compile_source(src, "m.nr")
    weights = init_weights(model.module, seed=3)
    ctx = PassContext()
    LowerToTensorPass().run(model.module, ctx)
    assert not ctx.diags.has_errors()
    return model.module, weights


def tensor_module(body: str, args: str = "%x: tensor<batch x seq x 16 x f32>",
                  results: int | str = 1) -> Module:
    outs = ", ".join(["tensor<* x f32>"] * results) if isinstance(results, int) else results
    text = textwrap.dedent(f"""\
        module @T {{
          func.func @T({args}) -> ({outs}) {{
        {textwrap.indent(textwrap.dedent(body), "    ")}
          }}
        }}""")
    m = parse_module(text, "t.nir")
    from neuralc.passes.shape_infer import ShapeInferencePass

    ctx = PassContext()
    ShapeInferencePass().run(m, ctx)
    assert not ctx.diags.has_errors(), [d.message for d in ctx.diags.diagnostics]
    return m


# A transformer-style block: dense, residual add, layer norm, attention, dense.
BLOCK = """
%w1 = "tensor.constant"() {weight = "d1.weight"} : () -> tensor<16 x 16 x f32>
%b1 = "tensor.constant"() {weight = "d1.bias"} : () -> tensor<16 x f32>
%m1 = "tensor.matmul"(%x, %w1) {transpose_b = true} : (tensor<batch x seq x 16 x f32>, tensor<16 x 16 x f32>) -> tensor<* x f32>
%h = "tensor.binary"(%m1, %b1) {fn = "add"} : (tensor<* x f32>, tensor<16 x f32>) -> tensor<* x f32>
%r = "tensor.binary"(%h, %x) {fn = "add"} : (tensor<* x f32>, tensor<batch x seq x 16 x f32>) -> tensor<* x f32>
%mean = "tensor.reduce"(%r) {axes = [-1], keepdims = true, kind = "mean"} : (tensor<* x f32>) -> tensor<* x f32>
%d = "tensor.binary"(%r, %mean) {fn = "sub"} : (tensor<* x f32>, tensor<* x f32>) -> tensor<* x f32>
%sq = "tensor.binary"(%d, %d) {fn = "mul"} : (tensor<* x f32>, tensor<* x f32>) -> tensor<* x f32>
%var = "tensor.reduce"(%sq) {axes = [-1], keepdims = true, kind = "mean"} : (tensor<* x f32>) -> tensor<* x f32>
%eps = "tensor.constant"() {value = 1.0e-5} : () -> tensor<f32>
%ve = "tensor.binary"(%var, %eps) {fn = "add"} : (tensor<* x f32>, tensor<f32>) -> tensor<* x f32>
%rs = "tensor.unary"(%ve) {fn = "rsqrt"} : (tensor<* x f32>) -> tensor<* x f32>
%n = "tensor.binary"(%d, %rs) {fn = "mul"} : (tensor<* x f32>, tensor<* x f32>) -> tensor<* x f32>
%g = "tensor.constant"() {weight = "ln.weight"} : () -> tensor<16 x f32>
%be = "tensor.constant"() {weight = "ln.bias"} : () -> tensor<16 x f32>
%ng = "tensor.binary"(%n, %g) {fn = "mul"} : (tensor<* x f32>, tensor<16 x f32>) -> tensor<* x f32>
%y = "tensor.binary"(%ng, %be) {fn = "add"} : (tensor<* x f32>, tensor<16 x f32>) -> tensor<* x f32>
%a = "tensor.attention"(%y, %y, %y) {causal = true} : (tensor<* x f32>, tensor<* x f32>, tensor<* x f32>) -> tensor<* x f32>
%w2 = "tensor.constant"() {weight = "d2.weight"} : () -> tensor<8 x 16 x f32>
%m2 = "tensor.matmul"(%a, %w2) {transpose_b = true} : (tensor<* x f32>, tensor<8 x 16 x f32>) -> tensor<* x f32>
%o = "tensor.unary"(%m2) {fn = "relu"} : (tensor<* x f32>) -> tensor<* x f32>
"func.return"(%o) : (tensor<* x f32>) -> ()
"""


def block_weights(rng: np.random.Generator) -> dict[str, np.ndarray]:
    def w(*shape: int, scale: float = 0.25) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    return {"d1.weight": w(16, 16), "d1.bias": w(16), "ln.weight": 1 + w(16, scale=0.1),
            "ln.bias": w(16, scale=0.1), "d2.weight": w(8, 16)}


# -- structure ---------------------------------------------------------------------------------


def test_fp32_changes_nothing():
    m = tensor_module(BLOCK)
    text = print_module(m)
    run_pass(m, "fp32")
    assert print_module(m) == text


def test_unknown_mode_is_an_error():
    ctx = PassContext()
    PrecisionPass(mode="fp8").run(tensor_module(BLOCK), ctx)
    assert "unknown mode 'fp8'" in ctx.diags.errors[0].message


@pytest.mark.parametrize("mode,low", [("fp16", "f16"), ("bf16", "bf16")])
def test_low_modes_run_matmuls_and_their_followers_low(mode, low):
    m = tensor_module(BLOCK)
    run_pass(m, mode)
    assert_no_redundant_casts(m)
    for op in ops(m):
        if op.name in ("tensor.matmul", "tensor.attention"):
            assert {v.type.dtype for v in op.operands} == {low}
            assert op.result.type.dtype == low
        if op.name == "tensor.reduce" or op.attributes.get("fn") == "rsqrt":
            assert op.result.type.dtype == "f32"
    # The bias add follows the low matmul (its weight is cast); the residual add meets the
    # f32 input and so runs in f32, as does the whole layer norm; relu follows matmul 2.
    binary = {op.attributes["fn"] + str(i): op.result.type.dtype
              for i, op in enumerate(o for o in ops(m) if o.name == "tensor.binary")}
    assert list(binary.values()) == [low, "f32", "f32", "f32", "f32", "f32", "f32", "f32"]
    assert dtype_of(m, "tensor.unary") == ["f32", low]
    # The signature is unchanged: the low relu is cast back before it is returned.
    ret = func_body(m.funcs[0]).ops[-1]
    assert ret.operands[0].type.dtype == "f32"
    assert ret.operands[0].owner.name == "tensor.cast"


def test_mixed_casts_every_low_result_straight_back():
    m = tensor_module(BLOCK)
    run_pass(m, "mixed")
    assert_no_redundant_casts(m)
    for op in ops(m):
        if op.name in ("tensor.matmul", "tensor.attention"):
            assert op.result.type.dtype == "f16"
            # Its f32 copy feeds everything but the next low op, which reads the f16 value
            # itself (f16 -> f32 -> f16 is exact, so that cast pair went).
            for user in op.result.users():
                assert (user.name, user.attributes.get("to")) in (
                    ("tensor.cast", "f32"), ("tensor.matmul", None))
        elif op.name not in ("tensor.cast", "func.return", "tensor.constant"):
            assert op.result.type.dtype == "f32", op
    # One cast per value and type: %y feeds attention three times through a single cast.
    att = next(op for op in ops(m) if op.name == "tensor.attention")
    assert len({id(v) for v in att.operands}) == 1


def test_weights_are_cast_once_next_to_the_constant():
    m = tensor_module(BLOCK)
    run_pass(m, "fp16")
    body = func_body(m.funcs[0]).ops
    for i, op in enumerate(body):
        if op.name == "tensor.constant" and op.attributes.get("weight", "").startswith("d"):
            assert body[i + 1].name == "tensor.cast" and body[i + 1].operands[0] is op.result


def test_out_of_range_fill_stays_f32_with_a_warning():
    body = """
    %w = "tensor.constant"() {weight = "w"} : () -> tensor<16 x 16 x f32>
    %m = "tensor.matmul"(%x, %w) {transpose_b = true} : (tensor<batch x seq x 16 x f32>, tensor<16 x 16 x f32>) -> tensor<* x f32>
    %big = "tensor.constant"() {value = 100000.0} : () -> tensor<f32>
    %a = "tensor.binary"(%m, %big) {fn = "mul"} : (tensor<* x f32>, tensor<f32>) -> tensor<* x f32>
    %tiny = "tensor.constant"() {value = 1.0e-9} : () -> tensor<f32>
    %b = "tensor.binary"(%m, %tiny) {fn = "add"} : (tensor<* x f32>, tensor<f32>) -> tensor<* x f32>
    %half = "tensor.constant"() {value = 0.5} : () -> tensor<f32>
    %c = "tensor.binary"(%m, %half) {fn = "mul"} : (tensor<* x f32>, tensor<f32>) -> tensor<* x f32>
    "func.return"(%a, %b, %c) : (tensor<* x f32>, tensor<* x f32>, tensor<* x f32>) -> ()
    """
    m = tensor_module(body, results=3)
    ctx = run_pass(m, "fp16")
    msgs = [d.message for d in ctx.diags.warnings]
    assert msgs == [
        "constant 100000 stays f32 under precision mode fp16: it exceeds the largest finite f16 "
        "value, 65504; the tensor.binary (mul) that uses it runs in f32",
        "constant 1e-09 stays f32 under precision mode fp16: it rounds to 0 in f16; the "
        "tensor.binary (add) that uses it runs in f32",
    ]
    assert dtype_of(m, "tensor.binary") == ["f32", "f32", "f16"]
    consts = {op.attributes["value"]: op.result.type.dtype for op in ops(m)
              if op.name == "tensor.constant" and "value" in op.attributes}
    assert consts == {100000.0: "f32", 1e-9: "f32", 0.5: "f32"}  # 0.5 reaches f16 by a cast
    # bf16 holds both values: no warning.
    m = tensor_module(body, results=3)
    assert not run_pass(m, "bf16").diags.warnings


def test_fill_problem():
    assert fill_problem(65504.0, "f16") is None
    assert fill_problem(65520.0, "f16") is not None  # rounds up to inf
    assert fill_problem(6e-8, "f16") is None  # the smallest subnormal survives
    assert fill_problem(2e-8, "f16") is not None
    assert fill_problem(1e30, "bf16") is None and fill_problem(0.0, "f16") is None


def test_redundant_casts_go_and_rounding_ones_stay():
    text = """
    %0 = "tensor.cast"(%h) {to = "f32"} : (tensor<batch x 4 x f16>) -> tensor<* x f32>
    %1 = "tensor.cast"(%0) {to = "f16"} : (tensor<* x f32>) -> tensor<* x f16>
    %2 = "tensor.cast"(%0) {to = "bf16"} : (tensor<* x f32>) -> tensor<* x bf16>
    %3 = "tensor.cast"(%x) {to = "f16"} : (tensor<batch x 4 x f32>) -> tensor<* x f16>
    %4 = "tensor.cast"(%3) {to = "f32"} : (tensor<* x f16>) -> tensor<* x f32>
    %5 = "tensor.cast"(%x) {to = "f16"} : (tensor<batch x 4 x f32>) -> tensor<* x f16>
    %6 = "tensor.cast"(%x) {to = "f32"} : (tensor<batch x 4 x f32>) -> tensor<* x f32>
    %7 = "tensor.cast"(%x) {to = "bf16"} : (tensor<batch x 4 x f32>) -> tensor<* x bf16>
    "func.return"(%1, %2, %4, %5, %6) : (tensor<* x f16>, tensor<* x bf16>, tensor<* x f32>, tensor<* x f16>, tensor<* x f32>) -> ()
    """
    m = tensor_module(text, "%h: tensor<batch x 4 x f16>, %x: tensor<batch x 4 x f32>",
                      "tensor<* x f16>, tensor<* x bf16>, tensor<* x f32>, tensor<* x f16>, "
                      "tensor<* x f32>")
    body = func_body(m.funcs[0])
    simplify_casts(m)
    assert verify(m) == []
    ret = body.ops[-1]
    h, x = body.args
    r1, r2, r4, r5, r6 = ret.operands
    assert r1 is h  # f16 -> f32 -> f16 is the f16 value
    assert r2.owner.name == "tensor.cast" and r2.owner.operands[0] is h  # f16 -> bf16 directly
    assert r4.owner.operands[0].owner.operands[0] is x  # f32 -> f16 -> f32 rounds: kept
    assert r5 is r4.owner.operands[0]  # the duplicate f32 -> f16 cast is merged
    assert r6 is x  # identity
    assert len(casts(m)) == 3  # the dead bf16 cast is gone too
    assert_no_redundant_casts(m)


def test_mode_is_a_pass_option():
    assert get_pass("precision")().mode == "fp32"
    modes = [parse_pipeline(f"precision{{mode={m}}}")[0].mode for m in ("fp16", "bf16", "mixed")]
    assert modes == ["fp16", "bf16", "mixed"]


def test_precision_after_fusion_rewrites_kernel_bodies():
    m = tensor_module(BLOCK)
    ctx = PassContext()
    FusePass().run(m, ctx)
    run_pass(m, "fp16")
    assert_no_redundant_casts(m)
    kinds = [op.attributes["kind"] for op in ops(m) if op.name == "kernel.fused"]
    assert kinds[0] == "matmul+elementwise"
    first = next(op for op in ops(m) if op.name == "kernel.fused")
    # Inside the kernel the matmul runs in f16; the kernel's results follow its yield.
    inner = [op for op in first.regions[0].block.ops if op.name == "tensor.matmul"]
    assert inner[0].result.type.dtype == "f16"
    assert [r.type for r in first.results] == [
        v.type for v in first.regions[0].block.terminator.operands]


# -- numerics ----------------------------------------------------------------------------------


def rel_error(low: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(low.astype(np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("mode", ["fp16", "bf16", "mixed"])
@pytest.mark.parametrize("sizes", [{"batch": 1, "seq": 5}, {"batch": 3, "seq": 11}])
def test_block_agrees_with_fp32(mode, sizes):
    rng = np.random.default_rng(11)
    weights = block_weights(rng)
    m = tensor_module(BLOCK)
    x = rng.standard_normal((sizes["batch"], sizes["seq"], 16)).astype(np.float32)
    (ref,) = run_module(m, [x], weights)
    run_pass(m, mode)
    (low,) = run_module(m, [x], weights)
    assert low.dtype == np.float32 and low.shape == ref.shape
    err = rel_error(low, ref)
    assert err < BOUND[mode], err
    assert err > 0  # the pass did change the arithmetic


@pytest.mark.parametrize("mode", ["fp16", "bf16", "mixed"])
@pytest.mark.parametrize("batch", [1, 6])
def test_lowered_mlp_agrees_with_fp32_before_and_after_fusion(mode, batch):
    m, weights = lowered()
    x = np.random.default_rng(batch).standard_normal((batch, 12)).astype(np.float32)
    (ref,) = run_module(m, [x], weights)
    run_pass(m, mode)
    (low,) = run_module(m, [x], weights)
    assert rel_error(low, ref) < BOUND[mode]
    FusePass().run(m, PassContext())
    assert verify(m) == []
    (fused,) = run_module(m, [x], weights)
    np.testing.assert_allclose(fused, low, rtol=1e-6, atol=1e-6)
    assert analysis.kernel_count(m) == 5  # 4 matmul kernels + the softmax
