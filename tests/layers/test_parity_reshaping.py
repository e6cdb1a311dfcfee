"""Flatten and Reshape against torch: row-major per-sample reshapes of channels-last data.

Exact equality: both only move elements.
"""

from __future__ import annotations

import numpy as np
import pytest
from layer_helpers import make_attrs, run_layer, spec, tt


@pytest.mark.parametrize("shape", [(2,), (3, 5), (2, 4, 6), (1, 3, 4, 5), (4, 2, 3, 4, 2)])
def test_flatten(shape: tuple[int, ...], rng: np.random.Generator) -> None:
    s = spec("Flatten")
    x = rng.normal(size=shape).astype(np.float32)
    y, _ = run_layer(s, make_attrs(s), [x], rng)
    ref = tt(x).reshape(shape[0], -1).numpy()
    np.testing.assert_array_equal(y, ref)


@pytest.mark.parametrize("shape,target", [
    ((2, 12), (3, 4)), ((3, 12), (-1, 4)), ((2, 4, 6), (24,)), ((2, 4, 6), (2, -1, 3)),
    ((5, 2, 3, 4), (6, 4)), ((1, 8), (2, 2, 2)), ((3, 6), -1), ((2, 7, 7, 64), (-1,)),
])
def test_reshape(shape: tuple[int, ...], target: object, rng: np.random.Generator) -> None:
    s = spec("Reshape")
    x = rng.normal(size=shape).astype(np.float32)
    attrs = make_attrs(s, target)
    y, _ = run_layer(s, attrs, [x], rng)
    ref = tt(x).reshape(shape[0], *attrs["target_shape"]).numpy()
    np.testing.assert_array_equal(y, ref)


def test_reshape_runtime_mismatch_is_a_clear_error() -> None:
    s = spec("Reshape")
    with pytest.raises(ValueError, match=r"cannot turn a sample of shape \(5,\) into \(2, -1\)"):
        s.reference(make_attrs(s, (2, -1)), [np.zeros((2, 5), np.float32)], {})
