"""The pass manager: runs a pipeline, with IR printing, timing, dumps and verification.

``--print-ir-before/after=NAME|all``, ``--time-passes`` and ``--dump-dir`` map onto its fields.
Tests run it with ``verify_each=True`` so that every pass leaves well-formed IR behind.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from neuralc.diagnostics import CompileError, Diagnostic
from neuralc.ir.core import Module
from neuralc.passes.base import Pass, PassContext


def _matches(selection: set[str], name: str) -> bool:
    return "all" in selection or name in selection


@dataclass
class PassManager:
    passes: list[Pass]
    verify_each: bool = False
    print_before: set[str] = field(default_factory=set)
    print_after: set[str] = field(default_factory=set)
    time_passes: bool = False
    dump_dir: Path | None = None
    out: TextIO = field(default_factory=lambda: sys.stderr)
    timings: list[tuple[str, float]] = field(default_factory=list)

    def run(self, module: Module, ctx: PassContext | None = None) -> PassContext:
        """Run every pass in order; stop at the first pass that reports an error."""
        from neuralc.ir.printer import print_module
        from neuralc.ir.verifier import verify

        ctx = ctx or PassContext()
        if self.dump_dir is not None:
            self.dump_dir.mkdir(parents=True, exist_ok=True)
            (self.dump_dir / "00-input.nir").write_text(print_module(module))
        for i, p in enumerate(self.passes, start=1):
            if p.level == "tensor" and any(op.dialect == "graph" for op in module.walk()):
                # A tensor-level pass on graph ops would do nothing or the wrong thing.
                raise CompileError([Diagnostic(
                    "error", f"pass '{p.name}' runs on tensor IR, but the module still holds "
                    "graph ops; run lower-to-tensor before it")])
            if _matches(self.print_before, p.name):
                self.out.write(
                    f"// -----// IR before {p.name} //----- //\n{print_module(module)}\n"
                )
            t0 = time.perf_counter()
            p.run(module, ctx)
            self.timings.append((p.name, time.perf_counter() - t0))
            if ctx.diags.has_errors():
                raise CompileError(list(ctx.diags.diagnostics))
            if self.verify_each:
                problems = verify(module)
                if problems:
                    # The pass broke the IR: an internal error, reported like any diagnostic.
                    raise CompileError([Diagnostic("error", f"IR invalid after pass {p.name}: {q}")
                                        for q in problems])
            if _matches(self.print_after, p.name):
                self.out.write(f"// -----// IR after {p.name} //----- //\n{print_module(module)}\n")
            if self.dump_dir is not None:
                (self.dump_dir / f"{i:02d}-{p.name}.nir").write_text(print_module(module))
        if self.time_passes:
            self.out.write(self.timing_report())
        return ctx

    def timing_report(self) -> str:
        total = sum(t for _, t in self.timings) or 1e-12
        lines = [
            "===-------------------------------------------------------------------------===",
            "                         ... Pass execution timing report ...",
            "===-------------------------------------------------------------------------===",
            f"  Total Execution Time: {total:.4f} seconds",
            "",
            "   Wall Time (%)     Name",
        ]
        for name, t in self.timings:
            lines.append(f"   {t:.4f} ({100 * t / total:5.1f}%)  {name}")
        lines.append(f"   {total:.4f} (100.0%)  Total")
        return "\n".join(lines) + "\n"
