"""Differential checks of the loop level: the loop-IR interpreter against the tensor IR.

``check_source(source)`` compiles `.nr` text (or a path) at each ``-O`` level, lowers a copy to
loops (verified, printed and parsed back identically), and compares the loop interpreter with
the tensor-level interpreter on the same weights and random inputs at two sizes of every
symbol. ``check_tensor_ir(text, ...)`` does the same for hand-written tensor IR (one function,
shape-inferred): fused (``fuse``) or one kernel per op, then ``outline-init``, ``memory-plan``.

Tolerance (float32): rtol=1e-5, atol=1e-5 by default: the loop level reassociates sums
(numpy's pairwise reductions vs the reference's float64 accumulation rounded once); over the
reductions these tests use (<= a few thousand terms) that stays near 1e-6 relative.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from neuralc.driver import compile_file, compile_source, tensor_stage
from neuralc.ir.core import Module
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes.base import PassContext
from neuralc.passes.manager import PassManager
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.passes.registry import parse_pipeline
from neuralc.runtime import samples
from neuralc.runtime.interpreter import Interpreter
from neuralc.runtime.loop_interpreter import LoopInterpreter
from neuralc.runtime.signature import bind_inputs
from neuralc.runtime.weights import init_weights


def compile_any(source: str | Path):
    if isinstance(source, Path):
        return compile_file(source)
    return compile_source(textwrap.dedent(source), "t.nr")


def to_loops(tensor: Module) -> Module:
    """A loop-level copy of an optimised tensor module, verified and round-tripped."""
    copy = tensor.clone()
    PassManager(parse_pipeline("lower-to-loops"), verify_each=True).run(copy, PassContext())
    problems = verify(copy)
    assert problems == [], problems[:5]
    text = print_module(copy)
    assert print_module(parse_module(text, "loops.nir")) == text
    return copy


def compare(tensor: Module, loops: Module, inputs: list[np.ndarray], weights: dict,
            rtol: float = 1e-5, atol: float = 1e-5) -> None:
    want = Interpreter(tensor).load(weights).run(inputs)
    args, env = bind_inputs(tensor.networks[0], inputs, tensor.attributes.get("dims"))
    got = LoopInterpreter(loops).load(weights).run(args, env)
    assert len(want) == len(got)
    for w, g in zip(want, got):
        assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, w.shape, g.dtype, w.dtype)
        np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                   atol=atol)


def check_source(source: str | Path, levels: tuple[int, ...] = (0, 2),
                 sizes: tuple[tuple[int, int], ...] = ((1, 8), (3, 12)), precision: str = "fp32",
                 rtol: float = 1e-5, atol: float = 1e-5) -> Module:
    """Every ``-O`` level in ``levels``: loops agree with the tensor IR; returns the last."""
    model = compile_any(source)
    weights = init_weights(model.module, seed=5)
    rng = np.random.default_rng(7)
    loops = None
    for level in levels:
        passes = tensor_pipeline(level, precision)[len(pipeline(level)):]
        tensor, _ = tensor_stage(model, passes)
        loops = to_loops(tensor)
        for batch, other in sizes:
            xs = samples.random_inputs(model.module,
                                       samples.symbol_sizes(model.module, batch, other), rng)
            compare(tensor, loops, xs, weights, rtol, atol)
    assert loops is not None
    return loops


def tensor_module(text: str, fused: bool = True) -> Module:
    """Hand-written tensor IR, shape-inferred, through fusion, outline-init and memory-plan."""
    m = parse_module(textwrap.dedent(text), "t.nir")
    passes = f"shape-infer,fuse{{merge={'true' if fused else 'false'}}},outline-init,memory-plan"
    PassManager(parse_pipeline(passes), verify_each=True).run(m, PassContext())
    return m


def check_tensor_ir(text: str, inputs: list[np.ndarray], weights: dict | None = None,
                    fused: bool = True, rtol: float = 1e-5, atol: float = 1e-5) -> Module:
    tensor = tensor_module(text, fused)
    loops = to_loops(tensor)
    compare(tensor, loops, inputs, weights or {}, rtol, atol)
    return loops
