"""The backend interface: what a target supports, how it emits an artifact, how it runs one.

Every target (onnx, pytorch, keras; later cpu, cuda, tensorrt) is a :class:`Backend`
registered by name. ``emit`` turns a shape-checked model plus its weights into an
:class:`Artifact` (files it can write); ``load`` turns an artifact into an :class:`Executable`
that takes numpy arrays and returns numpy arrays, checking inputs against the model's symbolic
signature first. A layer a backend cannot express is a :class:`BackendError` naming the layer
and its ``.nr`` line, never a silently different result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from neuralc.diagnostics import Diagnostic
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op


class BackendError(Exception):
    """The model cannot be compiled for this target; carries located diagnostics."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.message for d in diagnostics))


class BackendUnavailable(Exception):
    """The target's packages are not installed (a usage problem: say which extra to install)."""


@dataclass
class BackendOptions:
    opset: int = 17
    precision: str = "fp32"  # fp32 | fp16 | bf16 | mixed
    keep_io_fp32: bool = False
    hpo: bool = False
    opt: int = 2  # the -O level, for targets that compile the optimised tensor IR
    use_cache: bool = True  # the native code cache (--no-cache)
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Artifact:
    """What a backend produced: its main file's name and bytes, plus side files."""

    target: str
    filename: str
    data: bytes
    side_files: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def write(self, path: str | Path) -> list[Path]:
        """Write the main file at ``path`` and side files beside it; returns what was written."""
        path = Path(path)
        path.write_bytes(self.data)
        out = [path]
        for name, data in self.side_files.items():
            p = path.parent / name
            p.write_bytes(data)
            out.append(p)
        return out


class Executable:
    """A loaded artifact: ``exe(inputs)`` -> list of output arrays."""

    def __call__(self, inputs: list[np.ndarray] | dict[str, np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError


class Backend:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    extension: ClassVar[str] = ""
    extra: ClassVar[str] = ""  # the pip extra that installs its packages
    runnable: ClassVar[bool] = False  # whether `neuralc run --target NAME` can execute it

    def check_available(self) -> None:
        """Raise BackendUnavailable naming the missing package and the extra to install."""

    def unsupported(self, op: Op) -> str | None:
        """Why ``op`` cannot be expressed on this target, or None if it can."""
        return None

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        raise NotImplementedError

    def load(self, artifact: Artifact, model: CompiledModel) -> Executable:
        raise NotImplementedError(f"target '{self.name}' produces source code; it is not run")
