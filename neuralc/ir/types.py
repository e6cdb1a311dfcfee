"""IR types: tensors (``tensor<batch x 28 x 28 x 1 x f32>``) at the graph and tensor levels;
buffers (``memref<batch x 28 x 28 x 1 x f32>``) and scalars (``f32``) at the loop level.

A ranked tensor type has a tuple of dims (ints or symbolic :class:`~neuralc.ir.dims.Expr`) and
an element type. ``tensor<* x f32>`` is a tensor whose shape is not inferred yet: the lowering
emits it and shape inference replaces it. A memref is a dense row-major buffer of a ranked
shape; a scalar is one element.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.dims import Dim, dim_str, product

# The precision modes of a model (``execution { precision }``, ``--precision``, the
# ``precision`` pass): one list for the DSL, the CLI and the pass.
PRECISIONS = ("fp32", "fp16", "bf16", "mixed")

ELEMENT_TYPES = ("f32", "f16", "bf16", "f64", "i64", "i32", "i8", "i1")

NUMPY_DTYPES = {
    "f32": "float32",
    "f16": "float16",
    "f64": "float64",
    "i64": "int64",
    "i32": "int32",
    "i8": "int8",
    "i1": "bool",
}


@dataclass(frozen=True)
class TensorType:
    shape: tuple[Dim, ...] | None  # None: unranked, not inferred yet
    dtype: str = "f32"

    def __post_init__(self) -> None:
        if self.dtype not in ELEMENT_TYPES:
            raise ValueError(f"unknown element type {self.dtype!r}")

    @property
    def ranked(self) -> bool:
        return self.shape is not None

    @property
    def rank(self) -> int:
        if self.shape is None:
            raise ValueError("rank of an unranked tensor")
        return len(self.shape)

    def numel(self) -> Dim:
        if self.shape is None:
            raise ValueError("size of an unranked tensor")
        return product(self.shape)

    def with_shape(self, shape: tuple[Dim, ...]) -> TensorType:
        return TensorType(tuple(shape), self.dtype)

    def __str__(self) -> str:
        if self.shape is None:
            return f"tensor<* x {self.dtype}>"
        return "tensor<" + "".join(f"{dim_str(d)} x " for d in self.shape) + self.dtype + ">"


def unranked(dtype: str = "f32") -> TensorType:
    return TensorType(None, dtype)


def shape_str(shape: tuple[Dim, ...]) -> str:
    """User-facing shape text: ``(batch, 28, 28, 1)``."""
    inner = ", ".join(str(d) for d in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


@dataclass(frozen=True)
class ScalarType:
    """One element of a type, as a loop-level value: ``f32``, ``i1``."""

    dtype: str

    def __post_init__(self) -> None:
        if self.dtype not in ELEMENT_TYPES:
            raise ValueError(f"unknown element type {self.dtype!r}")

    def __str__(self) -> str:
        return self.dtype


@dataclass(frozen=True)
class MemRefType:
    """A dense row-major buffer: ``memref<batch x 32 x f32>`` (always ranked)."""

    shape: tuple[Dim, ...]
    dtype: str = "f32"

    def __post_init__(self) -> None:
        if self.dtype not in ELEMENT_TYPES:
            raise ValueError(f"unknown element type {self.dtype!r}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    def numel(self) -> Dim:
        return product(self.shape)

    def __str__(self) -> str:
        return "memref<" + "".join(f"{dim_str(d)} x " for d in self.shape) + self.dtype + ">"

    @staticmethod
    def of(t: TensorType) -> MemRefType:
        assert t.shape is not None, "a buffer needs a ranked type"
        return MemRefType(tuple(t.shape), t.dtype)


IR_TYPES = (TensorType, ScalarType, MemRefType)
