"""``verify``: run the IR verifier as a pass (pipelines use it between stages in tests)."""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass


@register_pass
@dataclass
class VerifyPass(Pass):
    name = "verify"
    level = "any"
    summary = "check the IR's structural invariants"

    def run(self, module: Module, ctx: PassContext) -> None:
        from neuralc.ir.verifier import verify

        for problem in verify(module):
            ctx.diags.error(f"IR verification failed: {problem}")
