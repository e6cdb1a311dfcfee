"""The keras target: a Keras 3 source file for a model (functional API), plus its weights.

``neuralc model.nr --target keras -o model.py`` writes ``model.py`` (build_model(),
load_weights_safetensors(), train(), a command line) and, beside it, ``model.safetensors``:
the weights neuralc compiled in (``--weights`` or the seeded initialiser), in neuralc's
PyTorch names and layouts, which the generated loader converts. Writing the source needs
nothing but neuralc; running it needs keras and a Keras backend (the ``keras`` extra installs
keras and torch; the file was tested with ``KERAS_BACKEND=torch``). The target writes code, so
``neuralc run --target keras`` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from neuralc.backends.base import Artifact, Backend, BackendOptions
from neuralc.backends.registry import register_backend
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op

WEIGHTS_SUFFIX = ".safetensors"


@dataclass
class KerasArtifact(Artifact):
    """The source, and its weights file named after it (the source finds it by its own name)."""

    weights: bytes = b""

    def write(self, path: str | Path) -> list[Path]:
        path = Path(path)
        path.write_bytes(self.data)
        weights = path.with_suffix(WEIGHTS_SUFFIX)
        weights.write_bytes(self.weights)
        return [path, weights]


@register_backend
class KerasBackend(Backend):
    name: ClassVar[str] = "keras"
    summary: ClassVar[str] = "Keras 3 source (functional API) with a safetensors weights loader"
    extension: ClassVar[str] = ".py"
    extra: ClassVar[str] = "keras"
    runnable: ClassVar[bool] = False

    def check_available(self) -> None:
        """Writing Keras source needs no package beyond neuralc's own; running it needs the
        ``keras`` extra, which the generated file's imports ask for."""

    def unsupported(self, op: Op) -> str | None:
        from neuralc.backends.keras.codegen import unsupported_reason

        return unsupported_reason(op)

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        from safetensors.numpy import save

        from neuralc.backends.keras.codegen import generate

        source = generate(model, options)
        # copy(order="C"), not ascontiguousarray, which turns a 0-d scalar into shape (1,).
        tensors = {k: np.asarray(v).copy(order="C") for k, v in weights.items()}
        return KerasArtifact(self.name, Path(model.filename).stem + ".py", source.encode(),
                             meta={"network": model.info.name}, weights=save(tensors))
