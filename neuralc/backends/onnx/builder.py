"""The ONNX graph builder the layer emitters write through.

A :class:`Builder` owns the nodes of one ONNX graph (the model's, or a ``Scan`` body's), the
model's initializers and a name allocator. Three things here keep the emitters small:

- **Opset forms.** Every node goes through :meth:`Builder.op`, which checks that the chosen
  opset defines the operator in the form the emitters write (``Squeeze`` with its axes as an
  input is opset 13, ``Gelu`` is 20, ...). A node the opset cannot hold raises
  :class:`Unsupported`, which the driver turns into a located error that names the opset that
  would work. Operators whose signature moved between opsets (the ``Reduce*`` family's axes)
  get a helper that writes whichever form the opset has.
- **Layouts.** A graph value is a :class:`Val`: its channels-last IR type plus the ONNX tensors
  that hold it, each under a permutation of its axes. Conv and pooling ask for the
  channels-first form and produce one; elementwise layers work in whatever form their input
  has; a layer that needs another form gets one Transpose, made once and shared. So a chain of
  convolutions, normalisations and activations runs in NCHW with no transposes between its
  layers, and the graph has a transpose only where the layout really changes.
- **Constants.** Small constants are initializers, deduplicated by value per graph, so the fp16
  pass and ``onnx.checker`` see one kind of constant.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuralc.ir.types import TensorType
from neuralc.layers.catalog import LayerSpec
from neuralc.location import UNKNOWN, Location

Perm = tuple[int, ...]

# The opset from which each operator exists in the form the emitters write it. Operators not
# listed take the first opset that defines them. The entries are signature changes the
# emitters rely on: axes as inputs (13), single-axis softmax (13), Clip/Pad/Range inputs (11),
# Resize with an optional roi (13), Slice with inputs (10), Gemm without C (11), the
# multidirectional broadcasting of the variadic ops (8) and Scan's axes (9).
FORM_OPSET: dict[str, int] = {
    "Squeeze": 13, "Unsqueeze": 13, "Split": 13, "ReduceSum": 13,
    "Softmax": 13, "LogSoftmax": 13, "Resize": 13,
    "Clip": 11, "Pad": 11, "Range": 11, "Gemm": 11, "Conv": 11, "ConvTranspose": 11,
    "Slice": 10, "MaxPool": 10, "AveragePool": 10,
    "BatchNormalization": 9, "Where": 9, "ConstantOfShape": 9, "Scan": 9, "PRelu": 9,
    "Sum": 8, "Mean": 8, "Max": 8, "Min": 8, "Expand": 8,
    "Add": 7, "Sub": 7, "Mul": 7, "Div": 7, "Pow": 7, "Greater": 7, "Less": 7, "Equal": 7,
}

# Reduce* operators take their axes as an input from this opset on (an attribute before).
REDUCE_AXES_INPUT = {"ReduceSum": 13}
REDUCE_AXES_INPUT_DEFAULT = 18


class Unsupported(Exception):
    """This layer (or op form) cannot be written at the chosen opset; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@functools.cache
def first_opset(op_type: str) -> int | None:
    """The first opset of the default domain that defines ``op_type`` (None: no such op)."""
    import onnx.defs

    versions = [s.since_version for s in onnx.defs.get_all_schemas_with_history()
                if s.name == op_type and s.domain == ""]
    return min(versions) if versions else None


def form_opset(op_type: str) -> int:
    first = first_opset(op_type)
    if first is None:
        raise ValueError(f"unknown ONNX operator {op_type}")
    return max(first, FORM_OPSET.get(op_type, 0))


def dims_of(shape: Sequence[Any]) -> list[int | str]:
    """ONNX dims of an IR shape: ints stay, symbols are named by their IR text."""
    return [d if isinstance(d, int) else str(d) for d in shape]


def identity(rank: int) -> Perm:
    return tuple(range(rank))


def channels_first(rank: int) -> Perm:
    """The NC... form of a channels-last value: physical axis 1 holds the last IR axis."""
    if rank < 3:
        return identity(rank)
    return (0, rank - 1, *range(1, rank - 1))


@dataclass
class Layer:
    """One layer as the emitters see it: its kind, attributes, weight prefix and types.

    Wrappers build an inner Layer (TimeDistributed's Dense) with the same weight prefix.
    """

    spec: LayerSpec
    attrs: dict
    name: str
    in_types: list[TensorType]
    out_types: list[TensorType]
    location: Location = UNKNOWN

    @property
    def kind(self) -> str:
        return self.spec.op_name.removeprefix("graph.")


@dataclass
class Val:
    """A graph value: its channels-last type and the ONNX tensors holding it, by layout.

    ``forms[perm]`` names a tensor whose physical axis ``i`` is IR axis ``perm[i]``. Every
    layout keeps the batch as physical axis 0 (Reshape's ``0`` and the gates of
    squeeze-excitation rely on it).
    """

    type: TensorType
    forms: dict[Perm, str] = field(default_factory=dict)

    @property
    def rank(self) -> int:
        return self.type.rank

    @property
    def shape(self) -> tuple:
        assert self.type.shape is not None
        return self.type.shape


class Builder:
    """Nodes of one ONNX graph, initializers and names shared with nested graphs."""

    def __init__(self, opset: int, weights: Mapping[str, np.ndarray],
                 parent: Builder | None = None):
        self.opset = opset
        self.weights = weights
        self.parent = parent
        self.nodes: list[Any] = []
        self._const_cache: dict[tuple, str] = {}
        if parent is None:
            self.initializers: dict[str, Any] = {}
            self.names: set[str] = set()
            self.subgraph_refs: set[str] = set()
        else:
            self.initializers = parent.initializers
            self.names = parent.names
            self.subgraph_refs = parent.subgraph_refs
        self.scope = "" if parent is None else parent.scope

    # -- names ------------------------------------------------------------------------------

    def fresh(self, hint: str) -> str:
        """A tensor or node name not used anywhere in the model yet."""
        base = hint or "t"
        name, k = base, 1
        while name in self.names:
            name = f"{base}_{k}"
            k += 1
        self.names.add(name)
        return name

    def reserve(self, name: str) -> None:
        self.names.add(name)

    def _scoped(self, hint: str) -> str:
        return f"{self.scope}/{hint}" if self.scope else hint

    # -- nodes --------------------------------------------------------------------------------

    def require(self, op_type: str) -> None:
        """Raise Unsupported unless the opset has ``op_type`` in the form the emitters write."""
        need = form_opset(op_type)
        if self.opset < need:
            raise Unsupported(f"it needs the ONNX operator {op_type} as defined from opset "
                              f"{need}, and the model is written at opset {self.opset}; use "
                              f"--opset {need} or newer")

    def has(self, op_type: str) -> bool:
        """Whether the chosen opset has ``op_type`` (to pick a native op over a decomposition)."""
        return self.opset >= form_opset(op_type)

    def op(self, op_type: str, inputs: Sequence[str], outputs: int | Sequence[str] = 1,
           hint: str | None = None, **attrs: Any) -> Any:
        """Append one node; returns its output name (or the list of names for several)."""
        from onnx import helper

        self.require(op_type)
        if isinstance(outputs, int):
            base = self._scoped(hint or op_type.lower())
            outs = [self.fresh(base) for _ in range(outputs)]
        else:
            outs = list(outputs)
            for o in outs:
                self.names.add(o)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, list(inputs), outs,
                                name=self.fresh(self._scoped(op_type)), **attrs)
        self.nodes.append(node)
        if self.parent is not None:
            for i in inputs:
                if i:
                    self.subgraph_refs.add(i)
        return outs[0] if len(outs) == 1 else outs

    # -- constants and weights ------------------------------------------------------------------

    def _initializer(self, hint: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(hint)
        if not array.flags.c_contiguous:
            array = array.copy(order="C")  # not np.ascontiguousarray: it makes 0-d arrays 1-d
        self.initializers[name] = numpy_helper.from_array(array, name)
        return name

    def const(self, value: Any, dtype: Any = np.float32, hint: str = "const") -> str:
        """A constant tensor (float32 unless told), shared with equal constants of this graph."""
        arr = np.asarray(value, dtype=dtype)
        key = (arr.dtype.str, arr.shape, arr.tobytes())
        if key not in self._const_cache:
            prefix = "body_const" if self.parent is not None else "const"
            self._const_cache[key] = self._initializer(f"{prefix}/{hint}", arr)
        return self._const_cache[key]

    def ints(self, values: Sequence[int] | int) -> str:
        """An int64 constant: a 1-D list, or a scalar for a single int."""
        return self.const(values, np.int64, "ints")

    def scalar(self, value: float) -> str:
        return self.const(value, np.float32, "scalar")

    def weight(self, layer: Layer, param: str) -> np.ndarray:
        """A layer's weight as an array (``<layer name>.<param>``)."""
        return np.asarray(self.weights[f"{layer.name}.{param}"])

    def has_weight(self, layer: Layer, param: str) -> bool:
        return f"{layer.name}.{param}" in self.weights

    def init(self, name: str, array: np.ndarray) -> str:
        """A weight initializer called ``name`` (made unique), stored as float32."""
        arr = np.asarray(array)
        if arr.dtype.kind == "f":
            arr = arr.astype(np.float32)
        return self._initializer(name, arr)

    def param(self, layer: Layer, param: str) -> str:
        """A layer's weight as an initializer in its own (PyTorch) layout, named after it."""
        return self.init(f"{layer.name}.{param}", self.weight(layer, param))

    # -- layouts ------------------------------------------------------------------------------

    def val(self, type: TensorType, name: str, perm: Perm | None = None) -> Val:
        assert type.shape is not None
        return Val(type, {perm if perm is not None else identity(len(type.shape)): name})

    def get(self, v: Val, perm: Perm | None = None) -> str:
        """The tensor holding ``v`` in layout ``perm`` (canonical by default), transposing once."""
        perm = identity(v.rank) if perm is None else tuple(perm)
        if perm in v.forms:
            return v.forms[perm]
        src_perm, src = self.any(v, prefer=identity(v.rank))
        q = [src_perm.index(a) for a in perm]
        hint = "nchw" if perm == channels_first(v.rank) else (
            "nhwc" if perm == identity(v.rank) else "transpose")
        name = self.op("Transpose", [src], perm=q, hint=hint)
        v.forms[perm] = name
        return name

    def any(self, v: Val, prefer: Perm | None = None) -> tuple[Perm, str]:
        """Some existing form of ``v`` (``prefer`` if it has it), as (perm, name)."""
        if prefer is not None and prefer in v.forms:
            return prefer, v.forms[prefer]
        perm, name = next(iter(v.forms.items()))
        return perm, name

    def common_form(self, vals: Sequence[Val]) -> Perm:
        """The layout most of ``vals`` already have (canonical on a tie), for merges."""
        rank = vals[0].rank
        counts: dict[Perm, int] = {}
        for v in vals:
            for p in v.forms:
                counts[p] = counts.get(p, 0) + 1
        best = identity(rank)
        for p, c in counts.items():
            if c > counts.get(best, 0):
                best = p
        return best

    # -- helpers for ops whose form depends on the opset -----------------------------------------

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: bool,
               hint: str | None = None) -> str:
        """ReduceMean/Max/Sum/...: axes as an input where the opset takes them so."""
        since = REDUCE_AXES_INPUT.get(op_type, REDUCE_AXES_INPUT_DEFAULT)
        if self.opset >= since:
            return self.op(op_type, [x, self.ints(list(axes))], keepdims=int(keepdims), hint=hint)
        return self.op(op_type, [x], axes=list(axes), keepdims=int(keepdims), hint=hint)

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Unsqueeze", [x, self.ints(list(axes))])

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Squeeze", [x, self.ints(list(axes))])

    def split(self, x: str, sizes: Sequence[int], axis: int) -> list[str]:
        return self.op("Split", [x, self.ints(list(sizes))], outputs=len(sizes), axis=axis)

    def slice(self, x: str, starts: Sequence[int] | str, ends: Sequence[int] | str,
              axes: Sequence[int], steps: Sequence[int] | None = None) -> str:
        ins = [x, starts if isinstance(starts, str) else self.ints(list(starts)),
               ends if isinstance(ends, str) else self.ints(list(ends)), self.ints(list(axes))]
        if steps is not None:
            ins.append(self.ints(list(steps)))
        return self.op("Slice", ins)

    def reverse(self, x: str, axis: int) -> str:
        """``x`` reversed along ``axis`` (a Slice with step -1; any length)."""
        return self.slice(x, [-1], [-(2 ** 63)], [axis], [-1])

    def shape_of(self, x: str, start: int, end: int | None = None) -> str:
        """Dims ``start:end`` of ``x``'s runtime shape, as a 1-D int64 tensor."""
        shape = self.op("Shape", [x])
        return self.slice(shape, [start], [end if end is not None else 2 ** 62], [0])

    def concat(self, xs: Sequence[str], axis: int) -> str:
        return xs[0] if len(xs) == 1 else self.op("Concat", list(xs), axis=axis)

    def matmul_t(self, x: str, layer: Layer, param: str, weight: np.ndarray | None = None) -> str:
        """``x @ W.T`` for a PyTorch ``(out, in)`` weight, stored transposed as ``<param>_t``."""
        w = self.weight(layer, param) if weight is None else weight
        wt = self.init(f"{layer.name}.{param}_t", np.ascontiguousarray(w.T))
        return self.op("MatMul", [x, wt])

    def linear(self, x: str, layer: Layer, wparam: str, bparam: str | None,
               rank: int) -> str:
        """torch.nn.Linear over the last axis: Gemm for a matrix, MatMul (+ Add) otherwise."""
        has_bias = bparam is not None and self.has_weight(layer, bparam)
        if rank == 2:
            ins = [x, self.param(layer, wparam)]
            if has_bias:
                assert bparam is not None
                ins.append(self.param(layer, bparam))
            return self.op("Gemm", ins, transB=1)
        y = self.matmul_t(x, layer, wparam)
        if has_bias:
            assert bparam is not None
            y = self.op("Add", [y, self.param(layer, bparam)])
        return y

    def zeros(self, shape: str) -> str:
        """Float zeros of a run-time shape (a 1-D int64 tensor): recurrent initial states."""
        return self._filled(shape, 0.0, "zeros")

    def ones(self, shape: str) -> str:
        """Float ones of a run-time shape (a 1-D int64 tensor): masks of real elements."""
        return self._filled(shape, 1.0, "ones")

    def _filled(self, shape: str, fill: float, hint: str) -> str:
        from onnx import TensorProto, helper

        value = helper.make_tensor(hint, TensorProto.FLOAT, [1], [fill])
        return self.op("ConstantOfShape", [shape], value=value, hint=hint)

    def subgraph(self) -> Builder:
        """A builder for a nested graph (a Scan body) sharing names and initializers."""
        sub = Builder(self.opset, self.weights, parent=self)
        sub.scope = self.scope
        return sub


NEG_INF = -math.inf
