"""``func.func`` and ``func.return``: one function per network, returning its outputs."""

from __future__ import annotations

from neuralc.ir.opdef import (
    STRING,
    DefinedOp,
    attribute,
    region,
    register_op,
    var_operand,
)


@register_op
class FuncOp(DefinedOp):
    name = "func.func"
    body = region()
    sym_name = attribute(STRING)
    # Function attributes are open: the memory plan, the init function and nominal sizes
    # annotate it.
    extra_attrs_allowed = True
    isolated_from_above = True
    fresh_name_scope = True
    module_level = True

    def verify_extra(self) -> list[str]:
        body = self.regions[0].blocks
        if len(body) != 1:
            return ["func.func needs exactly one block"]
        if body[0].terminator is None or body[0].terminator.name != "func.return":
            return ["func.func must end with func.return"]
        return []


@register_op
class ReturnOp(DefinedOp):
    name = "func.return"
    values = var_operand()
    terminator = True

    def verify_extra(self) -> list[str]:
        if self.parent is not None and self.parent.terminator is not self:
            return ["func.return must be the last op of its block"]
        parent = self.parent_op()
        if parent is None or parent.name != "func.func":
            return ["must be inside a func.func"]
        return []
