"""Every catalog layer on the cuda target, in Triton's interpreter, against the reference.

The cases are the target tests' shared ones (tests/backends/layer_cases.py: every catalog
layer, with parameters that reach its less common paths), at -O2 and -O3 (-O3 picks the cuda
layout: channels-first convolutions), in fp32 and fp16, on weights varied away from their
initial constants. fp32 runs two batch sizes and two values of the other symbolic dims; fp16
one (cuda_helpers.py states the tolerances and why).
"""

from __future__ import annotations

import pytest
from cuda_helpers import check_cuda
from layer_cases import CASES, MULTI, net

from neuralc.driver import compile_source

RUNS = {("fp32", 2): ((1, 6), (3, 9)), ("fp32", 3): ((2, 7),), ("fp16", 2): ((2, 7),),
        ("fp16", 3): ((3, 9),)}


def _params() -> list:
    out = []
    texts = [(c[0], net(c[1], c[2])) for c in CASES] + [(m[0], m[1]) for m in MULTI]
    for cid, text in texts:
        for (precision, level), sizes in RUNS.items():
            out.append(pytest.param(text, level, precision, sizes,
                                    id=f"{cid}-O{level}-{precision}"))
    return out


@pytest.mark.parametrize(("text", "level", "precision", "sizes"), _params())
def test_layer_on_cuda_matches_reference(text: str, level: int, precision: str,
                                         sizes: tuple) -> None:
    check_cuda(compile_source(text, "case.nr"), level, precision, sizes)
