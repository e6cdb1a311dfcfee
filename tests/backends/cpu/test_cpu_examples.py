"""Every bundled example on the native cpu target: every -O level against the reference, two
sizes each, bounds checks on; the low precision modes against the reference interpreter
running the same low-precision tensor IR (the precision pass decides what runs in fp16/bf16;
the cpu target must compute exactly that, not something else).

Low-precision tolerances: both sides round every fp16/bf16 op's result the same way and
accumulate matmul and convolution in float32; they differ in reduction order and in
transcendental functions evaluated in float32 (cpu) vs float64 (reference) before the
rounding to the low type: one unit in the last place of fp16 (2^-11 relative: rtol 4e-3
covers a few) and of bf16 (2^-8: rtol 3e-2).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from cpu_helpers import check_cpu, varied_weights

from neuralc.backends.cpu.compile import compile_for_cpu
from neuralc.backends.cpu.runtime import CpuExecutable
from neuralc.driver import compile_file
from neuralc.runtime import samples
from neuralc.runtime.interpreter import Interpreter

EXAMPLES = sorted(Path(__file__).resolve().parents[3].joinpath("examples").glob("*.nr"))
SIZES = ((1, 8), (3, 12))


@pytest.mark.parametrize("level", [0, 1, 2, 3])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_on_cpu_matches_reference(path: Path, level: int) -> None:
    check_cpu(compile_file(path), level, SIZES)


LOW = {"fp16": (4e-3, 4e-3), "bf16": (3e-2, 3e-2), "mixed": (4e-3, 4e-3)}


@pytest.mark.parametrize("precision", sorted(LOW))
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_in_low_precision_computes_what_the_precision_pass_says(
        path: Path, precision: str) -> None:
    model = compile_file(path)
    weights = varied_weights(model)
    comp = compile_for_cpu(model, 2, precision)
    exe = CpuExecutable(comp, model, weights, check_bounds=True)
    oracle = Interpreter(comp.tensor).load(weights)
    rng = np.random.default_rng(3)
    rtol, atol = LOW[precision]
    for batch, other in SIZES:
        xs = samples.random_inputs(model.module, samples.symbol_sizes(model.module, batch, other),
                                   rng)
        for g, w in zip(exe(xs), oracle.run(xs)):
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                       atol=atol)
