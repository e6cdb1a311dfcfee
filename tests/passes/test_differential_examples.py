"""Differential tests: every example, every -O pipeline and every pass alone keep results.

The oracle is the reference interpreter on the graph IR (each layer's numpy semantics). Each
case runs on fresh random inputs at two sizes of every symbol (batch 1 and 3; other symbols 8
and 13, moved into their `dims` ranges).

Tolerances, as max |y - ref| / max(1, max |ref|):
- float32 pipelines: 1e-5. Fusion and folding only reorder float32 arithmetic (BatchNorm
  folding multiplies weights before the conv instead of outputs after it); the worst case
  seen on the examples is 2.2e-7.
- fp16 and mixed: 5e-3, about ten fp16 unit roundoffs (2^-11 = 4.9e-4). Matmul/conv inputs are
  rounded to fp16 with fp32 accumulation and every reduction stays fp32, so the error is a few
  roundoffs per layer, not one per element summed; the worst case seen is 5.8e-4.
- bf16: 3e-2, about eight bf16 unit roundoffs (2^-8 = 3.9e-3); worst seen 5.2e-3.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from lowering_helpers import random_inputs

from neuralc.driver import compile_file, tensor_stage
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.nr"))
BOUND = {"fp32": 1e-5, "fp16": 5e-3, "mixed": 5e-3, "bf16": 3e-2}
# Each pass alone, on the lowered module (its own input is the lowered, unoptimised IR).
SINGLE = ["canonicalize", "cse", "dce", "fold-batchnorm", "layout{target=channels_first}",
          "fuse", "fuse{merge=false}", "memory-plan", "precision{mode=fp16}", "pack-weights",
          "decompose-attention",
          "layout{target=channels_last},pack-weights"]

_models: dict[Path, object] = {}


def model(path: Path):
    if path not in _models:
        _models[path] = compile_file(path)
    return _models[path]


def sizes_for(module, batch: int, other: int) -> dict[str, int]:
    return samples.symbol_sizes(module, batch, other)


def rel_error(y: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(y.astype(np.float64) - ref).max() / max(1.0, float(np.abs(ref).max())))


def compare(path: Path, passes: list[str], bound: float) -> None:
    m = model(path)
    optimised, _ = tensor_stage(m, passes, verify_each=True)  # the IR verifies after each pass
    weights = init_weights(m.module, seed=11)
    rng = np.random.default_rng()
    for batch, other in ((1, 8), (3, 13)):
        xs = random_inputs(m.module, sizes_for(m.module, batch, other), rng)
        want = run_module(m.module, xs, weights)
        got = run_module(optimised, xs, weights)
        for w, g in zip(want, got):
            assert g.shape == w.shape and g.dtype == w.dtype
            assert rel_error(g, w) <= bound, (path.stem, passes, rel_error(g, w))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_pipeline_keeps_results(path, level):
    compare(path, tensor_pipeline(level)[len(pipeline(level)):], BOUND["fp32"])


@pytest.mark.parametrize("precision", ["fp16", "bf16", "mixed"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_low_precision_stays_close_to_fp32(path, precision):
    compare(path, tensor_pipeline(2, precision)[len(pipeline(2)):], BOUND[precision])


@pytest.mark.parametrize("single", SINGLE)
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_each_pass_alone_keeps_results(path, single):
    bound = BOUND["fp16"] if single.startswith("precision") else BOUND["fp32"]
    compare(path, ["lower-to-tensor", single], bound)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_graph_passes_keep_results(path):
    compare(path, ["simplify-inference", "lower-to-tensor"], BOUND["fp32"])
