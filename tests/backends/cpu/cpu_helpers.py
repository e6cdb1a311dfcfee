"""Running models on the native cpu target against the reference interpreter.

Every run uses the bounds-checking mode of the runtime (guard bytes around every buffer and
the arena, checked after each call), so these tests also show that no generated code writes
outside its buffers. Tolerance (float32): rtol 1e-4, atol 1e-5 against the graph-level
reference (which accumulates reductions in float64): the cpu target accumulates in float32 in
vector lanes (reassociated sums) and evaluates exp, tanh, erf... with polynomials of <= 2-3
ulp; over the models here (reductions of <= a few thousand terms) that stays below 1e-5
relative, 10x inside the bound.
"""

from __future__ import annotations

import numpy as np

from neuralc.backends.cpu.compile import compile_for_cpu
from neuralc.backends.cpu.runtime import CpuExecutable
from neuralc.frontend.model import CompiledModel
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, module_weights

RTOL, ATOL = 1e-4, 1e-5


def varied_weights(model: CompiledModel, seed: int = 1) -> dict[str, np.ndarray]:
    """Default weights with constant-initialised tensors drawn around their constant (so a
    BatchNorm's statistics and a LayerNorm's gain are not all 0 or 1)."""
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


def check_cpu(model: CompiledModel, level: int, size_pairs: tuple[tuple[int, int], ...],
              precision: str = "fp32", rtol: float = RTOL, atol: float = ATOL,
              seed: int = 0) -> CpuExecutable:
    """Compile ``model`` for the cpu target at ``-O<level>`` and compare it with the
    reference interpreter on random inputs at each ``(batch, other symbols)`` size."""
    weights = varied_weights(model)
    comp = compile_for_cpu(model, level, precision)
    exe = CpuExecutable(comp, model, weights, check_bounds=True)
    rng = np.random.default_rng(seed)
    for batch, other in size_pairs:
        sizes = samples.symbol_sizes(model.module, batch, other)
        xs = samples.random_inputs(model.module, sizes, rng)
        want = run_module(model.module, xs, weights)
        got = exe(xs)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, (g.shape, w.shape)
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                       atol=atol, err_msg=f"output {i} at sizes {sizes}")
    return exe
