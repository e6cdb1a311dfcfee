"""The cuda target: ``neuralc model.nr --target cuda -o model_cuda.py`` writes the Triton
module (:mod:`neuralc.backends.cuda.module`); ``neuralc run model.nr --target cuda`` runs it
in-process (:mod:`neuralc.backends.cuda.runtime`): on an NVIDIA GPU, or with
``TRITON_INTERPRET=1`` in Triton's interpreter on the CPU.

Options (``BackendOptions.extra``): ``allow_tf32`` (float32 ``tl.dot`` in TF32 instead of
IEEE), ``cuda_graphs`` (None: on where there is a GPU), ``autotune``.
"""

from __future__ import annotations

import numpy as np

from neuralc.backends.base import Artifact, Backend, BackendOptions, Executable
from neuralc.backends.registry import register_backend
from neuralc.frontend.model import CompiledModel


@register_backend
class CudaBackend(Backend):
    name = "cuda"
    summary = "Triton kernels generated from the loop IR, run on an NVIDIA GPU"
    extension = ".py"
    extra = "cuda"
    runnable = True

    def check_available(self) -> None:
        from neuralc.backends.cuda.runtime import require_packages

        require_packages()

    def compile(self, model: CompiledModel, options: BackendOptions):
        from neuralc.backends.cuda.compile import compile_for_cuda

        return compile_for_cuda(model, options.opt, options.precision,
                                bool(options.extra.get("allow_tf32", False)))

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        """The generated module (weights are bound when it is loaded, not embedded)."""
        comp = self.compile(model, options)
        stem = str(model.info.name) if getattr(model, "info", None) else "model"
        meta = {"compilation": comp, "weights": weights, "options": dict(options.extra)}
        return Artifact("cuda", f"{stem}_cuda.py", comp.program.text.encode(), meta=meta)

    def load(self, artifact: Artifact, model: CompiledModel) -> Executable:
        from neuralc.backends.cuda.runtime import CudaExecutable

        opts = artifact.meta.get("options", {})
        return CudaExecutable(artifact.meta["compilation"], model, artifact.meta["weights"],
                              cuda_graphs=opts.get("cuda_graphs"),
                              autotune=bool(opts.get("autotune", False)))
