"""Shared helpers of the ONNX backend tests: weights, inputs, running both sides.

Weights are the seeded defaults with every constant-initialised tensor (BatchNorm statistics,
normalisation scales and offsets, attention biases, PReLU slopes) varied around its value, so
no layer is tested at an identity it happens to start at.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import numpy as np

from neuralc.backends.base import Artifact, BackendOptions
from neuralc.backends.registry import get_backend
from neuralc.driver import compile_source
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import func_body
from neuralc.ir.dims import evaluate
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, module_weights

# float32 against the float64-inside reference: a few ulps per op, summed over reductions of
# up to a few hundred terms; rtol 1e-4 and atol 1e-5 leave a wide margin (typical 1e-7).
RTOL, ATOL = 1e-4, 1e-5


def backend() -> Any:
    b = get_backend("onnx")
    assert b is not None
    return b


def varied_weights(model: CompiledModel, seed: int = 1) -> dict[str, np.ndarray]:
    """Default weights with constant-initialised tensors drawn around their constant."""
    rng = np.random.default_rng(seed)
    weights = init_weights(model.module, seed=seed)
    for w in module_weights(model.module):
        if w.spec.init.kind != "const" or not np.issubdtype(weights[w.name].dtype, np.floating):
            continue
        a = w.spec.init.a
        shape = weights[w.name].shape
        value = a * rng.uniform(0.6, 1.4, shape) if a else rng.normal(0.0, 0.2, shape)
        weights[w.name] = np.asarray(value, dtype=np.float32)
    return weights


def symbol_sizes(model: CompiledModel, batch: int, other: int) -> dict[str, int]:
    """``batch`` for the batch, ``other`` (clamped to its dims range) for every other symbol."""
    return samples.symbol_sizes(model.module, batch, other)


def random_inputs(model: CompiledModel, sizes: dict[str, int],
                  rng: np.random.Generator) -> list[np.ndarray]:
    return samples.random_inputs(model.module, sizes, rng)


def compile_nr(text: str, name: str = "case.nr") -> CompiledModel:
    return compile_source(text, name)


def emit(model: CompiledModel, weights: dict[str, np.ndarray], **options: Any) -> Artifact:
    return backend().emit(model, weights, BackendOptions(**options))


def expected_shape(model: CompiledModel, index: int, sizes: dict[str, int]) -> tuple[int, ...]:
    ret = func_body(model.module.funcs[0]).ops[-1]
    t = ret.operands[index].type
    assert t.shape is not None
    return tuple(evaluate(d, sizes) for d in t.shape)


def check_against_reference(model: CompiledModel, weights: dict[str, np.ndarray],
                            artifact: Artifact, size_pairs: Iterable[tuple[int, int]],
                            rtol: float = RTOL, atol: float = ATOL) -> None:
    """onnxruntime's outputs equal the reference interpreter's on fresh random inputs
    (seeded; NEURALC_TEST_SEED explores other draws)."""
    exe = backend().load(artifact, model)
    rng = np.random.default_rng(int(os.environ.get("NEURALC_TEST_SEED", "0")))
    for batch, other in size_pairs:
        sizes = symbol_sizes(model, batch, other)
        xs = random_inputs(model, sizes, rng)
        ref = run_module(model.module, xs, weights)
        got = exe(xs)
        assert len(got) == len(ref)
        for i, (y, r) in enumerate(zip(got, ref)):
            assert y.shape == r.shape == expected_shape(model, i, sizes)
            np.testing.assert_allclose(y.astype(np.float32), r, rtol=rtol, atol=atol,
                                       err_msg=f"output {i} at sizes {sizes}")
