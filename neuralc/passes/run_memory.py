"""The memory one run of a network needs, from its graph IR's shapes, before anything exists.

A model can ask for more memory than a machine has (``Dense(100000)`` on 100,000 features is
37 GiB of weights; a batch of 10^8 images is 300 GiB of input). neuralc computes the figure
first and refuses a run over the ``MEMORY`` limit (neuralc.limits) with it, naming the layer
responsible, instead of failing in numpy after seconds of work; ``neuralc check`` prints it.
It is a lower bound of what any target allocates: every weight at its element type, plus the
most layer outputs alive at once (each from the layer that makes it to the last layer that
reads it; the inputs from the start, the outputs to the end).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from neuralc.ir.core import Op, Value, func_body
from neuralc.layers import catalog
from neuralc.limits import MEMORY, format_bytes
from neuralc.location import primary
from neuralc.passes.analysis import ITEMSIZE, eval_dim


@dataclass(frozen=True)
class RunMemory:
    """Bytes of one run, and the layers that need the most of them."""

    weights: int
    activations: int  # the most bytes of values alive at once
    heaviest: Op | None  # the layer whose weights are largest
    heaviest_bytes: int
    peak_at: Op | None  # the layer at which the most values are alive

    @property
    def total(self) -> int:
        return self.weights + self.activations

    def summary(self) -> str:
        """``weights 879 KiB + activations 105.6 KiB = 984.7 KiB``."""
        return (f"weights {format_bytes(self.weights)} + activations "
                f"{format_bytes(self.activations)} = {format_bytes(self.total)}")

    @property
    def culprit(self) -> Op | None:
        """The layer most responsible: the heaviest weights, or where activations peak."""
        return self.heaviest if self.weights >= self.activations else self.peak_at

    def over_limit(self) -> str | None:
        """The refusal of a run this large, naming the layer most responsible; None when it
        fits the limit."""
        if self.total <= MEMORY.value:
            return None
        w, a = format_bytes(self.weights), format_bytes(self.activations)
        if self.culprit is None:
            detail = f"weights {w}, activations {a}"
        elif self.weights >= self.activations:
            detail = (f"weights {w}, {format_bytes(self.heaviest_bytes)} of them in "
                      f"{where(self.culprit)}; activations {a}")
        else:
            detail = f"activations {a} at most, at {where(self.culprit)}; weights {w}"
        return f"this run needs {format_bytes(self.total)} ({detail}); {MEMORY.exceeded()}"


def where(op: Op) -> str:
    """``Dense 'dense' at m.nr:4:5``: a layer as messages name it."""
    spec = catalog.by_op(op.name)
    kind = spec.name if spec else op.name
    return f"{kind} '{op.attributes.get('name', '')}' at {primary(op.location)}"


def weight_bytes(op: Op) -> int:
    """Bytes of one graph op's weights (0 for ops without any or with unknown input shapes)."""
    spec = catalog.by_op(op.name) if op.dialect == "graph" else None
    types = [v.type for v in op.operands]
    if spec is None or any(t.shape is None for t in types):
        return 0
    total = 0
    for w in spec.weights(op.attributes, types).values():
        n = 1
        for d in w.shape:
            n *= eval_dim(d, {})
        total += n * ITEMSIZE.get(w.dtype, 4)
    return total


def _bytes(v: Value, sizes: Mapping[str, int]) -> int:
    t = v.type
    if t.shape is None:
        return 0
    n = 1
    for d in t.shape:
        n *= eval_dim(d, sizes)
    return max(n, 0) * ITEMSIZE.get(t.dtype, 4)


def run_memory(func: Op, sizes: Mapping[str, int]) -> RunMemory:
    """The memory of one run of ``func`` (graph IR, shapes inferred) at the symbol ``sizes``
    (a symbol not given takes its nominal size)."""
    ops = func_body(func).ops
    last: dict[int, int] = {}  # value id -> index of the last op reading it
    for i, op in enumerate(ops):
        for v in op.operands:
            last[id(v)] = len(ops) if op.name == "func.return" else i
    heaviest, heaviest_bytes, weights = None, 0, 0
    live = 0
    dying: dict[int, int] = {}  # op index -> bytes freed after it
    for a in func_body(func).args:
        if id(a) in last:  # an input nothing reads is never held
            b = _bytes(a, sizes)
            live += b
            dying[last[id(a)]] = dying.get(last[id(a)], 0) + b
    peak, peak_at = live, None
    for i, op in enumerate(ops):
        if op.name == "func.return":
            break
        w = weight_bytes(op)
        weights += w
        if w > heaviest_bytes:
            heaviest, heaviest_bytes = op, w
        for r in op.results:
            b = _bytes(r, sizes)
            live += b
            end = last.get(id(r), i)
            dying[end] = dying.get(end, 0) + b
        if live > peak:
            peak, peak_at = live, op
        live -= dying.pop(i, 0)
    return RunMemory(weights, peak, heaviest, heaviest_bytes, peak_at)
