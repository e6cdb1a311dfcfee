"""Lowering of the recurrent layers and the wrappers: SimpleRNN, LSTM, GRU, ConvLSTM2D,
Bidirectional, TimeDistributed; and the loop ops they lower to (tensor.scan, tensor.reverse).

Every case is differential (``check_lowering``): the graph module and its tensor lowering run
on the same weights and random inputs at (batch, seq) = (1, 8) and (3, 12), symbolic batch and
time (and symbolic image sizes for ConvLSTM2D). Tolerance: float32 rtol=1e-5, atol=1e-5
(ConvLSTM2D: atol=2e-5, as its parity tests); the references compute in float64, the tensor
ops in float32, and the recurrences are bounded by tanh and sigmoid. Layers with several
results (``return_state``) are checked on every result by returning them all.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from lowering_helpers import check_lowering, compile_any, lowered, random_inputs

from neuralc.diagnostics import CompileError
from neuralc.ir.core import Block, Module, Op, Region, func_body, func_op, func_return
from neuralc.ir.dims import sym
from neuralc.ir.opdef import lookup_op
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.shapes import ShapeError, Unifier
from neuralc.ir.types import TensorType
from neuralc.ir.verifier import verify
from neuralc.layers import catalog
from neuralc.passes.analysis import fusion_kind, precision_policy
from neuralc.passes.base import PassContext
from neuralc.passes.manager import PassManager
from neuralc.passes.registry import parse_pipeline
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONV_ATOL = 2e-5


def net(input_shape: str, *layers: str, dims: str = "") -> str:
    body = "\n".join(f"    {layer}" for layer in layers)
    extra = f"  dims {{ {dims} }}\n" if dims else ""
    return f"network N {{\n  input: {input_shape}\n{extra}  layers:\n{body}\n}}\n"


def ops_of(module) -> list[Op]:
    return list(func_body(module.funcs[0]).ops)


def names(module) -> list[str]:
    return [op.name for op in ops_of(module)]


def check_every_result(source: str, rtol: float = 1e-5, atol: float = 1e-5):
    """``check_lowering`` for a network whose last layer has several results: all of them
    become function results, so the final states are compared too."""
    module = compile_any(textwrap.dedent(source)).module
    ret = func_return(module.funcs[0])
    last = ret.operands[0].owner
    assert isinstance(last, Op) and len(last.results) > 1
    ret.set_operands(list(last.results))
    low = lowered(module)
    weights = init_weights(module, seed=5)
    rng = np.random.default_rng(0)
    for batch, seq in ((1, 8), (3, 12)):
        xs = random_inputs(module, {"batch": batch, "seq": seq}, rng)
        want = run_module(module, xs, weights)
        got = run_module(low, xs, weights)
        assert len(want) == len(got) == len(last.results)
        for w, g in zip(want, got):
            assert w.shape == g.shape and w.dtype == g.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return low


# -- SimpleRNN, LSTM, GRU -----------------------------------------------------------------------

KINDS = ("SimpleRNN", "LSTM", "GRU")
CASES = [
    "",
    "return_sequences=true",
    "go_backwards=true",
    "go_backwards=true, return_sequences=true",
    "use_bias=false, return_sequences=true",
    "use_bias=false, go_backwards=true",
    "dropout=0.5, recurrent_dropout=0.25",
]


@pytest.mark.parametrize("kw", CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_recurrent_lowers(kind: str, kw: str) -> None:
    args = ", ".join(x for x in ("7", kw) if x)
    low = check_lowering(net("(seq, 5)", f"{kind}({args})"))
    ops = names(low)
    # One input projection over the whole sequence, one loop; the recurrent matmul inside it.
    assert ops.count("tensor.matmul") == 1 and ops.count("tensor.scan") == 1
    scan = next(op for op in ops_of(low) if op.name == "tensor.scan")
    assert scan.attributes["reverse"] == ("go_backwards" in kw)
    inner = [op.name for op in scan.regions[0].block.ops]
    assert inner.count("tensor.matmul") == 1
    assert inner[-1] == "tensor.scan_yield"
    # Keras returns a backward sequence in processed order: the one flip.
    assert ops.count("tensor.reverse") == ("go_backwards=true, return_sequences" in kw)
    # Without return_sequences the scan stacks nothing: the output is its final state.
    assert len(scan.results) == (2 if kind == "LSTM" else 1) + ("return_sequences" in kw)


@pytest.mark.parametrize("kind,kw", [
    ("SimpleRNN", 'activation="relu"'),
    ("SimpleRNN", 'activation="swish"'),
    ("SimpleRNN", 'activation="softsign", go_backwards=true'),
    ("LSTM", 'activation="softsign", recurrent_activation="hard_sigmoid"'),
    ("LSTM", 'activation="relu", go_backwards=true, use_bias=false'),
    ("GRU", 'activation="elu", recurrent_activation="hard_sigmoid"'),
    ("GRU", 'activation="softsign", go_backwards=true'),
])
@pytest.mark.parametrize("seqs", [False, True])
def test_recurrent_other_activations(kind: str, kw: str, seqs: bool) -> None:
    flag = ", return_sequences=true" if seqs else ""
    check_lowering(net("(seq, 3)", f"{kind}(5, {kw}{flag})"))


@pytest.mark.parametrize("kw", ["", "return_sequences=true", "go_backwards=true",
                                "use_bias=false, return_sequences=true",
                                'recurrent_activation="hard_sigmoid", go_backwards=true, '
                                "return_sequences=true"])
def test_gru_reset_before_lowers(kw: str) -> None:
    """Keras's original GRU: W_hn multiplies r * h; the weight rows split outside the loop."""
    args = ", ".join(x for x in ("6", "reset_after=false", kw) if x)
    low = check_lowering(net("(seq, 4)", f"GRU({args})"))
    scan = next(op for op in ops_of(low) if op.name == "tensor.scan")
    inner = [op.name for op in scan.regions[0].block.ops]
    assert inner.count("tensor.matmul") == 2  # (h) W_rz and (r * h) W_n
    assert names(low).count("tensor.slice") == (4 if "use_bias=false" not in kw else 2)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("kw", ["return_state=true",
                                "return_state=true, return_sequences=true, go_backwards=true",
                                "return_state=true, go_backwards=true, use_bias=false"])
def test_recurrent_return_state(kind: str, kw: str) -> None:
    check_every_result(net("(seq, 5)", f"{kind}(6, {kw})"))


def test_stacked_recurrent_layers() -> None:
    check_lowering(net("(seq, 4)", "LSTM(6, return_sequences=true)",
                       "GRU(5, return_sequences=true, go_backwards=true)", "SimpleRNN(3)"))


def test_static_time_and_single_step() -> None:
    check_lowering(net("(1, 3)", "LSTM(4, return_sequences=true)", "GRU(3)"))
    check_lowering(net("(6, 3)", "SimpleRNN(4, go_backwards=true, return_sequences=true)"))


def test_the_time_axis_stays_symbolic() -> None:
    low = check_lowering(net("(seq, 5)", "LSTM(4, return_sequences=true)"))
    scan = next(op for op in ops_of(low) if op.name == "tensor.scan")
    assert str(scan.results[0].type) == "tensor<batch x seq x 4 x f32>"
    assert [str(a.type) for a in scan.regions[0].block.args] == [
        "tensor<batch x 16 x f32>", "tensor<batch x 4 x f32>", "tensor<batch x 4 x f32>",
        "tensor<16 x 4 x f32>", "tensor<16 x f32>"]


# -- ConvLSTM2D ---------------------------------------------------------------------------------

CONV_CASES = [
    "3",
    '3, padding="same"',
    '3, padding="same", return_sequences=true',
    '(2, 3), padding="same", return_sequences=true',
    "3, strides=(2, 1)",
    '3, strides=2, padding="same", return_sequences=true',
    '3, dilation_rate=2, padding="same", go_backwards=true, return_sequences=true',
    '3, use_bias=false, activation="relu", recurrent_activation="hard_sigmoid"',
]


@pytest.mark.parametrize("kw", CONV_CASES)
def test_conv_lstm2d_lowers(kw: str) -> None:
    low = check_lowering(net("(seq, h, w, 2)", f"ConvLSTM2D(4, {kw})",
                             dims="h: 5..20, w: 5..20"), atol=CONV_ATOL)
    ops = names(low)
    assert ops.count("tensor.conv") == 1 and ops.count("tensor.scan") == 1
    scan = next(op for op in ops_of(low) if op.name == "tensor.scan")
    assert [op.name for op in scan.regions[0].block.ops].count("tensor.conv") == 1


def test_conv_lstm2d_return_state() -> None:
    check_every_result(net("(seq, 6, 7, 3)", 'ConvLSTM2D(3, 3, padding="same", '
                           "return_state=true, return_sequences=true, go_backwards=true)"),
                       atol=CONV_ATOL)
    check_every_result(net("(seq, 6, 7, 3)", "ConvLSTM2D(3, 2, strides=2, return_state=true)"),
                       atol=CONV_ATOL)


# -- Bidirectional ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave"])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seqs", [False, True])
def test_bidirectional_lowers(kind: str, mode: str, seqs: bool) -> None:
    flag = ", return_sequences=true" if seqs else ""
    low = check_lowering(net("(seq, 4)", f'Bidirectional({kind}(5{flag}), merge_mode="{mode}")'))
    scans = [op for op in ops_of(low) if op.name == "tensor.scan"]
    assert [s.attributes["reverse"] for s in scans] == [False, True]
    # The backward scan stores its outputs in time order already: no flip.
    assert "tensor.reverse" not in names(low)
    weights = {op.attributes["weight"] for op in ops_of(low) if "weight" in op.attributes}
    assert "bidirectional.weight_hh_l0_reverse" in weights


@pytest.mark.parametrize("inner", [
    "LSTM(4, return_state=true)",
    "GRU(3, return_state=true, return_sequences=true, reset_after=false)",
    "SimpleRNN(3, return_state=true, use_bias=false)",
])
def test_bidirectional_return_state(inner: str) -> None:
    check_every_result(net("(seq, 4)", f"Bidirectional({inner})"))


def test_bidirectional_gru_reset_before_and_stacked() -> None:
    check_lowering(net("(seq, 4)", "Bidirectional(GRU(5, reset_after=false, "
                                   "return_sequences=true))",
                       'Bidirectional(LSTM(3), merge_mode="ave")'))


# -- TimeDistributed ------------------------------------------------------------------------------

# (input, wrapped layer): the wrapper lowers any layer by calling that layer's own rule, so
# these cover rules of every family on a folded (batch * seq, ...) batch axis.
TD_CASES = [
    ("(seq, 6)", 'Dense(4, "relu")'),
    ("(seq, 6)", "Output(3)"),
    ("(seq, 5, 3)", "LSTM(4)"),
    ("(seq, 5, 3)", "GRU(4, return_sequences=true, go_backwards=true)"),
    ("(seq, 5, 3)", "Bidirectional(SimpleRNN(2, return_sequences=true))"),
    ("(seq, 5, 3)", 'Conv1D(4, 2, padding="same")'),
    ("(seq, 8, 8, 3)", 'Conv2D(4, 3, padding="same", activation="relu")'),
    ("(seq, 8, 8, 3)", "DepthwiseConv2D(3, strides=2)"),
    ("(seq, 8, 8, 3)", "SeparableConv2D(4, 3)"),
    ("(seq, 8, 8, 3)", "Conv2DTranspose(2, 3, strides=2)"),
    ("(seq, 8, 8, 3)", "MaxPooling2D(2)"),
    ("(seq, 8, 8, 3)", 'AveragePooling2D(3, strides=2, padding="same")'),
    ("(seq, 8, 8, 3)", "GlobalAveragePooling2D()"),
    ("(seq, 8, 8, 3)", "AdaptiveMaxPooling2D((2, 3))"),
    ("(seq, 8, 8, 3)", "ZeroPadding2D(1)"),
    ("(seq, 8, 8, 3)", "Cropping2D(((1, 0), (2, 1)))"),
    ("(seq, 8, 8, 3)", "UpSampling2D(2)"),
    ("(seq, 8, 8, 3)", "SqueezeExcitation(2)"),
    ("(seq, 4, 5)", "Flatten()"),
    ("(seq, 4, 6)", "Reshape((2, 12))"),
    ("(seq, 4, 6)", "Permute((2, 1))"),
    ("(seq, 6)", "RepeatVector(3)"),
    ("(seq, 6)", "Dropout(0.5)"),
    ("(seq, 4, 6)", "SpatialDropout1D(0.5)"),
    ("(seq, 6)", "GaussianNoise(0.3)"),
    ("(seq, 6)", "BatchNormalization()"),
    ("(seq, 6)", "LayerNormalization()"),
    ("(seq, 4, 6)", "GroupNormalization(groups=2)"),
    ("(seq, 4, 6)", "RMSNormalization()"),
    ("(seq, 6)", 'Activation("softmax")'),
    ("(seq, 6)", "PReLU()"),
    ("(seq, 6)", "LeakyReLU()"),
    ("(seq, 5)", "Embedding(11, 4)"),
    ("(seq, 5, 8)", "PositionalEncoding()"),
    ("(seq, 5, 8)", "TransformerEncoder(2, 16)"),
]


@pytest.mark.parametrize("shape,inner", TD_CASES, ids=[c[1] for c in TD_CASES])
def test_time_distributed_lowers_through_the_wrapped_rule(shape: str, inner: str) -> None:
    low = check_lowering(net(shape, f"TimeDistributed({inner})"))
    assert "tensor.reshape" in names(low)


def test_time_distributed_names_a_wrapped_layer_without_a_rule(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spec = catalog.lookup("Dense")
    assert spec is not None
    monkeypatch.setattr(spec, "lower", None)
    module = compile_any(net("(seq, 6)", "TimeDistributed(Dense(4))")).module
    with pytest.raises(CompileError) as ei:
        lowered(module)
    # A located diagnostic at the layer, not a Python exception.
    msg = ei.value.diagnostics[0].message
    assert "TimeDistributed 'time_distributed' cannot be lowered to tensor ops" in msg
    assert "TimeDistributed cannot lower Dense" in msg
    assert str(ei.value.diagnostics[0].location).startswith("t.nr:")


def test_time_distributed_weights_are_the_wrappers() -> None:
    low = check_lowering(net("(seq, 6)", "TimeDistributed(Dense(4))",
                             "TimeDistributed(Dense(2), name=\"tags\")"))
    weights = [op.attributes["weight"] for op in ops_of(low) if "weight" in op.attributes]
    assert weights == ["time_distributed.weight", "time_distributed.bias", "tags.weight",
                       "tags.bias"]
    matmul = next(op for op in ops_of(low) if op.name == "tensor.matmul")
    assert str(matmul.operands[0].type) == "tensor<(batch * seq) x 6 x f32>"


def test_time_distributed_of_time_distributed() -> None:
    check_lowering(net("(seq, 3, 6)", "TimeDistributed(TimeDistributed(Dense(4)))"))


# -- the examples ------------------------------------------------------------------------------


@pytest.mark.parametrize("example", ["lstm_text_classifier.nr", "bigru_tagger.nr"])
def test_examples_lower(example: str) -> None:
    low = check_lowering(EXAMPLES / example)
    assert "tensor.scan" in names(low)


# -- the loop ops themselves ---------------------------------------------------------------------


def test_lowered_ir_round_trips_and_survives_cleanup() -> None:
    source = net("(seq, 4)", "LSTM(5, return_sequences=true, go_backwards=true)",
                 "Bidirectional(GRU(3, return_sequences=true))",
                 "TimeDistributed(Dense(2))")
    low = check_lowering(source, passes="lower-to-tensor,canonicalize,cse,dce")
    text = print_module(low)
    again = parse_module(text, "again.nir")
    assert verify(again) == []
    assert print_module(again) == text


def _scan_module(reverse: bool, length: object) -> tuple:
    """A hand-built cumulative sum: carried s += x_t, output s and x_t * 2 per step."""
    batch = sym("batch")
    seq_t = TensorType((batch, length, 3), "f32")
    state_t = TensorType((batch, 3), "f32")
    func = func_op("f", [seq_t, state_t], ["x", "s0"])
    body = func_body(func)
    block = Block([TensorType((batch, 3), "f32"), state_t])
    xt, s = block.args
    add = block.append(Op("tensor.binary", [s, xt], [state_t], {"fn": "add"}))
    two = block.append(Op("tensor.constant", [], [TensorType((), "f32")], {"value": 2.0}))
    dbl = block.append(Op("tensor.binary", [xt, two.result], [state_t], {"fn": "mul"}))
    block.append(Op("tensor.scan_yield", [add.result, dbl.result, add.result]))
    scan = body.append(Op("tensor.scan", list(body.args),
                          [seq_t, seq_t, state_t],
                          {"axis": 1, "num_carried": 1, "num_scanned": 1, "reverse": reverse},
                          regions=[Region([block])]))
    body.append(Op("func.return", list(scan.results)))
    module = Module("m")
    module.body.append(func)
    return module, scan


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_semantics(reverse: bool) -> None:
    module, scan = _scan_module(reverse, sym("seq"))
    assert verify(module) == []
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    s0 = np.ones((2, 3), np.float32)
    sums, doubled, final = run_module(module, [x, s0], {})
    steps = x[:, ::-1] if reverse else x
    running = s0[:, None] + np.cumsum(steps, axis=1)
    # Step t's output is stored at t in both directions.
    np.testing.assert_array_equal(sums, running[:, ::-1] if reverse else running)
    np.testing.assert_array_equal(doubled, 2 * x)
    np.testing.assert_array_equal(final, running[:, -1])
    # No steps: empty stacks, the initial state comes back.
    empty = np.zeros((2, 0, 3), np.float32)
    sums, doubled, final = run_module(module, [empty, s0], {})
    assert sums.shape == doubled.shape == (2, 0, 3)
    np.testing.assert_array_equal(final, s0)


def test_scan_infers_symbolic_types() -> None:
    module, scan = _scan_module(False, sym("seq"))
    for r in scan.results:
        r.type = TensorType(None, "f32")
    types = lookup_op("tensor.scan").infer_types(scan, Unifier())
    assert [str(t) for t in types] == ["tensor<batch x seq x 3 x f32>"] * 2 + [
        "tensor<batch x 3 x f32>"]


def test_scan_verifier_problems() -> None:
    module, scan = _scan_module(False, 4)
    block = scan.regions[0].block
    # A body that reads a value from outside the scan.
    outside = func_body(module.funcs[0]).args[1]
    block.ops[0].set_operand(1, outside)
    assert any("reads a value from outside" in p for p in verify(module))
    block.ops[0].set_operand(1, block.args[0])
    assert verify(module) == []
    # A state whose yielded type differs from its initial value.
    scan.attributes["num_carried"] = 2
    problems = verify(module)
    assert any("fewer than its 1 sequences and 2 states" in p or "block takes" in p
               for p in problems)
    scan.attributes["num_carried"] = 1
    scan.attributes["reverse"] = "yes"
    assert any("'reverse' must be a bool" in p for p in verify(module))
    scan.attributes["reverse"] = False
    # The terminator must end a scan body.
    term = block.ops[-1]
    block.ops.remove(term)
    assert any("must end with tensor.scan_yield" in p for p in verify(module))


def test_reverse_op_and_its_canonicalization() -> None:
    text = textwrap.dedent("""\
        module @T {
          func.func @T(%x: tensor<batch x seq x 3 x f32>) -> (tensor<batch x seq x 3 x f32>, tensor<batch x seq x 3 x f32>) {
            %0 = "tensor.reverse"(%x) {axes = [1]} : (tensor<batch x seq x 3 x f32>) -> tensor<batch x seq x 3 x f32>
            %1 = "tensor.reverse"(%0) {axes = [-2]} : (tensor<batch x seq x 3 x f32>) -> tensor<batch x seq x 3 x f32>
            "func.return"(%0, %1) : (tensor<batch x seq x 3 x f32>, tensor<batch x seq x 3 x f32>) -> ()
          }
        }""")
    module = parse_module(text, "r.nir")
    x = np.arange(12, dtype=np.float32).reshape(1, 4, 3)
    flipped, back = run_module(module, [x], {})
    np.testing.assert_array_equal(flipped, x[:, ::-1])
    np.testing.assert_array_equal(back, x)
    PassManager(parse_pipeline("canonicalize"), verify_each=True).run(module, PassContext())
    ret = func_return(module.funcs[0])
    assert ret.operands[1] is func_body(module.funcs[0]).args[0]
    assert names(module).count("tensor.reverse") == 1


def test_loop_op_interfaces() -> None:
    module, scan = _scan_module(False, 4)
    assert fusion_kind(scan) == "opaque" and precision_policy(scan) == "never"
    rev = lookup_op("tensor.reverse")
    assert rev is not None and rev.FUSION == "injective" and rev.PRECISION == "follow"


def test_scan_rejects_a_state_that_changes_type() -> None:
    module, scan = _scan_module(False, 4)
    block = scan.regions[0].block
    wide = block.ops[-1].operands[2].owner
    assert isinstance(wide, Op)
    # The state becomes x_t * 2 broadcast to a bigger shape: (batch, 3) -> (batch, 2, 3).
    grow = Op("tensor.broadcast", [wide.results[0]],
              [TensorType((sym("batch"), 2, 3), "f32")])
    block.insert_before(block.ops[-1], grow)
    block.ops[-1].set_operand(2, grow.results[0])
    with pytest.raises(ShapeError, match="state 0 starts as"):
        lookup_op("tensor.scan").infer_types(scan, Unifier())


def test_scans_fuse_as_their_own_kernels() -> None:
    """After fusion a scan is a kernel of its own whose operands carry its weights."""
    low = check_lowering(net("(seq, 4)", "Bidirectional(LSTM(5, return_sequences=true))",
                             "TimeDistributed(Dense(3))"),
                         passes="lower-to-tensor,canonicalize,fuse")
    kernels = [op for op in ops_of(low) if op.name == "kernel.fused"]
    scans = [k for k in kernels if k.attributes["kind"] == "scan"]
    assert len(scans) == 2
    weights = [[v.owner.attributes.get("weight") for v in k.operands
                if isinstance(v.owner, Op) and v.owner.name == "tensor.constant"] for k in scans]
    assert [w for w in weights[0] if w] == ["bidirectional.weight_hh_l0",
                                             "bidirectional.bias_hh_l0"]
    assert [w for w in weights[1] if w] == ["bidirectional.weight_hh_l0_reverse",
                                             "bidirectional.bias_hh_l0_reverse"]
