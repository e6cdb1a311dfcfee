"""Lowering of Dense and Output: matmul, bias, activation; softmax as reductions."""

import pytest
from lowering_helpers import check_lowering


@pytest.mark.parametrize("act", ["relu", "gelu", "softmax", "linear", "tanh"])
def test_dense_lowers(act):
    low = check_lowering(f"""
        network N {{
          input: (seq, 6)
          layers:
            Dense(5, "{act}")
            Dense(3, use_bias=false)
            Output(4)
        }}
    """)
    names = [op.name for op in low.funcs[0].regions[0].block.ops]
    assert names.count("tensor.matmul") == 3
