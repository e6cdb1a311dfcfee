"""Loops over a tensor axis: ``tensor.scan`` (a region run once per step), its terminator
``tensor.scan_yield``, and ``tensor.reverse`` (a flip, for sequences read last to first).

The recurrent layers (SimpleRNN, LSTM, GRU, ConvLSTM2D, Bidirectional) lower to these: the input
projection of every step is one ``tensor.matmul``/``tensor.conv`` over the whole sequence
outside the loop, and only the step that depends on the previous one runs inside a scan. The
body is made of ordinary tensor ops, so any recurrence lowers to the same op and a backend
needs one loop construct, not one kernel per layer kind.

``tensor.scan`` (JAX's ``lax.scan``, ONNX's ``Scan``):

- operands: ``num_scanned`` sequences, then ``num_carried`` initial states, then the values
  the body reads (weights); the body block takes, in that order, one step of each sequence
  (the sequence without its ``axis``), the current states, and the read values;
- the body ends with ``tensor.scan_yield(step outputs..., new states...)``;
- results: each step output stacked along ``axis`` (so a scan of length ``T`` over
  ``(batch, T, f)`` gives ``(batch, T, units)``), then the final states;
- ``reverse`` runs the steps last to first; step ``t``'s output is still stored at ``t`` (the
  stacked outputs line up with the input in both directions, as in JAX and torch's
  bidirectional modules; Keras's ``go_backwards`` order is a ``tensor.reverse`` of them).

Decision: the body reads nothing from outside the scan (every weight it uses is an operand),
although the verifier would allow it (the op does not declare ``isolated_from_above``). So
the reference semantics need only the operand arrays, and the fusion pass, which turns the
values a kernel reads from outside into its operands, wraps a scan without looking inside.
The scan's verifier enforces it. The time axis may be symbolic; a scan of length 0 gives
empty stacked outputs and returns its initial states.

Fusion kind opaque: the loop carries a dependence from step to step, so nothing fuses across
it (its body can be fused on its own later). Precision never: the states are accumulated over
every step, so the whole recurrence stays float32; the input projection outside the loop is
an ordinary matmul and may run in low precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from neuralc.ir.core import Block, BlockArgument, Op, OpResult, Region, Value
from neuralc.ir.dialects.tensor import (
    EvalContext,
    TensorOp,
    check_axes,
    concrete,
    ranked,
)
from neuralc.ir.dims import Dim
from neuralc.ir.numeric import np_dtype
from neuralc.ir.opdef import (
    BOOL,
    IntAttr,
    ListAttr,
    attribute,
    operand,
    region,
    register_op,
    result,
    var_operand,
    var_result,
)
from neuralc.ir.regions import infer_block, run_block, type_problems
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str, unranked

if TYPE_CHECKING:
    from neuralc.ir.builder import TensorBuilder



def _without(shape: tuple[Dim, ...], axis: int) -> tuple[Dim, ...]:
    return shape[:axis] + shape[axis + 1:]


def _with(shape: tuple[Dim, ...], axis: int, d: Dim) -> tuple[Dim, ...]:
    return shape[:axis] + (d,) + shape[axis:]


@register_op
class ScanOp(TensorOp):
    """A loop over ``axis`` of its sequences, carrying states; see the module docstring."""

    name = "tensor.scan"
    inputs = var_operand()
    outputs = var_result()
    body = region()
    num_scanned = attribute(IntAttr(1))
    num_carried = attribute(IntAttr(0))
    axis = attribute(IntAttr(0))
    reverse = attribute(BOOL)
    isolated_from_above = True
    FUSION = "opaque"
    PRECISION = "never"

    # -- structure ---------------------------------------------------------------------
    def split(self) -> tuple[int, int]:
        """(number of scanned sequences, number of carried states)."""
        return int(self.num_scanned), int(self.num_carried)

    def verify_extra(self) -> list[str]:
        op = self
        a = op.attributes
        errs: list[str] = []
        ns, nc = self.split()
        if len(op.operands) < ns + nc:
            errs.append(f"has {len(op.operands)} operands, fewer than its {ns} sequences and "
                        f"{nc} states")
        blocks = op.regions[0].blocks
        if len(blocks) != 1:
            return errs + ["needs exactly one block"]
        body = blocks[0]
        if len(body.args) != len(op.operands):
            errs.append(f"has {len(op.operands)} operands but its block takes {len(body.args)}")
        term = body.terminator
        if term is None or term.name != "tensor.scan_yield":
            return errs + ["its body must end with tensor.scan_yield"]
        if len(term.operands) < nc:
            errs.append(f"yields {len(term.operands)} values, fewer than its {nc} states")
        elif len(term.operands) != len(op.results):
            errs.append(f"yields {len(term.operands)} values for {len(op.results)} results")
        if errs or len(body.args) != len(op.operands):
            return errs
        for i, (v, arg) in enumerate(zip(op.operands, body.args)):
            want = v.type
            if i < ns and want.shape is not None:
                if a["axis"] >= len(want.shape):
                    errs.append(f"axis {a['axis']} is out of range for sequence {i} "
                                f"{shape_str(want.shape)}")
                    continue
                want = want.with_shape(_without(want.shape, a["axis"]))
            errs += type_problems(arg.type, want, f"block argument {i}")
        n_out = len(term.operands) - nc
        for k in range(nc):
            errs += type_problems(term.operands[n_out + k].type, op.operands[ns + k].type,
                                   f"yielded state {k}")
            errs += type_problems(op.results[n_out + k].type, op.operands[ns + k].type,
                                   f"final state {k}")
        return errs

    def loop_scratch(self) -> list[TensorType]:
        """Each state twice: the value a step reads and the one it writes (a step reads all
        of the old state, e.g. in its matmul, so it cannot update it in place)."""
        ns, nc = self.split()
        states = [v.type for v in self.operands[ns:ns + nc]]
        return states + states

    # -- shapes ------------------------------------------------------------------------
    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        op = self
        ns, nc = self.split()
        axis = int(op.attributes["axis"])
        body = op.regions[0].blocks[0]
        length: Dim | None = None
        for i in range(ns):
            shape = ranked(op, i)
            if axis >= len(shape):
                raise ShapeError(f"{op.name}: axis {axis} is out of range for sequence "
                                 f"{shape_str(shape)}")
            length = shape[axis] if length is None else ctx.unify(
                length, shape[axis], f"{op.name} length of sequence {i}")
        assert length is not None
        for i, arg in enumerate(body.args):
            shape = tuple(ctx.resolve(d) for d in ranked(op, i))
            arg.type = op.operands[i].type.with_shape(_without(shape, axis) if i < ns else shape)
        term = _infer_block(body, ctx, op.name)
        n_out = len(term.operands) - nc
        if n_out < 0:
            raise ShapeError(f"{op.name} yields fewer values than its {nc} states")
        outs: list[TensorType] = []
        for k, v in enumerate(term.operands[:n_out]):
            if v.type.shape is None or len(v.type.shape) < axis:
                raise ShapeError(f"{op.name}: step output {k} has no axis {axis} to stack on")
            outs.append(v.type.with_shape(_with(v.type.shape, axis, ctx.resolve(length))))
        finals: list[TensorType] = []
        for k in range(nc):
            init, new = op.operands[ns + k].type, term.operands[n_out + k].type
            assert init.shape is not None
            if init.dtype != new.dtype or new.shape is None or len(init.shape) != len(new.shape):
                raise ShapeError(f"{op.name}: state {k} starts as {init} but the body yields "
                                 f"{new}")
            for j, (d, e) in enumerate(zip(init.shape, new.shape)):
                ctx.unify(d, e, f"{op.name} state {k} axis {j}")
            finals.append(init.with_shape(tuple(ctx.resolve(d) for d in init.shape)))
        return outs + finals

    # -- semantics ---------------------------------------------------------------------
    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        op = self
        ns, nc = self.split()
        axis = int(op.attributes["axis"])
        seqs, states, reads = args[:ns], list(args[ns:ns + nc]), args[ns + nc:]
        body = op.regions[0].blocks[0]
        n_out = len(op.results) - nc
        length = seqs[0].shape[axis]
        steps = range(length - 1, -1, -1) if op.attributes["reverse"] else range(length)
        stacked: list[list[np.ndarray | None]] = [[None] * length for _ in range(n_out)]
        for t in steps:
            step = [np.take(x, t, axis=axis) for x in seqs]
            ys = run_block(body, [*step, *states, *reads], ctx, "tensor.scan_yield")
            for k in range(n_out):
                stacked[k][t] = ys[k]
            states = ys[n_out:]
        outs: list[np.ndarray] = []
        for k in range(n_out):
            t = op.results[k].type
            if length == 0:
                outs.append(np.zeros(concrete(t, ctx), np_dtype(t.dtype)))
            else:
                outs.append(np.stack(stacked[k], axis=axis))  # type: ignore[arg-type]
        return outs + [np.asarray(s) for s in states]


def _infer_block(body: Block, ctx: ShapeContext, owner: str) -> Op:
    return infer_block(body, ctx, "tensor.scan_yield", owner)


@register_op
class ScanYieldOp(TensorOp):
    """Ends a ``tensor.scan`` body: the step's outputs, then the new states."""

    name = "tensor.scan_yield"
    values = var_operand()
    terminator = True
    FUSION = "none"

    def verify_extra(self) -> list[str]:
        op = self
        parent = op.parent_op()
        if parent is None or parent.name != "tensor.scan":
            return ["tensor.scan_yield must end a tensor.scan body"]
        assert op.parent is not None
        if op.parent.terminator is not op:
            return ["tensor.scan_yield must be the last op of its block"]
        return []


@register_op
class ReverseOp(TensorOp):
    """``x`` with the order of its elements along ``axes`` reversed (``np.flip``, TOSA and
    StableHLO ``reverse``). Used where a sequence is read last to first (Keras's
    ``go_backwards`` output order)."""

    name = "tensor.reverse"
    input = operand()
    output = result()
    axes = attribute(ListAttr(IntAttr(), non_empty=True))
    FUSION = "injective"

    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        op = self
        shape = ranked(op)
        axes = check_axes(op.attributes["axes"], len(shape), op.name)
        if len(set(axes)) != len(axes):
            raise ShapeError(f"{op.name}: axes {op.attributes['axes']} repeat an axis")
        return [op.operands[0].type.with_shape(shape)]

    def element(self, b: Any, index: list[Dim]) -> Any:
        """Reads ``size - 1 - i`` on the reversed axes: a flip is index arithmetic, no copy.
        (``b`` is an ``ElementBuilder``; this module does not import it.)"""
        shape = ranked(self)
        axes = {a % len(shape) for a in self.attributes["axes"]}
        return b.operand(self, 0, [shape[a] - 1 - i if a in axes else i
                                   for a, i in enumerate(index)])

    def evaluate(self, args: list[np.ndarray], ctx: EvalContext) -> list[np.ndarray]:
        op = self
        x = args[0]
        return [np.flip(x, axis=tuple(a % x.ndim for a in op.attributes["axes"])).copy()]

    def canonicalize(self, rewriter: Any) -> bool:
        # reverse(reverse(y, axes), axes) == y
        op = self
        inner = getattr(op.operands[0], "op", None)
        if not isinstance(inner, ReverseOp) or op.operands[0].type.shape is None:
            return False
        rank = len(op.operands[0].type.shape)
        mine = {a % rank for a in op.attributes["axes"]}
        if mine != {a % rank for a in inner.attributes["axes"]}:
            return False
        rewriter.replace_op(op, [inner.operands[0]])
        return True




# -- building a scan while lowering ----------------------------------------------------------

# (body builder, step inputs, states, read values) -> (step outputs, new states)
ScanBody = Callable[["TensorBuilder", list[Value], list[Value], list[Value]],
                    tuple[list[Value], list[Value]]]


def build_scan(b: TensorBuilder, seqs: list[Value], init: list[Value], reads: list[Value],
               body: ScanBody, *, reverse: bool = False, axis: int = 1,
               names: tuple[list[str], list[str], list[str]] | None = None
               ) -> tuple[list[Value], list[Value]]:
    """Insert a ``tensor.scan`` before ``b``'s graph op; returns (stacked outputs, finals).

    ``body`` builds the step with a builder whose ops go into the scan's block (each typed at
    once, with the graph op's location) from the block arguments it is given. ``names`` are
    hints for the block arguments, so the printed body reads ``%h``, ``%c``.
    """
    from neuralc.ir.builder import TensorBuilder  # passes build on the dialects

    block = Block()
    hints = names or ([], [], [])
    groups: list[list[BlockArgument]] = [[], [], []]
    for g, vals in enumerate((seqs, init, reads)):
        for i, v in enumerate(vals):
            t = v.type
            assert t.shape is not None, "build_scan needs typed operands"
            if g == 0:
                t = t.with_shape(_without(t.shape, axis))
            hint = hints[g][i] if i < len(hints[g]) else None
            groups[g].append(block.add_arg(t, hint))
    term = Op("tensor.scan_yield", [], [], {}, location=b.anchor.location)
    block.append(term)
    inner = TensorBuilder(term, {}, b.unifier)  # builds into the new, detached body
    outs, new = body(inner, list(groups[0]), list(groups[1]), list(groups[2]))
    assert len(new) == len(init), "the body must yield one new value per state"
    term.set_operands([*outs, *new])
    attrs = {"axis": axis, "num_carried": len(init), "num_scanned": len(seqs),
             "reverse": reverse}
    op = Op("tensor.scan", [*seqs, *init, *reads], [unranked()] * (len(outs) + len(init)),
            attrs, regions=[Region([block])], location=b.anchor.location)
    b.insert(op)
    for r, t in zip(op.results, op.infer_types(b.unifier)):
        r.type = t
    results: list[OpResult] = list(op.results)
    return list(results[:len(outs)]), list(results[len(outs):])

