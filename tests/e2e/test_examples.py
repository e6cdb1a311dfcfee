"""Every bundled example: compiled, shape-checked, run, and compared with PyTorch.

The reference interpreter's output must equal the independent torch oracle's
(tests/e2e/torch_oracle.py) on the same seeded weights and fresh random inputs, at two batch
sizes and two values of every other symbolic dim. Tolerance: float32 with rtol=1e-4,
atol=1e-5 — the models chain up to ~20 layers, so per-layer float32 rounding (~1e-7 relative)
can accumulate through long reductions (convolutions over 3x3x32 windows, global pools).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from torch_oracle import run_torch

from neuralc.driver import compile_file
from neuralc.ir.core import func_body
from neuralc.ir.dims import evaluate
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, load_weights, save_weights

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.nr"))
RTOL, ATOL = 1e-4, 1e-5


def random_inputs(module, sizes: dict[str, int], rng: np.random.Generator) -> list[np.ndarray]:
    return samples.random_inputs(module, sizes, rng)


def symbol_sizes(module, batch: int, other: int) -> dict[str, int]:
    return samples.symbol_sizes(module, batch, other)


def test_examples_exist():
    assert len(EXAMPLES) >= 7


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_pytorch(path: Path):
    model = compile_file(path)
    module = model.module
    weights = init_weights(module, seed=1)
    rng = np.random.default_rng()
    for batch, other in ((1, 16), (3, 24)):
        sizes = symbol_sizes(module, batch, other)
        xs = random_inputs(module, sizes, rng)
        ours = run_module(module, xs, weights)
        theirs = run_torch(module, xs, weights)
        ret = func_body(module.funcs[0]).ops[-1]
        for y, t, v in zip(ours, theirs, ret.operands):
            assert y.dtype == np.float32
            assert y.shape == tuple(evaluate(d, sizes) for d in v.type.shape)
            np.testing.assert_allclose(y, t, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_graph_ir_round_trips(path: Path):
    text = print_module(compile_file(path).module)
    assert print_module(parse_module(text, "rt.nir")) == text


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_weights_round_trip(path: Path, tmp_path: Path):
    module = compile_file(path).module
    weights = init_weights(module, seed=3)
    f = tmp_path / "w.safetensors"
    save_weights(f, weights)
    loaded = load_weights(f, module)
    assert sorted(loaded) == sorted(weights)
    xs = random_inputs(module, symbol_sizes(module, 2, 12), np.random.default_rng(0))
    for a, b in zip(run_module(module, xs, weights), run_module(module, xs, loaded)):
        np.testing.assert_array_equal(a, b)
