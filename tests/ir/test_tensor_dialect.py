"""The tensor dialect: shape rules on symbolic dims and reference semantics against PyTorch.

Each case is a small textual module run through shape inference and the reference
interpreter; outputs are compared with torch at float32 (rtol=1e-5, atol=1e-5) on fresh random
inputs at two batch sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes.base import PassContext
from neuralc.passes.shape_infer import ShapeInferencePass
from neuralc.runtime.interpreter import run_module

TOL = {"rtol": 1e-5, "atol": 1e-5}


def module(args: str, body: str, out: str = "%0") -> str:
    return f"""module @T {{
  func.func @T({args}) -> (tensor<* x f32>) {{
{body}
    "func.return"({out}) : (tensor<* x f32>) -> ()
  }}
}}"""


def infer(text: str):
    m = parse_module(text, "t.nir")
    ctx = PassContext()
    ShapeInferencePass().run(m, ctx)
    assert not ctx.diags.has_errors(), [d.message for d in ctx.diags.diagnostics]
    assert verify(m) == []
    return m


def result_type(m) -> str:
    return str(m.funcs[0].regions[0].block.ops[-1].operands[0].type)


@pytest.fixture
def rng():
    return np.random.default_rng()


@pytest.mark.parametrize("n", [1, 3])
@pytest.mark.parametrize("strides,dilation,groups,padding", [
    ([1, 1], [1, 1], 1, "valid"), ([2, 2], [1, 1], 1, "same"), ([1, 1], [2, 2], 2, "same"),
    ([2, 1], [1, 1], 4, [[1, 0], [2, 1]]),
])
def test_conv_matches_torch(rng, n, strides, dilation, groups, padding):
    pad = f'"{padding}"' if isinstance(padding, str) else str(padding)
    text = module(
        "%x: tensor<batch x h x w x 8 x f32>",
        f'    %w = "tensor.constant"() {{weight = "w"}} : () -> tensor<12 x {8 // groups} x 3 x 3 x f32>\n'
        f'    %0 = "tensor.conv"(%x, %w) {{dilation = {dilation}, groups = {groups}, '
        f'padding = {pad}, strides = {strides}}} : '
        f"(tensor<batch x h x w x 8 x f32>, tensor<12 x {8 // groups} x 3 x 3 x f32>) -> tensor<* x f32>")
    m = infer(text)
    x = rng.standard_normal((n, 11, 9, 8)).astype(np.float32)
    w = rng.standard_normal((12, 8 // groups, 3, 3)).astype(np.float32)
    (y,) = run_module(m, [x], {"w": w})
    xt = torch.from_numpy(x).permute(0, 3, 1, 2)
    if padding == "same":
        # Keras 'same': total padding split with the extra at the end.
        pads = []
        for size, s, d in reversed(list(zip((11, 9), strides, dilation))):
            out = -(-size // s)
            total = max((out - 1) * s + (3 - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        xt = F.pad(xt, pads)
    elif isinstance(padding, list):
        xt = F.pad(xt, [padding[1][0], padding[1][1], padding[0][0], padding[0][1]])
    ref = F.conv2d(xt, torch.from_numpy(w), stride=strides, dilation=dilation, groups=groups)
    np.testing.assert_allclose(y, ref.permute(0, 2, 3, 1).numpy(), **TOL)


def test_conv_symbolic_shape():
    text = module(
        "%x: tensor<batch x h x w x 3 x f32>",
        '    %w = "tensor.constant"() {weight = "w"} : () -> tensor<8 x 3 x 3 x 3 x f32>\n'
        '    %0 = "tensor.conv"(%x, %w) {dilation = [1, 1], groups = 1, padding = "same", '
        'strides = [2, 2]} : (tensor<batch x h x w x 3 x f32>, tensor<8 x 3 x 3 x 3 x f32>) -> tensor<* x f32>')
    assert result_type(infer(text)) == "tensor<batch x ((h + 1) floordiv 2) x ((w + 1) floordiv 2) x 8 x f32>"


@pytest.mark.parametrize("n", [2, 5])
def test_matmul_bias_gelu_matches_torch(rng, n):
    text = module(
        "%x: tensor<batch x seq x 6 x f32>",
        '    %w = "tensor.constant"() {weight = "w"} : () -> tensor<4 x 6 x f32>\n'
        '    %b = "tensor.constant"() {weight = "b"} : () -> tensor<4 x f32>\n'
        '    %m = "tensor.matmul"(%x, %w) {transpose_b = true} : (tensor<batch x seq x 6 x f32>, tensor<4 x 6 x f32>) -> tensor<* x f32>\n'
        '    %s = "tensor.binary"(%m, %b) {fn = "add"} : (tensor<* x f32>, tensor<4 x f32>) -> tensor<* x f32>\n'
        '    %0 = "tensor.unary"(%s) {fn = "gelu"} : (tensor<* x f32>) -> tensor<* x f32>', "%0")
    m = infer(text)
    assert result_type(m) == "tensor<batch x seq x 4 x f32>"
    x = rng.standard_normal((n, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 6)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    (y,) = run_module(m, [x], {"w": w, "b": b})
    ref = F.gelu(F.linear(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)))
    np.testing.assert_allclose(y, ref.numpy(), **TOL)


@pytest.mark.parametrize("kind,fn", [
    ("sum", lambda t, a: t.sum(a, keepdim=True)), ("max", lambda t, a: t.amax(a, keepdim=True)),
    ("mean", lambda t, a: t.mean(a, keepdim=True)),
    ("var", lambda t, a: t.var(a, keepdim=True, unbiased=False)),
])
def test_reduce_matches_torch(rng, kind, fn):
    text = module("%x: tensor<batch x 5 x 7 x f32>",
                  f'    %0 = "tensor.reduce"(%x) {{axes = [1, -1], keepdims = true, kind = "{kind}"}} : '
                  "(tensor<batch x 5 x 7 x f32>) -> tensor<* x f32>")
    m = infer(text)
    assert result_type(m) == "tensor<batch x 1 x 1 x f32>"
    x = rng.standard_normal((3, 5, 7)).astype(np.float32)
    (y,) = run_module(m, [x], {})
    np.testing.assert_allclose(y, fn(torch.from_numpy(x), (1, 2)).numpy(), **TOL)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_matches_torch_sdpa(rng, causal):
    q_t = "tensor<batch x 2 x lq x 8 x f32>"
    kv_t = "tensor<batch x 2 x lk x 8 x f32>"
    text = f"""module @T {{
  func.func @T(%q: {q_t}, %k: {kv_t}, %v: {kv_t}) -> (tensor<* x f32>) {{
    %0 = "tensor.attention"(%q, %k, %v) {{causal = {str(causal).lower()}}} : ({q_t}, {kv_t}, {kv_t}) -> tensor<* x f32>
    "func.return"(%0) : (tensor<* x f32>) -> ()
  }}
}}"""
    m = infer(text)
    assert result_type(m) == "tensor<batch x 2 x lq x 8 x f32>"
    q = rng.standard_normal((2, 2, 5, 8)).astype(np.float32)
    # Different query and key lengths: the causal mask is top-left aligned, as torch's.
    k = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    v = rng.standard_normal((2, 2, 7, 8)).astype(np.float32)
    (y,) = run_module(m, [q, k, v], {})
    ref = F.scaled_dot_product_attention(*(torch.from_numpy(a) for a in (q, k, v)), is_causal=causal)
    np.testing.assert_allclose(y, ref.numpy(), **TOL)


def test_bf16_cast_rounds_like_torch(rng):
    text = module("%x: tensor<batch x 64 x f32>",
                  '    %0 = "tensor.cast"(%x) {to = "bf16"} : (tensor<batch x 64 x f32>) -> tensor<* x f32>')
    m = infer(text)
    assert result_type(m) == "tensor<batch x 64 x bf16>"
    x = (rng.standard_normal((2, 64)) * 100).astype(np.float32)
    (y,) = run_module(m, [x], {})
    np.testing.assert_array_equal(y, torch.from_numpy(x).to(torch.bfloat16).float().numpy())


def test_data_movement_ops(rng):
    text = module(
        "%x: tensor<batch x 4 x 6 x f32>, %i: tensor<batch x 3 x i64>",
        '    %t = "tensor.transpose"(%x) {perm = [0, 2, 1]} : (tensor<batch x 4 x 6 x f32>) -> tensor<* x f32>\n'
        '    %s = "tensor.slice"(%t) {axis = 1, size = 2, start = 3} : (tensor<* x f32>) -> tensor<* x f32>\n'
        '    %c = "tensor.concat"(%s, %s) {axis = -1} : (tensor<* x f32>, tensor<* x f32>) -> tensor<* x f32>\n'
        '    %r = "tensor.reshape"(%c) : (tensor<* x f32>) -> tensor<batch x 16 x f32>\n'
        '    %e = "tensor.constant"() {weight = "table"} : () -> tensor<10 x 16 x f32>\n'
        '    %g = "tensor.gather"(%e, %i) : (tensor<10 x 16 x f32>, tensor<batch x 3 x i64>) -> tensor<* x f32>\n'
        '    %0 = "tensor.binary"(%g, %r) {fn = "mul"} : (tensor<* x f32>, tensor<batch x 16 x f32>) -> tensor<* x f32>',
    )
    # (batch, 3, 16) * (batch, 16) would broadcast 3 against batch: keep the ranks equal.
    text = text.replace('"tensor.binary"(%g, %r)', '"tensor.binary"(%g, %x2)').replace(
        '    %0 = "tensor.binary"(%g, %x2)',
        '    %x2 = "tensor.reshape"(%r) : (tensor<batch x 16 x f32>) -> tensor<batch x 1 x 16 x f32>\n'
        '    %0 = "tensor.binary"(%g, %x2)').replace(
        "(tensor<* x f32>, tensor<batch x 16 x f32>) -> tensor<* x f32>\n    \"func",
        "(tensor<* x f32>, tensor<batch x 1 x 16 x f32>) -> tensor<* x f32>\n    \"func")
    m = infer(text)
    assert result_type(m) == "tensor<batch x 3 x 16 x f32>"
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    idx = rng.integers(0, 10, (2, 3))
    table = rng.standard_normal((10, 16)).astype(np.float32)
    (y,) = run_module(m, [x, idx], {"table": table})
    s = np.transpose(x, (0, 2, 1))[:, 3:5]
    r = np.concatenate([s, s], -1).reshape(2, 1, 16)
    np.testing.assert_allclose(y, table[idx] * r, **TOL)
    assert print_module(parse_module(print_module(m), "rt.nir")) == print_module(m)


def test_fusion_kinds_and_precision_are_declared():
    from neuralc.ir.opdef import lookup_op

    assert lookup_op("tensor.conv").FUSION == "output_fusible"
    assert lookup_op("tensor.matmul").PRECISION == "low"
    assert lookup_op("tensor.reduce").FUSION == "reduction"
    assert lookup_op("tensor.reduce").PRECISION == "never"
    assert lookup_op("tensor.transpose").FUSION == "injective"
    assert lookup_op("tensor.attention").FUSION == "opaque"
