"""From a shape-checked model to native code: the ``-O`` tensor pipeline, the loop level, the
schedule, LLVM IR, and an object file (through the on-disk code cache)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from neuralc.backends.cpu.host import TargetSpec
from neuralc.backends.cpu.program import Program, generate
from neuralc.driver import tensor_stage
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Module
from neuralc.passes.manager import PassManager
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.passes.registry import parse_pipeline


def loop_passes(vector_bits: int) -> list[str]:
    """The loop level of the cpu target, after the tensor stage."""
    return ["lower-to-loops", f"schedule{{vector_bits={vector_bits}}}"]


@dataclass
class CpuCompilation:
    """Everything one compile produced, kept for ``--emit`` and the runtime."""

    tensor: Module
    loops: Module
    program: Program
    spec: TargetSpec
    seconds: dict[str, float] = field(default_factory=dict)


def compile_for_cpu(model: CompiledModel, level: int = 2, precision: str = "fp32",
                    spec: TargetSpec | None = None) -> CpuCompilation:
    """The tensor module, its loop module and the LLVM program for ``spec`` (the host)."""
    spec = spec or TargetSpec.host()
    t0 = time.perf_counter()
    stage = tensor_pipeline(level, precision, "cpu")[len(pipeline(level)):]
    tensor, _ = tensor_stage(model, stage)
    t1 = time.perf_counter()
    loops = tensor.clone()
    PassManager(parse_pipeline(",".join(loop_passes(spec.vector_bits)))).run(loops)
    t2 = time.perf_counter()
    program = generate(loops, arch=spec.arch)
    t3 = time.perf_counter()
    return CpuCompilation(tensor, loops, program, spec,
                          {"tensor": t1 - t0, "loops": t2 - t1, "llvm-ir": t3 - t2})
