"""``--precision fp16``: rewrite a float32 ONNX model to float16.

Weights are stored in float16 and computed on in float16, except by operators for which
onnxruntime's CPU provider has no float16 kernel: those run in float32 between explicit Casts,
so the file runs the same on any onnxruntime build instead of relying on the runtime's own
cast insertion. Where two float32 operators meet, the tensor between them stays float32 (no
Cast pair), so a value is rounded to float16 where a float16 kernel, a float16 weight or the
model's boundary needs it. Data-movement operators (Transpose, Reshape, Concat, ...) are exact
in either precision and run in the precision their consumers want.

``keep_io_fp32`` keeps float32 graph inputs and outputs, with Casts at the boundary.

Subgraphs (the Scan bodies of recurrent layers without a native ONNX operator) stay float32, as
do the initializers they read: the Scan node as a whole is one of the float32 operators.
Inputs that an operator's schema types as float32 in every precision (Resize's scales) stay
float32.

onnxruntime 1.31 crashes when its MatMul-Transpose fusion meets ``Transpose (float16) -> Cast
-> MatMul``; a float32 consumer of a float16 Transpose therefore gets a float32 Transpose of
the cast input instead, so the pattern never appears.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Operators with float16 kernels in onnxruntime's CPU provider (checked against the installed
# onnxruntime by tests/backends/onnx/test_onnx_precision.py). Everything else computes in
# float32.
FP16_CPU_OPS = frozenset({
    "LayerNormalization", "RMSNormalization", "Attention", "Max", "Min", "Clip",
    "Transpose", "Reshape", "Flatten", "Concat", "Gather", "Slice", "Expand", "Squeeze",
    "Unsqueeze", "Split", "Identity", "ReverseSequence", "Cast", "Shape", "ConstantOfShape",
})

# Exact in any precision: they run in whichever their consumers want.
MOVE_OPS = frozenset({
    "Transpose", "Reshape", "Flatten", "Concat", "Gather", "Slice", "Expand", "Squeeze",
    "Unsqueeze", "Split", "Identity", "ReverseSequence",
})


def _float_types() -> tuple[int, int]:
    from onnx import TensorProto

    return TensorProto.FLOAT, TensorProto.FLOAT16


def _tensor_types(model: Any) -> dict[str, int]:
    """Element type of every tensor of the main graph (from strict shape inference)."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    g = inferred.graph
    types: dict[str, int] = {}
    for vi in [*g.input, *g.output, *g.value_info]:
        if vi.type.HasField("tensor_type"):
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in g.initializer:
        types[init.name] = init.data_type
    return types


def _subgraph_refs(graph: Any) -> set[str]:
    """Names read inside the subgraphs of ``graph``'s nodes (outer-scope references)."""
    refs: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            subs = list(attr.graphs) + ([attr.g] if attr.HasField("g") else [])
            for sg in subs:
                for n in sg.node:
                    refs.update(i for i in n.input if i)
                refs |= _subgraph_refs(sg)
    return refs


def _has_subgraph(node: Any) -> bool:
    return any(a.HasField("g") or len(a.graphs) for a in node.attribute)


def _float16_inputs(node: Any, opset: int) -> list[bool]:
    """For each input of ``node``, whether its operator's schema admits a float16 tensor there
    (Resize's scales, for one, are float32 in every precision)."""
    import onnx.defs

    schema = onnx.defs.get_schema(node.op_type, opset, node.domain)
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}
    out = []
    for k in range(len(node.input)):
        formal = schema.inputs[min(k, len(schema.inputs) - 1)]
        out.append("tensor(float16)" in allowed.get(formal.type_str, {formal.type_str}))
    return out


def _computes_in_fp16(node: Any) -> bool:
    return node.op_type in FP16_CPU_OPS and not _has_subgraph(node)


def _wants_fp32(nodes: list[Any], outputs: set[str], keep_io_fp32: bool) -> set[str]:
    """Tensors every reader of which takes float32: float32 operators, float32 graph outputs,
    and data-movement operators whose own results are wanted in float32."""
    readers: dict[str, list[Any]] = {}
    for n in nodes:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    wants: set[str] = set()
    for n in reversed(nodes):
        for o in n.output:
            rs = readers.get(o, [])
            if o in outputs and not keep_io_fp32:
                continue
            if not rs and o not in outputs:
                continue
            if all(not _computes_in_fp16(r) or
                   (r.op_type in MOVE_OPS and all(x in wants for x in r.output if x))
                   for r in rs):
                wants.add(o)
    return wants


def to_fp16(model: Any, keep_io_fp32: bool) -> Any:
    """A float16 copy of float32 ``model`` (see the module docstring)."""
    import onnx
    from onnx import helper, numpy_helper

    FLOAT, FLOAT16 = _float_types()
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    types = _tensor_types(model)
    body_refs = _subgraph_refs(g)
    used = set(types) | {o for n in g.node for o in n.output} | {i for n in g.node for i in n.input}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    nodes = list(g.node)
    admits = [_float16_inputs(n, opset) for n in nodes]
    fp32_only = {i for n, oks in zip(nodes, admits) for i, ok in zip(n.input, oks) if not ok}
    wants32 = _wants_fp32(nodes, {o.name for o in g.output}, keep_io_fp32)

    def fresh(base: str) -> str:
        name, k = base, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        return name

    now: dict[str, int] = {}  # element type of each float tensor in the rewritten graph
    converted: dict[tuple[str, int], str] = {}  # (tensor, type) -> a tensor of that type
    fp16_transposes: dict[str, Any] = {}  # output -> a Transpose node run in float16
    created: list[Any] = []
    new_nodes: list[Any] = []

    def emit(node: Any, made: bool = True) -> None:
        new_nodes.append(node)
        if made:
            created.append(node)

    def cast(src: str, to: int, name: str | None = None) -> str:
        out = name or fresh(f"{src}/{'fp32' if to == FLOAT else 'fp16'}")
        emit(helper.make_node("Cast", [src], [out], to=to, name=fresh(f"{out}/Cast")))
        now[out] = to
        converted[(src, to)] = out
        converted[(out, now.get(src, to))] = src
        return out

    def as_type(name: str, to: int) -> str:
        if now.get(name, to) == to:
            return name
        if (name, to) in converted:
            return converted[(name, to)]
        if to == FLOAT and name in fp16_transposes:  # see the module docstring
            t = fp16_transposes[name]
            out = fresh(f"{name}/fp32")
            emit(helper.make_node("Transpose", [as_type(t.input[0], FLOAT)], [out],
                                  perm=list(t.attribute[0].ints), name=fresh(f"{out}/Transpose")))
            now[out] = FLOAT
            converted[(name, FLOAT)] = out
            return out
        return cast(name, to)

    for init in g.initializer:
        if init.data_type != FLOAT:
            continue
        if init.name in body_refs or init.name in fp32_only:
            now[init.name] = FLOAT
        else:
            arr = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(arr, init.name))
            now[init.name] = FLOAT16

    renames: dict[str, str] = {}
    for inp in g.input:
        if inp.type.tensor_type.elem_type != FLOAT:
            continue
        if keep_io_fp32:
            now[inp.name] = FLOAT
            renames[inp.name] = cast(inp.name, FLOAT16, fresh(f"{inp.name}/fp16"))
        else:
            inp.type.tensor_type.elem_type = FLOAT16
            now[inp.name] = FLOAT16

    for node, ok16 in zip(nodes, admits):
        node.input[:] = [renames.get(i, i) for i in node.input]
        float_outs = [o for o in node.output if types.get(o) == FLOAT]
        if not float_outs and not any(i in now for i in node.input):
            emit(node, made=False)
            continue
        if node.op_type in MOVE_OPS:
            data = node.input[0]
            in32 = now.get(data) == FLOAT or (data, FLOAT) in converted
            prec = FLOAT if in32 or all(o in wants32 for o in float_outs) else FLOAT16
            node.input[:] = [as_type(i, prec if ok else FLOAT) if i in now else i
                             for i, ok in zip(node.input, ok16)]
            for o in float_outs:
                now[o] = prec
            if node.op_type == "Transpose" and prec == FLOAT16:
                fp16_transposes[node.output[0]] = node
            emit(node, made=False)
            continue
        if _computes_in_fp16(node):
            node.input[:] = [as_type(i, FLOAT16 if ok else FLOAT) if i in now else i
                             for i, ok in zip(node.input, ok16)]
            for a in node.attribute:
                if node.op_type == "Cast" and a.name == "to" and a.i == FLOAT:
                    a.i = FLOAT16
                if node.op_type == "ConstantOfShape" and a.name == "value" \
                        and a.t.data_type == FLOAT:
                    arr = numpy_helper.to_array(a.t).astype(np.float16)
                    a.t.CopyFrom(numpy_helper.from_array(arr, a.t.name))
            for o in float_outs:
                now[o] = FLOAT16
            emit(node, made=False)
            continue
        # A float32 operator: float32 inputs and outputs.
        node.input[:] = [as_type(i, FLOAT) if i in now else i for i in node.input]
        for o in float_outs:
            now[o] = FLOAT
        emit(node, made=False)

    # Graph outputs keep their names: the tensor of the boundary's type takes the name, the
    # inner one a new name.
    out_renames: dict[str, str] = {}
    for out in g.output:
        if out.type.tensor_type.elem_type != FLOAT:
            continue
        target = FLOAT if keep_io_fp32 else FLOAT16
        out.type.tensor_type.elem_type = target
        src = as_type(out.name, target)
        if src != out.name:
            out_renames[out.name] = fresh(f"{out.name}/{'fp16' if keep_io_fp32 else 'fp32'}")
            out_renames[src] = out.name
    if out_renames:
        for node in new_nodes:
            node.input[:] = [out_renames.get(i, i) for i in node.input]
            node.output[:] = [out_renames.get(o, o) for o in node.output]

    # Drop what nothing reads among the nodes made here.
    needed = {o.name for o in g.output}
    kept: list[Any] = []
    made = {id(n) for n in created}
    for node in reversed(new_nodes):
        if id(node) in made and not any(o in needed for o in node.output):
            continue
        needed.update(i for i in node.input if i)
        kept.append(node)
    kept.reverse()
    del g.node[:]
    g.node.extend(kept)
    del g.value_info[:]
    return model
