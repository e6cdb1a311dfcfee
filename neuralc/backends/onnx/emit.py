"""Graph IR -> ONNX model: the walk over the network's ops, the model's boundary, the file.

Inputs and outputs are channels-last, as the IR's; symbolic dims become ``dim_param``s named
as in the IR (``batch``, ``seq``; a compound output dim such as ``(seq + 1) floordiv 2`` is
named by its expression text), so the file takes any batch size and sequence length. Graph
outputs are named after the layers that produce them. The IR version is the lowest that holds
the chosen opset (``onnx.helper.find_min_ir_version_for``), which onnxruntime accepts for every
opset the CLI allows (IR <= 13).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.backends.base import Artifact, BackendError, BackendOptions
from neuralc.backends.onnx.builder import Builder, Layer, Unsupported, Val, dims_of, identity
from neuralc.backends.onnx.emitters import CANNOT_EXPRESS, emitter_for
from neuralc.diagnostics import Diagnostic
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op, Value, func_body
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.runtime.signature import input_names, select_func

TARGET = "onnx"
MAX_OPSET = 26
# Protobuf refuses messages of 2 GiB; above this many bytes of weights, they go to a side file.
EXTERNAL_DATA_THRESHOLD = 2_000_000_000

_ELEM = {"f32": "FLOAT", "f16": "FLOAT16", "f64": "DOUBLE", "bf16": "FLOAT",
         "i64": "INT64", "i32": "INT32", "i8": "INT8", "i1": "BOOL"}


def elem_type(dtype: str) -> int:
    from onnx import TensorProto

    return int(getattr(TensorProto, _ELEM[dtype]))


def value_info(name: str, t: TensorType) -> Any:
    from onnx import helper

    assert t.shape is not None
    return helper.make_tensor_value_info(name, elem_type(t.dtype), dims_of(t.shape))


def ir_version_for(opset: int) -> int:
    from onnx import helper

    return int(helper.find_min_ir_version_for([helper.make_opsetid("", opset)]))


def layer_of(op: Op, spec: catalog.LayerSpec) -> Layer:
    return Layer(spec=spec, attrs=dict(op.attributes),
                 name=str(op.attributes.get("name", spec.keras_name)),
                 in_types=[v.type for v in op.operands],
                 out_types=[r.type for r in op.results], location=op.location)


def _error(spec_name: str, layer: str, reason: str, op: Op) -> Diagnostic:
    return Diagnostic("error", f"{TARGET} cannot express {spec_name} '{layer}': {reason}",
                      op.location)


def emit_op(b: Builder, op: Op, inputs: list[Val]) -> list[Val]:
    """One graph op through its emitter (raises Unsupported with the reason)."""
    spec = catalog.by_op(op.name)
    if spec is None:
        raise Unsupported(f"'{op.name}' is not a layer of the catalog")
    if spec.name in CANNOT_EXPRESS:
        raise Unsupported(CANNOT_EXPRESS[spec.name])
    fn = emitter_for(spec.op_name.removeprefix("graph."))
    if fn is None:
        raise Unsupported("the onnx target has no emitter for this layer yet")
    layer = layer_of(op, spec)
    results = fn(b, layer, inputs)
    if len(results) != len(op.results):
        raise AssertionError(f"the {spec.name} emitter gave {len(results)} results for "
                             f"{len(op.results)}")
    return results


def _rename(nodes: list[Any], old: str, new: str) -> None:
    for n in nodes:
        n.input[:] = [new if i == old else i for i in n.input]
        n.output[:] = [new if o == old else o for o in n.output]


def _name_results(b: Builder, layer: str, results: list[Val], first_node: int) -> None:
    """Give a layer's results its name (``dense``; ``lstm:1`` for the second), where free."""
    produced = {o for n in b.nodes[first_node:] for o in n.output}
    for i, v in enumerate(results):
        target = layer if i == 0 else f"{layer}:{i}"
        perm, name = b.any(v, prefer=identity(v.rank))
        if name not in produced or target in b.names:
            continue
        _rename(b.nodes[first_node:], name, target)
        b.names.add(target)
        v.forms[perm] = target


def build_graph(model: CompiledModel, weights: dict[str, np.ndarray],
                opset: int) -> Any:
    """The float32 ONNX model of ``model`` (raises BackendError listing every layer it cannot)."""
    from onnx import helper

    func = select_func(model.module)
    body = func_body(func)
    b = Builder(opset, weights)
    values: dict[Value, Val] = {}
    graph_inputs = []
    for a, name in zip(body.args, input_names(func)):
        b.reserve(name)
        values[a] = b.val(a.type, name)
        graph_inputs.append(value_info(name, a.type))

    diags: list[Diagnostic] = []
    returned: list[Value] = []
    for op in body.ops:
        if op.name == "func.return":
            returned = list(op.operands)
            break
        spec = catalog.by_op(op.name)
        layer_name = str(op.attributes.get("name", op.name))
        if any(v not in values for v in op.operands):
            continue  # downstream of a layer already reported
        b.scope = layer_name
        first = len(b.nodes)
        try:
            results = emit_op(b, op, [values[v] for v in op.operands])
        except Unsupported as e:
            diags.append(_error(spec.name if spec else op.name, layer_name, e.reason, op))
            continue
        _name_results(b, layer_name, results, first)
        for r, v in zip(op.results, results):
            values[r] = v
    if diags:
        raise BackendError(diags)

    b.scope = ""
    outputs = []
    taken: set[str] = {vi.name for vi in graph_inputs}
    for i, r in enumerate(returned):
        name = b.get(values[r])
        if name in taken:  # an input returned as it is, or one value returned twice
            name = b.op("Identity", [name], outputs=[b.fresh("output" if i == 0 else
                                                               f"output_{i}")])
        taken.add(name)
        outputs.append(value_info(name, r.type))

    nodes = live_nodes(b.nodes, [vi.name for vi in outputs])
    read = {i for n in nodes for i in n.input} | b.subgraph_refs
    inits = [t for name, t in b.initializers.items() if name in read]
    graph = helper.make_graph(nodes, str(func.attributes.get("sym_name", "network")),
                              graph_inputs, outputs, initializer=inits)
    onnx_model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)],
                                   producer_name="neuralc", producer_version=_version())
    onnx_model.ir_version = ir_version_for(opset)
    onnx_model.doc_string = f"compiled by neuralc from {Path(model.filename).name}"
    return onnx_model


def live_nodes(nodes: list[Any], outputs: list[str]) -> list[Any]:
    """The nodes some output depends on (an LSTM's unused final state goes, for one)."""
    needed = set(outputs)
    kept = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed.update(i for i in n.input if i)
    kept.reverse()
    return kept


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("neuralc")
    except Exception:  # noqa: BLE001 - an uninstalled checkout has no metadata
        return "0"


def check_options(options: BackendOptions) -> None:
    import onnx.defs

    from neuralc.driver import UsageError

    top = min(MAX_OPSET, onnx.defs.onnx_opset_version())
    if not 7 <= options.opset <= top:
        raise UsageError(f"the onnx target writes opsets 7 to {top} (with onnx "
                         f"{onnx.__version__}), got --opset {options.opset}")
    if options.precision not in ("fp32", "fp16"):
        raise UsageError(f"the onnx target writes float32 or float16 models (--precision fp32 or "
                         f"fp16), not {options.precision}: onnxruntime's CPU provider has no "
                         "bfloat16 kernels to run it")


def build_model(model: CompiledModel, weights: dict[str, np.ndarray],
                options: BackendOptions) -> Any:
    """The ONNX model at the requested opset, precision and ``-O`` level (optimize.py)."""
    from neuralc.backends.onnx.optimize import fold_constants, optimize_graph

    check_options(options)
    model, weights = optimize_graph(model, weights, options.opt)
    onnx_model = build_graph(model, weights, options.opset)
    if options.opt >= 1:
        fold_constants(onnx_model, options.opset)
    if options.precision == "fp16":
        from neuralc.backends.onnx.precision import to_fp16

        onnx_model = to_fp16(onnx_model, options.keep_io_fp32)
    return onnx_model


def weight_bytes(onnx_model: Any) -> int:
    return sum(len(t.raw_data) for t in onnx_model.graph.initializer)


def to_artifact(onnx_model: Any, filename: str, options: BackendOptions) -> Artifact:
    """Serialise; weights over the threshold go to ``<filename>.data`` (ONNX external data)."""
    import onnx

    threshold = int(options.extra.get("external_data_threshold", EXTERNAL_DATA_THRESHOLD))
    meta = {"opset": options.opset, "ir_version": onnx_model.ir_version,
            "precision": options.precision, "keep_io_fp32": options.keep_io_fp32}
    if weight_bytes(onnx_model) <= threshold:
        return Artifact(TARGET, filename, onnx_model.SerializeToString(), meta=meta)
    data_name = f"{filename}.data"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / filename
        onnx.save_model(onnx_model, str(path), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=data_name, size_threshold=1024)
        data = path.read_bytes()
        side = (Path(tmp) / data_name).read_bytes()
    meta["external_data"] = data_name
    return Artifact(TARGET, filename, data, side_files={data_name: side}, meta=meta)


def load_artifact_model(artifact: Artifact) -> Any:
    """The ModelProto of an artifact, external weights included."""
    import onnx

    if not artifact.side_files:
        return onnx.load_model_from_string(artifact.data)
    with tempfile.TemporaryDirectory() as tmp:
        paths = artifact.write(os.path.join(tmp, artifact.filename))
        return onnx.load_model(str(paths[0]), load_external_data=True)
