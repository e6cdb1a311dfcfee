"""The graph dialect: one op per layer kind, generated from the layer catalog.

``graph.<keras_name>`` ops carry the layer's parameters as attributes (canonical names, every
default filled in), ``name`` (the layer name that keys its weights) and optionally ``device``
(the ``@ "cuda"`` placement hint). Verification and shape inference ask the catalog entry.
"""

from __future__ import annotations

from neuralc.ir.core import Op
from neuralc.ir.opdef import OpDef, register_op
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.layers.catalog import LayerSpec, ParamError

# Attributes every graph op may carry besides its layer parameters.
COMMON_ATTRS = ("name", "device", "precision")


class LayerOpDef(OpDef):
    """The op for one catalog entry."""

    def __init__(self, spec: LayerSpec):
        self.spec = spec
        self.name = spec.op_name  # type: ignore[misc]
        # Counts that depend on attributes (value params, return_state) are checked in verify.
        self.num_operands = None if spec.value_params() else spec.arity  # type: ignore[misc]
        self.num_results = None if spec.num_results else 1  # type: ignore[misc]

    def verify(self, op: Op) -> list[str]:
        errs: list[str] = []
        if self.spec.arity is None and len(op.operands) < 2:
            errs.append(f"{op.name} needs at least two operands")
        if self.spec.value_params() and self.spec.arity is not None:
            refs = sum(1 for p in self.spec.value_params() if op.attributes.get(p.name) is not None)
            if len(op.operands) != self.spec.arity + refs:
                errs.append(
                    f"{op.name} needs {self.spec.arity + refs} operands, has {len(op.operands)}"
                )
        if self.spec.num_results is not None:
            try:
                want = self.spec.results(op.attributes)
            except (KeyError, TypeError):
                want = len(op.results)
            if len(op.results) != want:
                errs.append(f"{op.name} needs {want} results, has {len(op.results)}")
        if not isinstance(op.attributes.get("name"), str):
            errs.append(f"{op.name} needs a string 'name' attribute")
        known = {p.name for p in self.spec.params} | set(COMMON_ATTRS)
        for key in op.attributes:
            if key not in known:
                errs.append(f"{op.name} has unknown attribute '{key}'")
        for p in self.spec.params:
            if p.name not in op.attributes:
                errs.append(f"{op.name} is missing attribute '{p.name}'")
                continue
            value = op.attributes[p.name]
            if value is None and not p.required and p.default is None:
                continue
            try:
                canon = p.type.convert(value, p.name)
            except ParamError as e:
                errs.append(f"{op.name}: {e}")
                continue
            if canon != value:
                errs.append(f"{op.name}: attribute '{p.name}' is not in canonical form ({canon!r})")
        if self.spec.check is not None and not errs:
            try:
                self.spec.check(op.attributes)
            except ParamError as e:
                errs.append(f"{op.name}: {e}")
        return errs

    def infer_types(self, op: Op, ctx: ShapeContext) -> list[TensorType]:
        return self.spec.shape(op.attributes, [v.type for v in op.operands], ctx)


for _spec in catalog.all_specs():
    register_op(LayerOpDef(_spec))
