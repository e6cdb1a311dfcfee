"""neuralc's own targets in a cell: how each is prepared (cold, then warm) and called.

``prepare(ctx, phase)`` turns the model's graph IR into a callable for the cell's inputs and
returns a :class:`Prepared`. It runs twice per cell: ``cold`` with empty caches, ``warm``
with the caches the cold run filled; the difference is what a cache saves.

- ``reference``: the ``-O`` tensor pipeline, then the numpy interpreter with the weights
  loaded (its init function run once). No cache.
- ``onnx``: neuralc's ONNX (``keep_io_fp32`` for low precision) in an onnxruntime session
  behind neuralc's input checks, ``--threads`` intra-op threads. No cache of neuralc's.
- ``cpu``: tensor pipeline, loops, LLVM IR, then the object code through the native code
  cache, which the cell points at a fresh folder of its own (``NEURALC_CACHE_DIR``): the cold
  run compiles and stores, the warm run loads. The generated code's thread pool gets
  ``--threads`` threads (the caller included); the cell reports how many it started.
- anything else that is runnable (``cuda``, ``tensorrt``): the backend's own ``emit`` and
  ``load``; its caches are its own.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuralc.bench.context import CellContext


@dataclass
class Prepared:
    """A runnable cell: ``call()`` runs one inference on the cell's inputs."""

    call: Callable[[], list[np.ndarray]]
    arena_bytes: int | None = None
    threads: int | None = None
    cache: str | None = None  # "hit" or "miss" where the runner has a code cache


def _arena(module, sizes: dict[str, int]) -> int | None:
    """The planned arena of the network at ``sizes`` (the memory plan's size)."""
    from neuralc.ir.dims import parse_dim
    from neuralc.passes.analysis import eval_dim

    for func in module.networks:
        arena = func.attributes.get("arena_bytes")
        if arena is not None:
            return int(eval_dim(parse_dim(str(arena)), sizes))
    return None


def _stage(ctx: CellContext, target: str):
    from neuralc.driver import tensor_stage
    from neuralc.passes.pipelines import pipeline, tensor_pipeline

    passes = tensor_pipeline(ctx.opt, ctx.precision, target)[len(pipeline(ctx.opt)):]
    module, _ = tensor_stage(ctx.model, passes)
    return module


def prepare_reference(ctx: CellContext, phase: str) -> Prepared:
    from neuralc.runtime.interpreter import Interpreter

    module = _stage(ctx, "reference")
    interp = Interpreter(module, check_types=False).load(ctx.weights)
    inputs = ctx.inputs

    def call() -> list[np.ndarray]:
        out = interp.run(inputs)
        interp.values.clear()  # the interpreter keeps every value for tests; not here
        return out

    return Prepared(call, _arena(module, ctx.sizes), ctx.threads)


def _options(ctx: CellContext):
    from neuralc.backends.base import BackendOptions

    return BackendOptions(precision=ctx.precision, keep_io_fp32=ctx.precision != "fp32",
                          opt=ctx.opt, opset=int(ctx.spec.get("opset", 17)))


def prepare_onnx(ctx: CellContext, phase: str) -> Prepared:
    from neuralc.backends.onnx.runtime import OnnxExecutable
    from neuralc.backends.registry import get_backend

    backend = get_backend("onnx")
    assert backend is not None
    backend.check_available()
    exe = OnnxExecutable(backend.emit(ctx.model, ctx.weights, _options(ctx)), ctx.model,
                         threads=ctx.threads)
    inputs = ctx.inputs
    return Prepared(lambda: exe(inputs), None, ctx.threads)


def prepare_cpu(ctx: CellContext, phase: str) -> Prepared:
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.runtime import CpuExecutable
    from neuralc.passes.analysis import eval_dim

    os.environ["NEURALC_CACHE_DIR"] = str(ctx.tmp / "native-code-cache")
    comp = compile_for_cpu(ctx.model, ctx.opt, ctx.precision)
    exe = CpuExecutable(comp, ctx.model, ctx.weights, use_cache=True, threads=ctx.threads)
    inputs = ctx.inputs
    arena = int(eval_dim(comp.program.arena_bytes, ctx.sizes))
    return Prepared(lambda: exe(inputs), arena, exe.threads,
                    "hit" if exe.jit.from_cache else "miss")


def prepare_backend(ctx: CellContext, phase: str) -> Prepared:
    """Any other runnable target, through its backend's ``emit`` and ``load``."""
    from neuralc.backends.registry import get_backend

    name = str(ctx.spec["runner"])
    backend = get_backend(name)
    if backend is None:
        raise LookupError(f"target '{name}' is not built in this neuralc")
    backend.check_available()
    exe = backend.load(backend.emit(ctx.model, ctx.weights, _options(ctx)), ctx.model)
    inputs = ctx.inputs
    return Prepared(lambda: exe(inputs), None, None)


TARGET_RUNNERS: dict[str, Callable[[CellContext, str], Prepared]] = {
    "reference": prepare_reference,
    "onnx": prepare_onnx,
    "cpu": prepare_cpu,
}


def prepare_target(ctx: CellContext, phase: str) -> Prepared:
    return TARGET_RUNNERS.get(str(ctx.spec["runner"]), prepare_backend)(ctx, phase)
