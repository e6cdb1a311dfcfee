"""Running models on the cuda target (in Triton's interpreter) against the reference.

Tolerances. float32: rtol 1e-4, atol 1e-5 against the graph-level reference interpreter (which
accumulates in float64): the kernels accumulate in float32 in blocks (a different summation
order), divide with Triton's division and evaluate tanh, expm1 and softplus with the
generated module's formulas (a few ulp), so over these models' reductions (at most a few
thousand terms) the difference stays well inside. Low precision: against the reference
interpreter running the same low-precision tensor IR (the precision pass decides what is
fp16; the target must compute exactly that), rtol/atol 4e-3 (fp16, a few units in the last
place of its 11-bit mantissa) and 3e-2 (bf16): both sides round each op's result the same
way; they differ in reduction order, in float32 accumulation of tl.dot (numpy accumulates some
16-bit reductions in 16 bits) and, in attention, in rounding the softmax probabilities to the
value's type before P @ V (as FlashAttention does).
"""

from __future__ import annotations

import numpy as np
from cpu_helpers import varied_weights

from neuralc.backends.cuda.compile import CudaCompilation, compile_for_cuda
from neuralc.backends.cuda.runtime import CudaExecutable
from neuralc.frontend.model import CompiledModel
from neuralc.runtime import samples
from neuralc.runtime.interpreter import Interpreter, run_module

TOLERANCE = {"fp32": (1e-4, 1e-5), "fp16": (4e-3, 4e-3), "bf16": (3e-2, 3e-2),
             "mixed": (4e-3, 4e-3)}


def check_cuda(model: CompiledModel, level: int, precision: str,
               size_pairs: tuple[tuple[int, int], ...], seed: int = 0) -> CudaCompilation:
    """Compile ``model`` for the cuda target and compare its outputs (Triton's interpreter)
    with the reference at each ``(batch, other symbols)`` size."""
    weights = varied_weights(model)
    comp = compile_for_cuda(model, level, precision)
    exe = CudaExecutable(comp, model, weights)
    oracle = None if precision == "fp32" else Interpreter(comp.tensor).load(weights)
    rtol, atol = TOLERANCE[precision]
    rng = np.random.default_rng(seed)
    for batch, other in size_pairs:
        sizes = samples.symbol_sizes(model.module, batch, other)
        xs = samples.random_inputs(model.module, sizes, rng)
        want = run_module(model.module, xs, weights) if oracle is None else oracle.run(xs)
        got = exe(xs)
        assert len(got) == len(want)
        for i, (g, w) in enumerate(zip(got, want)):
            assert g.shape == w.shape, (g.shape, w.shape)
            np.testing.assert_allclose(g.astype(np.float64), w.astype(np.float64), rtol=rtol,
                                       atol=atol, err_msg=f"output {i} at sizes {sizes}")
    return comp
