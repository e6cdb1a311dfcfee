"""neuralc: a multi-level compiler for neural-network models written in the Neural DSL.

``neuralc.compile``, ``neuralc.load``, ``neuralc.check`` and the API's classes live in
:mod:`neuralc.api`; they load on first use, so ``import neuralc`` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("compile", "load", "check", "Model", "Signature", "TensorSpec", "DimSpec",
        "CompileError", "InputError", "WeightsError", "ArtifactError", "UsageError",
        "BackendUnavailable", "NeuralcWarning", "Diagnostic")


def __getattr__(name: str) -> Any:
    if name in _API:
        from neuralc import api

        return getattr(api, name)
    raise AttributeError(f"module 'neuralc' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_API])


__all__ = ["__version__", *_API]
