"""Shared helpers of the PyTorch-target tests: generate a module, import it, compare it.

The generated file is our own output, imported from a temporary file with importlib (never a
model file). Weights are neuralc's seeded initial weights with every constant-initialised tensor
(BatchNorm statistics, norm scales and offsets, attention biases, PReLU slopes) drawn around its
constant, so no layer is tested at an identity it happens to start at; they reach the torch
model through a safetensors file and ``load_state_dict(strict=True)``.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from neuralc.backends.base import BackendOptions
from neuralc.backends.registry import get_backend
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import func_return
from neuralc.ir.dims import evaluate
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, module_weights, save_weights

# float32 against the float64-inside reference: a few ulps per op, summed over reductions of at
# most a few hundred terms and recurrences of a few dozen steps; typical differences are 1e-7.
RTOL, ATOL = 1e-4, 1e-5


def generate(model: CompiledModel, tmp_path: Path, hpo: bool = False) -> tuple[ModuleType, Path]:
    """Emit ``model`` for the pytorch target, write it (and its weights, neuralc's seeded
    initial ones, as the command line would) under ``tmp_path`` and import it."""
    backend = get_backend("pytorch")
    assert backend is not None
    artifact = backend.emit(model, init_weights(model.module), BackendOptions(hpo=hpo))
    path = tmp_path / artifact.filename
    artifact.write(path)
    return import_file(path), path


def import_file(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"generated_{uuid.uuid4().hex}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def varied_weights(model: CompiledModel, seed: int = 1) -> dict[str, np.ndarray]:
    """neuralc's initial weights with constant-initialised tensors drawn around the constant."""
    rng = np.random.default_rng(seed)
    weights = init_weights(model.module, seed=seed)
    for w in module_weights(model.module):
        value = weights[w.name]
        if w.spec.init.kind != "const" or not np.issubdtype(value.dtype, np.floating):
            continue
        a = w.spec.init.a
        drawn = a * rng.uniform(0.6, 1.4, value.shape) if a else rng.normal(0.0, 0.2, value.shape)
        weights[w.name] = np.asarray(drawn, dtype=np.float32)
    return weights


def load_into(net: torch.nn.Module, weights: dict[str, np.ndarray], tmp_path: Path) -> None:
    """neuralc's weights into the torch model through safetensors, strict=True."""
    f = tmp_path / f"w_{uuid.uuid4().hex}.safetensors"
    save_weights(f, weights)
    net.load_state_dict(load_file(str(f)), strict=True)


def symbol_sizes(model: CompiledModel, batch: int, other: int) -> dict[str, int]:
    """``batch`` for the batch, ``other`` (clamped to its dims range) for every other symbol."""
    return samples.symbol_sizes(model.module, batch, other)


def random_inputs(model: CompiledModel, sizes: dict[str, int],
                  rng: np.random.Generator) -> list[np.ndarray]:
    return samples.random_inputs(model.module, sizes, rng)


def run_torch(net: torch.nn.Module, xs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = net(*[torch.from_numpy(x) for x in xs])
    outs = out if isinstance(out, tuple) else (out,)
    return [t.detach().numpy() for t in outs]


def check_parity(model: CompiledModel, module: ModuleType, tmp_path: Path,
                 runs: tuple[tuple[int, int], ...] = ((1, 5), (3, 9)),
                 rtol: float = RTOL, atol: float = ATOL, hp: dict[str, Any] | None = None,
                 weights: dict[str, np.ndarray] | None = None) -> None:
    """The generated model equals the reference interpreter on the same weights (by default
    the varied ones), on fresh random inputs at two batch sizes and two values of every other
    symbolic dim."""
    net = module.build_model() if hp is None else module.build_model(hp)
    weights = varied_weights(model) if weights is None else weights
    load_into(net, weights, tmp_path)
    net.eval()
    rng = np.random.default_rng()
    ret = func_return(model.module.funcs[0])
    for batch, other in runs:
        sizes = symbol_sizes(model, batch, other)
        xs = random_inputs(model, sizes, rng)
        ours = run_torch(net, xs)
        ref = run_module(model.module, xs, weights)
        assert len(ours) == len(ref)
        for r, t, v in zip(ref, ours, ret.operands):
            assert t.dtype == np.float32
            assert t.shape == tuple(evaluate(d, sizes) for d in v.type.shape)
            np.testing.assert_allclose(t, r, rtol=rtol, atol=atol)
