"""Flatten, Reshape, Permute and RepeatVector: per-sample shape changes, as Keras.

The batch axis is never touched. Flatten and Reshape work in row-major (channels-last) order.
With symbolic dims, Reshape infers a ``-1`` only where the dim arithmetic proves the division
exact, so an inferred size is never a silent floor. Permute's ``dims`` count the non-batch axes
from 1, as Keras. RepeatVector turns ``(batch, features)`` into ``(batch, n, features)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from neuralc.ir.dims import Dim, floordiv, product
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import Int, LayerSpec, Param, ParamType, Shape, register
from neuralc.layers.common import per_sample

if TYPE_CHECKING:  # the builder imports the catalog; only the annotations need it here
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value


def _flatten_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    assert ins[0].shape is not None
    shape = ins[0].shape
    if not shape:
        raise ShapeError("Flatten expects input (batch, ...), got a scalar ()")
    # Keras: a (batch,) input flattens to (batch, 1).
    return [ins[0].with_shape((shape[0], per_sample(shape)))]


def _flatten_reference(attrs: dict, xs: list[np.ndarray],
                       w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [x.reshape(x.shape[0], int(np.prod(x.shape[1:], dtype=np.int64)))]


def _reshape_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    assert ins[0].shape is not None
    shape = ins[0].shape
    if not shape:
        raise ShapeError("Reshape expects input (batch, ...), got a scalar ()")
    target: list[int] = attrs["target_shape"]
    total = per_sample(shape)
    known = product([d for d in target if d != -1])
    assert isinstance(known, int)
    src = shape_str(shape[1:]) if len(shape) > 1 else "()"
    dst = shape_str(tuple(target))
    if -1 not in target:
        if total != known:
            if isinstance(total, int):
                why = f"{total} elements per sample into {known}"
            else:
                why = f"{total} elements per sample into {known}, which needs a fixed size"
            raise ShapeError(
                f"Reshape cannot turn {src} into {dst}: {why}",
                "the target must hold exactly as many elements as the input; "
                "use -1 for one dimension to infer it",
            )
        return [ins[0].with_shape((shape[0], *target))]
    inferred = floordiv(total, known)
    if inferred * known != total:
        if isinstance(total, int):
            msg = (f"Reshape cannot turn {src} into {dst}: {total} elements are not divisible "
                   f"by {known}")
        else:
            msg = (f"Reshape cannot turn {src} into {dst}: cannot prove that {total} is divisible "
                   f"by {known}")
        raise ShapeError(msg, "choose target dimensions whose product divides the input size")
    out: tuple[Dim, ...] = tuple(inferred if d == -1 else d for d in target)
    return [ins[0].with_shape((shape[0], *out))]


def _reshape_reference(attrs: dict, xs: list[np.ndarray],
                       w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    try:
        return [x.reshape((x.shape[0], *attrs["target_shape"]))]
    except ValueError:
        raise ValueError(
            f"Reshape cannot turn a sample of shape {tuple(x.shape[1:])} into "
            f"{tuple(attrs['target_shape'])}"
        ) from None


def _flatten_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """A row-major reshape to the shape rule's (batch, elements per sample), symbolic or not."""
    return [b.reshape(xs[0], _flatten_shape(attrs, [xs[0].type], b.unifier)[0].shape)]


def _reshape_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """A row-major reshape to the shape rule's result, whose -1 is already inferred (exactly)."""
    return [b.reshape(xs[0], _reshape_shape(attrs, [xs[0].type], b.unifier)[0].shape)]


FLATTEN = register(LayerSpec(
    name="Flatten", params=(), positional=(),
    shape=_flatten_shape, reference=_flatten_reference, lower=_flatten_lower,
    doc="Flattens each sample to one axis in row-major (channels-last) order: (batch, -1).",
    example="Flatten()",
))

RESHAPE = register(LayerSpec(
    name="Reshape",
    params=(Param("target_shape", Shape(), aliases=("shape",),
                  doc="shape of one sample (no batch); one -1 is inferred"),),
    positional=("target_shape",),
    shape=_reshape_shape, reference=_reshape_reference, lower=_reshape_lower,
    doc="Reshapes each sample to target_shape in row-major order; the batch axis is kept.",
    example="Reshape((7, 7, 64))",
))


# -- Permute ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Permutation(ParamType):
    """A permutation of ``1..n`` (Keras's Permute dims; 0 would be the batch axis)."""

    def convert(self, value: Any, pname: str) -> list[int]:
        if isinstance(value, (list, tuple)):
            value = [int(v) if isinstance(v, float) and v.is_integer() else v for v in value]
            if value and all(isinstance(v, int) and not isinstance(v, bool) for v in value) \
                    and sorted(value) == list(range(1, len(value) + 1)):
                return list(value)
        raise self._fail(pname, value, "a permutation of 1..n over the non-batch axes, "
                                       "such as (2, 1)")


def _permute_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    assert ins[0].shape is not None
    shape, dims = ins[0].shape, attrs["dims"]
    if len(shape) != len(dims) + 1:
        want = ", ".join(f"d{i}" for i in range(1, len(dims) + 1))
        raise ShapeError(
            f"Permute({tuple(dims)}) expects input (batch, {want}), got {shape_str(shape)}",
            f"give one index per non-batch axis ({len(shape) - 1} here), counting from 1",
        )
    return [ins[0].with_shape((shape[0], *(shape[i] for i in dims)))]


def _permute_reference(attrs: dict, xs: list[np.ndarray],
                       w: dict[str, np.ndarray]) -> list[np.ndarray]:
    return [np.transpose(xs[0], (0, *attrs["dims"]))]


def _permute_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    return [b.transpose(xs[0], [0, *attrs["dims"]])]


PERMUTE = register(LayerSpec(
    name="Permute",
    params=(Param("dims", Permutation(),
                  doc="new order of the non-batch axes, counted from 1"),),
    positional=("dims",),
    shape=_permute_shape, reference=_permute_reference, lower=_permute_lower,
    doc="Reorders the non-batch axes: Permute((2, 1)) swaps steps and features.",
    example="Permute((2, 1))",
))


# -- RepeatVector ----------------------------------------------------------------------------


def _repeat_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    assert ins[0].shape is not None
    shape = ins[0].shape
    if len(shape) != 2:
        raise ShapeError(
            f"RepeatVector expects input (batch, features), got {shape_str(shape)}",
            "use Flatten() or a global pooling layer first to make each sample a vector",
        )
    return [ins[0].with_shape((shape[0], attrs["n"], shape[1]))]


def _repeat_reference(attrs: dict, xs: list[np.ndarray],
                      w: dict[str, np.ndarray]) -> list[np.ndarray]:
    x = xs[0]
    return [np.repeat(x[:, None, :], attrs["n"], axis=1)]


def _repeat_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """(batch, features) -> (batch, 1, features) -> broadcast to (batch, n, features)."""
    x = xs[0]
    out = _repeat_shape(attrs, [x.type], b.unifier)[0]
    assert out.shape is not None
    n, f = out.shape[0], out.shape[2]
    return [b.op("tensor.broadcast", [b.reshape(x, (n, 1, f))], {}, out)]


REPEAT_VECTOR = register(LayerSpec(
    name="RepeatVector",
    params=(Param("n", Int(min=1), doc="number of repetitions"),),
    positional=("n",),
    shape=_repeat_shape, reference=_repeat_reference, lower=_repeat_lower,
    doc="Repeats each sample vector n times: (batch, features) -> (batch, n, features).",
    example="RepeatVector(8)",
))
