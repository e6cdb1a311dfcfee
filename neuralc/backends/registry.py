"""Backends by name. Each backend package registers itself when imported."""

from __future__ import annotations

import importlib

from neuralc.backends.base import Backend

_BACKENDS: dict[str, type[Backend]] = {}

# Packages that register a backend on import (their heavy dependencies load lazily).
_MODULES = {
    "onnx": "neuralc.backends.onnx",
    "pytorch": "neuralc.backends.pytorch",
    "keras": "neuralc.backends.keras",
    "cpu": "neuralc.backends.cpu.backend",
    "cuda": "neuralc.backends.cuda.backend",
    "tensorrt": "neuralc.backends.tensorrt",
}


def register_backend(cls: type[Backend]) -> type[Backend]:
    _BACKENDS[cls.name] = cls
    return cls


def get_backend(name: str) -> Backend | None:
    """The backend called ``name``, or None if it is not built."""
    if name not in _BACKENDS and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name != _MODULES[name]:
                raise
    cls = _BACKENDS.get(name)
    return cls() if cls else None


def built_targets() -> list[str]:
    return [n for n in _MODULES if get_backend(n) is not None]
