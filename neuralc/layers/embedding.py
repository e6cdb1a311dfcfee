"""Embedding: a lookup table from integer indices to float vectors (``torch.nn.Embedding``).

Indices of any shape gain a trailing ``output_dim`` axis. Out-of-range indices are an error
at run time rather than numpy's silent wrap-around for negative indices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType
from neuralc.layers.catalog import Int, LayerSpec, Param, WeightSpec, register
from neuralc.layers.common import STD_NORMAL

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

INDEX_TYPES = ("i64", "i32", "i8")


def _shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    t = ins[0]
    assert t.shape is not None
    if t.dtype not in INDEX_TYPES:
        raise ShapeError(
            f"Embedding expects integer indices, got {t.dtype} values",
            "put Embedding first, on the network input: an input whose first consumer is "
            "Embedding takes integer indices",
        )
    if not t.shape:
        raise ShapeError("Embedding expects input (batch, ...), got a scalar ()")
    return [TensorType((*t.shape, attrs["output_dim"]), "f32")]


def _weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    return {"weight": WeightSpec((attrs["input_dim"], attrs["output_dim"]), STD_NORMAL)}


def _reference(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> list[np.ndarray]:
    idx = xs[0]
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"Embedding expects integer indices, got {idx.dtype}")
    n = attrs["input_dim"]
    bad = (idx < 0) | (idx >= n)
    if bad.any():
        first = int(idx[bad].flat[0])
        raise IndexError(
            f"Embedding index {first} is out of range for input_dim={n} "
            f"(valid indices are 0..{n - 1}); {int(bad.sum())} index(es) out of range"
        )
    return [w["weight"][idx].astype(np.float32)]


def _lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """``tensor.gather`` of the table's rows. The indices' integer type is fixed by the shape
    rule; ``tensor.gather`` refuses out-of-range (and negative) indices at run time, as the
    reference does, instead of numpy's wrap-around."""
    return [b.op("tensor.gather", [b.weight("weight"), xs[0]])]


EMBEDDING = register(LayerSpec(
    name="Embedding",
    params=(
        Param("input_dim", Int(min=1), aliases=("num_embeddings",),
              doc="vocabulary size: indices run from 0 to input_dim - 1"),
        Param("output_dim", Int(min=1), aliases=("embedding_dim",), doc="size of each vector"),
    ),
    positional=("input_dim", "output_dim"),
    shape=_shape, reference=_reference, weights=_weights, lower=_lower,
    doc="Maps integer indices to learned vectors: (batch, ...) -> (batch, ..., output_dim).",
    example="Embedding(10000, 128)",
    unsupported={"mask_zero": (
        "neuralc carries no padding mask, so the recurrent and attention layers after this "
        "one would read index 0 as an ordinary token; pad or trim the sequences to one "
        "length and drop mask_zero")},
))
