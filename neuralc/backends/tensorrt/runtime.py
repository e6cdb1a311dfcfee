"""Running a serialized TensorRT engine on torch CUDA tensors (TensorRT 10 tensor API:
``set_input_shape``, ``set_tensor_address``, ``execute_async_v3`` on torch's current stream).

The engine holds only what TensorRT compiled for one GPU model; host code in engines is not
allowed (``engine_host_code_allowed`` stays False), so loading runs no code from the file.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from neuralc.backends.base import Executable
from neuralc.backends.tensorrt.build import profile_problem
from neuralc.frontend.model import CompiledModel
from neuralc.runtime.artifact_variants import Runner
from neuralc.runtime.signature import InputError, bind_inputs, select_func
from neuralc.runtime.sizes import check_run


def _torch_dtypes() -> dict[Any, Any]:
    import tensorrt as trt
    import torch

    pairs = [("float32", torch.float32), ("float16", torch.float16), ("bfloat16", torch.bfloat16),
             ("int32", torch.int32), ("int64", torch.int64), ("int8", torch.int8),
             ("bool", torch.bool)]
    return {getattr(trt, n): t for n, t in pairs if hasattr(trt, n)}


class TensorrtRunner(Runner):
    """One engine with one execution context on GPU ``gpu``."""

    native_torch = True

    def __init__(self, engine: bytes, gpu: int, meta: dict[str, Any]):
        import tensorrt as trt
        import torch

        self.torch = torch
        self.gpu = torch.device("cuda", gpu)
        self.device = f"cuda:{gpu}"
        self.profile: dict[str, Any] = meta.get("profile", {})
        self.inputs: list[str] = list(meta.get("inputs", self.profile))
        self.outputs: list[str] = list(meta.get("outputs", []))
        self.dtypes = _torch_dtypes()
        with torch.cuda.device(self.gpu):
            runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
            if hasattr(runtime, "engine_host_code_allowed"):
                runtime.engine_host_code_allowed = False
            self.engine = runtime.deserialize_cuda_engine(engine)
            if self.engine is None:
                raise RuntimeError("TensorRT could not deserialize the engine (another TensorRT "
                                   "version or GPU model built it)")
            self.context = self.engine.create_execution_context()
        self.runtime = runtime

    def run_torch(self, tensors: list[Any]) -> list[Any]:
        torch = self.torch
        for name, t in zip(self.inputs, tensors):
            problem = profile_problem(self.profile, name, tuple(t.shape))
            if problem:
                raise InputError(problem)
        keep = []
        with torch.cuda.device(self.gpu):
            stream = torch.cuda.current_stream(self.gpu)
            for name, t in zip(self.inputs, tensors):
                want = self.dtypes[self.engine.get_tensor_dtype(name)]
                t = t.to(self.gpu, dtype=want).contiguous()
                keep.append(t)
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
            outs = []
            for name in self.outputs:
                shape = tuple(self.context.get_tensor_shape(name))
                o = torch.empty(shape, dtype=self.dtypes[self.engine.get_tensor_dtype(name)],
                                device=self.gpu)
                self.context.set_tensor_address(name, o.data_ptr())
                outs.append(o)
            if not self.context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT failed to run the engine")
            stream.synchronize()
        return outs

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        torch = self.torch
        outs = self.run_torch([torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        return [(o.float() if o.dtype == torch.bfloat16 else o).cpu().numpy() for o in outs]


class TensorrtExecutable(Executable):
    """``neuralc run MODEL.nr --target tensorrt``: numpy in, numpy out, checked inputs."""

    def __init__(self, engine: bytes, model: CompiledModel, meta: dict[str, Any]):
        self.runner = TensorrtRunner(engine, 0, meta)
        self.func = select_func(model.module)
        self.ranges = model.module.attributes.get("dims")
        self.constraints = model.module.attributes.get("dim_constraints")

    def __call__(self, inputs: Any) -> list[np.ndarray]:
        arrays, env = bind_inputs(self.func, inputs, self.ranges)
        check_run(self.func, arrays, env, self.constraints)
        return self.runner.run(arrays)
