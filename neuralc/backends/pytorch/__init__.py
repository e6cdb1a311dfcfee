"""The ``pytorch`` target: a readable PyTorch module with a training script, per network.

``neuralc model.nr --target pytorch [-o model.py]`` writes a self-contained Python file (torch,
numpy and safetensors; optuna for ``search``): ``build_model()``, an ``nn.Module`` whose
``state_dict()`` keys are neuralc's weight names, ``train(model, dataset, ...)`` and
``python model.py train --x x.npy --y y.npy``; with ``--hpo``, ``python model.py search`` runs
an Optuna study over the model's HPO values. Generating the file needs no torch; it is source,
not something neuralc runs (``runnable = False``). See codegen.py for the layout of the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np

from neuralc.backends.base import Artifact, Backend, BackendOptions
from neuralc.backends.registry import register_backend
from neuralc.driver import CompiledModel
from neuralc.ir.core import Op


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
        """The module's source. The weights are not embedded: the generated model starts from
        PyTorch's initialisers, and ``--weights FILE`` (safetensors) loads any others."""
        from neuralc.backends.pytorch.codegen import generate

        source, gen = generate(model, options)
        stem = Path(model.filename).stem or "model"
        return Artifact(self.name, f"{stem}.py", source.encode("utf-8"),
                        meta={"class": gen.cls, "hpo": gen.plan is not None})
