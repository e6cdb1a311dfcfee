"""Running an ONNX artifact with onnxruntime's CPU provider, behind neuralc's input checks.

Inputs go through :func:`~neuralc.runtime.signature.bind_inputs` first, exactly as the
reference interpreter checks them, so a wrong shape or dtype is the same one-line message on
every target. Token indices are range-checked against the Embedding they feed: ONNX's Gather
would wrap a negative index around silently, where the reference refuses it.

What onnxruntime refuses at run time is an :class:`~neuralc.runtime.signature.InputError`
that quotes it and names the model, never a traceback out of its bindings; and every output's
shape is checked against the network's result type at the bound sizes, so a graph that
computes a different shape is refused rather than returned.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.backends.base import Artifact, Executable
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op, func_body
from neuralc.ir.dims import evaluate
from neuralc.ir.types import TensorType, shape_str
from neuralc.runtime.signature import InputError, bind_inputs, input_names, select_func
from neuralc.runtime.sizes import check_run

_NUMPY_OF_ONNX = {"tensor(float)": np.float32, "tensor(float16)": np.float16,
                  "tensor(double)": np.float64, "tensor(int64)": np.int64,
                  "tensor(int32)": np.int32, "tensor(int8)": np.int8, "tensor(bool)": np.bool_}


@functools.cache
def ort_errors() -> tuple[type[BaseException], ...]:
    """The exception classes onnxruntime raises from ``InferenceSession.run`` (Fail,
    InvalidArgument, RuntimeException, ...: its bindings define one per status code)."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(v for v in vars(state).values()
                 if isinstance(v, type) and issubclass(v, Exception))


def _result_types(func: Op) -> list[TensorType]:
    for op in func_body(func).ops:
        if op.name == "func.return":
            return [v.type for v in op.operands]
    return []


def _sizes(env: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(env.items())) or "its static sizes"


class OnnxExecutable(Executable):
    """An onnxruntime session over the artifact; ``exe(inputs)`` -> list of numpy outputs."""

    def __init__(self, artifact: Artifact, model: CompiledModel, threads: int | None = None):
        import onnxruntime as ort

        self.model = model
        self.func = select_func(model.module)
        self.names = input_names(self.func)
        self.ranges = model.module.attributes.get("dims", {})
        self.constraints = model.module.attributes.get("dim_constraints")
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
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.result_types = _result_types(self.func)
        info = getattr(model, "info", None)
        self.what = (f"the ONNX model of network '{info.name if info else '?'}' "
                     f"({Path(model.filename).name})")
        # A refused run is reported as an InputError; onnxruntime's own log of it would only
        # repeat the message on stderr.
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4

    def __call__(self, inputs: Any) -> list[np.ndarray]:
        arrays, env = bind_inputs(self.func, inputs, self.ranges)
        # The run-time checks every target shares: layer sizes, token indices, dim ranges.
        check_run(self.func, arrays, env, self.constraints)
        feeds = {n: np.ascontiguousarray(a.astype(t, copy=False))
                 for n, a, t in zip(self.onnx_names, arrays, self.input_types)}
        try:
            outputs = list(self.session.run(None, feeds, self.run_options))
        except ort_errors() as e:
            raise InputError(f"onnxruntime refused to run {self.what} at {_sizes(env)}: "
                             f"{' '.join(str(e).split())}") from None
        self._check_outputs(outputs, env)
        return outputs

    def _check_outputs(self, outputs: list[np.ndarray], env: dict[str, int]) -> None:
        """Each output's shape must be its result type's at the bound sizes."""
        if len(outputs) != len(self.result_types):
            raise InputError(f"onnxruntime returned {len(outputs)} outputs for {self.what}, "
                             f"which has {len(self.result_types)}")
        for i, (y, t) in enumerate(zip(outputs, self.result_types)):
            if t.shape is None:
                continue
            want: list[int | None] = []
            for d in t.shape:
                try:
                    want.append(evaluate(d, env))
                except KeyError:  # a symbol no input determines: any size
                    want.append(None)
            if len(want) != y.ndim or any(w is not None and w != n for w, n in zip(want, y.shape)):
                expected = shape_str(tuple(d if w is None else w for d, w in zip(t.shape, want)))
                raise InputError(f"onnxruntime returned output {i} ('{self.output_names[i]}') of "
                                 f"{self.what} with shape {shape_str(y.shape)}, but the network "
                                 f"gives {expected} at {_sizes(env)}; the ONNX model does not "
                                 "compute this network")
