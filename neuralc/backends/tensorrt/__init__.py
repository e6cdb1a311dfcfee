"""The TensorRT target: ``neuralc MODEL.nr --target tensorrt`` builds a TensorRT engine.

The engine is built from neuralc's own ONNX output (inputs and outputs in float32, the inside
in the ``--precision`` type: TensorRT 10+ networks are strongly typed, so fp16 comes from the
typed ONNX) through TensorRT's documented Python API: ``tensorrt.Builder``, ``OnnxParser``,
one optimisation profile covering every symbolic dim (``build.py``), a timing cache, and a
runtime over torch CUDA tensors (``runtime.py``). In an artifact the serialized engine is one
variant keyed by GPU and TensorRT version (``variant.py``).

TensorRT cannot be installed on the machines that build and test neuralc, so this target has
not been run in this project's CI: everything here is import-guarded, and the CLI says plainly
what is missing. ``-o m.engine`` writes the bare engine; ``-o m.ncz`` an artifact that also
holds the ONNX model it came from.
"""

from __future__ import annotations

import numpy as np

from neuralc.backends.base import (
    Artifact,
    Backend,
    BackendOptions,
    BackendUnavailable,
    Executable,
)
from neuralc.backends.registry import register_backend
from neuralc.frontend.model import CompiledModel


@register_backend
class TensorrtBackend(Backend):
    name = "tensorrt"
    summary = "TensorRT engine built from neuralc's ONNX output (NVIDIA GPUs; not run in CI)"
    extension = ".engine"
    extra = ""  # no pip extra: TensorRT comes with NVIDIA's wheels for the machine's CUDA
    runnable = True

    def check_available(self) -> None:
        from neuralc.backends.tensorrt.build import missing

        problem = missing()
        if problem:
            raise BackendUnavailable(problem)

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        from neuralc.backends.tensorrt.build import build_engine, onnx_for_engine

        self.check_available()
        onnx_artifact = onnx_for_engine(model, weights, options.opset, options.precision)
        built = build_engine(onnx_artifact, model, options.precision,
                             int(options.extra.get("gpu", 0)))
        return Artifact(self.name, f"{model.info.name}.engine", built.engine, meta=built.meta)

    def load(self, artifact: Artifact, model: CompiledModel) -> Executable:
        from neuralc.backends.tensorrt.runtime import TensorrtExecutable

        self.check_available()
        return TensorrtExecutable(artifact.data, model, artifact.meta)
