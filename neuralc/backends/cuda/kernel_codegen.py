"""Triton source for one ``loop.kernel``: the loop nests as blocks of a program grid.

Each top-level parallel loop nest of a kernel is a *phase*. Its loop levels are split into
groups at each level that computes a reduction for the levels below it (softmax's row max, a
norm's mean): the first group, flattened (variables recovered by div/mod of the flat index),
is spread over the program grid in blocks of ``BLOCK`` (masked at the end); each later group
is a loop inside the program over blocks of its own. Every value is a Triton tensor whose
axes are the groups and reductions open where it is computed (a value from an outer scope is
expanded with ``[:, None]`` where it meets an inner one), so the loop IR's scalar code becomes
block code op by op, and its index expressions (:mod:`neuralc.backends.cuda.pyexpr`) become
the address arithmetic. A load is masked by the masks of the axes whose variables its index
uses and by its guard (``other=`` where the guard fails: padding never reads outside a buffer);
a store by the masks of every open axis.

``loop.reduce`` adds an axis: *persistent* (one ``tl.arange`` block covering the whole
reduced box, then ``tl.sum``/``tl.max``/...) when the box is static and fits the tile budget,
else a loop over blocks accumulating element-wise (float32 for 16-bit types) and reduced at
the end. Masked-off terms are the reduction's identity.

*Dot form* (matmul, convolution as implicit GEMM, a recurrence's gate matmuls): a phase of one
group whose reductions are all ``contraction`` multiply-accumulates ``x * y`` where ``x`` uses
one set of the nest's variables (M) and ``y`` another (N), variables both use being batch
variables. The program grid is tiled over (M, N) with grouped tile ordering (and batch), each
contraction is a loop over K blocks computing the ``x`` tile ``[BM, BK]`` and the ``y`` tile
``[BK, BN]`` from their own index expressions and accumulating ``tl.dot`` in float32, and the
rest of the nest (bias, activation, residual, folded BatchNorm) is the epilogue on the
``[BM, BN]`` tile. K walks the contraction's variables with the one of smallest stride in the
``x`` operand innermost (a channels-last convolution reads consecutive channels). 16-bit
operands (``cast(f16 -> f32)`` on both sides) go to ``tl.dot`` as they are (tensor cores,
float32 accumulation); float32 operands use ``input_precision="ieee"`` unless TF32 is
allowed.

A kernel with a serial loop (a recurrence) is *persistent*: one program runs the whole kernel,
each phase as a loop over its blocks, with ``tl.debug_barrier()`` between phases (a phase
reads what the one before it wrote). Attention kernels are recognised by
:mod:`neuralc.backends.cuda.attention` and written as one fused flash-style kernel.

Block sizes come from fixed heuristics: static sizes as they are, symbolic ones at their
nominal values (``dim_nominal``) within their ``dims`` ranges; the tile of one program holds
at most :data:`TILE_BUDGET` elements. Tunable block sizes are ``tl.constexpr`` parameters;
those a persistent reduction depends on are literals.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from neuralc.backends.cuda.pyexpr import IndexText, UnboundName
from neuralc.ir.core import Op, Value
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import Dim, evaluate, product, symbols
from neuralc.ir.scalar_fns import expand
from neuralc.ir.types import MemRefType
from neuralc.location import Location

TILE_BUDGET = 4096  # elements of one program's largest tile (registers)
INTERPRETER_BUDGET = 1 << 16  # the same under Triton's interpreter (numpy arrays: fewer, bigger
# programs run faster there; the kernels are the same, only their launch blocks differ)
PERSISTENT_LIMIT = 1024  # a static reduction up to this size is one block
LOOP_BLOCK = 256  # block of a looped reduction or inner group
MAX_BLOCK = 1024  # largest block of a flat group

TL_DTYPE = {"f32": "tl.float32", "f16": "tl.float16", "bf16": "tl.bfloat16", "f64": "tl.float64",
            "i64": "tl.int64", "i32": "tl.int32", "i8": "tl.int8", "i1": "tl.int1"}
FLOATS = ("f32", "f16", "bf16", "f64")
_IDENTITY = {"add": 0.0, "mul": 1.0, "max": float("-inf"), "min": float("inf")}
_INT_IDENTITY = {"add": 0, "mul": 1, "max": -(2 ** 31), "min": 2 ** 31 - 1}
_REDUCE_FN = {"add": "tl.sum", "max": "tl.max", "min": "tl.min"}
_COMPARE = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_PRIMS = {"exp": "tl.exp", "log": "tl.log", "sqrt": "tl.sqrt_rn", "sin": "tl.sin",
          "cos": "tl.cos", "abs": "tl.abs", "floor": "tl.floor", "ceil": "tl.ceil",
          "erf": "tl.math.erf", "sigmoid": "tl.sigmoid", "tanh": "_tanh", "expm1": "_expm1",
          "softplus": "_softplus"}


class CodegenError(Exception):
    """The kernel holds something the cuda target does not generate; at its ``.nr`` line."""

    def __init__(self, message: str, location: Location):
        super().__init__(message)
        self.location = location


@dataclass
class CodegenOptions:
    allow_tf32: bool = False
    nominal: Mapping[str, int] = field(default_factory=dict)  # symbol -> nominal size


@dataclass
class KernelSource:
    """One generated kernel and how the host launches it."""

    name: str
    kind: str
    family: str
    text: str  # the @triton.jit function
    buffers: list[MemRefType]
    buffer_names: list[str]
    symbols: list[str]
    config: dict[str, int]  # tunable constexprs with their defaults, num_warps, num_stages
    candidates: list[dict[str, int]]  # configs --autotune may try
    interpreter_config: dict[str, int]  # larger blocks for Triton's interpreter
    grid: str  # number of programs: host Python over s_<symbol> and cfg[...]
    persistent: bool
    location: Location
    # floating-point work of the tl.dot parts (2 per multiply-add, symbolic), and the
    # (batch, M, N, K) of the first matmul (benchmarks compare it with torch.matmul)
    flops: Dim | None = None
    gemm: tuple[Dim, Dim, Dim, Dim] | None = None


@dataclass
class Val:
    """A value in generated code: its name, the rank of its tile (0: a scalar), its type."""

    text: str
    rank: int
    dtype: str


@dataclass
class Env:
    """Where code is being written: open axes (their block sizes), the loop variables in
    scope with their tiles, and the masks of masked variables and of the open parallel axes."""

    rank: int = 0
    blocks: list[str] = field(default_factory=list)
    vars: dict[str, Val] = field(default_factory=dict)
    masks: dict[str, Val] = field(default_factory=dict)
    axis_masks: list[Val] = field(default_factory=list)
    ranges: dict[str, tuple[Dim, Dim]] = field(default_factory=dict)

    def child(self, block: str) -> Env:
        return Env(self.rank + 1, [*self.blocks, block], dict(self.vars), dict(self.masks),
                   list(self.axis_masks), dict(self.ranges))


@dataclass
class Level:
    loop: Op
    var: str
    lower: Dim
    upper: Dim
    ops: list[Op]


@dataclass
class RPlan:
    block: int
    persistent: bool


@dataclass
class DotSide:
    """One operand of a contraction as a dot operand: the value, the vars it may use."""

    value: Value
    ops: list[Op]  # the body ops computing it, in order


@dataclass
class DotPlan:
    m_vars: list[str]
    n_vars: list[str]
    b_vars: list[str]
    sides: dict[int, tuple[DotSide, DotSide, str]]  # id(reduce) -> (x, y, operand dtype)
    bm: int
    bn: int
    bk: int


@dataclass
class PhasePlan:
    levels: list[Level]
    form: str  # generic | dot | flash
    groups: list[list[int]] = field(default_factory=list)
    block0: int = 1
    inner: list[tuple[int, bool]] = field(default_factory=list)  # (block, looped) per group>0
    reduces: dict[int, RPlan] = field(default_factory=dict)
    dot: DotPlan | None = None
    flash: Any = None
    prefix: str = ""


def pow2_ceil(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


def pow2_floor(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n).bit_length() - 1)


def _float_text(v: float) -> str:
    if math.isnan(v):
        return 'float("nan")'
    if math.isinf(v):
        return 'float("inf")' if v > 0 else 'float("-inf")'
    return repr(float(v))


def chain(loop: Op) -> list[Level]:
    """The perfectly placed nest below ``loop``: each level's ops, then its one child loop."""
    out: list[Level] = []
    cur: Op | None = loop
    while cur is not None:
        if cur.attributes.get("kind", "parallel") != "parallel":
            raise CodegenError("a serial loop inside a parallel loop nest", cur.location)
        ops = list(cur.regions[0].blocks[0].ops)
        child = None
        if ops and ops[-1].name == "loop.for":
            child = ops.pop()
        if any(o.name == "loop.for" for o in ops):
            raise CodegenError("a loop nest with two inner loops at one level", cur.location)
        out.append(Level(cur, str(cur.attributes["var"]), dim(cur.attributes["lower"]),
                         dim(cur.attributes["upper"]), ops))
        cur = child
    return out


def _walk_ops(ops: list[Op]) -> Iterator[Op]:
    for op in ops:
        yield op
        for r in op.regions:
            for b in r.blocks:
                yield from _walk_ops(list(b.ops))


# -- dependency analysis -------------------------------------------------------------------------


class Deps:
    """Which loop variables each value depends on (through indices, binds and operands)."""

    def __init__(self) -> None:
        self.of_value: dict[int, frozenset[str]] = {}
        self.of_var: dict[str, frozenset[str]] = {}

    def var(self, name: str) -> frozenset[str]:
        return self.of_var.get(name, frozenset({name}))

    def exprs(self, exprs: list[Dim]) -> frozenset[str]:
        out: set[str] = set()
        for e in exprs:
            for s in symbols(e):
                out |= self.var(s)
        return frozenset(out)

    def visit(self, ops: list[Op]) -> None:
        for op in ops:
            for r in op.regions:
                for b in r.blocks:
                    self.visit(list(b.ops))
            own: set[str] = set(self.exprs(op.index_exprs())) if hasattr(op, "index_exprs") \
                else set()
            for v in op.operands:
                own |= self.of_value.get(id(v), frozenset())
            if op.name == "loop.reduce":
                term = op.regions[0].blocks[0].terminator
                if term is not None:
                    own |= self.of_value.get(id(term.operands[0]), frozenset())
                own -= set(op.attributes["vars"])
            if op.name == "loop.bind":
                self.of_var[str(op.attributes["var"])] = frozenset(own)
            for res in op.results:
                self.of_value[id(res)] = frozenset(own)


def _ancestors(value: Value, body_ops: list[Op]) -> list[Op] | None:
    """The ops of ``body_ops`` (one block) computing ``value``, in order, with the binds whose
    variables they use; None when one of them holds a region (a nested loop or reduction)."""
    inside = {id(o) for o in body_ops}
    binds = {str(o.attributes["var"]): o for o in body_ops if o.name == "loop.bind"}
    need: set[int] = set()
    stack = [value]
    seen_binds: set[str] = set()
    while stack:
        v = stack.pop()
        op = getattr(v, "op", None)
        if op is None or id(op) not in inside or id(op) in need:
            continue
        need.add(id(op))
        if op.regions:
            return None
        stack.extend(op.operands)
        for e in op.index_exprs():
            for s in symbols(e):
                if s in binds and s not in seen_binds:
                    seen_binds.add(s)
                    b = binds[s]
                    need.add(id(b))
                    stack.extend(b.operands)
    return [o for o in body_ops if id(o) in need]


# -- the generator ---------------------------------------------------------------------------------


class TritonKernelWriter:
    """Writes the Triton function of one loop kernel (see the module docstring)."""

    def __init__(self, kernel: Op, options: CodegenOptions):
        self.kernel = kernel
        self.options = options
        self.name = str(kernel.attributes["sym_name"])
        self.kind = str(kernel.attributes.get("kind") or "")
        self.symbols = [str(s) for s in kernel.attributes.get("symbols", [])]
        self.lines: list[str] = []
        self.depth = 1
        self.counter = 0
        self.vals: dict[int, Val] = {}
        self.buffers: dict[int, tuple[str, str, list[Dim]]] = {}  # id -> (ptr, dtype, strides)
        self.config: dict[str, int] = {}
        self.tunable: dict[str, tuple[int, ...]] = {}  # constexpr -> candidate values
        self.interp: dict[str, int] = {}  # constexpr -> its value under the interpreter
        self.helpers: set[str] = set()
        self.families: list[str] = []
        self.deps = Deps()
        self.serial_vars: set[str] = set()
        self.flops: Dim | None = None
        self.gemm: tuple[Dim, Dim, Dim, Dim] | None = None
        self.current: Op | None = None  # the op being translated (for error locations)

    # -- text ------------------------------------------------------------------------------
    def emit(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)

    @contextlib.contextmanager
    def indented(self, header: str) -> Iterator[None]:
        self.emit(header)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def fresh(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def assign(self, prefix: str, expr: str) -> str:
        name = self.fresh(prefix)
        self.emit(f"{name} = {expr}")
        return name

    @staticmethod
    def at(v: Val, rank: int) -> str:
        """``v``'s text expanded to a tile of ``rank`` axes."""
        if v.rank == 0 or v.rank == rank:
            return v.text
        if v.rank > rank:
            raise AssertionError("a value used outside the scope that computes it")
        return f"{v.text}[{', '.join([':'] * v.rank + ['None'] * (rank - v.rank))}]"

    def arange(self, block: str, pos: int, rank: int) -> str:
        """``tl.arange(0, block)`` on axis ``pos`` of a ``rank``-axis tile."""
        base = f"tl.arange(0, {block})"
        if rank == 1:
            return base
        return f"{base}[{', '.join('None' if k != pos else ':' for k in range(rank))}]"

    def idx(self, env: Env) -> IndexText:
        names = {s: f"s_{s}" for s in self.symbols}
        for k, v in env.vars.items():
            names[k] = self.at(v, env.rank)
        return IndexText(names, env.ranges, "triton")

    def sym_text(self, d: Dim) -> str:
        """A size expression (symbols only) in kernel code."""
        return IndexText({s: f"s_{s}" for s in self.symbols}, {}, "triton").text(d)

    def nominal(self, d: Dim) -> int:
        try:
            return max(1, int(evaluate(d, self.options.nominal)))
        except (KeyError, ZeroDivisionError):
            return 64

    def error(self, message: str, op: Op | None = None) -> CodegenError:
        where = op or self.current or self.kernel
        return CodegenError(f"cuda target: kernel {self.name} ({self.kind or 'kernel'}): "
                            f"{message}", where.location)

    # -- the kernel ------------------------------------------------------------------------
    def generate(self) -> KernelSource:
        block = self.kernel.regions[0].blocks[0]
        self.deps.visit(list(block.ops))
        params = []
        names = []
        for i, a in enumerate(block.args):
            t = a.type
            assert isinstance(t, MemRefType)
            strides = [product(list(t.shape[k + 1:])) for k in range(t.rank)]
            self.buffers[id(a)] = (f"b{i}", t.dtype, strides)
            params.append(f"b{i}")
            names.append(a.name_hint or f"b{i}")
        params += [f"s_{s}" for s in self.symbols]
        top = list(block.ops)
        persistent = any(o.name == "loop.for" and o.attributes.get("kind") == "serial"
                         for o in top)
        from neuralc.backends.cuda.attention import match_flash

        self.serial_vars = {str(o.attributes["var"]) for o in _walk_ops(top)
                            if o.name == "loop.for" and o.attributes.get("kind") == "serial"}
        flash = match_flash(self, top) if not persistent else None
        plans: list[PhasePlan] = []
        if flash is not None:
            plans = [flash]
        else:
            for op in _nests(top):
                plans.append(self.plan_phase(chain(op), len(plans)))
        env = Env()
        if persistent:
            grid = "1"
            self.emit_persistent(top, env, {id(p.levels[0].loop): p for p in plans})
        else:
            for op in top:
                if op.name != "loop.for":
                    self.op(op, env)
            grid = self.emit_grid(plans, env)
        body = self.lines
        self.lines = []
        self.depth = 0
        consts = [f"{k}: tl.constexpr" for k in self.config if k not in ("num_warps",
                                                                           "num_stages")]
        header = f"def {self.name}({', '.join(params + consts)}):"
        text = "@triton.jit\n" + header + "\n" + ("\n".join(body) if body else "    pass")
        cfg = dict(self.config)
        cfg.setdefault("num_warps", 4)
        cfg.setdefault("num_stages", 3)
        family = "+".join(dict.fromkeys(self.families)) or "pointwise"
        if persistent:
            family = "scan (persistent)" if "scan" in self.kind else f"{family} (persistent)"
        interp = {**cfg, **self.interp}
        return KernelSource(self.name, self.kind, family, text,
                            [a.type for a in block.args], names, list(self.symbols), cfg,
                            self.candidates(cfg), interp, grid, persistent,
                            self.kernel.location, self.flops, self.gemm)

    def candidates(self, cfg: dict[str, int]) -> list[dict[str, int]]:
        """Configs --autotune tries: the default, then each tunable at its other values."""
        out = [dict(cfg)]
        for k, values in self.tunable.items():
            for v in values:
                if v != cfg[k]:
                    c = dict(cfg)
                    c[k] = v
                    out.append(c)
        for w in (2, 4, 8):
            if w != cfg["num_warps"]:
                c = dict(cfg)
                c["num_warps"] = w
                out.append(c)
        return out

    # -- phases --------------------------------------------------------------------------------
    def emit_grid(self, plans: list[PhasePlan], env: Env) -> str:
        """Every phase in one launch: program ids split between the phases in order."""
        if not plans:
            return "1"
        pid = self.assign("pid", "tl.program_id(0)")
        counts = [self.program_count(p) for p in plans]
        host = " + ".join(f"({c[1]})" for c in counts)

        def dispatch(k: int, offset: str) -> None:
            local = pid if offset == "0" else self.assign("pid", f"{pid} - ({offset})")
            if k == len(plans) - 1:
                self.emit_phase(plans[k], local, env)
                return
            n = self.assign("n", counts[k][0])
            with self.indented(f"if {local} < {n}:"):
                self.emit_phase(plans[k], local, env)
            with self.indented("else:"):
                dispatch(k + 1, f"{offset} + {n}" if offset != "0" else n)

        dispatch(0, "0")
        return host

    def emit_persistent(self, ops: list[Op], env: Env, plans: dict[int, PhasePlan]) -> None:
        """One program runs everything in order; a barrier after each phase."""
        for op in ops:
            if op.name == "loop.for" and op.attributes.get("kind") == "serial":
                var = str(op.attributes["var"])
                lo = self.idx(env).text(dim(op.attributes["lower"]))
                hi = self.idx(env).text(dim(op.attributes["upper"]))
                inner = Env(env.rank, list(env.blocks), dict(env.vars), dict(env.masks),
                            list(env.axis_masks), dict(env.ranges))
                inner.vars[var] = Val(f"x_{var}", 0, "i32")
                inner.ranges[var] = (dim(op.attributes["lower"]),
                                     dim(op.attributes["upper"]) - 1)
                with self.indented(f"for x_{var} in range({lo}, {hi}):"):
                    self.emit_persistent(list(op.regions[0].blocks[0].ops), inner, plans)
            elif op.name == "loop.for":
                plan = plans[id(op)]
                count, _ = self.program_count(plan)
                pid = self.fresh("pid")
                with self.indented(f"for {pid} in range(0, {count}):"):
                    self.emit_phase(plan, pid, env)
                self.emit("tl.debug_barrier()")
            else:
                self.op(op, env)

    def program_count(self, plan: PhasePlan) -> tuple[str, str]:
        """Programs a phase needs: (kernel text, host text)."""
        p = plan.prefix
        if plan.form == "flash":
            from neuralc.backends.cuda.attention import flash_program_count

            return flash_program_count(self, plan)
        if plan.form == "dot":
            d = plan.dot
            assert d is not None
            em, en, eb = (self.extent(plan.levels, d.m_vars), self.extent(plan.levels, d.n_vars),
                          self.extent(plan.levels, d.b_vars))
            k = (f"((({self.sym_text(em)}) + {p}BM - 1) // {p}BM) * ((({self.sym_text(en)}) + "
                 f"{p}BN - 1) // {p}BN) * ({self.sym_text(eb)})")
            h = (f"((({host_text(em)}) + cfg['{p}BM'] - 1) // cfg['{p}BM']) * "
                 f"((({host_text(en)}) + cfg['{p}BN'] - 1) // cfg['{p}BN']) * ({host_text(eb)})")
            return k, h
        e0 = self.extent(plan.levels, [plan.levels[i].var for i in plan.groups[0]])
        return (f"(({self.sym_text(e0)}) + {p}BLOCK - 1) // {p}BLOCK",
                f"(({host_text(e0)}) + cfg['{p}BLOCK'] - 1) // cfg['{p}BLOCK']")

    @staticmethod
    def extent(levels: list[Level], names: list[str]) -> Dim:
        by = {lv.var: lv for lv in levels}
        return product([by[n].upper - by[n].lower for n in names])

    # -- planning ----------------------------------------------------------------------------
    def plan_phase(self, levels: list[Level], index: int) -> PhasePlan:
        prefix = "" if index == 0 else f"P{index}_"
        dot = self.plan_dot(levels)
        if dot is not None:
            plan = PhasePlan(levels, "dot", dot=dot, prefix=prefix)
            self.config[f"{prefix}BM"] = dot.bm
            self.config[f"{prefix}BN"] = dot.bn
            self.config[f"{prefix}BK"] = dot.bk
            self.config[f"{prefix}GROUP_M"] = 8
            self.tunable[f"{prefix}BM"] = (32, 64, 128)
            self.tunable[f"{prefix}BN"] = (32, 64, 128)
            self.tunable[f"{prefix}BK"] = (32, 64) if dot.bk >= 32 else (dot.bk,)
            self.interp.update({f"{prefix}BM": 128, f"{prefix}BN": 128, f"{prefix}BK": 128})
            if dot.bm * dot.bn >= 128 * 128:
                self.config["num_warps"] = 8
            em, en, eb = (self.extent(levels, dot.m_vars), self.extent(levels, dot.n_vars),
                          self.extent(levels, dot.b_vars))
            ks = [self.reduce_total(r) for r in _walk_ops([o for lv in levels for o in lv.ops])
                  if r.name == "loop.reduce"]
            work: Dim = 0
            for k in ks:
                work = work + 2 * eb * em * en * k
            self.flops = work if self.flops is None else self.flops + work
            self.gemm = self.gemm or (eb, em, en, ks[0])
            conv = "conv" in self.kind or len(dot.m_vars) > 1 and "matmul" not in self.kind
            self.families.append("conv (implicit GEMM)" if conv else "matmul (tl.dot)")
            return plan
        groups: list[list[int]] = [[]]
        for i, lv in enumerate(levels):
            groups[-1].append(i)
            if i < len(levels) - 1 and any(o.name == "loop.reduce" for o in lv.ops):
                groups.append([])
        plan = PhasePlan(levels, "generic", groups=groups, prefix=prefix)
        width = 1
        widest = 1
        for g in groups[1:]:
            e = self.extent(levels, [levels[i].var for i in g])
            static = e if isinstance(e, int) else None
            size = static if static is not None else self.nominal(e)
            block = min(pow2_ceil(size), MAX_BLOCK, pow2_floor(TILE_BUDGET // width))
            looped = static is None or static > block
            plan.inner.append((block, looped))
            width *= block
        reduces = [o for i in range(len(levels)) for o in levels[i].ops
                   if o.name == "loop.reduce"]
        # widths at each group: reductions of group g see the blocks of groups 1..g
        group_of = {id(o): k for k, g in enumerate(groups) for i in g for o in levels[i].ops}
        for op in reduces:
            outer = 1
            for k in range(1, group_of[id(op)] + 1):
                outer *= plan.inner[k - 1][0]
            widest = max(widest, self.plan_reduce(op, outer, plan.reduces))
        widest = max(widest, width)
        e0 = self.extent(levels, [levels[i].var for i in groups[0]])
        size0 = e0 if isinstance(e0, int) else self.nominal(e0)
        block0 = max(1, min(pow2_floor(TILE_BUDGET // widest), pow2_ceil(size0), MAX_BLOCK))
        plan.block0 = block0
        self.config[f"{prefix}BLOCK"] = block0
        self.interp[f"{prefix}BLOCK"] = max(block0, pow2_floor(INTERPRETER_BUDGET // widest))
        if block0 * widest >= 4096:
            self.config["num_warps"] = 8
        self.tunable[f"{prefix}BLOCK"] = tuple(sorted({max(1, block0 // 2), block0,
                                                       min(MAX_BLOCK, block0 * 2)}))
        if reduces:
            kinds = {str(o.attributes["kind"]) for o in reduces}
            if any(o.attributes.get("contraction") for o in reduces):
                self.families.append("depthwise/small contraction")
            elif "pool" in self.kind:
                self.families.append("pooling")
            else:
                self.families.append("reduction (" + ", ".join(sorted(kinds)) + ")")
        else:
            self.families.append("pointwise")
        return plan

    def plan_reduce(self, op: Op, outer: int, out: dict[int, RPlan]) -> int:
        """Choose a reduction's block (persistent or looped); returns the widest tile below."""
        total = self.reduce_total(op)
        budget = max(1, TILE_BUDGET // max(outer, 1))
        dynamic = bool(symbols(total) - set(self.symbols))
        if isinstance(total, int) and total <= min(PERSISTENT_LIMIT, budget):
            plan = RPlan(pow2_ceil(total), True)
        else:
            size = total if isinstance(total, int) else (64 if dynamic else self.nominal(total))
            plan = RPlan(max(1, min(pow2_ceil(size), LOOP_BLOCK, pow2_floor(budget))), False)
        out[id(op)] = plan
        widest = outer * plan.block
        for inner in _walk_ops(list(op.regions[0].blocks[0].ops)):
            if inner.name == "loop.reduce" and id(inner) not in out:
                widest = max(widest, self.plan_reduce(inner, outer * plan.block, out))
        return widest

    def reduce_total(self, op: Op) -> Dim:
        lo = [dim(t) for t in op.attributes["lower"]]
        hi = [dim(t) for t in op.attributes["upper"]]
        return product([h - lw for lw, h in zip(lo, hi)])

    def plan_dot(self, levels: list[Level]) -> DotPlan | None:
        """The dot form of a nest, when every reduction in it is a contraction that splits
        into an M-side and an N-side operand (see the module docstring)."""
        reduces = [o for lv in levels for o in _walk_ops(lv.ops) if o.name == "loop.reduce"]
        if not reduces:
            return None
        inner_ops = levels[-1].ops
        if any(id(r) not in {id(o) for o in inner_ops} for r in reduces):
            return None
        par = [lv.var for lv in levels]
        sides: dict[int, tuple[DotSide, DotSide, str]] = {}
        m: set[str] = set()
        n: set[str] = set()
        b: set[str] = set()
        big_k = False
        for r in reduces:
            got = self.contraction_sides(r, par)
            if got is None:
                return None
            x, y, dtype, px, py = got
            shared = px & py
            px, py = px - shared, py - shared
            if (px & n) or (py & m):
                px, py, x, y = py, px, y, x
            if (px & n) or (py & m):
                return None
            m |= px
            n |= py
            b |= shared
            sides[id(r)] = (x, y, dtype)
            k = self.reduce_total(r)
            big_k = big_k or self.nominal(k) >= 16
        m -= b
        n -= b
        if not m or not n or not big_k:
            return None
        for v in par:
            if v not in m | n | b:
                m.add(v)
        m_vars = [v for v in par if v in m]
        n_vars = [v for v in par if v in n]
        b_vars = [v for v in par if v in b]
        en = self.nominal(self.extent(levels, n_vars))
        if en < 8:  # fewer than 8 columns: a tile of 16 would be mostly padding
            return None
        em = self.nominal(self.extent(levels, m_vars))
        kmax = max(self.nominal(self.reduce_total(r)) for r in reduces)
        sixteen = all(s[2] in ("f16", "bf16") for s in sides.values())
        bm = min(max(pow2_ceil(em), 16), 128)
        bn = min(max(pow2_ceil(en), 16), 128)
        bk = min(max(pow2_ceil(kmax), 16), 64 if sixteen else 32)
        return DotPlan(m_vars, n_vars, b_vars, sides, bm, bn, bk)

    def contraction_sides(self, r: Op, par: list[str]) -> tuple[
            DotSide, DotSide, str, set[str], set[str]] | None:
        if not r.attributes.get("contraction") or r.attributes["kind"] != "add":
            return None
        if r.results[0].type.dtype not in FLOATS or r.results[0].type.dtype == "f64":
            return None
        rvars = set(r.attributes["vars"])
        for t in [*r.attributes["lower"], *r.attributes["upper"]]:
            if symbols(dim(t)) - set(self.symbols):
                return None
        body = list(r.regions[0].blocks[0].ops)
        term = r.regions[0].blocks[0].terminator
        if term is None or any(o.regions for o in body) \
                or any(o.name == "loop.store" for o in body):
            return None
        prod_op = getattr(term.operands[0], "op", None)
        if prod_op is None or prod_op.name != "loop.binary" or prod_op.attributes["fn"] != "mul":
            return None
        x, y = prod_op.operands
        # 16-bit operands widened for the product: the dot takes them as they are.
        xs, ys = self.narrow(x, body), self.narrow(y, body)
        dtype = "f32"
        if xs.type.dtype == ys.type.dtype and xs.type.dtype in ("f16", "bf16"):
            x, y, dtype = xs, ys, xs.type.dtype
        elif x.type.dtype != "f32":
            return None
        inside = {id(o) for o in body}
        sides = []
        deps = []
        for v in (x, y):
            ops = _ancestors(v, body)
            if ops is None:
                return None
            for o in ops:
                for operand in o.operands:
                    src = getattr(operand, "op", None)
                    if src is not None and id(src) not in inside and \
                            src.parent_op() is not self.kernel:
                        return None  # a value of the enclosing loops: not a tile operand
            sides.append(DotSide(v, ops))
            deps.append(set(self.deps.of_value.get(id(v), frozenset())) - rvars)
        px = deps[0] & set(par)
        py = deps[1] & set(par)
        if (deps[0] | deps[1]) - set(par) - rvars - self.serial_vars:
            return None  # depends on another variable (a serial one is a scalar: fine)
        return sides[0], sides[1], dtype, px, py

    @staticmethod
    def narrow(v: Value, body: list[Op]) -> Value:
        op = getattr(v, "op", None)
        if op is not None and op.name == "loop.cast" and v.type.dtype == "f32" and \
                op.operands[0].type.dtype in ("f16", "bf16") and op in body:
            return op.operands[0]
        return v

    # -- emitting phases ---------------------------------------------------------------------
    def emit_phase(self, plan: PhasePlan, pid: str, env: Env) -> None:
        if plan.form == "flash":
            from neuralc.backends.cuda.attention import emit_flash

            emit_flash(self, plan, pid, env)
        elif plan.form == "dot":
            self.emit_dot_phase(plan, pid, env)
        else:
            self.emit_generic_group(plan, 0, pid, env)

    def decode(self, levels: list[Level], names: list[str], flat: str, env: Env,
               mask: str | None) -> None:
        """Bind ``names`` (nest variables, outer first) from the flat index ``flat``."""
        by = {lv.var: lv for lv in levels}
        exts = [by[n].upper - by[n].lower for n in names]
        idx = self.idx(env)
        for k, n in enumerate(names):
            env.ranges[n] = (by[n].lower, by[n].upper - 1)
            if exts[k] == 1:  # one iteration: the variable is its lower bound
                env.vars[n] = Val(self.assign(f"x_{_safe(n)}_", idx.text(by[n].lower)), 0,
                                  "i32")
                continue
            stride = product(exts[k + 1:])
            e = f"{flat}" if stride == 1 else f"({flat} // {idx.text(stride)})"
            if k > 0:
                e = f"({e} % {idx.text(exts[k])})"
            lo = by[n].lower
            if lo != 0:
                e = f"{idx.text(lo)} + {e}"
            env.vars[n] = Val(self.assign(f"x_{_safe(n)}_", e), env.rank, "i32")
            if mask is not None:
                env.masks[n] = Val(mask, env.rank, "i1")

    def emit_generic_group(self, plan: PhasePlan, g: int, pid: str, env: Env) -> None:
        levels = plan.levels
        names = [levels[i].var for i in plan.groups[g]]
        e = self.extent(levels, names)
        if g == 0:
            inner = env.child(f"{plan.prefix}BLOCK")
            block = f"{plan.prefix}BLOCK"
            ar = self.arange(block, inner.rank - 1, inner.rank)
            flat = self.assign("f", f"{pid} * {block} + {ar}")
            self.open_axis(plan, g, flat, e, names, inner)
            return
        block, looped = plan.inner[g - 1]
        inner = env.child(str(block))
        start = self.fresh("c")
        if looped:
            with self.indented(f"for {start} in range(0, {self.sym_text(e)}, {block}):"):
                ar = self.arange(str(block), inner.rank - 1, inner.rank)
                flat = self.assign("f", f"{start} + {ar}")
                self.open_axis(plan, g, flat, e, names, inner)
        else:
            flat = self.assign("f", self.arange(str(block), inner.rank - 1, inner.rank))
            self.open_axis(plan, g, flat, e, names, inner)

    def open_axis(self, plan: PhasePlan, g: int, flat: str, e: Dim, names: list[str],
                  env: Env) -> None:
        mask = self.assign("m", f"{flat} < {self.sym_text(e)}")
        env.axis_masks.append(Val(mask, env.rank, "i1"))
        self.decode(plan.levels, names, flat, env, mask)
        for i in plan.groups[g]:
            for op in plan.levels[i].ops:
                self.op(op, env, plan)
        if g + 1 < len(plan.groups):
            self.emit_generic_group(plan, g + 1, "", env)

    def emit_dot_phase(self, plan: PhasePlan, pid: str, env: Env) -> None:
        d = plan.dot
        assert d is not None
        p = plan.prefix
        levels = plan.levels
        em, en = self.extent(levels, d.m_vars), self.extent(levels, d.n_vars)
        n_m = self.assign("nm", f"(({self.sym_text(em)}) + {p}BM - 1) // {p}BM")
        n_n = self.assign("nn", f"(({self.sym_text(en)}) + {p}BN - 1) // {p}BN")
        tiles = self.assign("nt", f"{n_m} * {n_n}")
        pt = self.assign("pt", f"{pid} % {tiles}") if d.b_vars else pid
        # grouped ordering: GROUP_M row tiles share their column tiles in cache
        in_group = self.assign("ng", f"{p}GROUP_M * {n_n}")
        first = self.assign("fm", f"({pt} // {in_group}) * {p}GROUP_M")
        size = self.assign("gm", f"tl.minimum({n_m} - {first}, {p}GROUP_M)")
        pm = self.assign("pm", f"{first} + (({pt} % {in_group}) % {size})")
        pn = self.assign("pn", f"({pt} % {in_group}) // {size}")
        base = Env(2, [f"{p}BM", f"{p}BN"], dict(env.vars), dict(env.masks),
                   list(env.axis_masks), dict(env.ranges))
        om = self.assign("om", f"{pm} * {p}BM + tl.arange(0, {p}BM)[:, None]")
        on = self.assign("on", f"{pn} * {p}BN + tl.arange(0, {p}BN)[None, :]")
        mm = self.assign("mm", f"{om} < {self.sym_text(em)}")
        mn = self.assign("mn", f"{on} < {self.sym_text(en)}")
        base.axis_masks += [Val(mm, 2, "i1"), Val(mn, 2, "i1")]
        self.decode(levels, d.m_vars, om, base, mm)
        self.decode(levels, d.n_vars, on, base, mn)
        if d.b_vars:
            pb = self.assign("pb", f"{pid} // {tiles}")
            scalar = Env(0, [], {}, {}, [], {})
            scalar.ranges = base.ranges
            self.decode(levels, d.b_vars, pb, scalar, None)
            for v in d.b_vars:
                base.vars[v] = scalar.vars[v]
        for lv in levels:
            for op in lv.ops:
                self.op(op, base, plan)

    # -- ops -----------------------------------------------------------------------------------
    def op(self, op: Op, env: Env, plan: PhasePlan | None = None) -> None:
        self.current = op
        n = op.name
        if n == "loop.store":
            self.store(op, env)
        elif n == "loop.bind":
            self.bind(op, env)
        elif n == "loop.yield":
            pass
        elif n == "loop.for":
            raise self.error("a loop the cuda target does not place (a loop inside a "
                             "reduction or a serial loop below the kernel's top level)", op)
        elif n == "loop.reduce":
            if plan is not None and plan.dot is not None and id(op) in plan.dot.sides:
                self.vals[id(op.results[0])] = self.dot_reduce(op, env, plan)
            else:
                rplans = plan.reduces if plan is not None else {}
                self.vals[id(op.results[0])] = self.reduce(op, env, rplans)
        else:
            self.vals[id(op.results[0])] = self.scalar(op, env)

    def get(self, v: Value, env: Env) -> str:
        got = self.vals.get(id(v))
        if got is None:
            raise self.error("a value used before the code computing it")
        return self.at(got, env.rank)

    def val(self, v: Value) -> Val:
        return self.vals[id(v)]

    def rank_of(self, values: list[Value], env: Env, extra: int = 0) -> int:
        return max([self.vals[id(v)].rank for v in values] + [extra])

    def address(self, op: Op, env: Env) -> tuple[str, str, int]:
        """(pointer expression, dtype, rank) of a load's or store's element."""
        ptr, dtype, strides = self.buffers[id(op.operands[0])]
        exprs = [dim(t) for t in op.attributes["index"]]
        linear: Dim = 0
        for e, s in zip(exprs, strides):
            linear = linear + e * s
        try:
            text = self.idx(env).text(linear)
        except UnboundName as e:
            raise self.error(f"index uses '{e.args[0]}', which is not in scope", op) from None
        used = self.deps_vars(exprs, env)
        rank = max([env.vars[v].rank for v in used] + [0])
        return f"{ptr} + {text}", dtype, rank

    def deps_vars(self, exprs: list[Dim], env: Env) -> list[str]:
        out: list[str] = []
        for e in exprs:
            for s in sorted(symbols(e)):
                if s in env.vars and s not in out:
                    out.append(s)
        return out

    def mask_of(self, exprs: list[Dim], env: Env) -> list[str]:
        masks: list[str] = []
        for v in self.deps_vars(exprs, env):
            m = env.masks.get(v)
            if m is not None:
                t = self.at(m, env.rank)
                if t not in masks:
                    masks.append(t)
        return masks

    def conds(self, conds: list[list[str]], env: Env) -> str:
        idx = self.idx(env)
        parts = []
        for e, lo, hi in conds:
            x = idx.text(dim(e))
            parts.append(f"({x} >= {idx.text(dim(lo))}) & ({x} < {idx.text(dim(hi))})")
        return " & ".join(parts)

    def load(self, op: Op, env: Env) -> Val:
        addr, dtype, _ = self.address(op, env)
        exprs = [dim(t) for t in op.attributes["index"]]
        guard = op.attributes.get("guard")
        gexprs = [dim(t) for c in guard or [] for t in c]
        masks = self.mask_of(exprs + gexprs, env)
        if guard:
            masks.append(f"({self.conds(guard, env)})")
        used = self.deps_vars(exprs + gexprs, env)
        rank = max([env.vars[v].rank for v in used] + [0])
        other = op.attributes.get("other", 0.0)
        other_t = _float_text(float(other)) if dtype in FLOATS else str(int(other))
        if masks:
            text = f"tl.load({addr}, mask={' & '.join(masks)}, other={other_t})"
        else:
            text = f"tl.load({addr})"
        return Val(self.assign("v", text), rank if rank == 0 else env.rank, dtype)

    def store(self, op: Op, env: Env) -> None:
        addr, dtype, _ = self.address(op, env)
        value = self.get(op.operands[1], env)
        masks = list(dict.fromkeys(self.at(m, env.rank) for m in env.axis_masks))
        if not masks:
            self.emit(f"tl.store({addr}, {value})")
            return
        # pointer, value and mask broadcast to one shape (a store writes its pointer's shape)
        self.helpers.add("_store")
        self.emit(f"_store({addr}, {value}, {' & '.join(masks)})")

    def bind(self, op: Op, env: Env) -> None:
        v = self.get(op.operands[0], env)
        rank = self.vals[id(op.operands[0])].rank
        idx = self.idx(env)
        lo = idx.text(dim(op.attributes["lower"]))
        hi = idx.text(dim(op.attributes["upper"]))
        name = str(op.attributes["var"])
        x = self.assign(f"x_{_safe(name)}_",
                        f"tl.minimum(tl.maximum(tl.cast({v}, tl.int32), {lo}), {hi} - 1)")
        env.vars[name] = Val(x, rank if rank == 0 else env.rank, "i32")
        env.ranges[name] = (dim(op.attributes["lower"]), dim(op.attributes["upper"]) - 1)

    def scalar(self, op: Op, env: Env) -> Val:
        n, a = op.name, op.attributes
        dtype = op.results[0].type.dtype
        if n == "loop.load":
            return self.load(op, env)
        if n == "loop.const":
            value = a["value"]
            if dtype == "i1":
                text = f"tl.full([], {1 if value else 0}, tl.int1)"
            elif dtype in FLOATS:
                text = f"tl.full([], {_float_text(float(value))}, {TL_DTYPE[dtype]})"
            else:
                text = f"tl.full([], {int(value)}, {TL_DTYPE[dtype]})"
            return Val(self.assign("c", text), 0, dtype)
        if n == "loop.index":
            e = dim(a["expr"])
            used = self.deps_vars([e], env)
            rank = max([env.vars[v].rank for v in used] + [0])
            if isinstance(e, int):
                return Val(self.assign("c", f"tl.full([], {e}, {TL_DTYPE[dtype]})"), 0, dtype)
            text = self.idx(env).text(e)
            return Val(self.assign("v", f"tl.cast({text}, {TL_DTYPE[dtype]})"),
                       rank if rank == 0 else env.rank, dtype)
        if n == "loop.guard":
            exprs = [dim(t) for c in a["conds"] for t in c]
            used = self.deps_vars(exprs, env)
            rank = max([env.vars[v].rank for v in used] + [0])
            return Val(self.assign("g", self.conds(a["conds"], env)),
                       rank if rank == 0 else env.rank, "i1")
        args = [self.get(v, env) for v in op.operands]
        rank = self.rank_of(list(op.operands), env)
        rank = rank if rank == 0 else env.rank
        if n == "loop.unary":
            return self.unary(str(a["fn"]), Val(args[0], rank, op.operands[0].type.dtype),
                              a.get("alpha"), dtype)
        if n == "loop.binary":
            return Val(self.assign("v", self.binary(str(a["fn"]), args[0], args[1], dtype)),
                       rank, dtype)
        if n == "loop.compare":
            return Val(self.assign("v", f"{args[0]} {_COMPARE[a['fn']]} {args[1]}"), rank,
                       "i1")
        if n == "loop.select":
            return Val(self.assign("v", f"tl.where({args[0]}, {args[1]}, {args[2]})"), rank,
                       dtype)
        if n == "loop.cast":
            return Val(self.assign("v", self.cast(args[0], op.operands[0].type.dtype, dtype)),
                       rank, dtype)
        raise self.error(f"{n} has no Triton translation", op)

    def binary(self, fn: str, a: str, b: str, dtype: str) -> str:
        if fn in ("add", "sub", "mul"):
            return f"{a} {dict(add='+', sub='-', mul='*')[fn]} {b}"
        if fn == "div":
            if dtype in FLOATS:
                return f"{a} / {b}"
            return f"{a} // {b}"  # C division (truncation), as the loop interpreter's astype
        if fn in ("max", "min"):
            f = "tl.maximum" if fn == "max" else "tl.minimum"
            if dtype in FLOATS:
                return f"{f}({a}, {b}, propagate_nan=tl.PropagateNan.ALL)"
            return f"{f}({a}, {b})"
        if fn == "pow":
            if dtype not in FLOATS:
                raise self.error("integer pow has no Triton translation")
            self.helpers.add("_pow")
            wide = dtype in ("f16", "bf16")
            if wide:
                return (f"tl.cast(_pow(tl.cast({a}, tl.float32), tl.cast({b}, tl.float32)), "
                        f"{TL_DTYPE[dtype]})")
            return f"_pow({a}, {b})"
        raise self.error(f"binary {fn} has no Triton translation")

    def cast(self, x: str, src: str, dst: str) -> str:
        if src == dst:
            return x
        if dst == "i1":
            zero = "0.0" if src in FLOATS else "0"
            return f"{x} != {zero}"
        if {src, dst} == {"f16", "bf16"}:
            return f"tl.cast(tl.cast({x}, tl.float32), {TL_DTYPE[dst]})"
        return f"tl.cast({x}, {TL_DTYPE[dst]})"

    def unary(self, fn: str, x: Val, alpha: float | None, dtype: str) -> Val:
        wide = x if x.dtype == "f32" else Val(self.assign("v", self.cast(x.text, x.dtype,
                                                                          "f32")), x.rank, "f32")
        y = expand(fn, wide, alpha, _TritonOps(self))
        if dtype != "f32":
            return Val(self.assign("v", self.cast(y.text, "f32", dtype)), x.rank, dtype)
        return y

    # -- reductions ------------------------------------------------------------------------
    def reduce(self, op: Op, env: Env, plans: dict[int, RPlan]) -> Val:
        a = op.attributes
        kind = str(a["kind"])
        dtype = op.results[0].type.dtype
        names = [str(v) for v in a["vars"]]
        los = [dim(t) for t in a["lower"]]
        his = [dim(t) for t in a["upper"]]
        exts = [h - lo for lo, h in zip(los, his)]
        total = product(exts)
        plan = plans.get(id(op))
        if plan is None:
            plan = RPlan(*self._ad_hoc_plan(op, env))
            plans[id(op)] = plan
        acc_t = "f32" if dtype in ("f16", "bf16") else dtype
        ident = self.identity(kind, acc_t)
        inner = env.child(str(plan.block))
        r = inner.rank - 1
        body = op.regions[0].blocks[0]
        term = body.terminator
        assert term is not None
        lane_dependent = bool(symbols(total) - set(self.symbols))
        idx = self.idx(env)
        if lane_dependent:
            # bounds that differ between lanes: loop to the largest, mask each lane's own
            tot = Val(self.assign("rt", idx.text(total)), env.rank, "i32")
            limit = self.assign("rn", self.max_over(tot.text, env))
            total_text = self.at(tot, inner.rank)
        else:
            total_text = self.sym_text(total)
            limit = total_text
        ar = self.arange(str(plan.block), r, inner.rank)

        exact = plan.persistent and isinstance(total, int) and total == plan.block

        def body_code(flat: str) -> str:
            # a block exactly the size of a static box needs no mask
            rmask = None if exact else self.assign("rm", f"{flat} < {total_text}")
            for k, n in enumerate(names):
                e = flat_term(flat, k, los, exts, self.idx(inner).text)
                inner.vars[n] = Val(self.assign(f"x_{_safe(n)}_", e), inner.rank, "i32")
                if rmask is not None:
                    inner.masks[n] = Val(rmask, inner.rank, "i1")
                inner.ranges[n] = (los[k], his[k] - 1)
            for o in body.ops:
                self.op(o, inner, PhasePlan([], "generic", reduces=plans))
            t = self.get(term.operands[0], inner)
            if self.vals[id(term.operands[0])].dtype != acc_t:
                t = self.cast(t, self.vals[id(term.operands[0])].dtype, acc_t)
            if rmask is None:
                return self.assign("t", t)
            return self.assign("t", f"tl.where({rmask}, {t}, {ident})")

        if plan.persistent:
            term_t = body_code(self.assign("rf", ar))
            out = self.finish(kind, term_t, r, acc_t)
        else:
            shape = ", ".join(inner.blocks)
            acc = self.assign("acc", f"tl.full([{shape}], {ident}, {TL_DTYPE[acc_t]})")
            start = self.fresh("rb")
            with self.indented(f"for {start} in range(0, {limit}, {plan.block}):"):
                term_t = body_code(self.assign("rf", f"{start} + {ar}"))
                self.emit(f"{acc} = {self.combine(kind, acc, term_t, acc_t)}")
            out = self.finish(kind, acc, r, acc_t)
        if acc_t != dtype:
            out = self.assign("v", self.cast(out, acc_t, dtype))
        return Val(out, env.rank, dtype)

    def max_over(self, tot: str, env: Env) -> str:
        """The largest of a per-lane count over the program's tile (a loop bound)."""
        if env.rank == 0:
            return tot
        out = tot
        for _ in range(env.rank):
            out = f"tl.max({out}, axis=0)"
        return out

    def _ad_hoc_plan(self, op: Op, env: Env) -> tuple[int, bool]:
        width = 1
        for b in env.blocks:
            width *= int(self.config.get(b, b)) if not b.isdigit() else int(b)
        plans: dict[int, RPlan] = {}
        self.plan_reduce(op, width, plans)
        p = plans[id(op)]
        return p.block, p.persistent

    def identity(self, kind: str, dtype: str) -> str:
        if dtype in FLOATS:
            return _float_text(_IDENTITY[kind])
        return str(_INT_IDENTITY[kind])

    def combine(self, kind: str, acc: str, x: str, dtype: str) -> str:
        if kind == "add":
            return f"{acc} + {x}"
        if kind == "mul":
            return f"{acc} * {x}"
        return self.binary(kind, acc, x, dtype)

    def finish(self, kind: str, x: str, axis: int, dtype: str) -> str:
        if kind == "mul":
            self.helpers.add("_mul_combine")
            return self.assign("v", f"tl.reduce({x}, {axis}, _mul_combine)")
        return self.assign("v", f"{_REDUCE_FN[kind]}({x}, axis={axis})")

    def k_order(self, op: Op, x: DotSide) -> list[int]:
        """The order in which K walks the contraction's variables: the one with the smallest
        stride in the M-side operand's buffer innermost, so a K block of a channels-last
        convolution reads consecutive channels (the sum is the same in any order)."""
        names = [str(v) for v in op.attributes["vars"]]
        loads = [o for o in x.ops if o.name == "loop.load"]
        if len(names) < 2 or len(loads) != 1:
            return list(range(len(names)))
        _, _, strides = self.buffers[id(loads[0].operands[0])]
        index = [dim(t) for t in loads[0].attributes["index"]]
        stride = {}
        for n in names:
            used = [self.nominal(st) if not isinstance(st, int) else st
                    for e, st in zip(index, strides) if n in symbols(e)]
            stride[n] = min(used) if used else 0
        return sorted(range(len(names)), key=lambda i: -stride[names[i]])

    def dot_reduce(self, op: Op, env: Env, plan: PhasePlan) -> Val:
        """A contraction as a loop of ``tl.dot`` over K blocks (see the module docstring)."""
        d = plan.dot
        assert d is not None
        x, y, odt = d.sides[id(op)]
        p = plan.prefix
        a = op.attributes
        order = self.k_order(op, x)
        names = [str(a["vars"][i]) for i in order]
        los = [dim(a["lower"][i]) for i in order]
        his = [dim(a["upper"][i]) for i in order]
        exts = [h - lo for lo, h in zip(los, his)]
        total = self.sym_text(product(exts))
        dtype = op.results[0].type.dtype
        acc = self.assign("acc", f"tl.zeros([{p}BM, {p}BN], tl.float32)")
        start = self.fresh("kb")
        prec = "tf32" if self.options.allow_tf32 else "ieee"
        with self.indented(f"for {start} in range(0, {total}, {p}BK):"):
            tiles = []
            for side, layout in ((x, "a"), (y, "b")):
                e = Env(2, [f"{p}BM", f"{p}BK"] if layout == "a" else [f"{p}BK", f"{p}BN"],
                        {}, {}, [], dict(env.ranges))
                for v in d.b_vars:
                    e.vars[v] = env.vars[v]
                keep = d.m_vars if layout == "a" else d.n_vars
                for v in keep:
                    e.vars[v] = env.vars[v]
                    e.masks[v] = env.masks[v]
                kk = (f"{start} + tl.arange(0, {p}BK)[None, :]" if layout == "a"
                      else f"{start} + tl.arange(0, {p}BK)[:, None]")
                kf = self.assign("kf", kk)
                km = self.assign("km", f"{kf} < {total}")
                for k, n in enumerate(names):
                    t = flat_term(kf, k, los, exts, self.idx(e).text)
                    e.vars[n] = Val(self.assign(f"x_{_safe(n)}_", t), 2, "i32")
                    e.masks[n] = Val(km, 2, "i1")
                    e.ranges[n] = (los[k], his[k] - 1)
                saved = dict(self.vals)
                for o in side.ops:
                    self.op(o, e)
                got = self.vals[id(side.value)]
                self.vals = saved
                shape = f"[{p}BM, {p}BK]" if layout == "a" else f"[{p}BK, {p}BN]"
                tile = self.at(got, 2)
                if not zero_outside(side.ops, set(names)):
                    tile = f"tl.where({km}, {tile}, 0.0)"  # K lanes past the end must be 0
                tiles.append(self.assign("tile", f"tl.broadcast_to({tile}, {shape})"))
            if odt == "f32":
                self.emit(f"{acc} = tl.dot({tiles[0]}, {tiles[1]}, {acc}, "
                          f"input_precision=\"{prec}\")")
            else:
                self.emit(f"{acc} = tl.dot({tiles[0]}, {tiles[1]}, {acc})")
        out = acc if dtype == "f32" else self.assign("v", self.cast(acc, "f32", dtype))
        return Val(out, env.rank, dtype)


def zero_outside(ops: list[Op], kvars: set[str]) -> bool:
    """Whether a dot operand computed by ``ops`` is already 0 where the K index runs past its
    end: loads indexed by a K variable (masked there, ``other`` 0) and casts of them."""
    for o in ops:
        if o.name == "loop.cast":
            continue
        if o.name != "loop.load" or float(o.attributes.get("other", 0.0)) != 0.0:
            return False
        used: set[str] = set()
        for e in o.index_exprs():
            used |= symbols(e)
        if not used & kvars:
            return False
    return True


def _nests(ops: list[Op]) -> Iterator[Op]:
    """The parallel loop nests at a kernel's top level and inside its serial loops."""
    for op in ops:
        if op.name == "loop.for" and op.attributes.get("kind") == "serial":
            yield from _nests(list(op.regions[0].blocks[0].ops))
        elif op.name == "loop.for":
            yield op


def flat_term(flat: str, k: int, los: list[Dim], exts: list[Dim],
              text: Callable[[Dim], str]) -> str:
    """Variable ``k`` of a box (lower bounds ``los``, extents ``exts``, row-major) at the flat
    position ``flat``: ``lo_k + (flat // stride_k) % ext_k`` as Triton text."""
    stride = product(exts[k + 1:])
    t = flat if stride == 1 else f"({flat} // {text(stride)})"
    if k > 0:
        t = f"({t} % {text(exts[k])})"
    if los[k] != 0:
        t = f"{text(los[k])} + {t}"
    return t


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)


def host_text(d: Dim) -> str:
    """A size expression in host (Python) code over ``s_<symbol>`` names."""
    names = {s: f"s_{s}" for s in symbols(d)}
    return IndexText(names, {}, "python").text(d)


class _TritonOps:
    """The primitives of :mod:`neuralc.ir.scalar_fns` as Triton expressions (float32)."""

    def __init__(self, w: TritonKernelWriter):
        self.w = w

    def const(self, value: float) -> Val:
        return Val(_float_text(value), 0, "f32")

    def arith(self, fn: str, a: Val, b: Val) -> Val:
        return Val(self.w.assign("v", self.w.binary(fn, a.text, b.text, "f32")),
                   max(a.rank, b.rank), "f32")

    def prim(self, name: str, x: Val) -> Val:
        if name == "neg":
            return Val(self.w.assign("v", f"-{x.text}"), x.rank, "f32")
        fn = _PRIMS[name]
        if fn.startswith("_"):
            self.w.helpers.add(fn)
        return Val(self.w.assign("v", f"{fn}({x.text})"), x.rank, "f32")

    def less(self, a: Val, b: Val) -> Val:
        return Val(self.w.assign("v", f"{a.text} < {b.text}"), max(a.rank, b.rank), "i1")

    def select(self, cond: Val, a: Val, b: Val) -> Val:
        return Val(self.w.assign("v", f"tl.where({cond.text}, {a.text}, {b.text})"),
                   max(cond.rank, a.rank, b.rank), "f32")


def generate_kernel(kernel: Op, options: CodegenOptions) -> tuple[KernelSource, set[str]]:
    """The Triton source of ``kernel`` and the helper functions it calls."""
    w = TritonKernelWriter(kernel, options)
    src = w.generate()
    return src, w.helpers
