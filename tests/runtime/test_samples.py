"""Sample inputs: sizes kept in the model's dims ranges, indices within every reader's vocabulary."""

import numpy as np

from neuralc.driver import compile_source
from neuralc.runtime.samples import random_inputs, symbol_sizes


def test_sizes_are_clamped_into_the_dims_ranges():
    m = compile_source("network N {\n  input: (seq, 4)\n  dims { batch: 2..4, seq: 8..16 }\n"
                       "  layers:\n    Dense(2)\n}\n", "s.nr").module
    assert symbol_sizes(m, 1, 100) == {"batch": 2, "seq": 16}
    assert symbol_sizes(m, 9, 3) == {"batch": 4, "seq": 8}


def test_indices_stay_below_the_smallest_vocabulary_wrapped_or_not():
    m = compile_source("network N {\n  input: (steps, 3)\n  layers:\n"
                       "    TimeDistributed(Embedding(5, 2))\n}\n", "s.nr").module
    (x,) = random_inputs(m, {"batch": 64, "steps": 16}, np.random.default_rng(0))
    assert x.dtype == np.int64 and x.min() >= 0 and x.max() == 4
