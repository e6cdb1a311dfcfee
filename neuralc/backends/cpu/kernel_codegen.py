"""LLVM IR for one ``loop.kernel``: loops, reductions, loads and stores, scalar math, vectors.

A kernel becomes ``define internal void @k.<name>(ptr noalias %b0, ..., i64 %<symbol>...)``:
its buffers by pointer (they never overlap: the memory plan gives live buffers disjoint slots)
and the sizes it uses. Index expressions are i64 arithmetic with floor semantics
(``floordiv``/``mod`` of a possibly negative numerator round down, as the interpreter does);
where range analysis proves a numerator non-negative, a plain division is used.

Vectors: a ``loop.for`` with ``vectorize = W`` runs W iterations at once, then the remaining
ones (fewer than W) as one masked step: lanes past the end load and store nothing
(``llvm.masked.*``). Inside, every value that depends on the loop's variable is a
``<W x T>`` vector and every other value a scalar, broadcast where the two meet. A load whose
last index is the variable plus something independent of it is one vector load (a masked one
under a guard); any other varying index is a gather, and a store a scatter. A
``loop.reduce`` with ``vectorize = W`` accumulates W partial results along its last variable
(its masked last step adds the identity) and combines them at the end (the reassociation the
cpu tolerance allows). Transcendental functions are the polynomial ones of
:mod:`neuralc.backends.cpu.vecmath` at the same width.

Unroll-and-jam (``jam = J`` on a parallel loop): J copies ("instances") of the body are
emitted op by op, interleaved; a loop or reduction inside is shared by the copies (one loop,
J accumulators), so a matmul's tile of outputs shares each k's loads.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

from neuralc.backends.cpu import vecmath
from neuralc.backends.cpu.llvm_text import FLOATS, ITEMSIZE, FunctionText, Val, literal, llvm_type
from neuralc.ir.core import Block, Op, OpResult, Value
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import Dim, FloorDiv, MinMax, Mod, bounds, product, subs, sym, symbols
from neuralc.ir.scalar_fns import expand
from neuralc.ir.types import MemRefType

_IDENTITY = {"add": 0.0, "mul": 1.0, "max": float("-inf"), "min": float("inf")}
_FCMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
_ICMP = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
_VECMATH = ("exp", "expm1", "log", "tanh", "sigmoid", "softplus", "erf", "sin", "cos")
UNROLL = 4  # independent accumulators of a vectorised reduction
ZERO_BYTES_MAX = 1 << 16  # the largest zero buffer a guarded load may read instead


class CodegenError(Exception):
    """The loop IR holds something this code generator does not handle."""


@dataclass
class _Buffer:
    ptr: str
    dtype: str
    strides: list[Val]
    stride_dims: list[Dim]


@dataclass
class _Instance:
    """One copy of a loop body under unroll-and-jam: its index variables (a jammed loop's
    variable differs per copy), its values, and its vector lanes."""

    vars: dict[str, Val]
    values: MutableMapping[Any, Any]  # op results (by id), hoisted bases (by ("base", id))
    lanes: int = 1
    vvar: str | None = None
    mask: Val | None = None  # the lanes in range, in a vector loop's masked last step


class IndexEmitter:
    """Index and integer arithmetic into a function under construction (kernels and host
    programs share it). ``vars`` maps names to values; ``ranges`` helps prove numerators
    non-negative."""

    def __init__(self, f: FunctionText, name: str, vars: dict[str, Val] | None = None):
        self.f = f
        self.name = name
        self.vars: dict[str, Val] = dict(vars or {})
        self.ranges: dict[str, tuple[Dim, Dim]] = {}
        self.lanes = 1
        self.vvar: str | None = None
        self.mask: Val | None = None
        # A vector loop's lower bound where its lane 0 is always that bound plus a multiple of
        # the width (static bounds, not split across threads); absent otherwise.
        self.lane0_base: dict[str, int] = {}

    # -- index arithmetic ----------------------------------------------------------------------
    def index(self, d: Dim) -> Val:
        """``d`` as an i64 (or ``<W x i64>`` where it depends on the vectorised variable)."""
        if isinstance(d, int):
            return Val(str(d), "i64")
        total: Val | None = None
        for mono, coeff in d.terms:
            term: Val | None = None if coeff == 1 else Val(str(coeff), "i64")
            for atom in mono:
                a = self.atom(atom)
                term = a if term is None else self.iarith("mul", term, a)
            if term is None:
                term = Val(str(coeff), "i64")
            total = term if total is None else self.iarith("add", total, term)
        return total if total is not None else Val("0", "i64")

    def atom(self, a: object) -> Val:
        if isinstance(a, str):
            if a not in self.vars:
                raise CodegenError(f"{self.name}: unbound index variable '{a}'")
            return self.vars[a]
        if isinstance(a, MinMax):
            vals = [self.index(e) for e in a.args]
            out = vals[0]
            fn = "smin" if a.kind == "min" else "smax"
            for v in vals[1:]:
                out = self.intrinsic(fn, [out, v])
            return out
        assert isinstance(a, (FloorDiv, Mod))
        num = self.index(a.num)
        den = self.index(a.den)
        lo, _ = bounds(a.num, self.ranges)
        if lo is not None and lo >= 0:  # a non-negative numerator: truncation is floor
            return self.iarith("sdiv" if isinstance(a, FloorDiv) else "srem", num, den)
        q = self.iarith("sdiv", num, den)
        r = self.iarith("srem", num, den)
        neg = self.icmp("slt", r, Val("0", "i64"))
        if isinstance(a, FloorDiv):
            one = self.cast_int(neg, "i64")
            return self.iarith("sub", q, one)
        fix = self.select(neg, self.splat_to(den, max(r.lanes, den.lanes)),
                          Val("0", "i64", 1))
        return self.iarith("add", r, fix)

    def iarith(self, op: str, a: Val, b: Val) -> Val:
        if a.lanes == 1 and b.lanes == 1 and a.ref.lstrip("-").isdigit() \
                and b.ref.lstrip("-").isdigit():
            x, y = int(a.ref), int(b.ref)
            folded = {"add": x + y, "sub": x - y, "mul": x * y}.get(op)
            if folded is not None:
                return Val(str(folded), "i64")
        lanes = max(a.lanes, b.lanes)
        a, b = self.splat_to(a, lanes), self.splat_to(b, lanes)
        ref = self.f.assign(f"{op} {a.ty} {a.ref}, {b.ref}", "i")
        return Val(ref, a.dtype, lanes)

    def icmp(self, pred: str, a: Val, b: Val) -> Val:
        lanes = max(a.lanes, b.lanes)
        a, b = self.splat_to(a, lanes), self.splat_to(b, lanes)
        return Val(self.f.assign(f"icmp {pred} {a.ty} {a.ref}, {b.ref}", "c"), "i1", lanes)

    def cast_int(self, v: Val, to: str) -> Val:
        if v.dtype == to:
            return v
        op = "zext" if v.dtype == "i1" else ("sext" if ITEMSIZE[to] > ITEMSIZE[v.dtype]
                                             else "trunc")
        return Val(self.f.assign(f"{op} {v.ty} {v.ref} to {llvm_type(to, v.lanes)}"), to,
                   v.lanes)

    def splat_to(self, v: Val, lanes: int) -> Val:
        return self.f.splat(v, lanes)

    def intrinsic(self, fn: str, args: list[Val], ret_dtype: str | None = None) -> Val:
        lanes = max(a.lanes for a in args)
        args = [self.splat_to(a, lanes) for a in args]
        dtype = ret_dtype or args[0].dtype
        suffix = _mangle(args[0].dtype, lanes)
        call = ", ".join(f"{a.ty} {a.ref}" for a in args)
        ref = self.f.assign(f"call {llvm_type(dtype, lanes)} @llvm.{fn}.{suffix}({call})")
        return Val(ref, dtype, lanes)

    def select(self, cond: Val, a: Val, b: Val) -> Val:
        lanes = max(cond.lanes, a.lanes, b.lanes)
        cond, a, b = (self.splat_to(x, lanes) for x in (cond, a, b))
        ref = self.f.assign(f"select {cond.ty} {cond.ref}, {a.ty} {a.ref}, {b.ty} {b.ref}")
        return Val(ref, a.dtype, lanes)

class KernelCodegen(IndexEmitter):
    """Writes the LLVM function of one kernel; ``math_defs`` collects the vecmath functions
    (name, width) it calls."""

    def __init__(self, kernel: Op, math_defs: set[tuple[str, int, bool]]):
        super().__init__(FunctionText(), f"k.{kernel.attributes['sym_name']}")
        self.kernel = kernel
        self.symbols = list(kernel.attributes.get("symbols", []))
        self.math_defs = math_defs
        self.values: MutableMapping[Any, Any] = {}
        self.buffers: dict[int, _Buffer] = {}
        self.zero_bytes = 0  # the zero buffer (@nc_zeros) the guarded loads need
        self.insts = [_Instance(self.vars, self.values)]

    # -- the function ------------------------------------------------------------------------
    def generate(self) -> str:
        block = self.kernel.regions[0].blocks[0]
        params = [f"ptr noalias %b{i}" for i in range(len(block.args))]
        for s in self.symbols:
            params.append(f"i64 %s.{s}")
            self.vars[s] = Val(f"%s.{s}", "i64")
        if split_loop(self.kernel) is not None:  # the iterations of it this call runs
            params += ["i64 %par.lo", "i64 %par.hi"]
        self.f.start("entry")
        for i, a in enumerate(block.args):
            t = a.type
            assert isinstance(t, MemRefType)
            strides = [self.index(product(list(t.shape[k + 1:]))) for k in range(t.rank)]
            dims = [product(list(t.shape[k + 1:])) for k in range(t.rank)]
            self.buffers[id(a)] = _Buffer(f"%b{i}", t.dtype, strides, dims)
        self.block(block)
        self.f.emit("ret void")
        body = "\n".join(self.f.lines)
        return (f"define internal void @\"{self.name}\"({', '.join(params)}) nounwind {{\n"
                f"{body}\n}}\n")

    # -- instances: the copies of a body that unroll-and-jam interleaves ---------------------
    def activate(self, inst: _Instance) -> None:
        self.vars, self.values, self.lanes, self.vvar, self.mask = (
            inst.vars, inst.values, inst.lanes, inst.vvar, inst.mask)

    def within(self, insts: list[_Instance], fn) -> None:
        """Runs ``fn()`` with ``insts`` as the current instances, then restores them."""
        saved = self.insts
        self.insts = insts
        self.activate(insts[0])
        try:
            fn()
        finally:
            self.insts = saved
            self.activate(saved[0])

    def spawn(self, parents: list[_Instance], var: str, base: Val, width: int,
              copies: int, limit: Val | None = None) -> list[_Instance]:
        """``copies`` children of each parent with ``var`` at ``base``, ``base + width``, ...
        (a ``<width x i64>`` of consecutive values where ``width > 1``), in parent-major
        order; each sees its parent's values. With ``limit`` the lanes at or past it are
        masked off (a vector loop's last, partial step)."""
        out = []
        lanes_const = ", ".join(f"i64 {k}" for k in range(width))
        starts = [base if u == 0 else Val(self.f.assign(f"add i64 {base.ref}, {u * width}"),
                                          "i64") for u in range(copies)]
        vecs = [Val(self.f.assign(f"add <{width} x i64> {self.f.splat(s, width).ref}, "
                                  f"<{lanes_const}>", "lane"), "i64", width)
                if width > 1 else s for s in starts]
        masks = [self.icmp("slt", v, self.splat_to(limit, width)) if limit is not None
                 else None for v in vecs]
        for p in parents:
            for u in range(copies):
                vars = dict(p.vars)
                vars[var] = vecs[u]
                if width > 1:
                    vars[f"{var}#0"] = starts[u]
                out.append(_Instance(vars, ChainMap({}, p.values),
                                     width if width > 1 else p.lanes,
                                     var if width > 1 else p.vvar,
                                     masks[u] if width > 1 else p.mask))
        return out

    def uniform(self, exprs: list[Dim]) -> bool:
        """Whether ``exprs`` have one value in every current instance (a loop or reduction
        in a jammed body is shared only then)."""
        names = set().union(*(symbols(e) for e in exprs)) if exprs else set()
        return all(len({i.vars[n].ref for i in self.insts if n in i.vars}) <= 1 for n in names)

    def one_by_one(self, op: Op, emit) -> None:
        for inst in self.insts:
            self.within([inst], lambda: emit(op))

    def block(self, block: Block) -> None:
        """Every op of ``block`` for every current instance, op by op (so the instances'
        independent work interleaves); loops and reductions are shared by the instances."""
        ops = [op for op in block.ops if op.name != "loop.yield"]
        done: set[int] = set()
        for i, op in enumerate(ops):
            if id(op) in done:
                continue
            n = op.name
            if n == "loop.for":
                self.loop(op)
            elif n == "loop.reduce":
                group = [op] + _siblings(ops, i)
                done.update(id(g) for g in group)
                self.reduce_group(group)
            else:
                for inst in self.insts:
                    self.activate(inst)
                    self.op(op)
        self.activate(self.insts[0])

    def op(self, op: Op) -> None:
        n = op.name
        if n == "loop.store":
            self.store(op)
        elif n == "loop.bind":
            self.bind(op)
        else:
            self.values[id(op.results[0])] = self.scalar(op)

    def get(self, v: Value) -> Val:
        return self.values[id(v)]

    # -- loops --------------------------------------------------------------------------------
    def loop(self, op: Op) -> None:
        var = op.attributes["var"]
        lo, hi = dim(op.attributes["lower"]), dim(op.attributes["upper"])
        if not self.uniform([lo, hi]):
            self.one_by_one(op, self.loop)
            return
        self.ranges[var] = (lo, hi - 1)
        if isinstance(lo, int) and not op.attributes.get("split_work"):
            self.lane0_base[var] = lo
        width = int(op.attributes.get("vectorize") or 1)
        jam = int(op.attributes.get("jam") or 1)
        lo_v, hi_v = self.index(lo), self.index(hi)
        body = op.regions[0].blocks[0]
        if not (width > 1 and all(i.lanes == 1 for i in self.insts)):
            width = 1
        left = hi - lo if isinstance(hi - lo, int) else None  # a static trip count
        if op.attributes.get("split_work"):  # a thread's share: [par.lo, par.hi)
            lo_v = self.intrinsic("smax", [lo_v, Val("%par.lo", "i64")])
            hi_v = self.intrinsic("smin", [hi_v, Val("%par.hi", "i64")])
            left = None
        start = lo_v
        steps = [(jam, width)] if jam > 1 else []
        if jam > 1 and left is not None and (left % (jam * width)) // width > 1:
            # A static remainder of several rows (or vectors) runs as one smaller tile, not
            # one at a time: 11 rows with a tile of 6 are a 6-row and a 5-row tile.
            steps.append(((left % (jam * width)) // width, width))
        steps += [(1, width)] if width > 1 else [(1, 1)]
        for copies, lanes in steps:  # the main loop, then its remainders
            if left is not None and left < copies * lanes:
                continue  # not one whole step left: no loop
            start = self.strided(var, start, hi_v, lanes, copies, body)
            if left is not None:
                left %= copies * lanes
        if width > 1 and left != 0:  # the last partial vector, its lanes past the end masked
            parents = self.insts
            self.when(self.icmp("slt", start, hi_v), lambda: self.within(
                self.spawn(parents, var, start, width, 1, hi_v), lambda: self.block(body)),
                left is not None)

    def strided(self, var: str, lo: Val, hi: Val, width: int, copies: int,
                body: Block) -> Val:
        """``copies`` iterations of ``width`` lanes at a time while they fit, the body emitted
        for every current instance and copy; returns where the iterations stopped."""
        parents = self.insts

        def step(iv: Val, _: list[Val]) -> list[Val]:
            self.within(self.spawn(parents, var, iv, width, copies), lambda: self.block(body))
            return []
        return self.counted_loop(var, lo, hi, width * copies, [], step)[1]

    def when(self, cond: Val, body, known: bool = False) -> None:
        """``body()`` under ``if cond`` (unconditionally where ``known`` true)."""
        if known:
            body()
            return
        f = self.f
        then, done = f.label("then"), f.label("endif")
        f.emit(f"br i1 {cond.ref}, label %{then}, label %{done}")
        f.start(then)
        body()
        f.branch(done)
        f.start(done)

    def when_values(self, cond: Val, body, current: list[Val]) -> list[Val]:
        """``body()`` (which returns new values for ``current``) under ``if cond``; after it,
        each value is the new one where it ran and the current one where it did not."""
        f = self.f
        before = f.block
        then, done = f.label("then"), f.label("endif")
        f.emit(f"br i1 {cond.ref}, label %{then}, label %{done}")
        f.start(then)
        new = body()
        after = f.block
        f.branch(done)
        f.start(done)
        return [Val(f.assign(f"phi {c.ty} [ {c.ref}, %{before} ], [ {n.ref}, %{after} ]",
                             "acc"), c.dtype, c.lanes) for c, n in zip(current, new)]

    def counted_loop(self, var: str, lo: Val, hi: Val, step: int, carried: list[Val],
                     body) -> tuple[list[Val], Val]:
        """``for var in [lo, hi) step`` (a step > 1 runs while a whole step fits). ``carried``
        values flow through the iterations: ``body(iv, current)`` emits an iteration and
        returns their next values. Returns the values at exit and the variable's value there
        (where a remainder loop starts)."""
        f = self.f
        pre = f.block
        head, loop_body, latch, done = (f.label(x) for x in ("for", "body", "latch", "done"))
        f.branch(head)
        f.start(head)
        iv = f.fresh(var.replace(".", "_"))
        nxt = f.fresh("next")
        f.emit(f"{iv} = phi i64 [ {lo.ref}, %{pre} ], [ {nxt}, %{latch} ]")
        phi_at: list[int] = []
        cur: list[Val] = []
        for c in carried:
            ref = f.fresh("acc")
            phi_at.append(len(f.lines))
            f.emit(f"{ref} = phi {c.ty} [ {c.ref}, %{pre} ], [ @LATCH@, %{latch} ]")
            cur.append(Val(ref, c.dtype, c.lanes))
        cond = f.fresh("in")
        if step == 1:
            f.emit(f"{cond} = icmp slt i64 {iv}, {hi.ref}")
        else:
            last = f.assign(f"add i64 {iv}, {step}")
            f.emit(f"{cond} = icmp sle i64 {last}, {hi.ref}")
        f.emit(f"br i1 {cond}, label %{loop_body}, label %{done}")
        f.start(loop_body)
        new = body(Val(iv, "i64"), cur)
        for at, c, v in zip(phi_at, cur, new):
            if v.lanes != c.lanes or v.dtype != c.dtype:
                raise CodegenError(f"{self.name}: a carried value changes type in a loop")
            f.lines[at] = f.lines[at].replace("@LATCH@", v.ref)
        f.branch(latch)
        f.start(latch)
        f.emit(f"{nxt} = add i64 {iv}, {step}")
        f.branch(head)
        f.start(done)
        return cur, Val(iv, "i64")

    # -- memory -------------------------------------------------------------------------------
    def address(self, buf: _Buffer, texts: list[str], guard: Val | None) -> tuple[Val, bool]:
        """The element offset of an access and whether it is contiguous in the vector var."""
        exprs = [dim(t) for t in texts]
        contiguous = False
        if self.vvar is not None:
            v = self.vvar
            users = [k for k, e in enumerate(exprs) if v in symbols(e)]
            if users == [len(exprs) - 1] and v not in symbols(exprs[-1] - sym(v)):
                contiguous = True
        if contiguous:
            # The offset of lane 0: the vector variable at its first lane.
            saved = self.vars[self.vvar]
            self.vars[self.vvar] = self.vars[f"{self.vvar}#0"]
            off = self.linear(buf, exprs)
            self.vars[self.vvar] = saved
            return off, True
        return self.linear(buf, exprs), False

    def repeated(self, texts: list[str]) -> int:
        """``k`` where an access reads each element for ``k`` consecutive lanes: its last index
        is ``e(v floordiv k)`` (a depthwise convolution with a channel multiplier reads input
        channel ``c floordiv k``) and lane 0 is a multiple of ``k``; else 0. Such a load is a
        contiguous load of ``lanes / k`` elements and a shuffle, not a gather."""
        v = self.vvar
        if v is None or self.mask is not None or v not in self.lane0_base \
                or "floordiv" not in texts[-1]:
            return 0
        exprs = [dim(t) for t in texts]
        if [k for k, e in enumerate(exprs) if v in symbols(e)] != [len(exprs) - 1]:
            return 0
        last, q = exprs[-1], sym(f"{v}#q")
        for k in (2, 4, 8):
            if self.lanes % k or self.lane0_base[v] % k:
                continue
            base = subs(last, {v: k * q})
            if v in symbols(base) or symbols(base - q) & {f"{v}#q"}:
                continue
            if all(subs(last, {v: k * q + j}) == base for j in range(1, k)):
                return k
        return 0

    def linear(self, buf: _Buffer, exprs: list[Dim]) -> Val:
        total: Val | None = None
        for e, stride in zip(exprs, buf.strides):
            term = self.index(e)
            if stride.ref != "1":
                term = self.iarith("mul", term, stride)
            total = term if total is None else self.iarith("add", total, term)
        return total if total is not None else Val("0", "i64")

    def load(self, op: Op) -> Val:
        hoisted = self.hoisted_load(op)
        if hoisted is not None:
            return hoisted
        buf = self.buffers[id(op.operands[0])]
        t = llvm_type(buf.dtype)
        guard = self.conds(op.attributes["guard"]) if op.attributes.get("guard") else None
        other = Val(literal(op.attributes.get("other", 0.0), buf.dtype), buf.dtype)
        align = ITEMSIZE[buf.dtype]
        k = self.repeated(op.attributes["index"])
        if k and (guard is None or guard.lanes == 1):
            return self.repeated_load(buf, op.attributes["index"], k, guard, other)
        off, contiguous = self.address(buf, op.attributes["index"], guard)
        if contiguous:
            ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
            w = self.lanes
            vt = llvm_type(buf.dtype, w)
            if self.mask is not None:
                guard = self.mask if guard is None else self.logic("and", guard, self.mask)
            if guard is None:
                ref = self.f.assign(f"load {vt}, ptr {ptr}, align {align}", "ld")
            else:
                mask = self.splat_to(guard, w)
                pas = self.splat_to(other, w)
                ref = self.f.assign(f"call {vt} @llvm.masked.load.{_mangle(buf.dtype, w)}.p0("
                                    f"ptr {ptr}, i32 {align}, {mask.ty} {mask.ref}, "
                                    f"{vt} {pas.ref})", "ld")
            return Val(ref, buf.dtype, w)
        if guard is not None:
            off = self.select(guard, off, Val("0", "i64"))
        if off.lanes == 1:
            ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
            val = Val(self.f.assign(f"load {t}, ptr {ptr}, align {align}", "ld"), buf.dtype)
        else:
            w = off.lanes
            ptrs = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, <{w} x i64> {off.ref}",
                                 "p")
            vt = llvm_type(buf.dtype, w)
            ref = self.f.assign(f"call {vt} @llvm.masked.gather.{_mangle(buf.dtype, w)}."
                                f"v{w}p0(<{w} x ptr> {ptrs}, i32 {align}, "
                                f"{self.lane_mask(w)}, {vt} poison)", "ld")
            val = Val(ref, buf.dtype, w)
        if guard is not None:
            val = self.select(guard, val, other)
        return val

    def repeated_load(self, buf: _Buffer, texts: list[str], k: int, guard: Val | None,
                      other: Val) -> Val:
        """The ``lanes / k`` elements from lane 0's, each repeated in ``k`` lanes."""
        saved = self.vars[self.vvar]
        self.vars[self.vvar] = self.vars[f"{self.vvar}#0"]
        off = self.linear(buf, [dim(t) for t in texts])
        self.vars[self.vvar] = saved
        t, n, w = llvm_type(buf.dtype), self.lanes // k, self.lanes
        nt = llvm_type(buf.dtype, n)
        ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
        align = ITEMSIZE[buf.dtype]
        if guard is None:
            narrow = self.f.assign(f"load {nt}, ptr {ptr}, align {align}", "ld")
        else:
            mask, pas = self.splat_to(guard, n), self.splat_to(other, n)
            narrow = self.f.assign(f"call {nt} @llvm.masked.load.{_mangle(buf.dtype, n)}.p0("
                                   f"ptr {ptr}, i32 {align}, {mask.ty} {mask.ref}, "
                                   f"{nt} {pas.ref})", "ld")
        lanes = ", ".join(f"i32 {j // k}" for j in range(w))
        ref = self.f.assign(f"shufflevector {nt} {narrow}, {nt} poison, <{w} x i32> "
                            f"<{lanes}>", "rep")
        return Val(ref, buf.dtype, w)

    def store(self, op: Op) -> None:
        buf = self.buffers[id(op.operands[0])]
        t = llvm_type(buf.dtype)
        value = self.get(op.operands[1])
        off, contiguous = self.address(buf, op.attributes["index"], None)
        align = ITEMSIZE[buf.dtype]
        if contiguous:
            value = self.splat_to(value, self.lanes)
            ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
            if self.mask is None:
                self.f.emit(f"store {value.ty} {value.ref}, ptr {ptr}, align {align}")
            else:
                self.f.emit(f"call void @llvm.masked.store.{_mangle(buf.dtype, self.lanes)}.p0("
                            f"{value.ty} {value.ref}, ptr {ptr}, i32 {align}, "
                            f"{self.lane_mask(self.lanes)})")
        elif off.lanes == 1 and value.lanes == 1:
            ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
            self.f.emit(f"store {t} {value.ref}, ptr {ptr}, align {align}")
        else:
            w = max(off.lanes, value.lanes)
            off, value = self.splat_to(off, w), self.splat_to(value, w)
            ptrs = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, <{w} x i64> {off.ref}",
                                 "p")
            self.f.emit(f"call void @llvm.masked.scatter.{_mangle(buf.dtype, w)}.v{w}p0("
                        f"{value.ty} {value.ref}, <{w} x ptr> {ptrs}, i32 {align}, "
                        f"{self.lane_mask(w)})")

    def lane_mask(self, w: int) -> str:
        """The typed mask operand of a masked vector access: the lanes in range."""
        if self.mask is None:
            return f"<{w} x i1> splat (i1 true)"
        return f"{self.mask.ty} {self.mask.ref}"

    def conds(self, conds: list[list[str]]) -> Val:
        ok: Val | None = None
        for e, lo, hi in conds:
            x = self.index(dim(e))
            a = self.icmp("sge", x, self.index(dim(lo)))
            b = self.icmp("slt", x, self.index(dim(hi)))
            both = self.logic("and", a, b)
            ok = both if ok is None else self.logic("and", ok, both)
        assert ok is not None
        return ok

    def logic(self, op: str, a: Val, b: Val) -> Val:
        lanes = max(a.lanes, b.lanes)
        a, b = self.splat_to(a, lanes), self.splat_to(b, lanes)
        return Val(self.f.assign(f"{op} {a.ty} {a.ref}, {b.ref}", "c"), "i1", lanes)

    def bind(self, op: Op) -> None:
        v = self.get(op.operands[0])
        v = self.cast_int(v, "i64") if v.dtype != "i64" else v
        lo, hi = self.index(dim(op.attributes["lower"])), self.index(dim(op.attributes["upper"]))
        top = self.iarith("sub", hi, Val("1", "i64"))
        clamped = self.intrinsic("smin", [self.intrinsic("smax", [v, lo]), top])
        name = op.attributes["var"]
        self.vars[name] = clamped
        self.ranges[name] = (dim(op.attributes["lower"]), dim(op.attributes["upper"]) - 1)

    # -- scalar ops -------------------------------------------------------------------------------
    def scalar(self, op: Op) -> Val:
        n, a = op.name, op.attributes
        dtype = op.results[0].type.dtype
        if n == "loop.load":
            return self.load(op)
        if n == "loop.const":
            return Val(literal(a["value"], dtype), dtype)
        if n == "loop.index":
            return self.convert(self.index(dim(a["expr"])), dtype)
        if n == "loop.guard":
            return self.conds(a["conds"])
        args = [self.get(v) for v in op.operands]
        if n == "loop.unary":
            return self.unary(a["fn"], args[0], a.get("alpha"))
        if n == "loop.binary":
            return self.binary(a["fn"], args[0], args[1])
        if n == "loop.compare":
            return self.compare(a["fn"], args[0], args[1])
        if n == "loop.select":
            return self.select(*args)
        if n == "loop.cast":
            return self.convert(args[0], dtype)
        raise CodegenError(f"{self.name}: no code for {n}")

    def binary(self, fn: str, a: Val, b: Val) -> Val:
        lanes = max(a.lanes, b.lanes)
        a, b = self.splat_to(a, lanes), self.splat_to(b, lanes)
        if a.dtype == "bf16":  # in float32, rounded once (LLVM's promotion would call a libcall)
            wide = self.binary(fn, self.convert(a, "f32"), self.convert(b, "f32"))
            return self.convert(wide, "bf16")
        if a.dtype in FLOATS:
            if fn in ("max", "min"):
                return self.intrinsic("maximum" if fn == "max" else "minimum", [a, b])
            if fn == "pow":
                return self.intrinsic("pow", [a, b])
            op = {"add": "fadd contract", "sub": "fsub contract", "mul": "fmul contract",
                  "div": "fdiv"}[fn]
        else:
            if fn in ("max", "min"):
                return self.intrinsic("smax" if fn == "max" else "smin", [a, b])
            op = {"add": "add", "sub": "sub", "mul": "mul", "div": "sdiv"}.get(fn)
            if op is None:
                raise CodegenError(f"{self.name}: integer {fn} is not supported")
        return Val(self.f.assign(f"{op} {a.ty} {a.ref}, {b.ref}"), a.dtype, lanes)

    def compare(self, fn: str, a: Val, b: Val) -> Val:
        lanes = max(a.lanes, b.lanes)
        a, b = self.splat_to(a, lanes), self.splat_to(b, lanes)
        if a.dtype == "bf16":
            a, b = self.convert(a, "f32"), self.convert(b, "f32")
        if a.dtype in FLOATS:
            ref = self.f.assign(f"fcmp {_FCMP[fn]} {a.ty} {a.ref}, {b.ref}", "c")
        else:
            ref = self.f.assign(f"icmp {_ICMP[fn]} {a.ty} {a.ref}, {b.ref}", "c")
        return Val(ref, "i1", lanes)

    def convert(self, v: Val, to: str) -> Val:
        """Element-type conversion with numpy's ``astype`` semantics."""
        if v.dtype == to:
            return v
        src, lanes = v.dtype, v.lanes
        tt = llvm_type(to, lanes)
        if src == "bf16":  # the high half of a float32
            i32 = llvm_type("i32", lanes)
            wide = self.f.assign(f"zext {v.ty} {v.ref} to {i32}")
            high = self.f.assign(f"shl {i32} {wide}, {self.f.splat(Val('16', 'i32'), lanes).ref}")
            f32 = Val(self.f.assign(f"bitcast {i32} {high} to {llvm_type('f32', lanes)}"),
                      "f32", lanes)
            return self.convert(f32, to)
        if src in FLOATS and to in FLOATS:
            op = "fpext" if ITEMSIZE[to] > ITEMSIZE[src] or (src, to) == ("f16", "bf16") \
                else "fptrunc"
            if to == "bf16":
                return self.round_to_bf16(self.convert(v, "f32"))
            return Val(self.f.assign(f"{op} {v.ty} {v.ref} to {tt}"), to, lanes)
        if src in FLOATS and to == "i1":
            zero = Val(literal(0.0, src), src)
            return self.compare("ne", v, zero)
        if src in FLOATS:
            return Val(self.f.assign(f"fptosi {v.ty} {v.ref} to {tt}"), to, lanes)
        if to == "bf16":
            return self.round_to_bf16(self.convert(v, "f32"))
        if to in FLOATS:
            op = "uitofp" if src == "i1" else "sitofp"
            return Val(self.f.assign(f"{op} {v.ty} {v.ref} to {tt}"), to, lanes)
        if to == "i1":
            return self.icmp("ne", v, Val("0", src))
        return self.cast_int(v, to)

    def round_to_bf16(self, v: Val) -> Val:
        """float32 to bfloat16, rounding to nearest even in integer arithmetic (as
        ``numeric.round_bf16``). Not ``fptrunc``: without AVX512-BF16, LLVM calls
        ``__truncsfbf2``, which a Python process does not have, and the hardware instruction
        flushes denormals where the reference does not."""
        lanes = v.lanes
        i32, i16 = llvm_type("i32", lanes), llvm_type("i16", lanes)

        def k(c: int) -> str:
            return self.f.splat(Val(str(c), "i32"), lanes).ref

        bits = self.f.assign(f"bitcast {v.ty} {v.ref} to {i32}")
        lsb = self.f.assign(f"lshr {i32} {bits}, {k(16)}")
        lsb = self.f.assign(f"and {i32} {lsb}, {k(1)}")
        bias = self.f.assign(f"add {i32} {lsb}, {k(0x7FFF)}")
        rounded = self.f.assign(f"add {i32} {bits}, {bias}")
        quiet = self.f.assign(f"or {i32} {bits}, {k(0x400000)}")
        nan = self.f.assign(f"fcmp uno {v.ty} {v.ref}, {v.ref}", "c")
        chosen = self.f.assign(f"select {llvm_type('i1', lanes)} {nan}, {i32} {quiet}, "
                               f"{i32} {rounded}")
        high = self.f.assign(f"lshr {i32} {chosen}, {k(16)}")
        return Val(self.f.assign(f"trunc {i32} {high} to {i16}"), "bf16", lanes)

    # -- elementwise functions -------------------------------------------------------------
    def unary(self, fn: str, x: Val, alpha: float | None) -> Val:
        dtype = x.dtype
        wide = self.convert(x, "f32") if dtype in ("f16", "bf16", "f64") else x
        y = expand(fn, wide, alpha, _LLVMOps(self))
        return self.convert(y, dtype)

    def prim(self, name: str, x: Val) -> Val:
        if name in _VECMATH:
            width = x.lanes
            inline = len(self.insts) <= UNROLL  # a register tile's epilogue calls it
            self.math_defs.add((name, width, inline))
            fname = vecmath.function_name(name, width, inline)
            ref = self.f.assign(f"call {x.ty} @{fname}({x.ty} {x.ref})")
            return Val(ref, x.dtype, width)
        if name == "neg":
            return Val(self.f.assign(f"fneg {x.ty} {x.ref}"), x.dtype, x.lanes)
        intrinsic = {"sqrt": "sqrt", "abs": "fabs", "floor": "floor", "ceil": "ceil"}[name]
        return self.intrinsic(intrinsic, [x])

    # -- reductions ------------------------------------------------------------------------------
    def reduce(self, op: Op) -> None:
        self.reduce_group([op])

    def reduce_group(self, group: list[Op]) -> None:
        """One loop nest for reductions over the same box (``group``: an LSTM step's four
        gate products, a softmax's max and sum...) and every current instance, each (op,
        instance) with its own accumulator: a jammed matmul's tile of outputs shares each
        k's loads, and the group's independent chains hide each other's latency."""
        first = group[0].attributes
        names = list(first["vars"])
        los = [dim(t) for t in first["lower"]]
        his = [dim(t) for t in first["upper"]]
        if not self.uniform(los + his):
            for op in group:
                self.one_by_one(op, self.reduce)
            return
        aliases = [list(op.attributes["vars"]) for op in group]
        for level_names in zip(*aliases):
            for n in level_names:
                k = names.index(level_names[0])
                self.ranges[n] = (los[k], his[k] - 1)
        kinds = [op.attributes["kind"] for op in group]
        dtypes = [op.results[0].type.dtype for op in group]
        bodies = [op.regions[0].blocks[0] for op in group]
        terms_ops = [b.terminator for b in bodies]
        identities = [Val(literal(_IDENTITY[k], d), d) for k, d in zip(kinds, dtypes)]
        n_ops = len(group)
        parents = self.insts
        width = int(first.get("vectorize") or 1)
        vector = width > 1 and all(p.lanes == 1 for p in parents)

        def spawn(insts: list[_Instance], k: int, iv: Val, w: int, copies: int,
                  limit: Val | None = None) -> list[_Instance]:
            kids = self.spawn(insts, names[k], iv, w, copies, limit)
            for kid in kids:  # every op of the group names the level's variable its own way
                for other in aliases[1:]:
                    kid.vars[other[k]] = kid.vars[names[k]]
                    if f"{names[k]}#0" in kid.vars:
                        kid.vars[f"{other[k]}#0"] = kid.vars[f"{names[k]}#0"]
            return kids

        def terms(kids: list[_Instance], lanes: int) -> list[Val]:
            for body in bodies:
                self.within(kids, lambda body=body: self.block(body))
            return [self.splat_to(kid.values[id(t.operands[0])], lanes)
                    for kid in kids for t in terms_ops]

        def combine(cur: list[Val], new: list[Val]) -> list[Val]:
            return [self.combine(kinds[j % n_ops], c, t)
                    for j, (c, t) in enumerate(zip(cur, new))]

        def level(k: int, insts: list[_Instance], accs: list[Val]) -> list[Val]:
            self.activate(insts[0])
            lo_v, hi_v = self.index(los[k]), self.index(his[k])
            innermost = k == len(names) - 1
            if innermost:
                for body, var_names in zip(bodies, aliases):
                    self.hoist_guarded_loads(body, var_names[k], los[k], his[k], insts)
            if innermost and vector:
                extent = his[k] - los[k]
                return self.reduce_vector_level(
                    lambda *args: spawn(insts, k, *args), lo_v, hi_v, width, len(insts),
                    accs, kinds, identities, terms, extent if isinstance(extent, int) else None)

            def step(iv: Val, cur: list[Val]) -> list[Val]:
                kids = spawn(insts, k, iv, 1, 1)
                if not innermost:
                    return level(k + 1, kids, cur)
                return combine(cur, terms(kids, cur[0].lanes))
            return self.counted_loop(names[k], lo_v, hi_v, 1, accs, step)[0]

        saved = self.insts
        self.insts = parents
        inits = [self.splat_to(ident, p.lanes) for p in parents for ident in identities]
        results = level(0, parents, inits)
        self.insts = saved
        for i, p in enumerate(parents):
            for g, op in enumerate(group):
                p.values[id(op.results[0])] = results[i * n_ops + g]
        self.activate(self.insts[0])

    def reduce_vector_level(self, spawn, lo: Val, hi: Val, width: int, n_insts: int,
                            accs: list[Val], kinds: list[str], identities: list[Val], terms,
                            left: int | None) -> list[Val]:
        """The vectorised innermost reduction level: W partial results per (instance, op)
        (and ``UNROLL`` independent vector accumulators where a single one would otherwise
        wait on one FMA chain) while whole vectors fit, then one masked step whose lanes past
        the end contribute the identity. ``spawn(iv, width, copies, limit)`` makes the
        iteration's instances; ``left``: the static trip count, where known (steps that would
        not run are not emitted)."""
        n_ops = len(kinds)
        copies = UNROLL if n_insts * n_ops == 1 else 1
        if left is not None:
            while copies > 1 and left < copies * width:
                copies //= 2
        vids = [self.splat_to(ident, width) for ident in identities]

        def vstep(count: int, limit: Val | None = None):
            def step(iv: Val, cur: list[Val]) -> list[Val]:
                kids = spawn(iv, width, count, limit)
                ts = terms(kids, width)
                if limit is not None:
                    ts = [self.select(kids[j // n_ops].mask, t, vids[j % n_ops])
                          for j, t in enumerate(ts)]
                return [self.combine(kinds[j % n_ops], c, t)
                        for j, (c, t) in enumerate(zip(cur, ts))]
            return step

        end = lo
        partial = [vids[j % n_ops] for j in range(n_insts * n_ops)]
        if left is None or left >= width:
            partial, end = self.counted_loop("r", lo, hi, copies * width,
                                             [vids[j % n_ops]
                                              for j in range(n_insts * copies * n_ops)],
                                             vstep(copies))
            if copies > 1:  # a single op and instance: combine its copies pairwise
                while len(partial) > 1:
                    partial = [self.combine(kinds[0], partial[j], partial[j + 1])
                               for j in range(0, len(partial), 2)]
                if left is None or left % (copies * width) >= width:
                    partial, end = self.counted_loop("r", end, hi, width, partial, vstep(1))
        if left is not None and left % width:
            partial = vstep(1, hi)(end, partial)
        elif left is None:  # a masked last step, if any lane is left
            partial = self.when_values(self.icmp("slt", end, hi),
                                       lambda: vstep(1, hi)(end, partial), partial)
        return [self.combine(kinds[j % n_ops], acc, self.horizontal(kinds[j % n_ops], p))
                for j, (acc, p) in enumerate(zip(accs, partial))]

    def hoist_guarded_loads(self, body: Block, var: str, lo: Dim, hi: Dim,
                            insts: list[_Instance]) -> None:
        """XNNPACK's zero buffer, for a padded convolution's input: a load whose guard does
        not change along the innermost reduction variable (a tap's padding holds for a whole
        run of input channels) gets its base pointer chosen once per instance before the
        loop, the input's where the guard holds and a zero buffer's where it fails; inside,
        it is a plain load at ``base + (var - lo) * stride``, with no select on its address or
        value."""
        extent = hi - lo
        if not isinstance(extent, int) or extent < 1:
            return
        vvar = insts[0].vvar
        for op in body.ops:
            a = op.attributes
            if op.name != "loop.load" or not a.get("guard") \
                    or float(a.get("other", 0.0)) != 0.0:
                continue
            guard_names = set().union(*(symbols(dim(t)) for c in a["guard"] for t in c))
            if var in guard_names or (vvar is not None and vvar in guard_names):
                continue
            buf = self.buffers[id(op.operands[0])]
            off: Dim = 0
            for t, stride in zip(a["index"], buf.stride_dims):
                off = off + dim(t) * stride
            if vvar is not None and vvar != var and vvar in symbols(off):
                continue
            steps = [subs(off, {var: lo + j}) for j in range(3)]
            c1, c2 = steps[1] - steps[0], steps[2] - steps[1]
            if not isinstance(c1, int) or c1 != c2 or c1 < 0:
                continue
            span = (c1 * (extent - 1) + 1) * ITEMSIZE[buf.dtype]
            if span > ZERO_BYTES_MAX:
                continue
            self.zero_bytes = max(self.zero_bytes, span)
            t = llvm_type(buf.dtype)
            for inst in insts:
                self.activate(inst)
                saved = self.vars.get(var)
                self.vars[var] = self.index(lo)
                ok = self.conds(a["guard"])
                start = self.linear(buf, [dim(x) for x in a["index"]])
                if saved is None:
                    del self.vars[var]
                else:
                    self.vars[var] = saved
                real = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {start.ref}", "p")
                base = self.f.assign(f"select i1 {ok.ref}, ptr {real}, ptr @nc_zeros", "base")
                inst.values[("base", id(op))] = (base, c1, lo, var)
            self.activate(insts[0])

    def hoisted_load(self, op: Op) -> Val | None:
        """A load whose base :meth:`hoist_guarded_loads` chose, or None."""
        found = self.values.get(("base", id(op)))
        if found is None:
            return None
        base, stride, lo, var = found
        buf = self.buffers[id(op.operands[0])]
        t, align = llvm_type(buf.dtype), ITEMSIZE[buf.dtype]
        x = self.vars[var]
        if x.lanes > 1 and stride == 1:  # contiguous lanes: one vector load
            x = self.vars[f"{var}#0"]
        delta = self.iarith("mul", self.iarith("sub", x, self.index(lo)),
                            Val(str(stride), "i64"))
        if delta.lanes == 1:
            ptr = self.f.assign(f"getelementptr {t}, ptr {base}, i64 {delta.ref}", "p")
            w = self.vars[var].lanes if stride == 1 else 1
            if w == 1:
                return Val(self.f.assign(f"load {t}, ptr {ptr}, align {align}", "ld"), buf.dtype)
            vt = llvm_type(buf.dtype, w)
            if self.mask is None:
                return Val(self.f.assign(f"load {vt}, ptr {ptr}, align {align}", "ld"),
                           buf.dtype, w)
            return Val(self.f.assign(
                f"call {vt} @llvm.masked.load.{_mangle(buf.dtype, w)}.p0(ptr {ptr}, "
                f"i32 {align}, {self.lane_mask(w)}, {vt} zeroinitializer)", "ld"), buf.dtype, w)
        w = delta.lanes
        vt = llvm_type(buf.dtype, w)
        ptrs = self.f.assign(f"getelementptr {t}, ptr {base}, <{w} x i64> {delta.ref}", "p")
        return Val(self.f.assign(f"call {vt} @llvm.masked.gather.{_mangle(buf.dtype, w)}."
                                 f"v{w}p0(<{w} x ptr> {ptrs}, i32 {align}, "
                                 f"{self.lane_mask(w)}, {vt} zeroinitializer)", "ld"),
                   buf.dtype, w)

    def combine(self, kind: str, acc: Val, x: Val) -> Val:
        if kind == "add":
            return self.binary("add", acc, x)
        if kind == "mul":
            return self.binary("mul", acc, x)
        return self.binary(kind, acc, x)

    def horizontal(self, kind: str, v: Val) -> Val:
        if v.dtype == "bf16":
            return self.convert(self.horizontal(kind, self.convert(v, "f32")), "bf16")
        t = llvm_type(v.dtype)
        suffix = _mangle(v.dtype, v.lanes)
        if kind in ("add", "mul"):
            start = literal(_IDENTITY[kind], v.dtype)
            fn = "fadd" if kind == "add" else "fmul"
            ref = self.f.assign(f"call reassoc {t} @llvm.vector.reduce.{fn}.{suffix}({t} "
                                f"{start}, {v.ty} {v.ref})")
        else:
            fn = "fmaximum" if kind == "max" else "fminimum"
            ref = self.f.assign(f"call {t} @llvm.vector.reduce.{fn}.{suffix}({v.ty} {v.ref})")
        return Val(ref, v.dtype)


def _box(op: Op) -> tuple:
    a = op.attributes
    return (len(a["vars"]), tuple(a["lower"]), tuple(a["upper"]), a.get("vectorize"))


def _siblings(ops: list[Op], i: int) -> list[Op]:
    """The reductions after ``ops[i]`` in its block that can share its loop nest: the same
    box and vectorisation, no store or loop between (nothing they read changes), and bodies
    that read nothing computed after ``ops[i]`` (moving them up keeps every value defined
    before its use)."""
    first = ops[i]
    after = {id(first)}  # ops whose results the group's members cannot read
    out = []
    for op in ops[i + 1:]:
        if op.name in ("loop.store", "loop.for", "loop.bind"):
            break
        if op.name == "loop.reduce" and _box(op) == _box(first) and not any(
                isinstance(v, OpResult) and id(v.op) in after
                for o in op.walk() for v in o.operands):
            out.append(op)
        after.add(id(op))
    return out


def split_loop(kernel: Op) -> Op | None:
    """The loop of ``kernel`` the schedule split across threads (``split_work``), if any."""
    return next((o for o in kernel.walk() if o.name == "loop.for"
                 and o.attributes.get("split_work")), None)


def _mangle(dtype: str, lanes: int) -> str:
    base = {"f32": "f32", "f16": "f16", "bf16": "i16", "f64": "f64", "i64": "i64",
            "i32": "i32", "i8": "i8", "i1": "i1"}[dtype]
    return base if lanes == 1 else f"v{lanes}{base}"


class _LLVMOps:
    """The primitives of :mod:`neuralc.ir.scalar_fns` as LLVM instructions."""

    def __init__(self, cg: KernelCodegen):
        self.cg = cg

    def const(self, value: float) -> Val:
        return Val(literal(value, "f32"), "f32")

    def arith(self, fn: str, a: Val, b: Val) -> Val:
        return self.cg.binary(fn, a, b)

    def prim(self, name: str, x: Val) -> Val:
        return self.cg.prim(name, x)

    def less(self, a: Val, b: Val) -> Val:
        return self.cg.compare("lt", a, b)

    def select(self, cond: Val, a: Val, b: Val) -> Val:
        return self.cg.select(cond, a, b)

