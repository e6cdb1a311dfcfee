"""The ``tensorrt`` artifact variant: one serialized engine, keyed by GPU and TensorRT version.

An engine runs only on the GPU model and TensorRT version that built it, so its entry requires
exactly those (plus the compute capability); selection skips it elsewhere with that reason,
and the ONNX model it was built from (``--target tensorrt`` keeps it) runs instead.
"""

from __future__ import annotations

from neuralc.backends.base import BackendUnavailable
from neuralc.backends.tensorrt.build import build_engine, missing, onnx_for_engine
from neuralc.runtime.artifact_variants import (
    BuildInput,
    LoadInput,
    Runner,
    Variant,
    VariantEntry,
    VariantUnavailable,
    register_variant,
)


@register_variant
class TensorrtVariant(Variant):
    kind = "tensorrt"
    device = "cuda"
    summary = "a TensorRT engine for one GPU model and TensorRT version"

    def build(self, b: BuildInput) -> list[VariantEntry]:
        problem = missing()
        if problem:
            raise VariantUnavailable(problem)
        try:
            onnx_artifact = onnx_for_engine(b.model, b.weights, b.opset, b.precision)
            built = build_engine(onnx_artifact, b.model, b.precision, int(b.options.get("gpu", 0)))
        except BackendUnavailable as e:
            raise VariantUnavailable(str(e)) from None
        name = f"tensorrt-{built.key}"
        requires = {"modules": ["tensorrt", "torch"],
                    "compute_capability": built.meta["compute_capability"],
                    "gpu_name": built.meta["gpu_name"],
                    "tensorrt_version": built.meta["tensorrt_version"]}
        return [VariantEntry(name, self.kind, self.device, self.summary, requires,
                             {f"variants/{name}/model.engine": built.engine}, built.meta)]

    def load(self, li: LoadInput) -> Runner:
        from neuralc.backends.tensorrt.runtime import TensorrtRunner

        (engine,) = li.files.values()
        return TensorrtRunner(engine, li.gpu or 0, li.entry.meta)
