"""What the cuda target's code generator writes: index arithmetic, kernel families, the
generated module's layout, dot precisions, and refusals at the .nr line."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from layer_cases import CASES, net

from neuralc.backends.cuda.compile import compile_for_cuda
from neuralc.backends.cuda.kernel_codegen import CodegenError, CodegenOptions, generate_kernel
from neuralc.backends.cuda.pyexpr import IndexText
from neuralc.driver import compile_file, compile_source
from neuralc.ir.dims import evaluate, parse_dim
from neuralc.ir.parser import parse_module

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _case(cid: str):
    (c,) = [c for c in CASES if c[0] == cid]
    return compile_source(net(c[1], c[2]), "case.nr")


def _kernels(model, level: int = 2, precision: str = "fp32", **kw) -> dict:
    comp = compile_for_cuda(model, level, precision, **kw)
    return {k.name: k for k in comp.program.kernels}


@pytest.mark.parametrize("text", ["(i - 3) floordiv 2", "(i * 5 - j) mod 4", "(2 - i) floordiv n",
                                  "min(i, n - 1) * 3 + (j - i) mod n", "-i floordiv 3"])
def test_python_index_text_has_floor_semantics(text: str) -> None:
    d = parse_dim(text)
    code = IndexText({"i": "i", "j": "j", "n": "n"}, {}, "python").text(d)
    rng = random.Random(0)
    for _ in range(200):
        env = {"i": rng.randint(-20, 20), "j": rng.randint(-20, 20), "n": rng.randint(1, 9)}
        assert eval(code, {}, dict(env)) == evaluate(d, env), (code, env)


def test_triton_division_uses_the_floor_helpers_only_where_a_numerator_may_be_negative() -> None:
    # dims keep numerators in a canonical form with non-negative terms, so only a variable
    # whose range reaches below zero leaves the sign open
    d = parse_dim("(i + 1) floordiv 2 + (i + 2) mod 3")
    names = {"i": "x"}
    anywhere = IndexText(names, {"i": (-5, 9)}, "triton").text(d)
    assert "_floordiv(" in anywhere and "_mod(" in anywhere
    proven = IndexText(names, {"i": (0, 9)}, "triton").text(d)
    assert "_floordiv" not in proven and "//" in proven and "%" in proven


def test_matmul_is_a_tl_dot_template_with_its_epilogue() -> None:
    ks = _kernels(compile_file(EXAMPLES / "mlp.nr"))
    k = ks["fused_0"]
    assert k.family == "matmul (tl.dot)"
    assert 'tl.dot(' in k.text and 'input_precision="ieee"' in k.text
    assert "GROUP_M" in k.config and k.config["BM"] >= 16 and k.config["BK"] >= 16
    # the bias add and the activation run on the accumulator tile before the one store
    assert k.text.index("tl.dot(") < k.text.index("_store(")


def test_fp16_matmul_feeds_16_bit_tiles_to_tl_dot_and_tf32_is_opt_in() -> None:
    model = compile_file(EXAMPLES / "mlp.nr")
    k16 = _kernels(model, precision="fp16")["fused_1"]
    assert "tl.dot(" in k16.text and "input_precision" not in k16.text
    assert "tl.float16" not in k16.text.split("tl.dot(")[1].split(")")[0]
    tf32 = _kernels(model, allow_tf32=True)["fused_0"]
    assert 'input_precision="tf32"' in tf32.text


def test_convolution_is_an_implicit_gemm_at_both_layouts() -> None:
    model = compile_file(EXAMPLES / "mnist_cnn.nr")
    for level in (2, 3):
        convs = [k for k in _kernels(model, level).values() if k.kind.startswith("conv")]
        # the first convolution has one input channel (9 taps): a small contraction
        assert [k.family for k in convs] == ["depthwise/small contraction",
                                             "conv (implicit GEMM)"], level
        assert "tl.dot(" in convs[1].text


def test_families_of_the_other_kernels() -> None:
    assert "attention (flash" in _kernels(_case("mha_self"))["fused_6"].family
    flash = _kernels(_case("mha_causal_value_dim"))["fused_6"].text
    assert "m_i" in flash and "alpha" in flash and flash.count("tl.dot(") == 2
    scan = [k for k in _kernels(_case("lstm_sequences")).values() if k.persistent]
    assert len(scan) == 1 and "tl.debug_barrier()" in scan[0].text and scan[0].grid == "1"
    dw = _kernels(_case("depthwise_conv2d"))
    assert any("small contraction" in k.family and "tl.dot" not in k.text for k in dw.values())
    pool = _kernels(_case("max_pooling2d_same"))["fused_0"]
    assert pool.family == "pooling" and "tl.max(" in pool.text
    norm = _kernels(_case("layer_norm"))["fused_0"]
    assert norm.family.startswith("reduction") and "tl.sum(" in norm.text


def test_the_score_concat_attention_is_left_to_the_generic_generator() -> None:
    ks = _kernels(_case("attention_concat_scaled_causal"))
    assert not any("flash" in k.family for k in ks.values())


def test_the_module_names_each_kernel_and_its_source_lines() -> None:
    comp = compile_for_cuda(compile_file(EXAMPLES / "mnist_cnn.nr"), 2, "fp32")
    text = comp.program.text
    assert '# fused_0: conv+elementwise; ' in text
    assert 'mnist_cnn.nr:5: Conv2D(32, (3, 3), "relu")' in text
    for k in comp.program.kernels:
        assert f"@triton.jit\ndef {k.name}(" in text
        assert f"    {k.name!r}: " in text.split("CONFIG = {")[1]
    assert "def run(inputs, outputs, init, w, arena, sizes" in text
    assert "class Program:" in text and "def arena_bytes(sizes):" in text
    assert "make_block_ptr" not in text
    compile(text, "model_cuda.py", "exec")


REFUSED = '''module @M {
  "loop.kernel"() {kind = "elementwise", sym_name = "k", symbols = []} ({
  ^bb0(%in0: memref<4 x i64>, %out0: memref<4 x i64>):
    "loop.for"() {kind = "parallel", lower = "0", upper = "4", var = "i0"} ({
    ^bb0:
      %0 = "loop.load"(%in0) {index = ["i0"]} : (memref<4 x i64>) -> i64 loc("m.nr":3:5 to 3:20)
      %1 = "loop.binary"(%0, %0) {fn = "pow"} : (i64, i64) -> i64 loc("m.nr":4:7 to 4:20)
      "loop.store"(%out0, %1) {index = ["i0"]} : (memref<4 x i64>, i64) -> () loc("m.nr":3:5 to 3:20)
    }) : () -> () loc("m.nr":3:5 to 3:20)
  }) : () -> () loc("m.nr":2:1 to 9:2)
}
'''


def test_what_it_cannot_translate_is_refused_at_the_op_s_line() -> None:
    module = parse_module(REFUSED, "t.nir")
    (kernel,) = [o for o in module.body.ops if o.name == "loop.kernel"]
    with pytest.raises(CodegenError) as e:
        generate_kernel(kernel, CodegenOptions())
    assert "integer pow has no Triton translation" in str(e.value)
    assert str(e.value.location) == "m.nr:4:7"


def test_the_module_helpers_match_numpy() -> None:
    """Floored division and remainder, and the math functions Triton lacks (run in the
    interpreter over negative numbers, zero, tiny and huge arguments)."""
    import numpy as np
    import torch

    from neuralc.backends.cuda.module import HELPERS
    from neuralc.backends.cuda.runtime import load_module

    text = "\n\n".join(["import triton", "import triton.language as tl", *HELPERS.values(), '''
@triton.jit
def ints(x, q, r, n: tl.constexpr):
    i = tl.arange(0, n)
    v = tl.load(x + i)
    tl.store(q + i, _floordiv(v, 3))
    tl.store(r + i, _mod(v, 3))


@triton.jit
def floats(x, y, out, n: tl.constexpr):
    i = tl.arange(0, n)
    v = tl.load(x + i)
    w = tl.load(y + i)
    tl.store(out + i, _expm1(v))
    tl.store(out + n + i, _tanh(v))
    tl.store(out + 2 * n + i, _softplus(v))
    tl.store(out + 3 * n + i, _pow(v, w))
'''])
    mod = load_module(text)
    xs = torch.arange(-16, 16, dtype=torch.int32)
    q, r = torch.empty_like(xs), torch.empty_like(xs)
    mod.ints[(1,)](xs, q, r, 32)
    assert q.tolist() == [v // 3 for v in xs.tolist()]
    assert r.tolist() == [v % 3 for v in xs.tolist()]
    v = np.array([-90.0, -20.0, -3.0, -0.7, -1e-3, -1e-7, 0.0, 1e-7, 1e-3, 0.4, 0.6, 3.0, 20.0,
                  60.0, -2.0, -2.0], np.float32)
    w = np.array([2.0, 3.0, 2.0, 0.5, 2.0, 1.0, 2.0, 0.0, -1.0, 2.5, 2.0, 3.0, 0.5, 1.0,
                  3.0, 0.5], np.float32)
    out = torch.empty(64)
    mod.floats[(1,)](torch.from_numpy(v), torch.from_numpy(w), out, 16)
    got = out.numpy().reshape(4, 16).astype(np.float64)
    x = v.astype(np.float64)
    with np.errstate(all="ignore"):
        want = [np.expm1(x), np.tanh(x), np.logaddexp(0.0, x), np.power(x, w.astype(np.float64))]
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=1e-30, equal_nan=True)
