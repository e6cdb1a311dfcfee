"""Dropout is the identity at inference, as torch.nn.Dropout in eval mode. Exact equality."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layer_helpers import make_attrs, run_layer, spec, tt


@pytest.mark.parametrize("kw", [
    {"rate": 0.5}, {"p": 0.0}, {"rate": 1.0}, {"rate": 0.3, "seed": 7},
    {"rate": 0.2, "noise_shape": (None, 1, 1, 3)},
], ids=str)
@pytest.mark.parametrize("batch", [1, 3])
def test_dropout_is_identity_at_inference(kw: dict, batch: int, rng: np.random.Generator) -> None:
    s = spec("Dropout")
    attrs = make_attrs(s, **kw)
    x = rng.normal(size=(batch, 4, 5, 3)).astype(np.float32)
    y, _ = run_layer(s, attrs, [x], rng)
    m = torch.nn.Dropout(attrs["rate"]).eval()
    with torch.no_grad():
        ref = m(tt(x)).numpy()
    np.testing.assert_array_equal(y, ref)
