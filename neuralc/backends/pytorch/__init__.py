"""The ``pytorch`` target: a readable PyTorch module with a training script, per network.

``neuralc model.nr --target pytorch [-o model.py]`` writes a self-contained Python file (torch,
numpy and safetensors; optuna for ``search``): ``build_model()``, an ``nn.Module`` whose
``state_dict()`` keys are neuralc's weight names, ``train(model, dataset, ...)`` and
``python model.py train --x x.npy --y y.npy``; with ``--hpo``, ``python model.py search`` runs
an Optuna study over the model's HPO values. Beside the file, ``model.safetensors`` holds the
weights neuralc compiled in (``--weights``, or its seeded initial values), which the file's
``load_weights(model, WEIGHTS_FILE)`` and its ``train`` command use. Generating the file needs
no torch; it is source, not something neuralc runs (``runnable = False``). See codegen.py for
the layout of the file.
"""

from __future__ import annotations

import errno
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
class PyTorchArtifact(Artifact):
    """The source and its weights (a side file): written where the source is written, the
    weights take the source's name with ``.safetensors``, which is where the generated module
    looks for them (``Path(__file__).with_suffix(".safetensors")``), as the keras target does."""

    def write(self, path: str | Path) -> list[Path]:
        path = Path(path)
        own = Path(self.filename).with_suffix(WEIGHTS_SUFFIX).name
        if path.with_suffix(WEIGHTS_SUFFIX) == path:
            raise OSError(errno.EINVAL, "the source would overwrite its own weights file "
                                        f"(name it .py, not {WEIGHTS_SUFFIX})")
        path.write_bytes(self.data)
        out = [path]
        for name, data in self.side_files.items():
            p = path.with_suffix(WEIGHTS_SUFFIX) if name == own else path.parent / name
            p.write_bytes(data)
            out.append(p)
        return out


@register_backend
class PyTorchBackend(Backend):
    name: ClassVar[str] = "pytorch"
    summary: ClassVar[str] = "PyTorch source: an nn.Module with neuralc's weight names, " \
        "a training script, an Optuna search with --hpo"
    extension: ClassVar[str] = ".py"
    extra: ClassVar[str] = "torch"
    runnable: ClassVar[bool] = False

    def unsupported(self, op: Op) -> str | None:
        from neuralc.backends.pytorch.codegen import EMITTERS, UNSUPPORTED

        if op.dialect != "graph":
            return None
        if op.name in EMITTERS:
            return None
        return UNSUPPORTED.get(op.name, "the pytorch target has no emitter for it")

    def emit(self, model: CompiledModel, weights: dict[str, np.ndarray],
             options: BackendOptions) -> Artifact:
        """The module's source, and ``weights`` (``--weights``, else the seeded initial ones) as
        a safetensors side file in neuralc's names and PyTorch's layouts, which the module's
        ``load_weights`` and command line read; ``build_model()`` still initialises as PyTorch
        does."""
        from safetensors.numpy import save

        from neuralc.backends.pytorch.codegen import generate

        source, gen = generate(model, options)
        stem = Path(model.filename).stem or "model"
        # copy(order="C"), not ascontiguousarray, which turns a 0-d scalar into shape (1,).
        tensors = {k: np.asarray(v).copy(order="C") for k, v in weights.items()}
        return PyTorchArtifact(self.name, f"{stem}.py", source.encode("utf-8"),
                               side_files={f"{stem}{WEIGHTS_SUFFIX}": save(tensors)},
                               meta={"class": gen.cls, "hpo": gen.plan is not None})
