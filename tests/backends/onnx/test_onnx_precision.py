"""``--precision fp16`` and ``--keep-io-fp32``.

Tolerance against the float32 reference: ``max |y16 - y32| <= 1e-2 * max(1, max |y32|)``.
float16 keeps 11 significant bits (unit roundoff 2^-11 = 4.9e-4); a value is rounded when a
weight is stored, at the model's boundary and around each float16 kernel, a handful of times
along a path, and float32 operators do the arithmetic in between, so the observed error stays
under about 2.5e-3 on these models; 1e-2 (20 roundoff units) leaves room for other draws.
"""

from __future__ import annotations

import collections
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_test_helpers import (
    backend,
    compile_nr,
    emit,
    random_inputs,
    symbol_sizes,
    varied_weights,
)
from test_onnx_layers import CASES, MULTI, net

from neuralc.backends.base import BackendOptions
from neuralc.backends.onnx.emit import build_model
from neuralc.backends.onnx.precision import FP16_CPU_OPS
from neuralc.driver import compile_file
from neuralc.runtime.interpreter import run_module

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.nr"))
FP16_TOL = 1e-2


def check_fp16(model, weights, opset: int, keep_io: bool, size_pairs) -> None:
    exe = backend().load(emit(model, weights, opset=opset, precision="fp16",
                              keep_io_fp32=keep_io), model)
    rng = np.random.default_rng(0)
    for batch, other in size_pairs:
        xs = random_inputs(model, symbol_sizes(model, batch, other), rng)
        for y, ref in zip(exe(xs), run_module(model.module, xs, weights)):
            assert y.dtype == (np.float32 if keep_io else np.float16)
            assert y.shape == ref.shape
            err = float(np.max(np.abs(y.astype(np.float32) - ref)))
            assert err <= FP16_TOL * max(1.0, float(np.max(np.abs(ref)))), err


@pytest.mark.parametrize("keep_io", [True, False], ids=["keep_io_fp32", "fp16_io"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_fp16_example_close_to_fp32(path: Path, keep_io: bool) -> None:
    model = compile_file(path)
    check_fp16(model, varied_weights(model), 17, keep_io, ((1, 16), (3, 24)))


def _layer_models() -> list:
    out = []
    for case in CASES:
        opset = case[3][-1] if len(case) > 3 else 17
        out.append(pytest.param(net(case[1], case[2]), opset, id=case[0]))
    out += [pytest.param(text, opsets[-1], id=cid) for cid, text, opsets in MULTI]
    return out


@pytest.mark.parametrize(("text", "opset"), _layer_models())
def test_fp16_layer_close_to_fp32(text: str, opset: int) -> None:
    model = compile_nr(text)
    check_fp16(model, varied_weights(model), opset, True, ((2, 7),))


def test_fp16_model_structure() -> None:
    """Weights in float16; float32 operators between Casts; the boundary as asked."""
    model = compile_file(ROOT / "examples" / "mnist_cnn.nr")
    weights = varied_weights(model)
    for keep_io, io_type in ((False, TensorProto.FLOAT16), (True, TensorProto.FLOAT)):
        m = build_model(model, weights, BackendOptions(precision="fp16", keep_io_fp32=keep_io))
        onnx.checker.check_model(m, full_check=True)
        assert {t.data_type for t in m.graph.initializer if t.name.endswith(("weight", "bias"))} \
            == {TensorProto.FLOAT16}
        assert [i.type.tensor_type.elem_type for i in m.graph.input] == [io_type]
        assert [o.type.tensor_type.elem_type for o in m.graph.output] == [io_type]
        assert [o.name for o in m.graph.output] == ["output"]
        ops = collections.Counter(n.op_type for n in m.graph.node)
        assert ops["Conv"] == 2 and ops["Cast"] >= 5
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
        conv = next(n for n in m.graph.node if n.op_type == "Conv")
        assert types[conv.output[0]] == TensorProto.FLOAT  # no float16 Conv kernel on CPU


def test_fp16_keeps_float32_only_inputs_float32() -> None:
    """Resize's scales are float32 in every precision."""
    model = compile_nr(net("(3, 4, 2)", 'UpSampling2D(2, "bilinear")'))
    m = build_model(model, varied_weights(model), BackendOptions(precision="fp16"))
    onnx.checker.check_model(m, full_check=True)
    resize = next(n for n in m.graph.node if n.op_type == "Resize")
    scales = next(t for t in m.graph.initializer if t.name == resize.input[2])
    assert scales.data_type == TensorProto.FLOAT


def test_fp16_never_casts_a_transpose_into_a_matmul() -> None:
    """onnxruntime 1.31 crashes on Transpose(fp16) -> Cast -> MatMul (its MatMul-Transpose
    fusion); the pass transposes in float32 instead."""
    for text in (net("(5, 3)", "Permute((2, 1)) Dense(4)"),
                 net("(6, 6, 2)", "Conv2D(3, 3) Flatten() Dense(2)")):
        model = compile_nr(text)
        for keep_io in (False, True):
            m = build_model(model, varied_weights(model),
                            BackendOptions(precision="fp16", keep_io_fp32=keep_io))
            made_by = {o: n for n in m.graph.node for o in n.output}
            for n in m.graph.node:
                if n.op_type in ("MatMul", "Gemm") and n.input[0] in made_by:
                    cast = made_by[n.input[0]]
                    if cast.op_type == "Cast" and cast.input[0] in made_by:
                        assert made_by[cast.input[0]].op_type != "Transpose"
            check_fp16(model, varied_weights(model), 17, keep_io, ((2, 1),))


# -- the table of float16 kernels -----------------------------------------------------------------


def _h(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random(shape).astype(np.float16)


def _i(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


# op -> (inputs, attributes, opset)
SAMPLES = {
    "LayerNormalization": ([_h(2, 3), _h(3), _h(3)], {}, 17),
    "RMSNormalization": ([_h(2, 3), _h(3)], {}, 23),
    "Attention": ([_h(1, 3, 4), _h(1, 3, 4), _h(1, 3, 4)],
                  {"q_num_heads": 2, "kv_num_heads": 2}, 23),
    "Max": ([_h(2, 3), _h(2, 3)], {}, 17),
    "Min": ([_h(2, 3), _h(2, 3)], {}, 17),
    "Clip": ([_h(3), np.array(0, np.float16), np.array(1, np.float16)], {}, 17),
    "Transpose": ([_h(2, 3)], {"perm": [1, 0]}, 17),
    "Reshape": ([_h(2, 3), _i(3, 2)], {}, 17),
    "Flatten": ([_h(2, 3, 4)], {}, 17),
    "Concat": ([_h(2, 3), _h(2, 3)], {"axis": 0}, 17),
    "Gather": ([_h(5, 3), _i(1, 2)], {}, 17),
    "Slice": ([_h(4, 3), _i(0), _i(2), _i(0)], {}, 17),
    "Expand": ([_h(1, 3), _i(2, 3)], {}, 17),
    "Squeeze": ([_h(1, 3), _i(0)], {}, 17),
    "Unsqueeze": ([_h(3), _i(0)], {}, 17),
    "Split": ([_h(4, 3), _i(2, 2)], {}, 17),
    "Identity": ([_h(3)], {}, 17),
    "ReverseSequence": ([_h(3, 2, 2), _i(3, 3)], {}, 17),
    "Cast": ([_h(3)], {"to": TensorProto.FLOAT}, 17),
    "Shape": ([_h(2, 3)], {}, 17),
    "ConstantOfShape": ([_i(2, 3)],
                        {"value": numpy_helper.from_array(np.array([1], np.float16))}, 17),
}


def _casts_onnxruntime_inserts(op: str) -> int:
    inputs, attrs, opset = SAMPLES[op]
    names = [f"x{i}" for i in range(len(inputs))]
    outs = 2 if op == "Split" else 1
    node = helper.make_node(op, names, [f"y{k}" for k in range(outs)], **attrs)
    graph = helper.make_graph(
        [node], "g",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
         for n, a in zip(names, inputs)],
        [helper.make_value_info(f"y{k}", onnx.TypeProto()) for k in range(outs)])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 10
    m = onnx.shape_inference.infer_shapes(m)  # fills in the outputs' types
    with tempfile.TemporaryDirectory() as tmp:
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        opts.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        session = ort.InferenceSession(m.SerializeToString(), opts,
                                       providers=["CPUExecutionProvider"])
        session.run(None, dict(zip(names, inputs)))
        optimized = onnx.load(opts.optimized_model_filepath)
    casts = sum(n.op_type == "Cast" for n in optimized.graph.node)
    return casts - (op == "Cast")


@pytest.mark.parametrize("op", sorted(FP16_CPU_OPS))
def test_fp16_table_lists_only_native_kernels(op: str) -> None:
    """onnxruntime runs each listed operator in float16 without casting around it."""
    assert _casts_onnxruntime_inserts(op) == 0
