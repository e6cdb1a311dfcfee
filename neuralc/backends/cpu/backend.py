"""The native CPU target: ``neuralc run model.nr --target cpu``, ``--emit loop-ir|llvm|asm``.

The model's optimised tensor IR is lowered to loops, scheduled for the host's vector width,
written as LLVM IR (:mod:`neuralc.backends.cpu.program`), compiled by llvmlite for the host CPU
(name and features: AVX-512 here) through the on-disk code cache, and run in-process with one
native call per inference (:mod:`neuralc.backends.cpu.runtime`).
"""

from __future__ import annotations

import numpy as np

from neuralc.backends.base import Artifact, Backend, BackendOptions, BackendUnavailable, Executable
from neuralc.backends.registry import register_backend
from neuralc.backends.select import has_module
from neuralc.frontend.model import CompiledModel


@register_backend
class CpuBackend(Backend):
    name = "cpu"
    summary = "native code for this CPU through LLVM (llvmlite), run in-process"
    extension = ".ll"
    extra = ""
    runnable = True

    def check_available(self) -> None:
        if not has_module("llvmlite"):
            raise BackendUnavailable("the cpu target needs llvmlite: pip install llvmlite")

    def compile(self, model: CompiledModel, options: BackendOptions):
        from neuralc.backends.cpu.compile import compile_for_cpu

        self.check_available()
        return compile_for_cpu(model, options.opt, options.precision)

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        """The LLVM IR of the model (weights are bound at load, not embedded)."""
        comp = self.compile(model, options)
        p = comp.program
        meta = {"network": p.network, "symbols": p.symbols, "weights": p.weights,
                "target": comp.spec.key()}
        stem = str(model.info.name) if getattr(model, "info", None) else "model"
        # The loaded form needs the compilation and the weights: kept beside the text.
        meta.update(compilation=comp, weights=weights, use_cache=options.use_cache)
        return Artifact("cpu", f"{stem}.ll", p.llvm_ir.encode(), meta=meta)

    def load(self, artifact: Artifact, model: CompiledModel) -> Executable:
        from neuralc.backends.cpu.runtime import CpuExecutable

        return CpuExecutable(artifact.meta["compilation"], model, artifact.meta["weights"],
                             use_cache=artifact.meta.get("use_cache", True))
