"""The pass interface: a small class with a name, the IR level it expects, options as fields.

As in xDSL, a pass is a dataclass whose fields are its options, so ``--passes=name`` builds it
from the registry and tests build it directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from neuralc.diagnostics import DiagnosticEngine
from neuralc.ir.core import Module

Level = Literal["graph", "tensor", "kernel", "any"]


@dataclass
class PassContext:
    """What a pass may use besides the module: where to report problems."""

    diags: DiagnosticEngine = field(default_factory=DiagnosticEngine)


class Pass:
    name: ClassVar[str] = ""
    level: ClassVar[Level] = "any"
    summary: ClassVar[str] = ""

    def run(self, module: Module, ctx: PassContext) -> None:
        raise NotImplementedError

    def option_problem(self) -> str | None:
        """Why the options' values are unusable (``--passes=layout{target=qq}``), else None.

        ``--passes`` refuses such a pass as a usage error before any work; ``run`` reports
        it when the pass was built in code."""
        return None
