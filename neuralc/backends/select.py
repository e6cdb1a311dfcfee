"""Automatic target selection: the best built target this machine can run.

``--target auto`` asks here. A CUDA GPU would pick the CUDA backend once it is built; today the
order is: ONNX through onnxruntime (its CPU provider runs the whole catalog), else the numpy
reference interpreter, which always works. The choice is printed, never hidden.
"""

from __future__ import annotations

import importlib.util


def has_cuda_gpu() -> bool:
    """A CUDA device visible to torch (torch is optional: no torch, no GPU we can use)."""
    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())


def runnable_targets() -> list[str]:
    """Built targets that can execute a model here, best first."""
    from neuralc.backends.base import BackendUnavailable
    from neuralc.backends.registry import get_backend

    out: list[str] = []
    for name in ("onnx",):
        backend = get_backend(name)
        if backend is None or not backend.runnable:
            continue
        try:
            backend.check_available()
        except BackendUnavailable:
            continue
        out.append(name)
    return out + ["reference"]


def select_target() -> str:
    return runnable_targets()[0]
