"""``fuse``: group the tensor ops of each function into ``kernel.fused`` ops, one per kernel.

Which ops may share a kernel follows TVM's rule set, asked of each op's fusion kind
(:func:`~neuralc.passes.analysis.fusion_kind`, so adding an op never edits this pass):

- elementwise and broadcast ops fuse with each other and with anything below;
- injective ops (reshape, transpose, slice, concat, gather) join elementwise and reduction
  kernels, but never an output-fusible kernel (they would change its output tiling);
- reductions fuse with an elementwise prologue and epilogue, and several reductions share a
  kernel when they reduce tensors of one shape over the same axes (softmax, layer norm);
- an output-fusible op (matmul, conv) takes an epilogue of elementwise/broadcast ops that keep
  its result shape (bias, activation, residual add, scale/shift); it takes no reduction and no
  second output-fusible op, and no prologue except casts and reshapes of values from outside
  the kernel (applied as it loads its operands: the conversions ``precision`` inserts, the
  flatten before a dense layer);
- opaque ops (attention, unknown ops) stay alone;
- no fusion may create a cycle between kernels.

Which legal fusion happens first is Inductor's choice: every producer/consumer pair of groups
is scored by the bytes of memory traffic the merge saves (``traffic(A) + traffic(B) -
traffic(A + B)``, reads of distinct inputs plus writes of values used outside, see
:mod:`~neuralc.passes.analysis`) at the nominal sizes (``batch`` = 1, other symbols 64), and
the best pair merges first, until no legal pair is left. Ties go to the pair earliest in the
program, so the result is deterministic.

Every tensor op ends up in a kernel, a lone op in a kernel of its own, so a backend sees only
``kernel.fused`` ops and constants (and any op of another dialect, left alone). A kernel
yields the values used outside it; a dead group yields its unused results, so that ``dce``
can remove it (fusion deletes nothing). Constants are not members: a weight stays at function
level and enters the kernel as an operand; a scalar fill (``tensor.constant {value = ...}`` of
one element) is cloned into each body that uses it, where a backend emits it as an immediate.
Kernels are named ``fused_N`` module-wide in program order, their ``kind`` names the pattern
(``conv+elementwise``, ``reduction+elementwise``), and their location fuses the distinct
member locations in order.

Every rejected candidate pair is recorded on the pass (``FusePass.report``) as a line that
says why, ``not fused: %4 (tensor.reduce, reduction) into fused_2 (conv+elementwise): a
reduction cannot join an output-fusible kernel``, with ops named as in the input IR and
kernels by their final names; ``fused: ...`` lines record the merges made and the bytes each
saved. ``debug`` prints the lines to stderr, each prefixed ``fuse: ``.

Cost: the greedy loop rescores only the pairs around each merge; about a second for a
function of 1200 ops.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field

from neuralc.ir.core import Block, Module, Op, OpResult, Region, Rewriter, Value, func_body
from neuralc.ir.dialects.kernel import type_symbols
from neuralc.ir.dims import product
from neuralc.ir.types import shape_str
from neuralc.location import UNKNOWN, FusedLoc, Location, UnknownLoc
from neuralc.passes.analysis import (
    eval_dim,
    fusion_kind,
    is_load_time,
    nominal_sizes,
    value_bytes,
)
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass

_LOAD_OPS = ("tensor.cast", "tensor.reshape")
_SHORT = {"tensor.conv": "conv", "tensor.matmul": "matmul", "tensor.attention": "attention"}


def is_scalar_constant(v: Value) -> bool:
    """A fill ``tensor.constant {value = ...}`` of any shape (a zero initial state, a scalar):
    cloned into the kernels that read it, where each element is an immediate; never read from
    memory."""
    if not isinstance(v, OpResult) or v.op.name != "tensor.constant":
        return False
    return "value" in v.op.attributes and v.type.shape is not None


def fused_location(locs: Iterable[Location]) -> Location:
    """The distinct known locations in order: one stays itself, several become a FusedLoc."""
    out: list[Location] = []
    for loc in locs:
        parts = loc.locs if isinstance(loc, FusedLoc) else (loc,)
        for p in parts:
            if not isinstance(p, UnknownLoc) and p not in out:
                out.append(p)
    if not out:
        return UNKNOWN
    return out[0] if len(out) == 1 else FusedLoc(tuple(out))


def kernel_kind(ops: list[Op]) -> str:
    """The pattern of a kernel: its anchor (matmul, conv, reduction, ...) and what joined it."""
    kinds = [fusion_kind(op) for op in ops]
    head: list[str] = []
    for op, k in zip(ops, kinds):
        if k in ("output_fusible", "opaque"):
            head.append(_SHORT.get(op.name, op.name.split(".", 1)[-1]))
    if "reduction" in kinds:
        head.append("reduction")
    tail = []
    if "injective" in kinds:
        tail.append("injective")
    if "elementwise" in kinds or "broadcast" in kinds:
        tail.append("elementwise")
    return "+".join(head + tail) or "empty"


@dataclass
class _Group:
    gid: int
    members: list[int]  # function-level op indices, ascending
    fusible: bool  # a group of tensor ops (candidates); False for anything else

    @property
    def first(self) -> int:
        return self.members[0]

    @property
    def last(self) -> int:
        return self.members[-1]


@dataclass
class _Decision:
    """A merge made or refused, rendered into a report line once kernels have names."""

    accepted: bool
    producer: list[int]
    consumer: list[int]
    edge: tuple[int, int]
    text: str  # the reason, or the bytes saved


class _Planner:
    """Groups the ops of one function body (the legality rules and the greedy merge)."""

    def __init__(self, func: Op, sizes: dict[str, int]):
        self.func = func
        self.sizes = sizes
        self.ops: list[Op] = list(func_body(func).ops)
        self.index = {id(op): i for i, op in enumerate(self.ops)}
        self.names = _op_names(func)
        self.kinds = [fusion_kind(op) for op in self.ops]
        n = len(self.ops)
        self.preds: list[set[int]] = [set() for _ in range(n)]
        self.succs: list[set[int]] = [set() for _ in range(n)]
        for i, op in enumerate(self.ops):
            for inner in op.walk():
                for v in inner.operands:
                    if isinstance(v, OpResult) and id(v.op) in self.index:
                        j = self.index[id(v.op)]
                        if j != i:
                            self.preds[i].add(j)
                            self.succs[j].add(i)
        self.groups: dict[int, _Group] = {}
        self.group_of: list[int] = list(range(n))
        self.load_time: dict[Op, bool] = {}  # is_load_time's answers, shared over the body
        for i, op in enumerate(self.ops):
            self.groups[i] = _Group(i, [i], self._fusible(op))
        self.next_gid = n
        self.decisions: list[_Decision] = []
        self._traffic: dict[int, int] = {}
        self._nbytes: dict[int, int] = {}

    # -- membership -------------------------------------------------------------------------
    def _fusible(self, op: Op) -> bool:
        # Work on weights alone (BatchNorm's scale, folded weights, a positional table) is done
        # once when weights are loaded, not per inference: it stays out of kernels, like a
        # constant.
        if op.results and is_load_time(op.results[0], self.load_time):
            return False
        return op.dialect == "tensor" and self.kinds[self.index[id(op)]] != "none"

    def name(self, i: int) -> str:
        return f"%{self.names.get(id(self.ops[i]), '?')}"

    def describe(self, i: int) -> str:
        return f"{self.name(i)} ({self.ops[i].name}, {self.kinds[i]})"

    # -- traffic ----------------------------------------------------------------------------
    def traffic(self, members: list[int]) -> int:
        """Bytes a kernel of ``members`` moves at the nominal sizes (reads + writes)."""
        inside = {id(self.ops[i]) for i in members}
        seen: set[int] = set()
        total = 0
        for i in members:
            op = self.ops[i]
            for v in op.operands:
                if isinstance(v, OpResult) and id(v.op) in inside:
                    continue
                if id(v) in seen or is_scalar_constant(v):
                    continue
                seen.add(id(v))
                total += self.nbytes(v)
            for r in op.results:
                if any(id(u.op) not in inside for u in r.uses):
                    total += self.nbytes(r)
        return total

    def nbytes(self, v: Value) -> int:
        """Bytes of ``v`` at the nominal sizes (cached: scoring asks for them many times)."""
        n = self._nbytes.get(id(v))
        if n is None:
            n = self._nbytes[id(v)] = eval_dim(value_bytes(v), self.sizes)
        return n

    def group_traffic(self, g: _Group) -> int:
        if g.gid not in self._traffic:
            self._traffic[g.gid] = self.traffic(g.members)
        return self._traffic[g.gid]

    def score(self, a: _Group, b: _Group) -> int:
        union = sorted(a.members + b.members)
        return self.group_traffic(a) + self.group_traffic(b) - self.traffic(union)

    # -- group graph --------------------------------------------------------------------------
    def group_succs(self, g: _Group) -> set[int]:
        return {self.group_of[j] for i in g.members for j in self.succs[i]} - {g.gid}

    def group_preds(self, g: _Group) -> set[int]:
        return {self.group_of[j] for i in g.members for j in self.preds[i]} - {g.gid}

    def path_around(self, a: _Group, b: _Group) -> int | None:
        """An op on a path from ``a`` to ``b`` through another group (fusing would make a
        cycle), or None. Groups that start after ``b`` ends cannot reach it: pruned."""
        stack = [(g, g) for g in self.group_succs(a) if g != b.gid]
        seen: set[int] = set()
        while stack:
            gid, via = stack.pop()
            if gid in seen:
                continue
            seen.add(gid)
            g = self.groups[gid]
            if g.first > b.last:
                continue
            succ = self.group_succs(g)
            if b.gid in succ:
                return self.groups[via].first
            stack.extend((s, via) for s in succ if s not in seen and s != a.gid)
        return None

    # -- legality -----------------------------------------------------------------------------
    def illegal(self, a: _Group, b: _Group) -> str | None:
        """Why producer group ``a`` and consumer group ``b`` may not share a kernel."""
        union = sorted(a.members + b.members)
        kinds = {i: self.kinds[i] for i in union}
        for i in union:
            if kinds[i] == "opaque":
                return f"{self.name(i)} ({self.ops[i].name}) is opaque and stays alone"
        outs = [i for i in union if kinds[i] == "output_fusible"]
        reds = [i for i in union if kinds[i] == "reduction"]
        if len(outs) > 1:
            return (f"two output-fusible ops ({self.name(outs[0])} {self.ops[outs[0]].name}, "
                    f"{self.name(outs[1])} {self.ops[outs[1]].name}) never share a kernel")
        if outs and reds:
            return "a reduction cannot join an output-fusible kernel"
        if outs:
            reason = self._epilogue_problem(outs[0], union)
            if reason:
                return reason
        reason = self._recomputed_reduction(union)
        if reason:
            return reason
        if len(reds) > 1:
            sig0 = self._reduce_space(reds[0])
            for r in reds[1:]:
                if self._reduce_space(r) != sig0:
                    return (f"{self.name(reds[0])} and {self.name(r)} reduce over different "
                            "shapes or axes, so one kernel cannot hold both")
        via = self.path_around(a, b)
        if via is not None:
            return (f"fusing would create a cycle through {self.name(via)} "
                    f"({self.ops[via].name})")
        return None

    def _epilogue_problem(self, anchor: int, union: list[int]) -> str | None:
        aop = self.ops[anchor]
        what = f"{self.name(anchor)} ({aop.name})"
        inside = set(union)
        reach = {anchor}
        todo = [anchor]
        while todo:
            i = todo.pop()
            for j in self.succs[i]:
                if j in inside and j not in reach:
                    reach.add(j)
                    todo.append(j)
        loads = self._load_ops(union)
        before = [i for i in union if i not in reach and i not in loads]
        if before:
            feeds = [i for i in before if i in self.preds[anchor]]
            i = (feeds or before)[0]
            return (f"{self.name(i)} ({self.ops[i].name}) would be a prologue of {what}; "
                    "an output-fusible op takes only an epilogue")
        shape = aop.results[0].type.shape
        for i in union:
            if i not in reach:
                continue  # a load op
            if self.kinds[i] == "injective":
                return (f"an output-fusible kernel takes only an elementwise epilogue, and "
                        f"{self.name(i)} ({self.ops[i].name}) is injective")
            got = self.ops[i].results[0].type.shape
            if got != shape:
                return (f"the epilogue must keep the result shape of {what}, "
                        f"{shape_str(shape or ())}, but {self.name(i)} gives "
                        f"{shape_str(got or ())}")
        return None

    def _load_ops(self, union: list[int]) -> set[int]:
        """Members that only convert or view values from outside the group: casts and
        reshapes whose group inputs are themselves load ops. An output-fusible kernel applies
        them as it loads its operands (the casts ``precision`` inserts, a flatten before a
        dense layer), so they may precede its anchor. A transpose is not one: it changes the
        access pattern the kernel's tiling is built on."""
        inside = set(union)
        loads: set[int] = set()
        for i in union:  # ascending, so producers come first
            if self.ops[i].name in _LOAD_OPS and (self.preds[i] & inside) <= loads:
                loads.add(i)
        return loads

    def _recomputed_reduction(self, union: list[int]) -> str | None:
        """A reduction over axes that are not the innermost ones (GroupNorm's statistics over
        height, width and a group's channels) whose result the kernel broadcasts back over
        its whole input space: loop code computes the statistic once per output element
        (O(n^2)), so its consumer starts a new kernel (a row reduction, over the last axes, is
        computed once per row and stays fused)."""
        inside = set(union)
        for r in union:
            if self.kinds[r] != "reduction":
                continue
            shape, axes = self._reduce_space(r)
            n = len(shape)
            if not axes or list(axes) == list(range(n - len(axes), n)):
                continue
            space = product(list(shape))
            reach, todo = {r}, [r]
            while todo:
                i = todo.pop()
                for j in self.succs[i]:
                    if j in inside and j not in reach:
                        reach.add(j)
                        todo.append(j)
            for j in sorted(reach - {r}):
                results = self.ops[j].results
                sink = not self.succs[j] or any(x not in inside for x in self.succs[j])
                if sink and results and results[0].type.shape is not None \
                        and product(list(results[0].type.shape)) == space:
                    return (f"{self.name(j)} ({self.ops[j].name}) would broadcast "
                            f"{self.name(r)} (a reduction over axes {list(axes)}, not the "
                            "innermost) back over its input: the reduction would be recomputed "
                            "for every element")
        return None

    def _reduce_space(self, i: int) -> tuple:
        op = self.ops[i]
        shape = op.operands[0].type.shape or ()
        axes = sorted(a % len(shape) for a in op.attributes.get("axes", [])) if shape else []
        return (shape, tuple(axes))

    # -- the greedy merge -----------------------------------------------------------------------
    def candidates(self, g: _Group) -> list[tuple[_Group, _Group]]:
        out = []
        for p in sorted(self.group_preds(g)):
            if self.groups[p].fusible:
                out.append((self.groups[p], g))
        for s in sorted(self.group_succs(g)):
            if self.groups[s].fusible:
                out.append((g, self.groups[s]))
        return out

    def edge(self, a: _Group, b: _Group) -> tuple[int, int]:
        """One op edge from ``a`` into ``b`` (the first in program order), for messages."""
        for j in b.members:
            for i in sorted(self.preds[j]):
                if self.group_of[i] == a.gid:
                    return (i, j)
        return (a.first, b.first)

    def run(self) -> None:
        heap: list[tuple[int, int, int, int, int]] = []
        pushed: set[tuple[int, int]] = set()

        def push(a: _Group, b: _Group) -> None:
            if (a.gid, b.gid) in pushed:
                return
            pushed.add((a.gid, b.gid))
            heapq.heappush(heap, (-self.score(a, b), a.first, b.first, a.gid, b.gid))

        for g in list(self.groups.values()):
            if g.fusible:
                for a, b in self.candidates(g):
                    push(a, b)
        while heap:
            neg, _, _, ga, gb = heapq.heappop(heap)
            if ga not in self.groups or gb not in self.groups:
                continue
            a, b = self.groups[ga], self.groups[gb]
            reason = self.illegal(a, b)
            edge = self.edge(a, b)
            if reason is not None:
                self.decisions.append(_Decision(False, a.members, b.members, edge, reason))
                continue
            self.decisions.append(
                _Decision(True, a.members, b.members, edge, f"saves {-neg} bytes"))
            m = self.merge(a, b)
            for x, y in self.candidates(m):
                push(x, y)

    def merge(self, a: _Group, b: _Group) -> _Group:
        m = _Group(self.next_gid, sorted(a.members + b.members), True)
        self.next_gid += 1
        del self.groups[a.gid], self.groups[b.gid]
        self.groups[m.gid] = m
        for i in m.members:
            self.group_of[i] = m.gid
        return m

    def fused_groups(self) -> list[list[int]]:
        """The groups of tensor ops, each a list of op indices, in program order."""
        gs = [g.members for g in self.groups.values() if g.fusible]
        return sorted(gs, key=lambda ms: ms[0])


def _op_names(func: Op) -> dict[int, str]:
    """``id(op) -> N`` as the printer numbers op results (%N), so messages match the input."""
    out: dict[int, str] = {}
    n = 0
    for op in list(func.walk())[1:]:
        if op.results:
            out[id(op)] = str(n)
            n += 1
    return out


def build_kernel(ops: list[Op], rewriter: Rewriter) -> Op:
    """Move ``ops`` (in program order) into a new ``kernel.fused`` placed at the last of them.

    Outside values become block arguments, scalar constants are cloned in, and results used
    outside are yielded and their outside uses redirected to the kernel's results.
    """
    inside = {id(op) for op in ops}
    block = Block()
    inputs: list[Value] = []
    arg_of: dict[int, Value] = {}
    clones: list[Op] = []
    for op in ops:
        for v in op.operands:
            if (isinstance(v, OpResult) and id(v.op) in inside) or id(v) in arg_of:
                continue
            if is_scalar_constant(v):
                assert isinstance(v, OpResult)
                c = Op("tensor.constant", [], [v.type], dict(v.op.attributes),
                       location=v.op.location)
                clones.append(c)
                arg_of[id(v)] = c.result
            else:
                inputs.append(v)
                arg_of[id(v)] = block.add_arg(v.type)
    outputs = [r for op in ops for r in op.results
               if any(id(u.op) not in inside for u in r.uses)]
    if not outputs:
        # Dead code: yield the unused results so the kernel has results and ``dce`` (which
        # keeps result-less ops) can remove it. Fusion itself deletes nothing.
        outputs = [r for op in ops for r in op.results if not r.uses]
    used = sorted(kernel_symbols(inputs, outputs, ops))
    kernel = Op("kernel.fused", inputs, [r.type for r in outputs],
                {"kind": kernel_kind(ops), "name": "fused", "symbols": used},
                regions=[Region([block])], location=fused_location(op.location for op in ops))
    rewriter.insert_after(ops[-1], kernel)
    for old, new in zip(outputs, kernel.results):
        for use in list(old.uses):
            if id(use.op) not in inside:
                rewriter.set_operand(use.op, use.index, new)
    for c in clones:
        rewriter.append(block, c)
    for op in ops:
        rewriter.move_to_end(op, block)
        for k, v in enumerate(op.operands):
            if id(v) in arg_of:
                rewriter.set_operand(op, k, arg_of[id(v)])
    rewriter.append(block, Op("kernel.yield", outputs))
    return kernel


def kernel_symbols(inputs: list[Value], outputs: list[Value], ops: list[Op]) -> set[str]:
    """The symbolic sizes a kernel needs at run time: those in the types it reads, writes or
    computes (a code generator passes them as arguments)."""
    types = [v.type for v in inputs] + [v.type for v in outputs]
    for op in ops:
        for inner in op.walk():
            types += [r.type for r in inner.results]
    return type_symbols(types)


def _dependencies(op: Op, index: dict[int, int]) -> set[int]:
    deps: set[int] = set()
    for inner in op.walk():
        for v in inner.operands:
            if isinstance(v, OpResult) and id(v.op) in index:
                deps.add(index[id(v.op)])
    return deps


def _topological_order(func: Op, key: dict[int, float], rewriter: Rewriter) -> None:
    """Re-sort the function body so every value is defined before use, otherwise keeping the
    program order (``key``: an op's position; a kernel takes its first member's)."""
    body = func_body(func)
    ops = list(body.ops)
    index = {id(op): i for i, op in enumerate(ops)}
    deps = [_dependencies(op, index) for op in ops]
    users: list[list[int]] = [[] for _ in ops]
    for i, ds in enumerate(deps):
        for d in ds:
            users[d].append(i)
    remaining = [len(ds) for ds in deps]
    ready = [(key.get(id(op), float(i)), i) for i, op in enumerate(ops) if not deps[i]]
    heapq.heapify(ready)
    order: list[Op] = []
    while ready:
        _, i = heapq.heappop(ready)
        order.append(ops[i])
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                heapq.heappush(ready, (key.get(id(ops[u]), float(u)), u))
    if len(order) != len(ops):
        raise AssertionError("fusion left a cycle between kernels")
    rewriter.permute(body, order)


@register_pass
@dataclass
class FusePass(Pass):
    """Options: ``debug`` prints the reasons behind every fusion decision to stderr;
    ``merge=false`` makes every tensor op a kernel of its own (``-O0``: one kernel per op).

    ``report`` (not an option) holds those lines after :meth:`run`, ``fused: ...`` for merges
    made and ``not fused: ...`` for candidates refused, whether or not ``debug`` is set.
    """

    name = "fuse"
    level = "tensor"
    summary = "group tensor ops into kernel.fused kernels (TVM rules, Inductor traffic scores)"

    debug: bool = False
    merge: bool = True
    report: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    def run(self, module: Module, ctx: PassContext) -> None:
        self.report = []
        sizes = nominal_sizes(module)
        done: list[tuple[_Planner, dict[int, Op]]] = []
        for func in module.funcs:
            if not self._ranked(func, ctx):
                continue
            planner = _Planner(func, sizes)
            if self.merge:
                planner.run()
            done.append((planner, self._materialize(func, planner)))
        n = 0
        for func in module.funcs:
            for op in func_body(func).ops:
                if op.name == "kernel.fused":
                    Rewriter().set_attr(op, "name", f"fused_{n}")
                    n += 1
        for planner, kernel_of in done:
            said: set[tuple[int, int, str]] = set()
            reported = set(self.report)
            for d in planner.decisions:
                # A refused edge comes back each time a side grows; say it once.
                if not d.accepted and (*d.edge, d.text) in said:
                    continue
                said.add((*d.edge, d.text))
                line = render_decision(planner, d, kernel_of)
                if line is not None and line not in reported:
                    reported.add(line)
                    self.report.append(line)
        if self.debug:
            for line in self.report:
                sys.stderr.write(f"fuse: {line}\n")

    @staticmethod
    def _ranked(func: Op, ctx: PassContext) -> bool:
        for op in func_body(func).ops:
            if op.dialect != "tensor":
                continue
            for v in (*op.operands, *op.results):
                if v.type.shape is None:
                    ctx.diags.error(f"fuse needs inferred shapes, but {op.name} has the "
                                    f"unranked type {v.type}; run shape-infer first",
                                    op.location)
                    return False
        return True

    @staticmethod
    def _materialize(func: Op, planner: _Planner) -> dict[int, Op]:
        """Build the kernels; returns ``op index -> kernel`` for every member op."""
        key: dict[int, float] = {}
        kernel_of: dict[int, Op] = {}
        rewriter = Rewriter()
        for members in planner.fused_groups():
            kernel = build_kernel([planner.ops[i] for i in members], rewriter)
            key[id(kernel)] = float(members[0])
            for i in members:
                kernel_of[i] = kernel
        for i, op in enumerate(planner.ops):
            key.setdefault(id(op), float(i))
        body = func_body(func)
        for op in list(body.ops):
            if any(is_scalar_constant(r) for r in op.results) and not op.results[0].uses:
                rewriter.erase_op(op)
        _topological_order(func, key, rewriter)
        return kernel_of


def _kernel_text(kernel: Op | None) -> str:
    if kernel is None:
        return "?"
    return f"{kernel.attributes.get('name')} ({kernel.attributes.get('kind')})"


def render_decision(planner: _Planner, d: _Decision, kernel_of: dict[int, Op]) -> str | None:
    """One report line; None for a refusal whose two sides ended in one kernel anyway.

    A merge reads ``fused: %a (op, kind) -> %b (op, kind) in fused_N (kind): saves B bytes``
    (the first edge joined). A refusal names the lone op that would have moved, else the
    producer side, and the kernel it would have joined, by their final names.
    """
    kp, kc = kernel_of.get(d.producer[0]), kernel_of.get(d.consumer[0])
    i, j = d.edge
    if d.accepted:
        return (f"fused: {planner.describe(i)} -> {planner.describe(j)} in {_kernel_text(kc)}: "
                f"{d.text}")
    if kp is kc:
        return None
    if len(d.consumer) == 1:
        head = f"{planner.describe(d.consumer[0])} into {_kernel_text(kp)}"
    elif len(d.producer) == 1:
        head = f"{planner.describe(d.producer[0])} into {_kernel_text(kc)}"
    else:
        head = (f"{_kernel_text(kp)} with {_kernel_text(kc)} at "
                f"{planner.name(i)} -> {planner.name(j)}")
    return f"not fused: {head}: {d.text}"
