"""The graph dialect: one op class per layer kind, generated from the layer catalog.

``graph.<keras_name>`` ops carry the layer's parameters as attributes (canonical names, every
default filled in), ``name`` (the layer name that keys its weights) and optionally ``device``
(the ``@ "cuda"`` placement hint). The class of each is made here from its catalog entry:
verification and shape inference ask the entry, so a layer is still defined once.
"""

from __future__ import annotations

from typing import ClassVar

from neuralc.ir.opdef import (
    STRING,
    AnyAttr,
    AttrDef,
    DefinedOp,
    register_op,
    var_operand,
    var_result,
)
from neuralc.ir.shapes import ShapeContext
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.layers.catalog import LayerSpec, ParamError


class LayerOp(DefinedOp):
    """The base of the graph ops: counts, attributes and the shape rule come from ``spec``."""

    spec: ClassVar[LayerSpec]
    inputs = var_operand()
    outputs = var_result()
    layer_name = AttrDef(STRING, key="name")
    device = AttrDef(STRING, optional=True)

    def verify_structure(self) -> list[str]:
        """The declarations' checks, and the operand and result counts the layer needs."""
        spec, errs = self.spec, super().verify_structure()
        if spec.arity is not None and not spec.value_params() and len(self.operands) != spec.arity:
            errs.append(f"expects {spec.arity} operand(s), got {len(self.operands)}")
        if spec.arity is None and len(self.operands) < 2:
            errs.append("needs at least two operands")
        if spec.value_params() and spec.arity is not None:
            refs = sum(1 for p in spec.value_params() if self.attributes.get(p.name) is not None)
            if len(self.operands) != spec.arity + refs:
                errs.append(f"needs {spec.arity + refs} operands, has {len(self.operands)}")
        try:
            want = spec.results(self.attributes) if spec.num_results is not None else 1
        except (KeyError, TypeError):
            want = len(self.results)
        if len(self.results) != want:
            errs.append(f"expects {want} result(s), got {len(self.results)}")
        return errs

    def verify_extra(self) -> list[str]:
        """Each parameter in the canonical form the catalog gives it, and the layer's check."""
        spec, errs = self.spec, []
        for p in spec.params:
            if p.name not in self.attributes:
                continue  # reported as a missing attribute by the declarations
            value = self.attributes[p.name]
            if value is None and not p.required and p.default is None:
                continue
            try:
                canon = p.type.convert(value, p.name)
            except ParamError as e:
                errs.append(str(e))
                continue
            if canon != value:
                errs.append(f"attribute '{p.name}' is not in canonical form ({canon!r})")
        if spec.check is not None and not errs:
            try:
                spec.check(self.attributes)
            except ParamError as e:
                errs.append(str(e))
        return errs

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        return self.spec.shape(self.attributes, [v.type for v in self.operands], ctx)


def layer_op_class(spec: LayerSpec) -> type[LayerOp]:
    """The op class of one catalog entry: a parameter is a required attribute (its value may
    be None where the parameter's default is None); the catalog converts and checks values."""
    cls = type(f"{spec.name}Op", (LayerOp,), {"name": spec.op_name, "spec": spec})
    params = {p.name: AttrDef(AnyAttr(), key=p.name) for p in spec.params}
    cls.attr_defs = {**cls.attr_defs, **params}
    return cls


for _spec in catalog.all_specs():
    register_op(layer_op_class(_spec))
