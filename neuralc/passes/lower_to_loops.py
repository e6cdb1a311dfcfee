"""``lower-to-loops``: every ``kernel.fused`` becomes a ``loop.kernel``; every function a host
program over buffers.

A kernel's body is a DAG of tensor ops. Each output it yields is computed element by element:
a loop nest over the output's index (parallel loops, one per axis) whose body is the element
expression of the yielding op (:mod:`neuralc.ir.element`), which asks the element expressions
of the ops it reads, down to the kernel's input buffers. Nothing in between is materialised:
reshapes, transposes, slices, pads and broadcasts are index arithmetic; reductions (and
matmul and convolution, whose multiply-accumulate is a reduction marked ``contraction``) are
``loop.reduce`` ops. Outputs of one shape share one nest, so what they share is computed once.

Placement (:class:`_Emitter`) puts each scalar op in the innermost loop whose variable it
depends on, and nowhere deeper: a reduction over a row (softmax's max and sum, layer norm's
mean) lands in the loop over rows, computed once per row, and a bias read lands outside the
reduction that feeds it. Equal expressions are one op (the builder hash-conses them).

The host program: a network function ``@N`` becomes ``func.func @N(inputs..., outputs...,
init values..., arena)`` over ``memref``s; weights are ``loop.weight``, intermediate buffers
``loop.view``s of the arena at the memory plan's offsets, kernels ``loop.call``s. A kernel
result the function returns is written straight into the caller's output buffer; a returned
value no kernel writes there (an input, a weight, a value returned twice) is copied by a small
kernel. Attributes: ``num_inputs``, ``num_outputs``, ``init_args``, ``arena_bytes``. The init
function becomes ``@N.init(init values..., arena)``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from neuralc.ir.core import (
    Block,
    Module,
    Op,
    OpResult,
    Region,
    Rewriter,
    Value,
    func_body,
    func_return,
    init_args,
    network_inputs,
)
from neuralc.ir.dialects.loop import dim, dim_text
from neuralc.ir.dims import Dim, sym, symbols
from neuralc.ir.element import BufferRef, Cond, ElementBuilder, Node
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.types import MemRefType, ScalarType, TensorType
from neuralc.location import Location
from neuralc.passes.analysis import type_bytes
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.memory_plan import aligned, kernel_scratch
from neuralc.passes.registry import register_pass

_NEST_NAMES = "ijklmnpqstuvwxyz"


class LoweringError(Exception):
    """A tensor op has no loop lowering (yet): reported at its ``.nr`` location."""

    def __init__(self, message: str, location: Location):
        super().__init__(message)
        self.location = location


# -- the element DAG of one kernel -----------------------------------------------------------


class KernelLowering(ElementBuilder):
    """Builds the element expressions of one kernel body over its buffers."""

    def __init__(self, inputs: list[Value], buffer_types: list[MemRefType]):
        super().__init__()
        self.buffer_types = buffer_types
        self.buffers: dict[int, BufferRef] = {
            id(v): BufferRef(i, t.dtype, tuple(t.shape))
            for i, (v, t) in enumerate(zip(inputs, buffer_types))}
        self.memo: dict[tuple[int, tuple[Dim, ...]], Node] = {}
        self.avoid = set(_type_symbols(buffer_types))
        # Values read as one position of a buffer's axis (a scan step of a sequence).
        self.steps: dict[int, tuple[int, Dim]] = {}

    def nest_names(self, letters: Any, rank: int) -> list[str]:
        """Names for a loop nest of ``rank`` loops: ``i0, i1, ...`` (the next letter when one
        of them is taken: a model may call a size i0)."""
        for letter in letters:
            names = [f"{letter}{d}" for d in range(rank)]
            if not set(names) & self.avoid:
                self.avoid |= set(names)
                return names
        raise LoweringError("no free loop variable names", _loc(None))

    def bind_buffer(self, v: Value, buf: BufferRef, step: tuple[int, Dim] | None = None) -> None:
        """Read value ``v`` from ``buf``; ``step = (axis, t)``: ``v`` is ``buf`` at position
        ``t`` of ``axis`` (its index has that axis inserted)."""
        self.buffers[id(v)] = buf
        if step is not None:
            self.steps[id(v)] = step

    def buffer_index(self, v: Value, index: Sequence[Dim]) -> tuple[Dim, ...]:
        step = self.steps.get(id(v))
        if step is None:
            return tuple(index)
        axis, t = step
        return (*index[:axis], t, *index[axis:])

    # operands
    def value(self, v: Value, index: Sequence[Dim]) -> Node:
        """The element of value ``v`` (a buffer or an op of the body) at ``index``."""
        index = tuple(self.simplify(d) for d in index)
        key = (id(v), index)
        node = self.memo.get(key)
        if node is not None:
            return node
        buf = self.buffers.get(id(v))
        if buf is not None:
            node = self.load(buf, self.buffer_index(v, index))
        else:
            producer = v.op if isinstance(v, OpResult) else None
            if not isinstance(producer, DefinedOp) or len(producer.results) != 1:
                what = producer.name if producer is not None else "a block argument"
                raise LoweringError(f"{what} has no element function", _loc(producer))
            try:
                node = producer.element(self, list(index))
            except NotImplementedError as e:
                raise LoweringError(f"{producer.name}: {e}", producer.location) from None
        self.memo[key] = node
        return node

    def operand(self, op: Any, i: int, index: Sequence[Dim]) -> Node:
        return self.value(op.operands[i], index)

    def operand_guarded(self, op: Any, i: int, index: Sequence[Dim], conds: Sequence[Cond],
                        other: float) -> Node:
        v = op.operands[i]
        conds = [tuple(self.simplify(d) for d in c) for c in conds]
        conds = [c for c in conds if not _always(c, self.ranges)]
        if not conds:
            return self.value(v, index)
        buf = self.buffers.get(id(v))
        dtype = v.type.dtype
        if buf is not None:
            index = tuple(self.simplify(d) for d in index)
            return self.load(buf, self.buffer_index(v, index), conds, other)
        shape = v.type.shape
        inner = self.value(v, self.clamp(index, shape))
        return self.select(self.guard(conds), inner, self.const(other, dtype))


def _always(cond: tuple[Dim, ...], ranges: dict[str, tuple[Dim, Dim]]) -> bool:
    """A condition ``lo <= e < hi`` that the ranges prove (it can be dropped)."""
    from neuralc.ir.dims import bounds

    e, lo, hi = cond
    elo, ehi = bounds(e - lo, ranges)
    slack_lo, slack_hi = bounds(hi - 1 - e, ranges)
    return elo is not None and elo >= 0 and slack_lo is not None and slack_lo >= 0


def _loc(op: Op | None) -> Location:
    from neuralc.location import UNKNOWN

    return op.location if op is not None else UNKNOWN


# -- placing the DAG into loop nests -----------------------------------------------------------


@dataclass
class _Scope:
    block: Block
    vars: set[str]
    anchor: Op | None = None  # insert before it (an open child loop), else at the end
    cache: dict[int, Value] = field(default_factory=dict)
    binds: set[str] = field(default_factory=set)  # data-dependent indices bound here


class _Emitter:
    """Emits element nodes as loop-dialect ops, each in the innermost scope it depends on.

    The scopes are the open blocks, outermost first: the kernel body, then loops and
    reductions. A node goes into the innermost scope that defines one of its free variables
    (the kernel body if none), before that scope's open child, so it is computed once per
    iteration of the loops it depends on.
    """

    def __init__(self, lowering: KernelLowering, buffers: list[Value], location: Location):
        self.lw = lowering
        self.buffers = buffers
        self.loc = location
        self.rewriter = Rewriter()
        self.scopes: list[_Scope] = []

    # scopes
    def push(self, block: Block, vars: set[str], opener: Op | None) -> None:
        if self.scopes and opener is not None:
            self.scopes[-1].anchor = opener
        self.scopes.append(_Scope(block, set(vars)))

    def pop(self) -> None:
        self.scopes.pop()
        if self.scopes:
            self.scopes[-1].anchor = None

    def insert(self, depth: int, op: Op) -> Op:
        scope = self.scopes[depth]
        if scope.anchor is not None:
            self.rewriter.insert_before(scope.anchor, op)
        else:
            self.rewriter.append(scope.block, op)
        return op

    def depth_of(self, names: frozenset[str] | set[str]) -> int:
        depth = 0
        for n in names:
            for d in range(len(self.scopes) - 1, 0, -1):
                if n in self.scopes[d].vars or n in self.scopes[d].binds:
                    depth = max(depth, d)
                    break
        return depth

    def bound(self, name: str) -> bool:
        return any(name in s.binds for s in self.scopes)

    # nests
    def nest(self, names: list[str], extents: list[Dim],
             stores: list[tuple[int, Node]] | list[tuple[int, Node, list[Dim]]]) -> None:
        """Loops over ``names`` and, innermost, each ``(buffer, value)`` stored at them (or at
        a third element, an index over them)."""
        base = len(self.scopes)
        for n, e in zip(names, extents):
            loop = Op("loop.for", [], [], {"var": n, "lower": "0", "upper": dim_text(e),
                                           "kind": "parallel"},
                      regions=[Region([Block()])], location=self.loc)
            self.insert(len(self.scopes) - 1, loop)
            self.push(loop.regions[0].block, {n}, loop)
        for store in stores:
            buf, node = store[0], store[1]
            index = [dim_text(d) for d in store[2]] if len(store) > 2 else list(names)
            v = self.emit(node)
            self.insert(len(self.scopes) - 1,
                        Op("loop.store", [self.buffers[buf], v], [], {"index": index},
                           location=self.loc))
        while len(self.scopes) > base:
            self.pop()

    # nodes
    def emit(self, node: Node) -> Value:
        for name in sorted(node.free & self.lw.bindings.keys()):
            if not self.bound(name):
                self.emit_bind(self.lw.bindings[name])
        depth = self.depth_of(node.free)
        hit = self.scopes[depth].cache.get(id(node))
        if hit is not None:
            return hit
        value = self._make(node, depth)
        self.scopes[depth].cache[id(node)] = value
        return value

    def emit_bind(self, node: Node) -> None:
        value = self.emit(node.args[0])
        name, lower, upper = node.attrs
        depth = self.depth_of(node.free)
        self.insert(depth, Op("loop.bind", [value], [], {
            "var": name, "lower": dim_text(lower), "upper": dim_text(upper)},
            location=self.loc))
        self.scopes[depth].binds.add(name)

    def _make(self, node: Node, depth: int) -> Value:
        t = ScalarType(node.dtype)
        k, a = node.kind, node.attrs
        if k == "reduce":
            return self._reduce(node, depth)
        args = [self.emit(x) for x in node.args]
        if k == "load":
            buf, index, guard, other = a
            attrs: dict[str, Any] = {"index": [dim_text(d) for d in index]}
            if guard:
                attrs["guard"] = [[dim_text(d) for d in c] for c in guard]
                attrs["other"] = other
            op = Op("loop.load", [self.buffers[buf.index]], [t], attrs, location=self.loc)
        elif k == "const":
            value = a[0]
            if node.dtype == "i1":
                value = bool(value)
            elif node.dtype.startswith("i"):
                value = int(value)
            else:
                value = float(value)
            op = Op("loop.const", [], [t], {"value": value}, location=self.loc)
        elif k == "index":
            op = Op("loop.index", [], [t], {"expr": dim_text(a[0])}, location=self.loc)
        elif k == "guard":
            op = Op("loop.guard", [], [t], {"conds": [[dim_text(d) for d in c] for c in a[0]]},
                    location=self.loc)
        elif k == "unary":
            attrs = {"fn": a[0]} if a[1] is None else {"fn": a[0], "alpha": a[1]}
            op = Op("loop.unary", args, [t], attrs, location=self.loc)
        elif k in ("binary", "compare"):
            op = Op(f"loop.{k}", args, [t], {"fn": a[0]}, location=self.loc)
        elif k in ("select", "cast"):
            op = Op(f"loop.{k}", args, [t], {}, location=self.loc)
        else:
            raise AssertionError(f"no loop op for element node {k}")
        self.insert(depth, op)
        return op.results[0]

    def _reduce(self, node: Node, depth: int) -> Value:
        kind, names, lower, upper, contraction = node.attrs
        attrs: dict[str, Any] = {"kind": kind, "vars": list(names),
                                 "lower": [dim_text(d) for d in lower],
                                 "upper": [dim_text(d) for d in upper]}
        if contraction:
            attrs["contraction"] = True
        op = Op("loop.reduce", [], [ScalarType(node.dtype)], attrs, regions=[Region([Block()])],
                location=self.loc)
        self.insert(depth, op)
        # Inside the reduction only the scopes around it are visible: loops deeper than
        # ``depth`` (which it does not depend on) are set aside while its body is built.
        saved = self.scopes[depth + 1:]
        anchor = self.scopes[depth].anchor
        del self.scopes[depth + 1:]
        self.push(op.regions[0].block, set(names), op)
        body = self.emit(node.args[0])
        self.rewriter.append(op.regions[0].block, Op("loop.yield", [body], [],
                                                    location=self.loc))
        self.pop()
        self.scopes[depth].anchor = anchor
        self.scopes.extend(saved)
        return op.results[0]


# -- one kernel ---------------------------------------------------------------------------------


def lower_kernel(kernel: Op, name: str) -> Op:
    """The ``loop.kernel`` computing ``kernel`` (a ``kernel.fused``)."""
    body = kernel.regions[0].block
    scans = [op for op in body.ops if op.name == "tensor.scan"]
    if scans:
        return lower_scan_kernel(kernel, name, scans[0])
    term = body.terminator
    assert term is not None
    inputs = list(body.args)
    outputs = list(term.operands)
    types = [MemRefType.of(v.type) for v in inputs] + [MemRefType.of(v.type) for v in outputs]
    lw = KernelLowering(inputs, types)
    block = Block()
    buffers: list[Value] = []
    for i, t in enumerate(types):
        hint = inputs[i].name_hint if i < len(inputs) else f"out{i - len(inputs)}"
        buffers.append(block.add_arg(t, hint or f"in{i}"))
    syms = sorted(_type_symbols(types))
    loop_kernel = Op("loop.kernel", [], [], {"sym_name": name, "symbols": syms,
                                            "kind": kernel.attributes.get("kind", "")},
                     regions=[Region([block])], location=kernel.location)
    emitter = _Emitter(lw, buffers, kernel.location)
    emitter.push(block, set(), None)
    groups: dict[tuple[Dim, ...], list[int]] = {}
    for k, v in enumerate(outputs):
        assert v.type.shape is not None
        groups.setdefault(tuple(v.type.shape), []).append(k)
    letters = iter(_NEST_NAMES)
    for shape, members in groups.items():
        names = lw.nest_names(letters, len(shape))
        lw.declare(names, [(0, e) for e in shape])
        index = [sym(n) for n in names]
        stores = [(len(inputs) + k, lw.value(outputs[k], index)) for k in members]
        emitter.nest(names, list(shape), stores)
    return loop_kernel


def _nests(emitter: _Emitter, lw: KernelLowering, letters: Any,
           items: list[tuple[tuple[Dim, ...], int, Any]]) -> None:
    """One loop nest per distinct shape; each item ``(shape, buffer, how)`` stores
    ``how(index)`` -> ``(node, store index or None)`` into ``buffer`` at every index."""
    groups: dict[tuple[Dim, ...], list[tuple[int, Any]]] = {}
    for shape, buf, how in items:
        groups.setdefault(tuple(shape), []).append((buf, how))
    for shape, members in groups.items():
        names = lw.nest_names(letters, len(shape))
        lw.declare(names, [(0, e) for e in shape])
        index = [sym(n) for n in names]
        stores: list[tuple[int, Node, list[Dim]]] = []
        for buf, how in members:
            node, where = how(index)
            stores.append((buf, node, where if where is not None else index))
        emitter.nest(names, list(shape), stores)


def lower_scan_kernel(kernel: Op, name: str, scan: Op) -> Op:
    """A recurrence: states initialised, then a serial loop over time steps in which each
    step's outputs are stored at their time position and the new states computed into the
    second state buffers and copied back (a step reads all of the old states)."""
    body = kernel.regions[0].blocks[0]
    term = body.terminator
    assert term is not None
    inputs, outputs = list(body.args), list(term.operands)
    scratch = [MemRefType.of(t) for t in scan.loop_scratch()]
    types = ([MemRefType.of(v.type) for v in inputs] + [MemRefType.of(v.type) for v in outputs]
             + scratch)
    lw = KernelLowering(inputs, types[:len(inputs)])
    ns, nc = int(scan.attributes["num_scanned"]), int(scan.attributes["num_carried"])
    axis = int(scan.attributes["axis"])
    seqs, inits = scan.operands[:ns], scan.operands[ns:ns + nc]
    reads = scan.operands[ns + nc:]
    length = seqs[0].type.shape[axis]
    step_body = scan.regions[0].blocks[0]
    step_term = step_body.terminator
    assert step_term is not None
    n_out = len(step_term.operands) - nc
    block = Block()
    hints = ([v.name_hint or f"in{i}" for i, v in enumerate(inputs)]
             + [f"out{k}" for k in range(len(outputs))]
             + [f"state{k}" for k in range(nc)] + [f"next{k}" for k in range(nc)])
    buffers = [block.add_arg(t, h) for t, h in zip(types, hints)]
    base_out, base_cur = len(inputs), len(inputs) + len(outputs)
    base_next = base_cur + nc
    loop_kernel = Op("loop.kernel", [], [], {"sym_name": name,
                                            "symbols": sorted(_type_symbols(types)),
                                            "kind": kernel.attributes.get("kind", "")},
                     regions=[Region([block])], location=kernel.location)
    emitter = _Emitter(lw, buffers, kernel.location)
    emitter.push(block, set(), None)
    letters = iter(_NEST_NAMES)

    def ref(i: int, changes: tuple[str, ...] = ()) -> BufferRef:
        t = types[i]
        return BufferRef(i, t.dtype, tuple(t.shape), changes)

    def copy_from(src: BufferRef) -> Any:
        return lambda idx: (lw.load(src, idx), None)

    # Initial states.
    _nests(emitter, lw, letters, [
        (inits[k].type.shape, base_cur + k, (lambda v: lambda idx: (lw.value(v, idx), None))(
            inits[k])) for k in range(nc)])
    # The time loop.
    t_var = lw.fresh("t")
    lw.declare([t_var], [(0, length)])
    t_now: Dim = (length - 1 - sym(t_var)) if scan.attributes["reverse"] else sym(t_var)
    loop = Op("loop.for", [], [], {"var": t_var, "lower": "0", "upper": dim_text(length),
                                   "kind": "serial"},
              regions=[Region([Block()])], location=kernel.location)
    emitter.insert(0, loop)
    emitter.push(loop.regions[0].block, {t_var}, loop)
    for k, v in enumerate(seqs):
        arg = step_body.args[k]
        if id(v) not in lw.buffers:
            raise LoweringError("a scanned sequence must be a kernel input", scan.location)
        lw.bind_buffer(arg, lw.buffers[id(v)], (axis, t_now))
    for k in range(nc):
        lw.bind_buffer(step_body.args[ns + k], ref(base_cur + k, (t_var,)))
    for k, v in enumerate(reads):
        if id(v) not in lw.buffers:
            raise LoweringError("a value a scan body reads must be a kernel input",
                                scan.location)
        lw.bind_buffer(step_body.args[ns + nc + k], lw.buffers[id(v)])
    items: list[tuple[tuple[Dim, ...], int, Any]] = []
    for j in range(n_out):
        result = scan.results[j]
        for k, out in enumerate(outputs):
            if out is result:
                yv = step_term.operands[j]
                items.append((tuple(yv.type.shape), base_out + k,
                              (lambda y: lambda idx: (lw.value(y, idx),
                                                      [*idx[:axis], t_now, *idx[axis:]]))(yv)))
    for k in range(nc):
        yv = step_term.operands[n_out + k]
        items.append((tuple(yv.type.shape), base_next + k,
                      (lambda y: lambda idx: (lw.value(y, idx), None))(yv)))
    _nests(emitter, lw, letters, items)
    _nests(emitter, lw, letters, [
        (inits[k].type.shape, base_cur + k, copy_from(ref(base_next + k, (t_var,))))
        for k in range(nc)])
    emitter.pop()
    # Final states the kernel returns.
    finals = []
    for k in range(nc):
        result = scan.results[n_out + k]
        for i, out in enumerate(outputs):
            if out is result:
                finals.append((inits[k].type.shape, base_out + i,
                               copy_from(ref(base_cur + k))))
    _nests(emitter, lw, letters, finals)
    return loop_kernel


def copy_kernel(name: str, t: TensorType, location: Location) -> Op:
    """A kernel copying one buffer into another of type ``t``."""
    mt = MemRefType.of(t)
    block = Block()
    src, dst = block.add_arg(mt, "src"), block.add_arg(mt, "dst")
    kernel = Op("loop.kernel", [], [], {"sym_name": name, "symbols": sorted(_type_symbols([mt])),
                                       "kind": "copy"},
                regions=[Region([block])], location=location)
    lw = KernelLowering([src], [mt])
    emitter = _Emitter(lw, [src, dst], location)
    emitter.push(block, set(), None)
    names = lw.nest_names(iter(_NEST_NAMES), mt.rank)
    lw.declare(names, [(0, e) for e in mt.shape])
    emitter.nest(names, list(mt.shape), [(1, lw.value(src, [sym(n) for n in names]))])
    return kernel


def _type_symbols(types: Sequence[MemRefType | TensorType]) -> set[str]:
    out: set[str] = set()
    for t in types:
        for d in t.shape or ():
            out |= symbols(d)
    return out


# -- the host program ---------------------------------------------------------------------------


class _HostLowering:
    """Rewrites the functions of a tensor module into host programs over buffers."""

    def __init__(self, module: Module):
        self.module = module
        self.kernels: list[Op] = []
        self.copies = (f"copy_{n}" for n in itertools.count())

    def function(self, func: Op) -> Op:
        body = func_body(func)
        ret = func_return(func)
        new_block = Block()
        buf: dict[int, Value] = {}
        inputs = network_inputs(func)
        for a in inputs:
            na = new_block.add_arg(MemRefType.of(a.type), a.name_hint)
            na.location = a.location
            buf[id(a)] = na
        outs = [new_block.add_arg(MemRefType.of(v.type), f"out{i}")
                for i, v in enumerate(ret.operands)]
        for a in init_args(func):
            na = new_block.add_arg(MemRefType.of(a.type), a.name_hint)
            buf[id(a)] = na
        arena_bytes = str(func.attributes.get("arena_bytes", "0"))
        arena = new_block.add_arg(MemRefType((dim(arena_bytes),), "i8"), "arena")
        offsets = [dim(t) for t in func.attributes.get("buffer_offsets", [])]
        # A returned value written by its kernel goes straight to the first output slot
        # that returns it; others are copied there at the end.
        direct: dict[int, int] = {}
        for i, v in enumerate(ret.operands):
            if isinstance(v, OpResult) and v.op.name == "kernel.fused" and id(v) not in direct:
                direct[id(v)] = i
        copies: list[tuple[Value, int]] = []
        for i, v in enumerate(ret.operands):
            if direct.get(id(v)) != i:
                copies.append((v, i))
        ops: list[Op] = []
        for op in body.ops:
            if op.name == "tensor.constant":
                if "weight" not in op.attributes:
                    if op.results[0].uses:
                        raise LoweringError("a constant fill read as a buffer has no lowering "
                                            "yet", op.location)
                    continue
                w = Op("loop.weight", [], [MemRefType.of(op.results[0].type)],
                       {"weight": op.attributes["weight"]}, location=op.location)
                ops.append(w)
                buf[id(op.results[0])] = w.results[0]
            elif op.name == "kernel.fused":
                name = str(op.attributes["name"])
                self.kernels.append(lower_kernel(op, name))
                slots = op.attributes.get("buffer")
                slots = slots if isinstance(slots, list) else [slots] * len(op.results)
                results: list[Value] = []
                for r, slot in zip(op.results, slots):
                    if id(r) in direct:
                        results.append(outs[direct[id(r)]])
                        buf[id(r)] = outs[direct[id(r)]]
                        continue
                    if slot is None:
                        raise LoweringError(f"kernel {name} has a result with no buffer; run "
                                            "memory-plan before lower-to-loops", op.location)
                    view = Op("loop.view", [arena], [MemRefType.of(r.type)],
                              {"offset": dim_text(offsets[slot])}, location=op.location)
                    ops.append(view)
                    buf[id(r)] = view.results[0]
                    results.append(view.results[0])
                args = [buf[id(v)] for v in op.operands] + results
                offset: Dim = dim(str(func.attributes.get("scratch_offset", "0")))
                for t in kernel_scratch(op):
                    view = Op("loop.view", [arena], [MemRefType.of(t)],
                              {"offset": dim_text(offset)}, location=op.location)
                    ops.append(view)
                    args.append(view.results[0])
                    offset = offset + aligned(type_bytes(t))
                ops.append(Op("loop.call", args, [], {"callee": name}, location=op.location))
            elif op.name == "func.return":
                continue
            else:
                raise LoweringError(f"{op.name} at function level has no loop lowering; run "
                                    "fuse and outline-init first", op.location)
        for v, i in copies:
            name = next(self.copies)
            self.kernels.append(copy_kernel(name, v.type, func.location))
            ops.append(Op("loop.call", [buf[id(v)], outs[i]], [], {"callee": name},
                          location=func.location))
        for op in ops:
            new_block.append(op)
        new_block.append(Op("func.return", [], [], location=ret.location))
        attrs = {k: v for k, v in func.attributes.items()
                 if k in ("sym_name", "init", "init_for", "arena_bytes")}
        attrs.update({"num_inputs": len(inputs), "num_outputs": len(outs),
                      "init_args": len(init_args(func)), "arena_bytes": arena_bytes})
        return Op("func.func", [], [], attrs, regions=[Region([new_block])],
                  location=func.location)


def lower_module(module: Module) -> Module:
    """The loop-level module of a tensor module (after fusion, outline-init, memory-plan)."""
    host = _HostLowering(module)
    funcs = [host.function(f) for f in module.funcs]
    out = Module(module.name, Block(), dict(module.attributes))
    for k in host.kernels:
        out.body.append(k)
    for f in funcs:
        out.body.append(f)
    return out


@register_pass
@dataclass
class LowerToLoopsPass(Pass):
    name = "lower-to-loops"
    level = "tensor"
    summary = "lower kernel.fused kernels to loop nests over buffers, functions to host programs"

    def run(self, module: Module, ctx: PassContext) -> None:
        try:
            lowered = lower_module(module)
        except LoweringError as e:
            ctx.diags.error(f"cannot lower to loops: {e}", e.location)
            return
        module.body = lowered.body
        module.body.parent = None

