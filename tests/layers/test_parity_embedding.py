"""Embedding against torch.nn.Embedding with the same table. Exact equality (a gather)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from layer_helpers import make_attrs, run_layer, spec, tt

from neuralc.ir.types import TensorType
from neuralc.layers.common import STD_NORMAL


@pytest.mark.parametrize("shape", [(4,), (2, 7), (3, 2, 5)])
@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_embedding_module(shape: tuple[int, ...], dtype: type, rng: np.random.Generator) -> None:
    s = spec("Embedding")
    attrs = make_attrs(s, 11, 6)
    idx = rng.integers(0, 11, size=shape).astype(dtype)
    idx.flat[0] = 10  # the last row is reachable
    y, w = run_layer(s, attrs, [idx], rng)
    assert y.shape == (*shape, 6) and y.dtype == np.float32
    m = torch.nn.Embedding(11, 6)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    with torch.no_grad():
        ref = m(tt(idx.astype(np.int64))).numpy()
    np.testing.assert_array_equal(y, ref)


def test_embedding_weight_spec_is_torch_default() -> None:
    s = spec("Embedding")
    attrs = make_attrs(s, num_embeddings=100, embedding_dim=8)
    ws = s.weights(attrs, [TensorType((1, 3), "i64")])
    assert ws["weight"].shape == (100, 8) and ws["weight"].init == STD_NORMAL


@pytest.mark.parametrize("bad", [11, 50, -1])
def test_embedding_index_out_of_range(bad: int, rng: np.random.Generator) -> None:
    s = spec("Embedding")
    attrs = make_attrs(s, 11, 4)
    idx = np.array([[1, 2], [bad, 3]], np.int64)
    w = {"weight": rng.normal(size=(11, 4)).astype(np.float32)}
    with pytest.raises(IndexError, match=rf"Embedding index {bad} is out of range for input_dim="):
        s.reference(attrs, [idx], w)
