"""The ONNX target: ``neuralc model.nr --target onnx`` writes a ``.onnx`` file.

The model is written with ``onnx.helper`` from the graph IR (no exporter in between): one small
emitter per layer kind (``layers_*.py``), the builder that keeps layouts and opset forms right
(``builder.py``), the walk over the network and the file (``emit.py``), float16 (``precision.py``)
and an onnxruntime executable for ``neuralc run --target onnx`` (``runtime.py``). onnx and
onnxruntime load only when the target is used, so ``import neuralc`` stays light.
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
from neuralc.backends.select import has_module
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op


@register_backend
class OnnxBackend(Backend):
    name = "onnx"
    summary = "ONNX model (onnx.helper), run with onnxruntime's CPU provider"
    extension = ".onnx"
    extra = "onnx"
    runnable = True

    def check_available(self) -> None:
        missing = [m for m in ("onnx", "onnxruntime") if not has_module(m)]
        if missing:
            raise BackendUnavailable(
                f"the onnx target needs {' and '.join(missing)}: pip install 'neuralc[onnx]'")

    def unsupported(self, op: Op, options: BackendOptions | None = None) -> str | None:
        """Why ``op`` cannot be written at ``options.opset`` (the default opset when no options
        are given), from a one-op trial; None if it can."""
        from neuralc.backends.onnx.builder import Builder, Unsupported
        from neuralc.backends.onnx.emit import emit_op
        from neuralc.runtime.weights import WeightsError, init_weight, op_weights

        try:
            weights = {w.name: init_weight(w.name, w.spec) for w in op_weights(op)}
        except WeightsError as e:
            return str(e)
        b = Builder((options or BackendOptions()).opset, weights)
        inputs = [b.val(v.type, b.fresh(f"in{i}")) for i, v in enumerate(op.operands)]
        try:
            emit_op(b, op, inputs)
        except Unsupported as e:
            return e.reason
        return None

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        from neuralc.backends.onnx.emit import build_model, to_artifact

        self.check_available()
        onnx_model = build_model(model, weights, options)
        stem = str(model.info.name) if getattr(model, "info", None) else "model"
        return to_artifact(onnx_model, f"{stem}.onnx", options)

    def load(self, artifact: Artifact, model: CompiledModel) -> Executable:
        from neuralc.backends.onnx.runtime import OnnxExecutable

        self.check_available()
        return OnnxExecutable(artifact, model)
