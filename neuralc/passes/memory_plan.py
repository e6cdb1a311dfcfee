"""``memory-plan``: a static plan that puts every intermediate buffer of a function into a
numbered slot of one arena, reusing the slots of dead buffers.

Buffers are the results of function-level kernels (``kernel.fused`` after fusion, every
compute op before it); function inputs and results belong to the caller (a code generator
writes a result straight into the caller's output buffer), constants and init values to the
weights, so none of them is planned.

The plan walks the function in program order (:func:`~neuralc.passes.analysis.liveness`). A
buffer is free once the op that reads it last has run; a new value takes the free slot that is
provably at least as large (:func:`~neuralc.passes.analysis.provably_ge`, which holds for every
symbol size in its ``dims`` range, symbols being at least 1), choosing the smallest such slot
at the nominal sizes (best fit), else it opens a new slot of its own size. A slot never grows:
with symbolic sizes "the larger of two" has no closed form unless one provably dominates, and
sizes that cannot be compared (``batch * 64`` against ``seq * 8``) simply stay apart.

The plan prints with the IR and parses back:

- ``buffer = N`` on each kernel with a planned result (a list for several results, ``none``
  for a result the caller owns);
- on the function: ``buffer_bytes`` (each slot's size, symbolic), ``peak_bytes`` (the arena
  size, the sum of the slots, as an expression such as ``"batch * 1024 + 64"``), and
  ``peak_bytes_nominal`` with the ``nominal_sizes`` it was taken at;
- the arena layout: ``buffer_offsets`` (each slot's byte offset, each a multiple of
  ``ARENA_ALIGN`` = 64 bytes so vector loads and cache lines line up), ``scratch_offset``
  (where the scratch region starts, when a kernel needs one: a recurrence's states, see
  ``DefinedOp.loop_scratch``; kernels run one at a time, so they share it and it is as large
  as the largest need) and ``arena_bytes`` (the arena's size). All are symbolic: a runtime
  evaluates them once per call from the input sizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from neuralc.ir.core import Module, Op, Rewriter, func_body, func_return
from neuralc.ir.dims import Dim, ceildiv, dmax, symbols
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.types import TensorType
from neuralc.passes.analysis import (
    LiveRange,
    UnrankedError,
    dim_text,
    eval_dim,
    liveness,
    nominal_sizes,
    provably_ge,
    symbol_lower_bounds,
    type_bytes,
)
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass

PLAN_ATTRS = ("buffer_bytes", "peak_bytes", "peak_bytes_nominal", "nominal_sizes",
              "buffer_offsets", "arena_bytes", "scratch_offset")
ARENA_ALIGN = 64


def aligned(size: Dim, align: int = ARENA_ALIGN) -> Dim:
    """``size`` rounded up to a multiple of ``align``."""
    return ceildiv(size, align) * align


@dataclass
class Slot:
    """One arena slot: its fixed size and the function-level index where it becomes free."""

    index: int
    size: Dim
    free_after: int
    values: list[LiveRange] = field(default_factory=list)


@dataclass
class MemoryPlan:
    slots: list[Slot]
    assignment: dict[int, int]  # id(value) -> slot index

    @property
    def peak(self) -> Dim:
        total: Dim = 0
        for s in self.slots:
            total = total + s.size
        return total


def kernel_scratch(kernel: Op) -> list[TensorType]:
    """The scratch buffers a kernel's loop lowering needs (its ops' ``loop_scratch``)."""
    out: list[TensorType] = []
    for op in kernel.regions[0].blocks[0].ops if kernel.regions else []:
        if isinstance(op, DefinedOp):
            out += op.loop_scratch()
    return out


def scratch_bytes(kernel: Op) -> Dim:
    total: Dim = 0
    for t in kernel_scratch(kernel):
        total = total + aligned(type_bytes(t))
    return total


def max_scratch(func: Op) -> Dim:
    """Scratch for the kernel that needs the most: kernels run one after another, so they all
    share one region at the end of the arena."""
    sizes = [scratch_bytes(op) for op in func_body(func).ops if op.name == "kernel.fused"]
    sizes = [s for s in sizes if s != 0]
    return dmax(*sizes) if sizes else 0


def plan_function(func: Op, lows: dict[str, int], sizes: dict[str, int]) -> MemoryPlan:
    """Assign every buffer of ``func`` a slot (linear scan, best fit among provable fits);
    the function's results are the caller's and get none."""
    slots: list[Slot] = []
    assignment: dict[int, int] = {}
    returned = {id(v) for v in func_return(func).operands}
    for lr in liveness(func):
        if id(lr.value) in returned:
            continue
        free = [s for s in slots if s.free_after < lr.start and provably_ge(s.size, lr.size, lows)]
        if free:
            slot = min(free, key=lambda s: (eval_dim(s.size, sizes), s.index))
        else:
            slot = Slot(len(slots), lr.size, -1)
            slots.append(slot)
        slot.free_after = max(slot.free_after, lr.end)
        slot.values.append(lr)
        assignment[id(lr.value)] = slot.index
    return MemoryPlan(slots, assignment)


@register_pass
@dataclass
class MemoryPlanPass(Pass):
    name = "memory-plan"
    level = "any"
    summary = "assign intermediate buffers to reusable arena slots; record the peak bytes"

    def run(self, module: Module, ctx: PassContext) -> None:
        lows = symbol_lower_bounds(module)
        sizes = nominal_sizes(module)
        for func in module.funcs:
            try:
                plan = plan_function(func, lows, sizes)
            except UnrankedError as e:
                ctx.diags.error(f"memory-plan: {e}", func.location)
                continue
            rewriter = Rewriter()
            for op in func_body(func).ops:
                rewriter.remove_attr(op, "buffer")
                ids = [plan.assignment.get(id(r)) for r in op.results]
                if any(i is not None for i in ids):
                    rewriter.set_attr(op, "buffer", ids[0] if len(ids) == 1 else ids)
            for key in PLAN_ATTRS:
                rewriter.remove_attr(func, key)
            used: set[str] = set()
            for slot in plan.slots:
                used |= symbols(slot.size)
            offsets: list[Dim] = []
            end: Dim = 0
            for slot in plan.slots:
                offsets.append(end)
                end = end + aligned(slot.size)
            attrs = {"buffer_bytes": [dim_text(s.size) for s in plan.slots],
                     "peak_bytes": dim_text(plan.peak),
                     "peak_bytes_nominal": eval_dim(plan.peak, sizes),
                     "buffer_offsets": [dim_text(o) for o in offsets]}
            scratch = max_scratch(func)
            if scratch != 0:
                attrs["scratch_offset"] = dim_text(end)
                end = end + scratch
            attrs["arena_bytes"] = dim_text(end)
            if used:
                attrs["nominal_sizes"] = {k: sizes[k] for k in sorted(used)}
            for key, value in attrs.items():
                rewriter.set_attr(func, key, value)
