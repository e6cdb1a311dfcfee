"""Lowering of the attention family: MultiHeadAttention, Attention, PositionalEncoding,
TransformerEncoder and TransformerDecoder, checked against the graph-level reference.

Every case goes through ``check_lowering`` (two sizes of every symbol, fresh random inputs,
float32 rtol = atol = 1e-5: the references compute in float64, the tensor ops in float32).
The cases mirror the parity tests in tests/layers/test_parity_attention.py and
test_parity_transformer.py; the structural asserts pin the patterns the fusion pass relies on:
projections are matmuls, each attention is ONE ``tensor.attention`` unless a causal mask must
be aligned at the top left over two lengths (then it is written out with an iota/compare mask),
layer norms are reductions plus elementwise ops.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from lowering_helpers import check_lowering

from neuralc.ir.core import func_body
from neuralc.ir.opdef import lookup_op
from neuralc.ir.parser import parse_module
from neuralc.ir.verifier import verify

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def names(module) -> list[str]:
    return [op.name for op in module.funcs[0].regions[0].block.ops]


def count(module, name: str) -> int:
    return names(module).count(name)


# -- the new primitives: tensor.iota, tensor.compare -----------------------------------------


def _ops(text: str):
    module = parse_module(text, "t.nir")
    return module, [op for op in func_body(module.funcs[0]).ops if op.name != "func.return"]


def test_iota_and_compare_evaluate_on_symbolic_shapes() -> None:
    module, (i, j, c) = _ops("""module @N {
      func.func @N(%x: tensor<n x f32>) -> (tensor<n x m x i1>) {
        %0 = "tensor.iota"() {axis = 0} : () -> tensor<n x 1 x i32>
        %1 = "tensor.iota"() {axis = 1} : () -> tensor<1 x m x i32>
        %2 = "tensor.compare"(%1, %0) {fn = "le"} : (tensor<1 x m x i32>, tensor<n x 1 x i32>) -> tensor<n x m x i1>
        "func.return"(%2) : (tensor<n x m x i1>) -> ()
      }
    }""")
    assert verify(module) == []
    ctx = SimpleNamespace(sizes={"n": 3, "m": 5}, weights={})
    (ri,) = lookup_op("tensor.iota").evaluate(i, [], ctx)
    (rj,) = lookup_op("tensor.iota").evaluate(j, [], ctx)
    (rc,) = lookup_op("tensor.compare").evaluate(c, [rj, ri], ctx)
    assert ri.dtype == np.int32 and ri.shape == (3, 1) and ri[:, 0].tolist() == [0, 1, 2]
    assert rc.dtype == np.bool_
    np.testing.assert_array_equal(rc, np.tril(np.ones((3, 5), bool)))
    assert lookup_op("tensor.iota").FUSION == "elementwise"
    assert c.fusion_kind() == "broadcast"


def test_iota_and_compare_verify() -> None:
    module, _ = _ops("""module @N {
      func.func @N(%x: tensor<4 x f32>) -> (tensor<4 x i1>) {
        %0 = "tensor.iota"() {axis = 3} : () -> tensor<4 x f32>
        %1 = "tensor.compare"(%x, %0) {fn = "lte"} : (tensor<4 x f32>, tensor<4 x f32>) -> tensor<4 x i1>
        "func.return"(%1) : (tensor<4 x i1>) -> ()
      }
    }""")
    errors = "\n".join(verify(module))
    assert "axis 3 is out of range for rank 1" in errors
    assert "attribute 'fn' must be one of" in errors and '"lte"' in errors


# -- MultiHeadAttention -----------------------------------------------------------------------

MHA_CASES = [
    "3, 5",  # num_heads * key_dim != features
    "2, 4, value_dim=7",
    "1, 12, output_shape=5",
    "4, 3, use_bias=false",
    "2, 6, value_dim=3, causal=true, dropout=0.5",
]


@pytest.mark.parametrize("args", MHA_CASES)
def test_mha_self_attention(args: str) -> None:
    low = check_lowering(f"""
        network N {{
          input: (seq, 12)
          layers:
            MultiHeadAttention({args})
        }}
    """)
    assert count(low, "tensor.attention") == 1
    assert count(low, "tensor.matmul") == 4
    assert count(low, "tensor.compare") == 0
    assert count(low, "tensor.binary") == (0 if "use_bias=false" in args else 4)


@pytest.mark.parametrize("args", MHA_CASES)
def test_mha_cross_attention_symbolic_lengths(args: str) -> None:
    """Query and context lengths are independent symbols; context has its own width."""
    low = check_lowering(f"""
        network N {{
          input: {{ a: (s1, 12), m: (s2, 10) }}
          layers:
            a: {{ MultiHeadAttention({args}, context=m) }}
        }}
    """, sizes=((1, 5), (3, 9)))
    causal = "causal=true" in args
    # A top-left causal mask over two lengths is not tensor.attention's (bottom right).
    assert count(low, "tensor.attention") == (0 if causal else 1)
    assert count(low, "tensor.compare") == (1 if causal else 0)


@pytest.mark.parametrize("lq,lk", [(5, 9), (9, 5), (7, 7)])
def test_mha_causal_cross_attention_static_lengths(lq: int, lk: int) -> None:
    """Longer and shorter contexts; equal static lengths keep the fused op."""
    low = check_lowering(f"""
        network N {{
          input: {{ a: ({lq}, 12), m: ({lk}, 10) }}
          layers:
            a: {{ MultiHeadAttention(2, 4, causal=true, context=m) }}
        }}
    """)
    assert count(low, "tensor.attention") == (1 if lq == lk else 0)


def test_mha_causal_cross_attention_same_symbol_stays_fused() -> None:
    low = check_lowering("""
        network N {
          input: { a: (seq, 8), m: (seq, 6) }
          layers:
            a: { MultiHeadAttention(2, 4, causal=true, context=m) }
        }
    """)
    assert count(low, "tensor.attention") == 1


def test_mha_heads_layout() -> None:
    """Heads are split to (batch, heads, seq, head_dim) and merged back by reshape/transpose."""
    low = check_lowering("""
        network N {
          input: (seq, 12)
          layers:
            MultiHeadAttention(3, 5, value_dim=2)
        }
    """)
    ops = low.funcs[0].regions[0].block.ops
    (att,) = [op for op in ops if op.name == "tensor.attention"]
    assert [str(v.type) for v in att.operands] == [
        "tensor<batch x 3 x seq x 5 x f32>", "tensor<batch x 3 x seq x 5 x f32>",
        "tensor<batch x 3 x seq x 2 x f32>"]
    assert att.attributes["scale"] == pytest.approx(1 / 5**0.5)
    assert att.attributes["causal"] is False
    assert count(low, "tensor.transpose") == 4 and count(low, "tensor.reshape") == 4


# -- Attention ------------------------------------------------------------------------------------

ATT_CASES = [
    "",
    "use_scale=true",
    "causal=true",
    "use_scale=true, causal=true",
    'score_mode="concat"',
    'score_mode="concat", use_scale=true, causal=true',
]
ATT_INPUTS = {
    "self": ("input: (seq, 6)", "", ""),
    "value": ("input: { a: (s1, 6), v: (s2, 6) }", "value=v", "a"),  # key = value
    "value+key": ("input: { a: (s1, 6), v: (s2, 5), k: (s2, 6) }", "value=v, key=k", "a"),
}


@pytest.mark.parametrize("args", ATT_CASES)
@pytest.mark.parametrize("inputs", list(ATT_INPUTS))
def test_attention(args: str, inputs: str) -> None:
    signature, refs, branch = ATT_INPUTS[inputs]
    call = f"Attention({', '.join(a for a in (args, refs) if a)})"
    body = f"{branch}: {{ {call} }}" if branch else call
    low = check_lowering(f"""
        network N {{
          {signature}
          layers:
            {body}
        }}
    """, sizes=((1, 5), (3, 9)))
    fused = "concat" not in args and ("causal" not in args or inputs == "self")
    assert count(low, "tensor.attention") == (1 if fused else 0)
    if "concat" in args:
        assert count(low, "tensor.reduce") == 3  # the tanh sum, softmax's max and sum


def test_attention_dot_scale_multiplies_the_query() -> None:
    low = check_lowering("""
        network N {
          input: (seq, 4)
          layers:
            Attention(use_scale=true)
        }
    """)
    ops = low.funcs[0].regions[0].block.ops
    (att,) = [op for op in ops if op.name == "tensor.attention"]
    assert att.attributes["scale"] == 1.0
    assert att.operands[0].op.name == "tensor.binary"


# -- PositionalEncoding -------------------------------------------------------------------------


@pytest.mark.parametrize("d", [8, 7])
@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_positional_encoding_symbolic_length(d: int, encoding: str) -> None:
    low = check_lowering(f"""
        network N {{
          input: (seq, {d})
          dims {{ seq: 1..64 }}
          layers:
            PositionalEncoding(64, "{encoding}")
        }}
    """)
    ops = low.funcs[0].regions[0].block.ops
    (sl,) = [op for op in ops if op.name == "tensor.slice"]
    assert str(sl.operands[0].type).startswith("tensor<64 x ")
    assert str(sl.result.type).startswith("tensor<seq x ")
    assert count(low, "tensor.iota") == (2 if encoding == "sinusoidal" else 0)


@pytest.mark.parametrize("encoding", ["sinusoidal", "learned"])
def test_positional_encoding_static_length_and_full_table(encoding: str) -> None:
    check_lowering(f"""
        network N {{
          input: (16, 6)
          layers:
            PositionalEncoding(16, "{encoding}")
            PositionalEncoding(512)
        }}
    """)


def test_sinusoidal_encoding_symbolic_width() -> None:
    """The width may be symbolic for the sinusoidal table (no weight needs it)."""
    check_lowering("""
        network N {
          input: (seq, feat)
          dims { seq: 1..64 }
          layers:
            PositionalEncoding(64)
        }
    """)


def test_sinusoidal_table_is_exact_at_late_positions() -> None:
    """Positions near 500 would lose ~3e-5 in f32 angles; the table is built in f64."""
    check_lowering("""
        network N {
          input: (seq, 10)
          dims { seq: 490..512 }
          layers:
            PositionalEncoding(512)
        }
    """, rtol=1e-6, atol=1e-6)


# -- TransformerEncoder / TransformerDecoder ----------------------------------------------------

ENC_CASES = [
    "",
    'activation="gelu"',
    "norm_first=true",
    'norm_first=true, activation="gelu", epsilon=1e-6',
    "causal=true",
    "use_bias=false",
    "norm_first=true, use_bias=false, causal=true, dropout=0.0",
]


@pytest.mark.parametrize("args", ENC_CASES)
def test_encoder(args: str) -> None:
    call = f"TransformerEncoder(4, 24{', ' if args else ''}{args})"
    low = check_lowering(f"""
        network N {{
          input: (seq, 16)
          layers:
            {call}
        }}
    """)
    assert count(low, "tensor.attention") == 1
    assert count(low, "tensor.matmul") == 4  # packed in_proj, out_proj, linear1, linear2
    assert count(low, "tensor.reduce") == 4  # two layer norms: mean and variance each


DEC_CASES = [
    "",
    'activation="gelu"',
    "norm_first=true",
    "causal=false",
    "use_bias=false, epsilon=1e-6",
    'norm_first=true, activation="gelu", causal=false, use_bias=false',
]


@pytest.mark.parametrize("args", DEC_CASES)
def test_decoder(args: str) -> None:
    call = f"TransformerDecoder(4, 24, memory=m{', ' if args else ''}{args})"
    low = check_lowering(f"""
        network N {{
          input: {{ t: (tgt, 16), m: (src, 16) }}
          layers:
            t: {{ {call} }}
        }}
    """, sizes=((1, 5), (3, 9)))
    ops = low.funcs[0].regions[0].block.ops
    att = [op for op in ops if op.name == "tensor.attention"]
    assert [a.attributes["causal"] for a in att] == ["causal=false" not in args, False]
    assert count(low, "tensor.matmul") == 7  # self qkv, self out, cross q, cross kv, out, ff x2
    assert count(low, "tensor.reduce") == 6


def test_encoder_stack_over_static_sequence() -> None:
    check_lowering("""
        network N {
          input: (10, 8)
          layers:
            TransformerEncoder(2, 16, norm_first=true) * 2
            TransformerEncoder(1, 8, activation="gelu")
        }
    """)


# -- examples ----------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["transformer_classifier", "vit_tiny", "seq2seq_decoder"])
def test_examples(example: str) -> None:
    low = check_lowering(EXAMPLES / f"{example}.nr")
    assert count(low, "tensor.attention") >= 2
