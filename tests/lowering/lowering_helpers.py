"""Differential checks of lowering: the graph module and its tensor lowering must agree.

``check_lowering(source)`` compiles `.nr` text (or a path), runs the reference interpreter on
the graph IR, lowers a copy to the tensor IR (``lower-to-tensor``, verified, no graph op left),
runs it on the same weights and fresh random inputs at two sizes of every symbol, and compares
(float32: rtol=1e-5, atol=1e-5 unless the caller states otherwise).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from neuralc.driver import compile_file, compile_source
from neuralc.ir.core import func_body
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes.base import PassContext
from neuralc.passes.manager import PassManager
from neuralc.passes.registry import parse_pipeline
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights


def compile_any(source: str | Path):
    if isinstance(source, Path):
        return compile_file(source)
    return compile_source(textwrap.dedent(source), "t.nr")


def lowered(module, passes: str = "lower-to-tensor"):
    """A lowered copy of ``module`` (through its text, so the original stays intact)."""
    copy = parse_module(print_module(module), "copy.nir")
    PassManager(parse_pipeline(passes), verify_each=True).run(copy, PassContext())
    assert verify(copy) == []
    left = [op.name for op in func_body(copy.funcs[0]).ops if op.dialect == "graph"]
    assert not left, f"graph ops left after lowering: {left}"
    return copy


def random_inputs(module, sizes: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    return samples.random_inputs(module, sizes, rng)


def check_lowering(source: str | Path, passes: str = "lower-to-tensor", rtol: float = 1e-5,
                   atol: float = 1e-5, sizes: tuple[tuple[int, int], ...] = ((1, 8), (3, 12))):
    """Compare the graph-level reference with the lowered module; returns the lowered module."""
    model = compile_any(source)
    module = model.module
    low = lowered(module, passes)
    weights = init_weights(module, seed=5)
    rng = np.random.default_rng()
    for batch, other in sizes:
        xs = random_inputs(module, samples.symbol_sizes(module, batch, other), rng)
        want = run_module(module, xs, weights)
        got = run_module(low, xs, weights)
        assert len(want) == len(got)
        for w, g in zip(want, got):
            assert w.shape == g.shape and w.dtype == g.dtype
            np.testing.assert_allclose(g, w, rtol=rtol, atol=atol)
    return low
