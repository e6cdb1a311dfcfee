"""``memory-plan`` and the shared analyses: liveness, slot reuse, symbolic peaks, bytes moved.

Besides checking slot numbers, every plan is validated by running the module in the reference
interpreter while simulating the arena: each result is written to its slot, and every read
must find its own value still there (no slot reused while a value in it is live).
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from neuralc.ir.core import Module, Op, func_body
from neuralc.ir.dims import floordiv, sym
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes import analysis
from neuralc.passes.base import PassContext
from neuralc.passes.fusion import FusePass
from neuralc.passes.memory_plan import MemoryPlanPass, plan_function
from neuralc.passes.shape_infer import ShapeInferencePass
from neuralc.runtime.interpreter import Interpreter

B, S, H = sym("batch"), sym("seq"), sym("h")


def module(body: str, args: str = "%x: tensor<batch x 64 x f32>", results: int = 1,
           dims: str = "") -> Module:
    outs = ", ".join(["tensor<* x f32>"] * results)
    # The frontend records the nominal sizes (batch 1); textual IR says so itself.
    facts = f"dims = {{{dims}}}, " if dims else ""
    head = f"module @T attributes {{{facts}dim_nominal = {{batch = 1}}}} {{"
    text = textwrap.dedent(f"""\
        {head}
          func.func @T({args}) -> ({outs}) {{
        {textwrap.indent(textwrap.dedent(body), "    ")}
          }}
        }}""")
    m = parse_module(text, "t.nir")
    ctx = PassContext()
    ShapeInferencePass().run(m, ctx)
    assert not ctx.diags.has_errors(), [d.message for d in ctx.diags.diagnostics]
    return m


def plan(m: Module) -> Op:
    ctx = PassContext()
    MemoryPlanPass().run(m, ctx)
    assert not ctx.diags.has_errors(), [d.message for d in ctx.diags.diagnostics]
    assert verify(m) == []
    return m.funcs[0]


def buffers(m: Module) -> list:
    return [op.attributes.get("buffer") for op in func_body(m.funcs[0]).ops
            if analysis.is_kernel(op)]


# x -> a (batch x 128) -> b (128) -> c (32) -> d (32): sizes 512b, 512b, 128b, 128b bytes.
CHAIN = """
%w1 = "tensor.constant"() {weight = "w1"} : () -> tensor<128 x 64 x f32>
%a = "tensor.matmul"(%x, %w1) {transpose_b = true} : (tensor<batch x 64 x f32>, tensor<128 x 64 x f32>) -> tensor<* x f32>
%b = "tensor.unary"(%a) {fn = "relu"} : (tensor<* x f32>) -> tensor<* x f32>
%w2 = "tensor.constant"() {weight = "w2"} : () -> tensor<32 x 128 x f32>
%c = "tensor.matmul"(%b, %w2) {transpose_b = true} : (tensor<* x f32>, tensor<32 x 128 x f32>) -> tensor<* x f32>
%d = "tensor.unary"(%c) {fn = "relu"} : (tensor<* x f32>) -> tensor<* x f32>
"func.return"(%d) : (tensor<* x f32>) -> ()
"""

# a feeds two branches that meet again: both branches are live at the add.
BRANCH = """
%a = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x 64 x f32>) -> tensor<* x f32>
%b = "tensor.unary"(%a) {fn = "exp"} : (tensor<* x f32>) -> tensor<* x f32>
%c = "tensor.unary"(%a) {fn = "neg"} : (tensor<* x f32>) -> tensor<* x f32>
%d = "tensor.binary"(%b, %c) {fn = "add"} : (tensor<* x f32>, tensor<* x f32>) -> tensor<* x f32>
%e = "tensor.unary"(%d) {fn = "tanh"} : (tensor<* x f32>) -> tensor<* x f32>
"func.return"(%e) : (tensor<* x f32>) -> ()
"""


def test_chain_reuses_buffers_and_peaks_at_the_two_largest_neighbours():
    m = module(CHAIN)
    f = plan(m)
    assert buffers(m) == [0, 1, 0, None]  # d is the result: the caller's buffer
    assert f.attributes["buffer_bytes"] == ["batch * 512", "batch * 512"]
    assert f.attributes["buffer_offsets"] == ["0", "batch * 512"]  # multiples of 64
    assert f.attributes["arena_bytes"] == "batch * 1024"
    assert f.attributes["peak_bytes"] == "batch * 1024"  # a and b, live together at b
    assert f.attributes["peak_bytes_nominal"] == 1024
    assert f.attributes["nominal_sizes"] == {"batch": 1}
    assert analysis.peak_memory(m, {"batch": 4}) == 4096
    assert analysis.peak_memory(m, {"batch": 4}) == analysis.peak_live_bytes(f, {"batch": 4})


def test_branch_keeps_both_alive():
    m = module(BRANCH)
    f = plan(m)
    a, b, c, d, e = buffers(m)
    assert len({a, b, c}) == 3  # a is read by c, so b and c cannot take its slot
    assert d == a and e is None  # once a is dead its slot returns; e is the result
    assert f.attributes["peak_bytes"] == "batch * 768"


def test_sizes_that_cannot_be_compared_stay_apart_and_provable_ones_share():
    body = """
    %a = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x 64 x f32>) -> tensor<* x f32>
    %b = "tensor.unary"(%y) {fn = "relu"} : (tensor<seq x 8 x f32>) -> tensor<* x f32>
    %c = "tensor.unary"(%b) {fn = "neg"} : (tensor<* x f32>) -> tensor<* x f32>
    %d = "tensor.reduce"(%a) {axes = [-1], keepdims = false, kind = "sum"} : (tensor<* x f32>) -> tensor<* x f32>
    %e = "tensor.unary"(%c) {fn = "neg"} : (tensor<* x f32>) -> tensor<* x f32>
    %f = "tensor.unary"(%d) {fn = "neg"} : (tensor<* x f32>) -> tensor<* x f32>
    "func.return"(%e, %f) : (tensor<* x f32>, tensor<* x f32>) -> ()
    """
    m = module(body, "%x: tensor<batch x 64 x f32>, %y: tensor<seq x 8 x f32>", results=2)
    plan(m)
    a, b, c, d, e, f = buffers(m)
    # d (batch*4 bytes) finds only b's slot (seq*32) free: not comparable, so a new slot.
    # e (seq*32) takes b's slot: equal sizes. f (batch*4) takes a's (batch*256): larger for
    # every batch >= 1.
    assert len({a, b, c, d}) == 4 and e is None and f is None  # e, f: the results
    assert m.funcs[0].attributes["buffer_bytes"] == [
        "batch * 256", "seq * 32", "seq * 32", "batch * 4"]
    # Offsets are multiples of 64 bytes: batch * 4 rounds up to a whole number of lines.
    assert m.funcs[0].attributes["arena_bytes"] == \
        "batch * 256 + ((batch + 15) floordiv 16) * 64 + ((seq + 1) floordiv 2) * 128"


def test_provably_ge():
    ge = analysis.provably_ge
    assert ge(B * 64, B * 32) and ge(B * 64, 64) and not ge(64, B * 64)
    assert not ge(B * 8, S * 8) and not ge(S * 8, B * 8)
    assert ge(B * S * 16, B * 16) and ge(B * S * 16 + 4, S * 16)
    assert ge(floordiv(H + 1, 2) * 4, 4)  # h >= 1
    assert not ge(floordiv(H + 1, 2) * 4, 8)  # false at h = 1
    assert ge(floordiv(H + 1, 2) * 4, 8, {"h": 3})  # true once h >= 3
    assert ge(H - 3, 0, {"h": 3}) and not ge(H - 3, 0)


def test_dims_ranges_feed_the_proofs():
    body = """
    %a = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x h x f32>) -> tensor<* x f32>
    %b = "tensor.reduce"(%a) {axes = [-1], keepdims = false, kind = "sum"} : (tensor<* x f32>) -> tensor<* x f32>
    %c = "tensor.broadcast"(%b) : (tensor<* x f32>) -> tensor<8 x batch x f32>
    %d = "tensor.unary"(%c) {fn = "neg"} : (tensor<8 x batch x f32>) -> tensor<* x f32>
    "func.return"(%d) : (tensor<* x f32>) -> ()
    """
    # a is batch*h*4 bytes; c is batch*32. With h >= 8 c fits in a's slot; with h >= 1 it
    # may not, so the slots stay apart.
    for dims, reused in (("h = [8, none]", True), ("h = [1, none]", False)):
        m = module(body, "%x: tensor<batch x h x f32>", dims=dims)
        plan(m)
        a, b, c, d = buffers(m)
        assert (c == a) is reused


def test_plan_on_kernels_after_fusion_round_trips():
    m = module(CHAIN)
    FusePass().run(m, PassContext())
    f = plan(m)
    ks = [op for op in func_body(f).ops if op.name == "kernel.fused"]
    assert [k.attributes.get("buffer") for k in ks] == [0, None]
    for k in ks:  # nothing inside a kernel is planned
        assert not any("buffer" in op.attributes for op in k.regions[0].block.ops)
    text = print_module(m)
    assert 'peak_bytes = "batch * 512"' in text and "buffer = 0" in text
    assert print_module(parse_module(text, "t.nir")) == text
    plan(m)  # planning again gives the same plan
    assert print_module(m) == text


def test_multi_result_kernels_get_a_list():
    body = """
    %a = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x 64 x f32>) -> tensor<* x f32>
    %r = "tensor.reduce"(%a) {axes = [-1], keepdims = true, kind = "sum"} : (tensor<* x f32>) -> tensor<* x f32>
    %w = "tensor.constant"() {weight = "w"} : () -> tensor<4 x 64 x f32>
    %m = "tensor.matmul"(%a, %w) {transpose_b = true} : (tensor<* x f32>, tensor<4 x 64 x f32>) -> tensor<* x f32>
    "func.return"(%r, %m) : (tensor<* x f32>, tensor<* x f32>) -> ()
    """
    m = module(body, results=2)
    FusePass().run(m, PassContext())
    plan(m)
    first = next(op for op in func_body(m.funcs[0]).ops if op.name == "kernel.fused")
    # One result is returned (the caller's buffer), the other planned.
    assert len(first.results) == 2 and first.attributes["buffer"] == [0, None]


def _check_plan_by_simulation(m: Module, inputs: list[np.ndarray],
                              weights: dict[str, np.ndarray]) -> None:
    """Run ``m`` while tracking which value each slot holds; every read must find its value."""
    slot_of: dict[int, int] = {}
    for op in func_body(m.funcs[0]).ops:
        ids = op.attributes.get("buffer")
        if ids is not None:
            for r, s in zip(op.results, ids if isinstance(ids, list) else [ids]):
                slot_of[id(r)] = s
    holds: dict[int, int] = {}

    def on_op(op: Op, outputs: list[np.ndarray]) -> None:
        for v in op.operands:
            if id(v) in slot_of:
                assert holds[slot_of[id(v)]] == id(v), f"{op.name} reads a clobbered buffer"
        for r in op.results:
            if id(r) in slot_of:
                holds[slot_of[id(r)]] = id(r)

    interp = Interpreter(m, on_op=on_op)
    interp.run(inputs, weights)
    ret = func_body(m.funcs[0]).ops[-1]
    for v in ret.operands:
        if id(v) in slot_of:
            assert holds[slot_of[id(v)]] == id(v), "a function result was overwritten"


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("body", [CHAIN, BRANCH])
def test_plans_are_valid_when_run(body, fused):
    rng = np.random.default_rng(0)
    m = module(body)
    if fused:
        FusePass().run(m, PassContext())
    plan(m)
    weights = {"w1": rng.standard_normal((128, 64)).astype(np.float32),
               "w2": rng.standard_normal((32, 128)).astype(np.float32)}
    for batch in (1, 3):
        x = rng.standard_normal((batch, 64)).astype(np.float32)
        _check_plan_by_simulation(m, [x], weights)


def test_slots_never_hold_two_live_values_or_a_value_too_big():
    for body, arg in ((CHAIN, "64"), (BRANCH, "64"), (TWO_DENSE, "6")):
        m = module(body, f"%x: tensor<batch x {arg} x f32>")
        lows = analysis.symbol_lower_bounds(m)
        p = plan_function(m.funcs[0], lows, analysis.nominal_sizes(m))
        for slot in p.slots:
            for i, a in enumerate(slot.values):
                assert analysis.provably_ge(slot.size, a.size, lows)
                for b in slot.values[i + 1:]:
                    assert not a.overlaps(b)


def test_plans_of_the_fusion_models_are_valid():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from test_fusion import MODELS, _inputs, _weights

    rng = np.random.default_rng(5)
    for name, (build, _) in MODELS.items():
        for fused in (False, True):
            m = build()
            if fused:
                FusePass().run(m, PassContext())
            plan(m)
            weights = _weights(m, rng)
            xs = _inputs(m, {"batch": 2, "seq": 6, "h": 5, "w": 4}, rng)
            _check_plan_by_simulation(m, xs, weights)
            assert analysis.peak_memory(m) >= analysis.peak_live_bytes(
                m.funcs[0], analysis.nominal_sizes(m)), name


# -- kernel count and bytes moved ---------------------------------------------------------------

TWO_DENSE = """
%w1 = "tensor.constant"() {weight = "w1"} : () -> tensor<8 x 6 x f32>
%b1 = "tensor.constant"() {weight = "b1"} : () -> tensor<8 x f32>
%m1 = "tensor.matmul"(%x, %w1) {transpose_b = true} : (tensor<batch x 6 x f32>, tensor<8 x 6 x f32>) -> tensor<* x f32>
%a1 = "tensor.binary"(%m1, %b1) {fn = "add"} : (tensor<* x f32>, tensor<8 x f32>) -> tensor<* x f32>
%r1 = "tensor.unary"(%a1) {fn = "relu"} : (tensor<* x f32>) -> tensor<* x f32>
%w2 = "tensor.constant"() {weight = "w2"} : () -> tensor<3 x 8 x f32>
%b2 = "tensor.constant"() {weight = "b2"} : () -> tensor<3 x f32>
%m2 = "tensor.matmul"(%r1, %w2) {transpose_b = true} : (tensor<* x f32>, tensor<3 x 8 x f32>) -> tensor<* x f32>
%a2 = "tensor.binary"(%m2, %b2) {fn = "add"} : (tensor<* x f32>, tensor<3 x f32>) -> tensor<* x f32>
"func.return"(%a2) : (tensor<* x f32>) -> ()
"""


def test_kernel_count_and_bytes_moved_before_and_after_fusion():
    m = module(TWO_DENSE, "%x: tensor<batch x 6 x f32>")
    assert analysis.kernel_count(m) == 5
    # At batch = 2 (f32): x 48, w1 192, b1 32, y 64, w2 96, b2 12, out 24 bytes.
    # mm1 48+192+64, add 64+32+64, relu 64+64, mm2 64+96+24, add 24+12+24.
    assert analysis.bytes_moved(m, {"batch": 2}) == 304 + 160 + 128 + 184 + 60
    FusePass().run(m, PassContext())
    assert analysis.kernel_count(m) == 2
    # kernel 1: x, w1, b1 in, y out; kernel 2: y, w2, b2 in, out.
    assert analysis.bytes_moved(m, {"batch": 2}) == (48 + 192 + 32 + 64) + (64 + 96 + 12 + 24)
    rows = analysis.traffic(m)
    assert [(r.name, r.kind) for r in rows] == [("fused_0", "matmul+elementwise"),
                                                ("fused_1", "matmul+elementwise")]
    assert str(rows[0].reads) == "batch * 24 + 224" and str(rows[0].writes) == "batch * 32"
    assert str(analysis.bytes_moved_expr(m)) == "batch * 100 + 332"
    # The nominal size (batch = 1) is the default.
    assert analysis.bytes_moved(m) == 100 + 332


def test_nominal_sizes_respect_dims_ranges():
    m = module('%0 = "tensor.unary"(%x) {fn = "neg"} : (tensor<batch x h x w x f32>) -> '
               'tensor<* x f32>\n"func.return"(%0) : (tensor<* x f32>) -> ()',
               "%x: tensor<batch x h x w x f32>", dims="h = [100, none], w = [1, 16]")
    assert analysis.nominal_sizes(m) == {"batch": 1, "h": 100, "w": 16}


def test_unranked_module_is_an_error():
    text = """module @T {
      func.func @T(%x: tensor<batch x 4 x f32>) -> (tensor<* x f32>) {
        %0 = "tensor.unary"(%x) {fn = "relu"} : (tensor<batch x 4 x f32>) -> tensor<* x f32>
        "func.return"(%0) : (tensor<* x f32>) -> ()
      }
    }"""
    ctx = PassContext()
    MemoryPlanPass().run(parse_module(text, "t.nir"), ctx)
    assert "run shape-infer first" in ctx.diags.errors[0].message
