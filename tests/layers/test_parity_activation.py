"""The Activation layer (every activation of activations.py) against torch.nn.functional.

Inputs span [-12, 12] so saturating branches are exercised. Tolerance: float32 rtol=1e-5,
atol=1e-5, except exponential (values up to e^12): rtol=1e-5 alone carries it.
"""

from __future__ import annotations

import numpy as np
import pytest
from layer_helpers import ATOL, RTOL, TORCH_ACT, make_attrs, run_layer, spec, torch_act, tt

from neuralc.ir.activations import activation_defs, activation_names, canonical_activation

ALL = sorted(d.name for d in activation_defs())


def test_torch_table_covers_every_activation() -> None:
    assert set(ALL) == set(TORCH_ACT)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("shape", [(3, 17), (2, 4, 5, 6)])
def test_activation(name: str, shape: tuple[int, ...], rng: np.random.Generator) -> None:
    s = spec("Activation")
    x = rng.uniform(-12, 12, size=shape).astype(np.float32)
    x.flat[:3] = [0.0, -0.0, 1e-7]
    y, _ = run_layer(s, make_attrs(s, name), [x], rng)
    np.testing.assert_allclose(y, torch_act(name, tt(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("alias", activation_names())
def test_activation_aliases(alias: str, rng: np.random.Generator) -> None:
    s = spec("Activation")
    attrs = make_attrs(s, alias.upper())
    canon = canonical_activation(alias)
    assert attrs["activation"] == canon
    x = rng.normal(size=(2, 5)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    np.testing.assert_allclose(y, torch_act(canon, tt(x)).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name,alpha", [("leaky_relu", 0.01), ("leaky_relu", 0.3), ("elu", 0.5),
                                        ("elu", 2.0)])
def test_activation_alpha(name: str, alpha: float, rng: np.random.Generator) -> None:
    s = spec("Activation")
    x = rng.normal(size=(4, 9)).astype(np.float32)
    y, _ = run_layer(s, make_attrs(s, name, alpha), [x], rng)
    np.testing.assert_allclose(y, torch_act(name, tt(x), alpha).numpy(), rtol=RTOL, atol=ATOL)


def test_leaky_relu_default_slope_is_keras() -> None:
    s = spec("Activation")
    (y,) = s.reference(make_attrs(s, "leaky_relu"), [np.array([[-1.0, 2.0]], np.float32)], {})
    np.testing.assert_array_equal(y, np.array([[-0.2, 2.0]], np.float32))
