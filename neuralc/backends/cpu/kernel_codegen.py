"""LLVM IR for one ``loop.kernel``: loops, reductions, loads and stores, scalar math, vectors.

A kernel becomes ``define internal void @k.<name>(ptr noalias %b0, ..., i64 %<symbol>...)``:
its buffers by pointer (they never overlap: the memory plan gives live buffers disjoint slots)
and the sizes it uses. Index expressions are i64 arithmetic with floor semantics
(``floordiv``/``mod`` of a possibly negative numerator round down, as the interpreter does);
where range analysis proves a numerator non-negative, a plain division is used.

Vectors: a ``loop.for`` with ``vectorize = W`` runs W iterations at once, then the remaining
ones one by one (the body is emitted twice). Inside, every value that depends on the loop's
variable is a ``<W x T>`` vector and every other value a scalar, broadcast where the two meet.
A load whose last index is the variable plus something independent of it is one vector load
(a masked one under a guard); any other varying index is a gather, and a store a scatter.
A ``loop.reduce`` with ``vectorize = W`` accumulates W partial results along its last variable
and combines them at the end (the reassociation the cpu tolerance allows). Transcendental
functions are the polynomial ones of :mod:`neuralc.backends.cpu.vecmath` at the same width.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.backends.cpu import vecmath
from neuralc.backends.cpu.llvm_text import FLOATS, ITEMSIZE, FunctionText, Val, literal, llvm_type
from neuralc.ir.core import Block, Op, Value
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import Dim, FloorDiv, MinMax, Mod, bounds, product, sym, symbols
from neuralc.ir.scalar_fns import expand
from neuralc.ir.types import MemRefType

_IDENTITY = {"add": 0.0, "mul": 1.0, "max": float("-inf"), "min": float("inf")}
_FCMP = {"eq": "oeq", "ne": "une", "lt": "olt", "le": "ole", "gt": "ogt", "ge": "oge"}
_ICMP = {"eq": "eq", "ne": "ne", "lt": "slt", "le": "sle", "gt": "sgt", "ge": "sge"}
_VECMATH = ("exp", "expm1", "log", "tanh", "sigmoid", "softplus", "erf", "sin", "cos")


class CodegenError(Exception):
    """The loop IR holds something this code generator does not handle."""


@dataclass
class _Buffer:
    ptr: str
    dtype: str
    strides: list[Val]


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

    def __init__(self, kernel: Op, math_defs: set[tuple[str, int]]):
        super().__init__(FunctionText(), f"k.{kernel.attributes['sym_name']}")
        self.kernel = kernel
        self.symbols = list(kernel.attributes.get("symbols", []))
        self.math_defs = math_defs
        self.values: dict[int, Val] = {}
        self.buffers: dict[int, _Buffer] = {}
        self.loop_end = Val("0", "i64")

    # -- the function ------------------------------------------------------------------------
    def generate(self) -> str:
        block = self.kernel.regions[0].blocks[0]
        params = [f"ptr noalias %b{i}" for i in range(len(block.args))]
        for s in self.symbols:
            params.append(f"i64 %s.{s}")
            self.vars[s] = Val(f"%s.{s}", "i64")
        self.f.start("entry")
        for i, a in enumerate(block.args):
            t = a.type
            assert isinstance(t, MemRefType)
            strides = [self.index(product(list(t.shape[k + 1:]))) for k in range(t.rank)]
            self.buffers[id(a)] = _Buffer(f"%b{i}", t.dtype, strides)
        self.block(block)
        self.f.emit("ret void")
        body = "\n".join(self.f.lines)
        return (f"define internal void @\"{self.name}\"({', '.join(params)}) nounwind {{\n"
                f"{body}\n}}\n")

    def block(self, block: Block) -> None:
        for op in block.ops:
            self.op(op)

    def op(self, op: Op) -> None:
        n = op.name
        if n == "loop.for":
            self.loop(op)
        elif n == "loop.store":
            self.store(op)
        elif n == "loop.bind":
            self.bind(op)
        elif n == "loop.yield":
            pass
        else:
            self.values[id(op.results[0])] = self.scalar(op)

    def get(self, v: Value) -> Val:
        return self.values[id(v)]

    # -- loops --------------------------------------------------------------------------------
    def loop(self, op: Op) -> None:
        var = op.attributes["var"]
        lo, hi = dim(op.attributes["lower"]), dim(op.attributes["upper"])
        self.ranges[var] = (lo, hi - 1)
        width = int(op.attributes.get("vectorize") or 1)
        lo_v, hi_v = self.index(lo), self.index(hi)
        body = op.regions[0].blocks[0]
        if width > 1 and self.lanes == 1:
            start = self.vector_loop(var, lo_v, hi_v, width, lambda: self.block(body))
            self.counted_loop(var, start, hi_v, lambda: self.block(body))
        else:
            self.counted_loop(var, lo_v, hi_v, lambda: self.block(body))
        self.vars.pop(var, None)

    def counted_loop(self, var: str, lo: Val, hi: Val, body, step: int = 1,
                     carried: list[Val] | None = None, update=None) -> list[Val]:
        """``for var in [lo, hi) step`` (a step > 1 runs while a whole step fits): ``body()``
        each iteration. ``carried`` values flow through the iterations: ``update(current)``
        returns their next values. Returns the carried values at exit; ``self.loop_end`` is
        the variable's value there (where a remainder loop starts)."""
        f = self.f
        pre = f.block
        head, loop_body, latch, done = (f.label(x) for x in ("for", "body", "latch", "done"))
        f.branch(head)
        f.start(head)
        iv = f.fresh(var.replace(".", "_"))
        nxt = f.fresh("next")
        f.emit(f"{iv} = phi i64 [ {lo.ref}, %{pre} ], [ {nxt}, %{latch} ]")
        carried = carried or []
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
        self.vars[var] = Val(iv, "i64")
        body()
        new = update(cur) if update is not None else []
        for at, c, v in zip(phi_at, cur, new):
            if v.lanes != c.lanes or v.dtype != c.dtype:
                raise CodegenError(f"{self.name}: a carried value changes type in a loop")
            f.lines[at] = f.lines[at].replace("@LATCH@", v.ref)
        f.branch(latch)
        f.start(latch)
        f.emit(f"{nxt} = add i64 {iv}, {step}")
        f.branch(head)
        f.start(done)
        self.loop_end = Val(iv, "i64")
        return cur

    def vector_loop(self, var: str, lo: Val, hi: Val, width: int, body) -> Val:
        """Iterations ``lo, lo + W, ...`` while W of them fit, with ``var`` a vector inside;
        returns where the scalar remainder starts."""
        saved = (self.lanes, self.vvar)

        def vbody() -> None:
            scalar = self.vars[var]
            self.lanes, self.vvar = width, var
            lanes = ", ".join(f"i64 {k}" for k in range(width))
            base = self.f.splat(scalar, width)
            vec = self.f.assign(f"add <{width} x i64> {base.ref}, <{lanes}>", "lane")
            self.vars[var] = Val(vec, "i64", width)
            self.vars[f"{var}#0"] = scalar
            body()
            self.lanes, self.vvar = saved
        self.counted_loop(var, lo, hi, vbody, step=width)
        return self.loop_end

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

    def linear(self, buf: _Buffer, exprs: list[Dim]) -> Val:
        total: Val | None = None
        for e, stride in zip(exprs, buf.strides):
            term = self.index(e)
            if stride.ref != "1":
                term = self.iarith("mul", term, stride)
            total = term if total is None else self.iarith("add", total, term)
        return total if total is not None else Val("0", "i64")

    def load(self, op: Op) -> Val:
        buf = self.buffers[id(op.operands[0])]
        t = llvm_type(buf.dtype)
        guard = self.conds(op.attributes["guard"]) if op.attributes.get("guard") else None
        off, contiguous = self.address(buf, op.attributes["index"], guard)
        other = Val(literal(op.attributes.get("other", 0.0), buf.dtype), buf.dtype)
        align = ITEMSIZE[buf.dtype]
        if contiguous:
            ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
            w = self.lanes
            vt = llvm_type(buf.dtype, w)
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
                                f"v{w}p0(<{w} x ptr> {ptrs}, i32 {align}, <{w} x i1> "
                                f"splat (i1 true), {vt} poison)", "ld")
            val = Val(ref, buf.dtype, w)
        if guard is not None:
            val = self.select(guard, val, other)
        return val

    def store(self, op: Op) -> None:
        buf = self.buffers[id(op.operands[0])]
        t = llvm_type(buf.dtype)
        value = self.get(op.operands[1])
        off, contiguous = self.address(buf, op.attributes["index"], None)
        align = ITEMSIZE[buf.dtype]
        if contiguous:
            value = self.splat_to(value, self.lanes)
            ptr = self.f.assign(f"getelementptr {t}, ptr {buf.ptr}, i64 {off.ref}", "p")
            self.f.emit(f"store {value.ty} {value.ref}, ptr {ptr}, align {align}")
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
                        f"<{w} x i1> splat (i1 true))")

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
        if n == "loop.reduce":
            return self.reduce(op)
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
        if a.dtype in FLOATS:
            if fn in ("max", "min"):
                return self.intrinsic("maximum" if fn == "max" else "minimum", [a, b])
            if fn == "pow":
                return self.intrinsic("pow", [a, b])
            op = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}[fn]
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
        if src in FLOATS and to in FLOATS:
            op = "fpext" if ITEMSIZE[to] > ITEMSIZE[src] or (src, to) == ("f16", "bf16") \
                else "fptrunc"
            if {src, to} == {"f16", "bf16"}:  # through float32: no direct conversion
                return self.convert(self.convert(v, "f32"), to)
            return Val(self.f.assign(f"{op} {v.ty} {v.ref} to {tt}"), to, lanes)
        if src in FLOATS and to == "i1":
            zero = Val(literal(0.0, src), src)
            return self.compare("ne", v, zero)
        if src in FLOATS:
            return Val(self.f.assign(f"fptosi {v.ty} {v.ref} to {tt}"), to, lanes)
        if to in FLOATS:
            op = "uitofp" if src == "i1" else "sitofp"
            return Val(self.f.assign(f"{op} {v.ty} {v.ref} to {tt}"), to, lanes)
        if to == "i1":
            return self.icmp("ne", v, Val("0", src))
        return self.cast_int(v, to)

    # -- elementwise functions -------------------------------------------------------------
    def unary(self, fn: str, x: Val, alpha: float | None) -> Val:
        dtype = x.dtype
        wide = self.convert(x, "f32") if dtype in ("f16", "bf16", "f64") else x
        y = expand(fn, wide, alpha, _LLVMOps(self))
        return self.convert(y, dtype)

    def prim(self, name: str, x: Val) -> Val:
        if name in _VECMATH:
            width = x.lanes
            self.math_defs.add((name, width))
            fname = vecmath.function_name(name, width)
            ref = self.f.assign(f"call {x.ty} @{fname}({x.ty} {x.ref})")
            return Val(ref, x.dtype, width)
        if name == "neg":
            return Val(self.f.assign(f"fneg {x.ty} {x.ref}"), x.dtype, x.lanes)
        intrinsic = {"sqrt": "sqrt", "abs": "fabs", "floor": "floor", "ceil": "ceil"}[name]
        return self.intrinsic(intrinsic, [x])

    # -- reductions ------------------------------------------------------------------------------
    def reduce(self, op: Op) -> Val:
        a = op.attributes
        kind = a["kind"]
        dtype = op.results[0].type.dtype
        names = list(a["vars"])
        los = [dim(t) for t in a["lower"]]
        his = [dim(t) for t in a["upper"]]
        for n, lo, hi in zip(names, los, his):
            self.ranges[n] = (lo, hi - 1)
        body = op.regions[0].blocks[0]
        term = body.terminator
        assert term is not None
        width = int(a.get("vectorize") or 1)
        acc_lanes = self.lanes  # inside a vectorised loop the accumulator is per lane
        init = self.splat_to(Val(literal(_IDENTITY[kind], dtype), dtype), acc_lanes)

        def level(k: int, acc: Val) -> Val:
            lo_v, hi_v = self.index(los[k]), self.index(his[k])
            innermost = k == len(names) - 1

            def update(cur: list[Val]) -> list[Val]:
                if innermost:
                    self.block(body)
                    term_v = self.splat_to(self.get(term.operands[0]), cur[0].lanes)
                    return [self.combine(kind, cur[0], term_v)]
                return [level(k + 1, cur[0])]

            if innermost and width > 1 and self.lanes == 1:
                vinit = self.splat_to(Val(literal(_IDENTITY[kind], dtype), dtype), width)
                partial = self.reduce_vector_level(names[k], lo_v, hi_v, width, vinit, kind,
                                                   body, term)
                start = self.loop_end
                whole = self.horizontal(kind, partial)
                acc = self.combine(kind, acc, whole)
                return self.counted_loop(names[k], start, hi_v, lambda: None, carried=[acc],
                                         update=update)[0]
            return self.counted_loop(names[k], lo_v, hi_v, lambda: None, carried=[acc],
                                     update=update)[0]

        result = level(0, init)
        for n in names:
            self.vars.pop(n, None)
        return result

    def reduce_vector_level(self, var: str, lo: Val, hi: Val, width: int, vinit: Val,
                            kind: str, body: Block, term: Op) -> Val:
        saved = (self.lanes, self.vvar)

        def update(cur: list[Val]) -> list[Val]:
            scalar = self.vars[var]
            self.lanes, self.vvar = width, var
            lanes = ", ".join(f"i64 {k}" for k in range(width))
            base = self.f.splat(scalar, width)
            vec = self.f.assign(f"add <{width} x i64> {base.ref}, <{lanes}>", "lane")
            self.vars[var] = Val(vec, "i64", width)
            self.vars[f"{var}#0"] = scalar
            self.block(body)
            term_v = self.splat_to(self.get(term.operands[0]), width)
            self.lanes, self.vvar = saved
            return [self.combine(kind, cur[0], term_v)]

        return self.counted_loop(var, lo, hi, lambda: None, step=width, carried=[vinit],
                                 update=update)[0]

    def combine(self, kind: str, acc: Val, x: Val) -> Val:
        if kind == "add":
            return self.binary("add", acc, x)
        if kind == "mul":
            return self.binary("mul", acc, x)
        return self.binary(kind, acc, x)

    def horizontal(self, kind: str, v: Val) -> Val:
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


def _mangle(dtype: str, lanes: int) -> str:
    base = {"f32": "f32", "f16": "f16", "bf16": "bf16", "f64": "f64", "i64": "i64",
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

