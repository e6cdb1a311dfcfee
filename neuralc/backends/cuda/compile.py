"""From a shape-checked model to the cuda target's Python module: the ``-O`` tensor pipeline
(with the cuda layout at ``-O3``: channels-first convolutions), ``lower-to-loops`` (no cpu
schedule: blocks are chosen by the Triton code generator), then Triton source."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from neuralc.backends.base import BackendError
from neuralc.backends.cuda.kernel_codegen import CodegenOptions
from neuralc.backends.cuda.module import CompileErrors, ProgramSource, generate_program
from neuralc.diagnostics import Diagnostic
from neuralc.driver import tensor_stage
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Module
from neuralc.passes.analysis import nominal_sizes
from neuralc.passes.manager import PassManager
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.passes.registry import parse_pipeline


@dataclass
class CudaCompilation:
    """Everything one compile produced, kept for ``--emit`` and the runtime."""

    tensor: Module
    loops: Module
    program: ProgramSource
    precision: str
    level: int
    allow_tf32: bool
    seconds: dict[str, float] = field(default_factory=dict)


def loop_module(model: CompiledModel, level: int, precision: str) -> tuple[Module, Module]:
    """The optimised tensor module and its loop module for the cuda target."""
    stage = tensor_pipeline(level, precision, "cuda")[len(pipeline(level)):]
    tensor, _ = tensor_stage(model, stage)
    loops = tensor.clone()
    PassManager(parse_pipeline("lower-to-loops")).run(loops)
    return tensor, loops


def compile_for_cuda(model: CompiledModel, level: int = 2, precision: str = "fp32",
                     allow_tf32: bool = False) -> CudaCompilation:
    """The Triton module of ``model``; a BackendError at each kernel's ``.nr`` line that the
    cuda target refuses (with the reason)."""
    t0 = time.perf_counter()
    tensor, loops = loop_module(model, level, precision)
    t1 = time.perf_counter()
    options = CodegenOptions(allow_tf32=allow_tf32, nominal=nominal_sizes(loops))
    title = (f"{model.info.name} compiled by neuralc for CUDA through Triton (-O{level}, "
             f"{precision}{', TF32 allowed' if allow_tf32 else ''}) from {model.filename}.")
    try:
        program = generate_program(loops, options, title=title)
    except CompileErrors as e:
        raise BackendError([Diagnostic("error", str(err), err.location) for err in e.errors]) \
            from None
    t2 = time.perf_counter()
    return CudaCompilation(tensor, loops, program, precision, level, allow_tf32,
                           {"tensor+loops": t1 - t0, "triton": t2 - t1})
