"""The ONNX file itself: versions, the symbolic boundary, shape inference, layouts, weights,
external data, located errors and the executable's input checks."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from onnx_test_helpers import (
    backend,
    check_against_reference,
    compile_nr,
    emit,
    random_inputs,
    symbol_sizes,
    varied_weights,
)
from test_onnx_layers import CASES, MULTI, net

from neuralc.backends.base import Artifact, BackendError, BackendOptions
from neuralc.backends.onnx import emitters
from neuralc.backends.onnx.builder import Builder, Unsupported
from neuralc.backends.onnx.emit import build_model, load_artifact_model
from neuralc.driver import UsageError, compile_file
from neuralc.ir.core import func_body
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.signature import InputError

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.nr"))


def example(name: str):
    return compile_file(ROOT / "examples" / f"{name}.nr")


def proto(model, **options) -> onnx.ModelProto:
    return build_model(model, varied_weights(model), BackendOptions(**options))


def dims(vi) -> list[int | str]:
    return [d.dim_value if d.HasField("dim_value") else d.dim_param
            for d in vi.type.tensor_type.shape.dim]


def ir_dims(t) -> list[int | str]:
    return [d if isinstance(d, int) else str(d) for d in t.shape]


# -- versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("opset", "ir"), [(11, 6), (13, 7), (17, 8), (21, 10), (23, 11),
                                            (24, 12), (26, 13)])
def test_ir_version_is_the_lowest_for_the_opset(opset: int, ir: int) -> None:
    m = proto(compile_nr(net("(4,)", 'Dense(3, "relu")')), opset=opset)
    assert m.ir_version == ir <= 13
    assert [(o.domain, o.version) for o in m.opset_import] == [("", opset)]
    assert m.producer_name == "neuralc"


@pytest.mark.parametrize("opset", [6, 27])
def test_opset_out_of_range_is_a_usage_error(opset: int) -> None:
    with pytest.raises(UsageError, match="opsets 7 to 26"):
        proto(example("mlp"), opset=opset)


@pytest.mark.parametrize("precision", ["bf16", "mixed"])
def test_precisions_other_than_fp32_fp16_are_usage_errors(precision: str) -> None:
    with pytest.raises(UsageError, match="float32 or float16"):
        proto(example("mlp"), precision=precision)


# -- the symbolic boundary and shape inference ----------------------------------------------------


def test_inputs_and_outputs_carry_the_ir_symbols() -> None:
    m = proto(example("seq2seq_decoder"))
    assert {i.name: dims(i) for i in m.graph.input} == {
        "src": ["batch", "src_len"], "tgt": ["batch", "tgt_len"]}
    assert [dims(o) for o in m.graph.output] == [["batch", "tgt_len", 500]]
    m = proto(example("sequence_dims"))
    assert dims(m.graph.input[0]) == ["batch", "seq", 32]
    m = proto(compile_nr(net("(seq, 3)", 'Conv1D(4, 3, padding="same", strides=2)')))
    assert dims(m.graph.output[0]) == ["batch", "(seq + 1) floordiv 2", 4]


def _all_models() -> list:
    out = [pytest.param(compile_file(p), 17, id=p.stem) for p in EXAMPLES]
    for case in CASES:
        opset = case[3][-1] if len(case) > 3 else 17
        out.append(pytest.param(compile_nr(net(case[1], case[2])), opset, id=case[0]))
    out += [pytest.param(compile_nr(text), opsets[-1], id=cid) for cid, text, opsets in MULTI]
    return out


@pytest.mark.parametrize(("model", "opset"), _all_models())
def test_shape_inference_agrees_with_neuralc(model, opset: int) -> None:
    """Strict inference accepts the declared outputs (static dims equal, symbols named as in
    the IR), and on its own, outputs stripped, never disagrees with a static dim and never
    turns a symbolic one into a number. ONNX does no arithmetic on symbols, so a compound dim
    comes back unnamed; a Slice with run-time bounds (adaptive pooling over a symbolic axis)
    loses the dims it cannot follow."""
    m = proto(model, opset=opset)
    onnx.checker.check_model(m, full_check=True)
    onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    returned = func_body(model.module.funcs[0]).ops[-1].operands
    for vi, v in zip(m.graph.output, returned):
        assert dims(vi) == ir_dims(v.type)
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    for vi, v in zip(inferred.graph.output, returned):
        got = vi.type.tensor_type.shape.dim
        assert len(got) == len(v.type.shape)
        for d, want in zip(got, v.type.shape):
            if d.HasField("dim_value"):
                assert d.dim_value == want
            if isinstance(want, int) and not d.HasField("dim_value"):
                assert "adaptive" in vi.name or "pooling" in vi.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_shape_inference_recovers_example_shapes(path: Path) -> None:
    """On the examples ONNX's own inference finds every static dim and the named batch."""
    model = compile_file(path)
    m = proto(model)
    for o in m.graph.output:
        o.type.tensor_type.ClearField("shape")
    inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True, data_prop=True)
    returned = func_body(model.module.funcs[0]).ops[-1].operands
    for vi, v in zip(inferred.graph.output, returned):
        got = dims(vi)
        want = ir_dims(v.type)
        assert got[0] == "batch"
        assert [g for g, w in zip(got, want) if isinstance(w, int)] == \
            [w for w in want if isinstance(w, int)]


# -- layouts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "count"), [("resnet_small", 1), ("mnist_cnn", 2),
                                             ("inception_block", 1), ("mobilenet_tiny", 1),
                                             ("unet_small", 2), ("se_resnet_block", 1),
                                             ("macros", 1)])
def test_conv_nets_transpose_only_at_layout_changes(name: str, count: int) -> None:
    """NHWC -> NCHW once at the input, back only where a channels-last layer (Flatten, the
    output) needs it; conv, BN, activations, pooling, merges stay NCHW between them."""
    ops = collections.Counter(n.op_type for n in proto(example(name)).graph.node)
    assert ops["Transpose"] == count


@pytest.mark.parametrize(("model", "opset"), _all_models())
def test_no_transpose_feeds_a_transpose(model, opset: int) -> None:
    m = proto(model, opset=opset)
    made_by = {o: n for n in m.graph.node for o in n.output}
    for n in m.graph.node:
        if n.op_type == "Transpose" and n.input[0] in made_by:
            assert made_by[n.input[0]].op_type != "Transpose", n.name


def test_weights_are_initializers_in_pytorch_layout() -> None:
    model = example("resnet_small")
    weights = varied_weights(model)
    # -O0, the literal translation: from -O1 BatchNorm is folded into the conv weights.
    m = build_model(model, weights, BackendOptions(opt=0))
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in m.graph.initializer}
    np.testing.assert_array_equal(inits["conv2d.weight"], weights["conv2d.weight"])
    np.testing.assert_array_equal(inits["batch_normalization.running_var"],
                                  weights["batch_normalization.running_var"])
    assert not any(n.op_type == "Constant" for n in m.graph.node)


def test_lstm_gates_are_reordered_for_onnx() -> None:
    """torch's i, f, g, o blocks become ONNX's i, o, f, c; GRU's r, z, n become z, r, h."""
    model = compile_nr(net("(seq, 3)", "LSTM(2)"))
    weights = varied_weights(model)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in
             build_model(model, weights, BackendOptions()).graph.initializer}
    i, f, g, o = np.split(weights["lstm.weight_ih_l0"], 4)
    np.testing.assert_array_equal(inits["lstm.W"][0], np.concatenate([i, o, f, g]))
    model = compile_nr(net("(seq, 3)", "GRU(2)"))
    weights = varied_weights(model)
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in
             build_model(model, weights, BackendOptions()).graph.initializer}
    r, z, n = np.split(weights["gru.bias_hh_l0"], 3)
    np.testing.assert_array_equal(inits["gru.B"][0, 6:], np.concatenate([z, r, n]))


# -- external data ----------------------------------------------------------------------------------


def test_external_data_over_the_threshold(tmp_path: Path) -> None:
    model = example("mnist_cnn")
    weights = varied_weights(model)
    artifact = emit(model, weights, extra={"external_data_threshold": 100_000})
    assert list(artifact.side_files) == ["DigitNet.onnx.data"]
    assert len(artifact.data) < 100_000 < len(artifact.side_files["DigitNet.onnx.data"])
    written = artifact.write(tmp_path / "digits.onnx")
    assert [p.name for p in written] == ["digits.onnx", "DigitNet.onnx.data"]
    onnx.checker.check_model(str(written[0]), full_check=True)
    loaded = onnx.load(str(written[0]), load_external_data=False)
    assert any(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer)
    check_against_reference(model, weights, artifact, ((2, 1),))
    small = emit(model, weights)
    assert not small.side_files


# -- errors ----------------------------------------------------------------------------------------


def test_an_older_opset_is_a_located_error_naming_the_opset_that_works() -> None:
    model = example("mnist_cnn")
    with pytest.raises(BackendError) as e:
        proto(model, opset=11)
    (d,) = e.value.diagnostics
    assert d.message == ("onnx cannot express Output 'output': it needs the ONNX operator "
                         "Softmax as defined from opset 13, and the model is written at opset "
                         "11; use --opset 13 or newer")
    assert (d.location.line, d.location.col) == (12, 5)
    proto(model, opset=13)


def test_every_layer_that_cannot_be_expressed_is_reported(monkeypatch) -> None:
    """Independent layers each get their error; what depends on a failed layer is skipped."""
    monkeypatch.setitem(emitters.CANNOT_EXPRESS, "Dense", "a reason for the test")
    text = net("(4,)", "Add { { Dense(4) } { Dense(4) } }\n    Dense(2)")
    with pytest.raises(BackendError) as e:
        proto(compile_nr(text))
    messages = [(d.message, d.location.line) for d in e.value.diagnostics]
    assert messages == [("onnx cannot express Dense 'dense': a reason for the test", 4),
                        ("onnx cannot express Dense 'dense_1': a reason for the test", 4)]


def test_unsupported_reports_nothing_for_the_catalog() -> None:
    b = backend()
    for path in EXAMPLES:
        for op in func_body(compile_file(path).module.funcs[0]).ops[:-1]:
            assert b.unsupported(op) is None, op


def test_unsupported_trials_at_the_chosen_opset() -> None:
    """The one-op trial writes the op at the opset of the options (17 without them)."""
    b = backend()
    output = func_body(example("mnist_cnn").module.funcs[0]).ops[-2]
    assert b.unsupported(output) is None
    assert b.unsupported(output, BackendOptions(opset=13)) is None
    assert b.unsupported(output, BackendOptions(opset=11)) == (
        "it needs the ONNX operator Softmax as defined from opset 13, and the model is written "
        "at opset 11; use --opset 13 or newer")
    (mha,) = [op for op in func_body(compile_nr(net("(seq, 8)", "MultiHeadAttention(2, 4)"))
                                     .module.funcs[0]).ops if "attention" in op.name]
    assert b.unsupported(mha, BackendOptions(opset=23)) is None


def test_builder_refuses_an_operator_the_opset_lacks() -> None:
    b = Builder(17, {})
    with pytest.raises(Unsupported, match="Attention as defined from opset 23.*--opset 23"):
        b.op("Attention", ["q", "k", "v"])


# -- the executable ---------------------------------------------------------------------------------


def test_executable_checks_inputs_as_the_reference_does() -> None:
    model = example("mnist_cnn")
    weights = varied_weights(model)
    exe = backend().load(emit(model, weights), model)
    bad = np.zeros((2, 28, 27, 1), np.float32)
    with pytest.raises(InputError) as ours:
        exe([bad])
    with pytest.raises(InputError) as ref:
        run_module(model.module, [bad], weights)
    assert str(ours.value) == str(ref.value)


def test_executable_refuses_token_indices_out_of_range() -> None:
    model = example("text_embedding")
    weights = varied_weights(model)
    exe = backend().load(emit(model, weights), model)
    for bad in (1000, -1):
        x = np.zeros((2, 5), np.int64)
        x[1, 3] = bad
        with pytest.raises(InputError, match=f"token index {bad}, but Embedding 'embedding' at "
                                             r".*text_embedding.nr:\d+:\d+ has 1000 rows"):
            exe([x])


def test_executable_takes_named_inputs() -> None:
    model = example("two_inputs")
    weights = varied_weights(model)
    exe = backend().load(emit(model, weights), model)
    sizes = symbol_sizes(model, 2, 1)
    image, meta = random_inputs(model, sizes, np.random.default_rng(3))
    ref = run_module(model.module, [image, meta], weights)
    (y,) = exe({"meta": meta, "image": image})
    np.testing.assert_allclose(y, ref[0], rtol=1e-4, atol=1e-5)


def test_artifact_round_trips_through_a_file(tmp_path: Path) -> None:
    model = example("lstm_text_classifier")
    artifact = emit(model, varied_weights(model))
    (path,) = artifact.write(tmp_path / "m.onnx")
    assert onnx.load(str(path)).SerializeToString() == \
        load_artifact_model(artifact).SerializeToString()


def test_executable_checks_indices_under_time_distributed() -> None:
    model = compile_nr(net("(t, 3)", "TimeDistributed(Embedding(7, 2)) TimeDistributed(Flatten())"))
    weights = varied_weights(model)
    exe = backend().load(emit(model, weights), model)
    x = np.zeros((1, 2, 3), np.int64)
    np.testing.assert_allclose(exe([x])[0], run_module(model.module, [x], weights)[0])
    x[0, 1, 2] = -2
    with pytest.raises(InputError, match=r"token index -2, but TimeDistributed 'time_distributed' at case.nr:\d+:\d+ has 7 rows"):
        exe([x])


def _with_nodes(artifact, nodes_before, rename_output: str | None = None, nodes_after=()):
    """The artifact's ONNX model with nodes spliced in: ``nodes_before`` read the first input
    under its name and give ``<input>/spliced`` to the original nodes; ``nodes_after`` take
    the first output, renamed ``rename_output``, and give it under its own name."""
    m = load_artifact_model(artifact)
    g = m.graph
    x, y = g.input[0].name, g.output[0].name
    for n in g.node:
        if nodes_before:
            n.input[:] = [f"{x}/spliced" if i == x else i for i in n.input]
        if rename_output:
            n.output[:] = [rename_output if o == y else o for o in n.output]
    original = list(g.node)
    del g.node[:]
    g.node.extend([*nodes_before, *original, *nodes_after])
    return Artifact("onnx", artifact.filename, m.SerializeToString())


def test_executable_reports_what_onnxruntime_refuses() -> None:
    """A run onnxruntime refuses is an InputError quoting it and naming the model: here a
    Reshape spliced before the network that needs batch * seq * 4 divisible by 3."""
    model = compile_nr(net("(seq, 4)", "Dense(3)"))
    weights = varied_weights(model)
    art = emit(model, weights)
    x = load_artifact_model(art).graph.input[0].name
    shape = helper.make_tensor("by3", onnx.TensorProto.INT64, [2], [-1, 3])
    art = _with_nodes(art, [
        helper.make_node("Constant", [], ["by3"], value=shape),
        helper.make_node("Reshape", [x, "by3"], ["rows_of_3"]),
        helper.make_node("Shape", [x], ["input_shape"]),
        helper.make_node("Reshape", ["rows_of_3", "input_shape"], [f"{x}/spliced"])])
    exe = backend().load(art, model)
    ok = np.ones((1, 3, 4), np.float32)
    np.testing.assert_allclose(exe([ok])[0], run_module(model.module, [ok], weights)[0],
                               rtol=1e-5, atol=1e-6)
    with pytest.raises(InputError) as e:
        exe([np.ones((1, 2, 4), np.float32)])
    message = str(e.value)
    assert message.startswith("onnxruntime refused to run the ONNX model of network 'Case' "
                              "(case.nr) at batch=1, seq=2: ")
    assert "Reshape" in message and "cannot be reshaped" in message
    assert "\n" not in message


def test_executable_reports_an_input_onnxruntime_cannot_run() -> None:
    """A sequence shorter than a valid convolution's window: onnxruntime's refusal is an
    InputError, not an exception out of its bindings."""
    model = compile_nr(net("(seq, 3)", "Conv1D(4, 5)"))
    exe = backend().load(emit(model, varied_weights(model)), model)
    assert exe([np.ones((1, 5, 3), np.float32)])[0].shape == (1, 1, 4)
    with pytest.raises(InputError):
        exe([np.ones((1, 2, 3), np.float32)])


def test_executable_checks_output_shapes_against_the_network() -> None:
    """An ONNX graph whose output shape is not the network's result type at the bound sizes
    (here one row of the batch dropped) is refused, not returned."""
    model = compile_nr(net("(seq, 4)", "Dense(3)"))
    art = emit(model, varied_weights(model))
    out = load_artifact_model(art).graph.output[0].name
    ints = {n: helper.make_tensor(n, onnx.TensorProto.INT64, [1], [v])
            for n, v in (("zero", 0), ("minus_one", -1))}
    art = _with_nodes(art, [], rename_output="full", nodes_after=[
        *[helper.make_node("Constant", [], [n], value=t) for n, t in ints.items()],
        helper.make_node("Slice", ["full", "zero", "minus_one", "zero"], [out])])
    exe = backend().load(art, model)
    with pytest.raises(InputError) as e:
        exe([np.ones((3, 5, 4), np.float32)])
    assert str(e.value) == (
        f"onnxruntime returned output 0 ('{out}') of the ONNX model of network 'Case' (case.nr) "
        "with shape (2, 5, 3), but the network gives (3, 5, 3) at batch=3, seq=5; the ONNX "
        "model does not compute this network")
