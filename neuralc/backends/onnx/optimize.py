"""What ``-O1`` and above change in an exported ONNX model; ``-O0`` is the literal translation.

Only rewrites that help every ONNX runtime, each exact up to float rounding:

- on the graph IR, before emitting: layers that are the identity at inference go (Dropout and
  friends, the ``simplify-inference`` pass), and a BatchNormalization that follows a conv or a
  linear Dense (its only user, normalising the channel axis) is folded into that layer's
  weights and bias;
- on the ONNX graph, after emitting: shape arithmetic whose value is known when exporting
  (``Shape`` of the static dims, then ``Slice``/``Gather``/``Concat``/``Squeeze``/
  ``Unsqueeze``/``Cast``) and any node whose inputs are all constants become initializers; a
  ``Reshape`` to a shape known but for one dim (the batch) gets a constant shape with -1 there;
  nodes left without a use go.

Activations are already written as their ONNX operators (``Relu``, ``Gelu`` where the opset has
it, ``Softmax``...) at every level, and Dense on a matrix as one ``Gemm``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.diagnostics import DiagnosticEngine
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op, OpResult, Rewriter, func_body
from neuralc.layers.common import normalize_axis
from neuralc.passes.base import PassContext
from neuralc.passes.simplify_inference import SimplifyInferencePass
from neuralc.runtime.signature import select_func

_FOLDS_INTO = ("graph.conv1d", "graph.conv2d", "graph.conv3d", "graph.dense")


def optimize_graph(model: CompiledModel, weights: dict[str, np.ndarray], opt: int
                   ) -> tuple[CompiledModel, dict[str, np.ndarray]]:
    """The model and weights the ONNX file is written from at ``-O<opt>`` (a copy if changed)."""
    if opt < 1:
        return model, weights
    module = model.module.clone()
    SimplifyInferencePass().run(module, PassContext(DiagnosticEngine()))
    weights = dict(weights)
    rewriter = Rewriter()
    for op in list(func_body(select_func(module)).ops):
        if op.name == "graph.batch_normalization":
            _fold_batchnorm(op, weights, rewriter)
    return CompiledModel(module, model.info, model.filename, model.warnings), weights


def _fold_batchnorm(bn: Op, weights: dict[str, np.ndarray], rewriter: Rewriter) -> None:
    """conv/dense then BatchNormalization over channels -> conv/dense with W * s, b * s + t."""
    src = bn.operands[0]
    if not isinstance(src, OpResult) or src.op.name not in _FOLDS_INTO or len(src.uses) != 1:
        return
    layer = src.op
    shape = src.type.shape
    a = bn.attributes
    if (shape is None or layer.attributes.get("activation") != "linear"
            or normalize_axis(a["axis"], len(shape), "BatchNormalization") != len(shape) - 1):
        return
    name, conv = str(bn.attributes["name"]), str(layer.attributes["name"])
    w = weights[f"{conv}.weight"].astype(np.float64)
    c = w.shape[0]  # PyTorch layouts: output channels first
    scale = 1.0 / np.sqrt(weights[f"{name}.running_var"].astype(np.float64) + a["epsilon"])
    if a["scale"]:
        scale = scale * weights[f"{name}.weight"]
    shift = -weights[f"{name}.running_mean"] * scale
    if a["center"]:
        shift = shift + weights[f"{name}.bias"]
    bias = weights.get(f"{conv}.bias", np.zeros(c)).astype(np.float64)
    weights[f"{conv}.weight"] = (w * scale.reshape(c, *[1] * (w.ndim - 1))).astype(np.float32)
    weights[f"{conv}.bias"] = (bias * scale + shift).astype(np.float32)
    layer.attributes["use_bias"] = True
    rewriter.replace_op(bn, [src])
    for k in [k for k in weights if k.startswith(f"{name}.")]:
        del weights[k]


# -- the ONNX graph: constants ---------------------------------------------------------------

_SHAPE_OPS = ("Shape", "Slice", "Gather", "Concat", "Squeeze", "Unsqueeze", "Cast")


def fold_constants(onnx_model: Any, opset: int) -> Any:
    """Replace every node whose value is known when exporting by an initializer, in place."""
    import onnx
    from onnx import numpy_helper, shape_inference

    graph = onnx_model.graph
    known: dict[str, np.ndarray] = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    try:
        inferred = shape_inference.infer_shapes(onnx_model)
    except Exception:  # noqa: BLE001 - without shapes, only all-constant nodes fold
        inferred = onnx_model
    dims: dict[str, list[int | None]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = vi.type.tensor_type
        if t.HasField("shape"):
            dims[vi.name] = [d.dim_value if d.HasField("dim_value") else None
                             for d in t.shape.dim]
    outputs = {o.name for o in graph.output}
    partial: dict[str, list[int | None]] = {}  # int vectors known in part (shape arithmetic)
    kept = []
    for node in graph.node:
        foldable = (len(node.output) == 1 and node.output[0] not in outputs
                    and not any(a.type in (a.GRAPH, a.GRAPHS) for a in node.attribute))
        value = _evaluate(node, known, partial, dims, opset) if foldable else None
        if value is None:
            kept.append(node)
            continue
        known[node.output[0]] = value
    for node in kept:  # a Reshape to a shape known but for one dim: that dim is -1
        target = node.input[1] if node.op_type == "Reshape" and len(node.input) > 1 else ""
        allowzero = any(a.name == "allowzero" and a.i for a in node.attribute)
        dims = partial.get(target, [])
        if (sum(d is None for d in dims) == 1 and all(d is None or d > 0 for d in dims)
                and not allowzero):
            name = f"{target}/known"
            known[name] = np.array([-1 if d is None else d for d in partial[target]], np.int64)
            node.input[1] = name
    kept = _live(kept, outputs)
    graph.ClearField("node")
    graph.node.extend(kept)
    read = _read_names(kept) | outputs
    have = {t.name for t in graph.initializer}
    for name in sorted(read - have):
        if name in known:
            graph.initializer.append(numpy_helper.from_array(known[name], name))
    used = [t for t in graph.initializer if t.name in read]
    graph.ClearField("initializer")
    graph.initializer.extend(used)
    onnx.checker.check_model(onnx_model)
    return onnx_model


def _live(nodes: list, outputs: set[str]) -> list:
    """The nodes some output depends on (reads inside subgraphs count)."""
    needed = set(outputs)
    kept = []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            kept.append(n)
            needed |= _read_names([n])
    kept.reverse()
    return kept


def _read_names(nodes: Any) -> set[str]:
    """Every name the nodes read, inside their subgraphs (a Loop's body) too."""
    out: set[str] = set()
    for n in nodes:
        out.update(i for i in n.input if i)
        for a in n.attribute:
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                out |= _read_names(g.node)
    return out


_RANDOM = ("RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike")


def _evaluate(node: Any, known: dict[str, np.ndarray], partial: dict[str, list[int | None]],
              dims: dict[str, list[int | None]], opset: int) -> np.ndarray | None:
    """The node's single output when it is known now; records partly known shape vectors."""
    if node.op_type == "Shape":
        shape = dims.get(node.input[0])
        if shape is None:
            return None
        attrs = {a.name: a.i for a in node.attribute}
        start, end = attrs.get("start", 0), attrs.get("end")
        return _vector(node.output[0], shape[start:end], partial)
    inputs = list(node.input)
    given = [i for i in inputs if i]
    if all(i in known for i in given):
        return None if node.op_type in _RANDOM else _run(node, [known.get(i) for i in inputs],
                                                         opset)
    data = range(len(inputs)) if node.op_type == "Concat" else (0,)
    if node.op_type not in _SHAPE_OPS or not all(
            i in known or (i in partial and k in data) for k, i in enumerate(inputs) if i):
        return None

    def vec(name: str) -> np.ndarray:
        return np.array([-1 if d is None else d for d in partial[name]], np.int64)

    def mask(k: int, name: str) -> np.ndarray | None:
        if not name:
            return None
        if k not in data:
            return known[name]
        if name in partial:
            return np.array([d is None for d in partial[name]], np.int64)
        return np.zeros(np.shape(known[name]), np.int64)

    value = _run(node, [vec(i) if i in partial else known.get(i) for i in inputs], opset)
    unknown = _run(node, [mask(k, i) for k, i in enumerate(inputs)], opset)
    if value is None or unknown is None or value.ndim != 1:
        return None
    return _vector(node.output[0], [None if u else int(v) for v, u in zip(value, unknown)],
                   partial)


def _vector(name: str, values: list[int | None], partial: dict[str, list[int | None]]
            ) -> np.ndarray | None:
    if all(v is not None for v in values):
        return np.array(values, np.int64)
    partial[name] = values
    return None


def _run(node: Any, inputs: list[np.ndarray | None], opset: int) -> np.ndarray | None:
    """One node on constant inputs (None: an omitted optional input), with onnx's reference
    implementation at the model's opset."""
    from onnx import helper
    from onnx.reference import ReferenceEvaluator

    names = [f"i{k}" if x is not None else "" for k, x in enumerate(inputs)]
    one = helper.make_node(node.op_type, names, ["o"])
    one.attribute.extend(node.attribute)
    feeds = {n: np.asarray(x) for n, x in zip(names, inputs) if n}
    graph = helper.make_graph(
        [one], "fold",
        [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(x.dtype), x.shape)
         for n, x in feeds.items()],
        [helper.make_tensor_value_info("o", 0, None)])
    try:
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        (out,) = ReferenceEvaluator(model).run(None, feeds)
    except Exception:  # noqa: BLE001 - an op the reference cannot run stays a node
        return None
    return np.asarray(out)
