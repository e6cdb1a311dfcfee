"""Merge layers and ResidualConnection against torch elementwise ops and torch.cat.

Tolerance: float32 rtol=1e-5, atol=1e-5 (the reference sums in float64; torch in float32).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layer_helpers import ATOL, RTOL, make_attrs, run_layer, spec, torch_act, tt

from neuralc.ir.activations import activation_defs

TORCH_MERGE = {
    "Add": lambda ts: torch.stack(ts).sum(0),
    "Subtract": lambda ts: ts[0] - ts[1],
    "Multiply": lambda ts: torch.stack(ts).prod(0),
    "Average": lambda ts: torch.stack(ts).mean(0),
    "Maximum": lambda ts: torch.stack(ts).amax(0),
}


CASES = [(layer, n) for layer in sorted(TORCH_MERGE) for n in (2, 3, 4)
         if layer != "Subtract" or n == 2]


@pytest.mark.parametrize("layer,n", CASES)
@pytest.mark.parametrize("shape", [(2, 5), (3, 4, 5, 6)])
def test_elementwise(layer: str, n: int, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    s = spec(layer)
    assert s.arity in (None, n)
    xs = [rng.normal(size=shape).astype(np.float32) for _ in range(n)]
    y, _ = run_layer(s, make_attrs(s), xs, rng)
    np.testing.assert_allclose(y, TORCH_MERGE[layer]([tt(x) for x in xs]).numpy(),
                               rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("layer", ["Multiply", "Add", "Maximum"])
def test_elementwise_broadcasts_size_one_axes(layer: str, rng: np.random.Generator) -> None:
    """A squeeze-and-excitation gate: (N, H, W, C) * (N, 1, 1, C)."""
    s = spec(layer)
    xs = [rng.normal(size=(2, 5, 4, 3)).astype(np.float32),
          rng.normal(size=(2, 1, 1, 3)).astype(np.float32)]
    y, _ = run_layer(s, make_attrs(s), xs, rng)
    ref = TORCH_MERGE[layer]([tt(xs[0]), tt(xs[1]).expand(2, 5, 4, 3)]).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
@pytest.mark.parametrize("n", [2, 3])
def test_concatenate(axis: int, n: int, rng: np.random.Generator) -> None:
    s = spec("Concatenate")
    base = [2, 3, 4, 5]
    xs = []
    for i in range(n):
        shp = list(base)
        shp[axis] += i
        xs.append(rng.normal(size=shp).astype(np.float32))
    y, _ = run_layer(s, make_attrs(s, axis), xs, rng)
    np.testing.assert_array_equal(y, torch.cat([tt(x) for x in xs], dim=axis).numpy())


@pytest.mark.parametrize("act", sorted(d.name for d in activation_defs()))
@pytest.mark.parametrize("shape", [(2, 6), (3, 4, 4, 5)])
def test_residual(act: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    s = spec("Residual")
    x, body = (rng.normal(size=shape).astype(np.float32) for _ in range(2))
    y, _ = run_layer(s, make_attrs(s, activation=act), [x, body], rng)
    np.testing.assert_allclose(y, torch_act(act, tt(x) + tt(body)).numpy(), rtol=RTOL, atol=ATOL)
