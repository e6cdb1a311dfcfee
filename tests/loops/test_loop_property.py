"""Property test: random chains of elementwise ops, broadcasts, transposes, reshapes and
reductions over symbolic sizes; the loop IR (interpreter, and the native code for some) must
agree with the tensor IR on every draw.

Each chain starts from an input ``(batch, a, b)`` (all three symbolic) and applies random steps;
a step that cannot apply to the current rank is skipped. Sizes are drawn per example.
Tolerances: rtol 1e-4, atol 1e-5 (float32; reductions of <= 64 terms, reassociated).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from loop_check import compare, tensor_module, to_loops

UNARY = ("relu", "tanh", "sigmoid", "exp", "neg", "abs", "gelu", "softsign")
BINARY = ("add", "sub", "mul", "max", "min")
REDUCE = ("sum", "mean", "max", "min")

step = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(UNARY)),
    st.tuples(st.just("binary_input"), st.sampled_from(BINARY)),
    st.tuples(st.just("binary_row"), st.sampled_from(BINARY)),
    st.tuples(st.just("transpose"), st.permutations([0, 1, 2])),
    st.tuples(st.just("reduce"), st.sampled_from(REDUCE), st.booleans(), st.integers(1, 2)),
    st.tuples(st.just("flatten"), st.just(0)),
)


def build(steps: list[tuple]) -> str:
    """Tensor IR for the chain (types left for shape inference)."""
    lines = []
    cur, rank, n = "%x", 3, 0
    shape = ["batch", "a", "b"]  # what the current value's axes are
    t = "tensor<batch x a x b x f32>"
    for s in steps:
        kind = s[0]
        out = f"%v{n}"
        out_t = "tensor<* x f32>"
        if kind == "unary":
            lines.append(f'{out} = "tensor.unary"({cur}) {{fn = "{s[1]}"}} : '
                         f'({t}) -> tensor<* x f32>')
        elif kind == "binary_input" and shape == ["batch", "a", "b"]:
            lines.append(f'{out} = "tensor.binary"({cur}, %y) {{fn = "{s[1]}"}} : '
                         f'({t}, tensor<batch x a x b x f32>) -> tensor<* x f32>')
        elif kind == "binary_row":
            lines.append(f'{out} = "tensor.binary"({cur}, %c) {{fn = "{s[1]}"}} : '
                         f'({t}, tensor<f32>) -> tensor<* x f32>')
        elif kind == "transpose" and rank == 3:
            perm = [0] + [p for p in s[1] if p != 0]  # keep the batch first
            shape = [shape[p] for p in perm]
            lines.append(f'{out} = "tensor.transpose"({cur}) {{perm = {perm}}} : '
                         f'({t}) -> tensor<* x f32>')
        elif kind == "reduce" and rank >= 2:
            axis = min(s[3], rank - 1)
            keep = "true" if s[2] else "false"
            lines.append(f'{out} = "tensor.reduce"({cur}) {{axes = [{axis}], keepdims = {keep}, '
                         f'kind = "{s[1]}"}} : ({t}) -> tensor<* x f32>')
            rank = rank if s[2] else rank - 1
            shape = [d if i != axis else "1" for i, d in enumerate(shape)] if s[2] else \
                [d for i, d in enumerate(shape) if i != axis]
        elif kind == "flatten" and rank == 3:
            out_t = f"tensor<batch x ({shape[1]} * {shape[2]}) x f32>"
            lines.append(f'{out} = "tensor.reshape"({cur}) : ({t}) -> {out_t}')
            rank, shape = 2, ["batch", "flat"]
        else:
            continue
        cur, n, t = out, n + 1, out_t
    lines.append(f'"func.return"({cur}) : ({t}) -> ()')
    body = "\n    ".join(lines)
    return f"""module @P attributes {{dim_nominal = {{batch = 1}}}} {{
  func.func @P(%x: tensor<batch x a x b x f32>, %y: tensor<batch x a x b x f32>) -> ({t}) {{
    %c = "tensor.constant"() {{value = 0.5}} : () -> tensor<f32>
    {body}
  }}
}}"""


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=6), fused=st.booleans(),
       sizes=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 6)),
       seed=st.integers(0, 2**16))
def test_random_chains_agree_with_the_tensor_ir(steps: list[tuple], fused: bool,
                                                sizes: tuple[int, int, int], seed: int) -> None:
    tensor = tensor_module(build(steps), fused)
    loops = to_loops(tensor)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(sizes).astype(np.float32)
    y = rng.standard_normal(sizes).astype(np.float32)
    compare(tensor, loops, [x, y], {}, rtol=1e-4, atol=1e-5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(step, min_size=1, max_size=5),
       sizes=st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 20)),
       seed=st.integers(0, 2**16))
def test_random_chains_agree_in_native_code(steps: list[tuple], sizes: tuple[int, int, int],
                                            seed: int) -> None:
    import ctypes

    from neuralc.backends.cpu.host import TargetSpec
    from neuralc.backends.cpu.jit import JitModule
    from neuralc.backends.cpu.program import generate
    from neuralc.backends.cpu.runtime import _table, aligned_bytes
    from neuralc.ir.dims import evaluate
    from neuralc.passes.manager import PassManager
    from neuralc.passes.registry import parse_pipeline
    from neuralc.runtime.interpreter import Interpreter

    tensor = tensor_module(build(steps))
    loops = tensor.clone()
    spec = TargetSpec.host()
    PassManager(parse_pipeline(f"lower-to-loops,schedule{{vector_bits={spec.vector_bits}}}")
                ).run(loops)
    prog = generate(loops)
    run = JitModule(prog.llvm_ir, spec).function("nc_run", None, *([ctypes.c_void_p] * 6))
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(sizes).astype(np.float32)
    y = rng.standard_normal(sizes).astype(np.float32)
    want = Interpreter(tensor).load({}).run([x, y])
    env = {"batch": sizes[0], "a": sizes[1], "b": sizes[2]}
    outs = [np.zeros([evaluate(d, env) for d in t.shape], np.float32) for t in prog.outputs]
    arena = aligned_bytes(max(int(evaluate(prog.arena_bytes, env)), 64))
    sz = np.array([env[s] for s in prog.symbols] or [0], np.int64)
    P = ctypes.c_void_p
    run(ctypes.cast(_table([x, y]), P), ctypes.cast(_table(outs), P), ctypes.cast(_table([]), P),
        ctypes.cast(_table([]), P), arena.ctypes.data, sz.ctypes.data)
    np.testing.assert_allclose(outs[0], want[0], rtol=1e-4, atol=1e-5)
