"""The ``onnx`` variant: neuralc's ONNX model, run by onnxruntime's CPU provider.

The model is the onnx backend's output with its inputs and outputs kept in float32 (every
variant shares one signature). Initializers that are neuralc's weights byte for byte are not
stored twice: they become standard ONNX external data pointing into the artifact's
``weights.safetensors`` (safetensors stores raw little-endian tensors, so an offset and a
length address each one). Derived constants (transposed dense weights, reordered RNN gates,
float16 copies) stay in the ONNX file. Loading hands both files to onnxruntime, which reads
the protobuf; nothing is unpickled or executed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.backends.base import Artifact, BackendOptions, BackendUnavailable
from neuralc.backends.registry import get_backend
from neuralc.runtime.artifact import WEIGHTS
from neuralc.runtime.artifact_variants import (
    BuildInput,
    LoadInput,
    Runner,
    Variant,
    VariantEntry,
    VariantUnavailable,
    register_variant,
)

MEMBER = "variants/onnx/model.onnx"
_PROTOBUF_LIMIT = 2**31 - 1


def point_at_weights(proto: Any, weights_file: bytes,
                     offsets: dict[str, tuple[int, int]]) -> int:
    """Make every initializer equal to a weight in ``weights_file`` external data into it;
    returns how many were shared."""
    import onnx
    from onnx.external_data_helper import set_external_data

    shared = 0
    for init in proto.graph.initializer:
        where = offsets.get(init.name)
        if where is None or not init.HasField("raw_data"):
            continue
        offset, length = where
        if init.raw_data != weights_file[offset:offset + length]:
            continue  # same name, other bytes (a dtype or layout change): keep it inline
        set_external_data(init, location=WEIGHTS, offset=offset, length=length)
        init.data_location = onnx.TensorProto.EXTERNAL
        init.ClearField("raw_data")
        shared += 1
    return shared


class OnnxRunner(Runner):
    device = "cpu"

    def __init__(self, executable: Any):
        self.executable = executable

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.executable(arrays)


@register_variant
class OnnxVariant(Variant):
    kind = "onnx"
    device = "cpu"
    summary = "neuralc's ONNX model, run by onnxruntime's CPU provider"

    def build(self, b: BuildInput) -> list[VariantEntry]:
        from neuralc.backends.onnx.emit import load_artifact_model

        backend = get_backend("onnx")
        if backend is None:
            raise VariantUnavailable("the onnx backend is not built")
        try:
            backend.check_available()
        except BackendUnavailable as e:
            raise VariantUnavailable(str(e)) from None
        if b.precision not in ("fp32", "fp16"):
            raise VariantUnavailable(f"precision {b.precision}: onnxruntime's CPU provider has "
                                     "no bfloat16 kernels, so neuralc writes fp32 or fp16 ONNX")
        options = BackendOptions(opset=b.opset, precision=b.precision, keep_io_fp32=True)
        proto = load_artifact_model(backend.emit(b.model, b.weights, options))
        shared = point_at_weights(proto, b.weights_file, b.weight_offsets)
        if proto.ByteSize() > _PROTOBUF_LIMIT:
            raise VariantUnavailable("the ONNX model's own constants pass protobuf's 2 GB")
        meta = {"opset": b.opset, "ir_version": int(proto.ir_version),
                "precision": b.precision, "shared_weights": shared}
        return [VariantEntry("onnx", self.kind, self.device, self.summary,
                             requires={"modules": ["onnxruntime"]},
                             files={MEMBER: proto.SerializeToString()}, meta=meta)]

    def load(self, li: LoadInput) -> Runner:
        from neuralc.backends.onnx.runtime import OnnxExecutable

        side = {WEIGHTS: li.weights_file} if li.entry.meta.get("shared_weights") else {}
        artifact = Artifact("onnx", "model.onnx", li.files[MEMBER], side_files=side)
        return OnnxRunner(OnnxExecutable(artifact, li.model))
