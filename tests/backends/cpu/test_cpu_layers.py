"""Every catalog layer on the native cpu target, at every -O level, against the reference.

The cases are the target tests' shared ones (tests/backends/layer_cases.py: every catalog
layer, with parameters that reach its less common paths), each at two batch sizes and two
values of its other symbolic dims, on weights varied away from their initial constants, with
the runtime's bounds checks on (cpu_helpers.py states the tolerance and why).
"""

from __future__ import annotations

import pytest
from cpu_helpers import check_cpu
from layer_cases import CASES, MULTI, net

from neuralc.driver import compile_source

SIZES = ((1, 6), (3, 9))
LEVELS = (0, 1, 2, 3)


def _params() -> list:
    out = []
    for case in CASES:
        for level in LEVELS:
            out.append(pytest.param(net(case[1], case[2]), level, id=f"{case[0]}-O{level}"))
    for cid, text, _ in MULTI:
        for level in LEVELS:
            out.append(pytest.param(text, level, id=f"{cid}-O{level}"))
    return out


@pytest.mark.parametrize(("text", "level"), _params())
def test_layer_on_cpu_matches_reference(text: str, level: int) -> None:
    check_cpu(compile_source(text, "case.nr"), level, SIZES)
