"""Running an ONNX artifact with onnxruntime's CPU provider, behind neuralc's input checks.

Inputs go through :func:`~neuralc.runtime.signature.bind_inputs` first, exactly as the
reference interpreter checks them, so a wrong shape or dtype is the same one-line message on
every target. Token indices are range-checked against the Embedding they feed: ONNX's Gather
would wrap a negative index around silently, where the reference refuses it.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from neuralc.backends.base import Artifact, Executable
from neuralc.driver import CompiledModel
from neuralc.ir.core import Op, func_body
from neuralc.layers import catalog
from neuralc.runtime.signature import InputError, bind_inputs, input_names, select_func

_NUMPY_OF_ONNX = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                  "tensor(double)": np.float64, "tensor(int64)": np.int64,
                  "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


def _embedding_limit(op: Op) -> int | None:
    """The ``input_dim`` of an Embedding op, or of the Embedding a TimeDistributed wraps."""
    spec = catalog.by_op(op.name)
    attrs = op.attributes
    if spec is catalog.lookup("TimeDistributed"):
        spec, attrs = catalog.inner_layer(attrs["layer"])
    if spec is catalog.lookup("Embedding"):
        return int(attrs["input_dim"])
    return None


def _embedding_limits(model: CompiledModel) -> dict[int, int]:
    """Input index -> the smallest ``input_dim`` of the Embeddings that read it directly."""
    func = select_func(model.module)
    limits: dict[int, int] = {}
    for i, a in enumerate(func_body(func).args):
        dims = [d for d in map(_embedding_limit, a.users()) if d is not None]
        if dims:
            limits[i] = min(dims)
    return limits


class OnnxExecutable(Executable):
    """An onnxruntime session over the artifact; ``exe(inputs)`` -> list of numpy outputs."""

    def __init__(self, artifact: Artifact, model: CompiledModel, threads: int | None = None):
        import onnxruntime as ort

        self.model = model
        self.func = select_func(model.module)
        self.names = input_names(self.func)
        self.ranges = model.module.attributes.get("dims", {})
        self.limits = _embedding_limits(model)
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads is not None:
            opts.intra_op_num_threads = threads
        providers = ["CPUExecutionProvider"]
        if artifact.side_files:
            # External weights are read from files beside the model.
            with tempfile.TemporaryDirectory() as tmp:
                paths = artifact.write(os.path.join(tmp, artifact.filename))
                self.session = ort.InferenceSession(str(paths[0]), opts, providers=providers)
        else:
            self.session = ort.InferenceSession(artifact.data, opts, providers=providers)
        self.input_types = [_NUMPY_OF_ONNX.get(i.type, np.float32)
                            for i in self.session.get_inputs()]
        self.onnx_names = [i.name for i in self.session.get_inputs()]

    def __call__(self, inputs: Any) -> list[np.ndarray]:
        arrays, _ = bind_inputs(self.func, inputs, self.ranges)
        for i, limit in self.limits.items():
            a = arrays[i]
            bad = (a < 0) | (a >= limit)
            if bad.any():
                first = int(a[bad].flat[0])
                raise InputError(f"input '{self.names[i]}' holds the index {first}, out of range "
                                 f"for Embedding(input_dim={limit}) (valid: 0..{limit - 1})")
        feeds = {n: np.ascontiguousarray(a.astype(t, copy=False))
                 for n, a, t in zip(self.onnx_names, arrays, self.input_types)}
        return list(self.session.run(None, feeds))
