"""The peers: what users run today, on the same model with the same weights.

- ``torch``: neuralc's generated PyTorch module (``--target pytorch``), eager, in
  ``torch.inference_mode``, with ``torch.set_num_threads(--threads)``.
- ``torch-compile``: the same module under ``torch.compile`` (TorchInductor). Its preparation
  includes the first call, where Inductor compiles; the cell points Inductor's cache at a fresh
  folder (``TORCHINDUCTOR_CACHE_DIR``, set by the parent before torch loads), so the cold
  preparation compiles and the warm one (after ``torch._dynamo.reset()``) hits Inductor's
  FX-graph cache.
- ``onnxruntime``: neuralc's ONNX in a plain ``InferenceSession`` (CPU provider, default graph
  optimisations, ``--threads`` intra-op threads), without neuralc's input checks.

Low precision: the torch peers cast the module and the float inputs to float16 or bfloat16
(``mixed`` runs fp32 weights under ``torch.autocast`` with float16); onnxruntime runs
neuralc's float16 ONNX (bf16 and mixed are refused by the onnx target, so by this peer).
Outputs come back as float32 numpy arrays for the check.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from typing import Any

import numpy as np

from neuralc.bench.context import CellContext
from neuralc.bench.targets import Prepared

_module_ids = itertools.count()


def setup_torch(ctx: CellContext) -> None:
    """Write neuralc's PyTorch module and its weights into the cell's folder (neuralc's work,
    done before the peer's preparation is timed)."""
    from neuralc.backends.base import BackendOptions
    from neuralc.backends.registry import get_backend

    backend = get_backend("pytorch")
    assert backend is not None
    backend.emit(ctx.model, ctx.weights, BackendOptions()).write(ctx.tmp / "peer_model.py")


def setup_onnxruntime(ctx: CellContext) -> None:
    """Write neuralc's ONNX for the cell's precision into the cell's folder."""
    from neuralc.backends.base import BackendOptions
    from neuralc.backends.registry import get_backend

    backend = get_backend("onnx")
    assert backend is not None
    options = BackendOptions(precision=ctx.precision, keep_io_fp32=ctx.precision != "fp32",
                             opset=int(ctx.spec.get("opset", 17)))
    backend.emit(ctx.model, ctx.weights, options).write(ctx.tmp / "peer_model.onnx")


def _generated_module(ctx: CellContext) -> Any:
    """neuralc's PyTorch module (written by :func:`setup_torch`), imported afresh."""
    src = ctx.tmp / "peer_model.py"
    name = f"neuralc_bench_peer_{next(_module_ids)}"
    spec = importlib.util.spec_from_file_location(name, src)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _torch_dtype(precision: str) -> Any:
    import torch

    return {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)


def _eager(ctx: CellContext) -> tuple[Any, list[Any], Callable[[], Any]]:
    """(module, input tensors, autocast context factory) at the cell's precision."""
    import contextlib

    import torch

    torch.set_num_threads(ctx.threads)
    mod = _generated_module(ctx)
    net = mod.build_model().eval()
    mod.load_weights(net, mod.WEIGHTS_FILE)
    dtype = _torch_dtype(ctx.precision)
    net = net.to(dtype)
    xs = [torch.from_numpy(x).to(dtype) if x.dtype.kind == "f" else torch.from_numpy(x)
          for x in ctx.inputs]
    if ctx.precision == "mixed":
        return net, xs, lambda: torch.autocast("cpu", dtype=torch.float16)
    return net, xs, contextlib.nullcontext


def _to_numpy(out: Any) -> list[np.ndarray]:
    import torch

    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    return [o.detach().float().numpy() if o.dtype.is_floating_point else o.detach().numpy()
            for o in (t if isinstance(t, torch.Tensor) else torch.as_tensor(t) for t in outs)]


def prepare_torch(ctx: CellContext, phase: str) -> Prepared:
    import torch

    net, xs, autocast = _eager(ctx)

    def call() -> list[np.ndarray]:
        with torch.inference_mode(), autocast():
            return _to_numpy(net(*xs))

    return Prepared(call, None, ctx.threads)


def prepare_torch_compile(ctx: CellContext, phase: str) -> Prepared:
    import torch

    if phase == "warm":
        torch._dynamo.reset()  # forget the in-process compile; Inductor's disk cache stays
    net, xs, autocast = _eager(ctx)
    compiled = torch.compile(net, dynamic=False)

    def call() -> list[np.ndarray]:
        with torch.inference_mode(), autocast():
            return _to_numpy(compiled(*xs))

    call()  # Inductor compiles here: part of preparing, not of the first timed call
    return Prepared(call, None, ctx.threads)


def prepare_onnxruntime(ctx: CellContext, phase: str) -> Prepared:
    import onnxruntime as ort

    path = ctx.tmp / "peer_model.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ctx.threads
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feeds = {i.name: x for i, x in zip(sess.get_inputs(), ctx.inputs)}

    def call() -> list[np.ndarray]:
        return [np.asarray(y) for y in sess.run(None, feeds)]

    return Prepared(call, None, ctx.threads)


PEER_RUNNERS: dict[str, Callable[[CellContext, str], Prepared]] = {
    "torch": prepare_torch,
    "torch-compile": prepare_torch_compile,
    "onnxruntime": prepare_onnxruntime,
}
PEER_SETUP: dict[str, Callable[[CellContext], None]] = {
    "torch": setup_torch,
    "torch-compile": setup_torch,
    "onnxruntime": setup_onnxruntime,
}
