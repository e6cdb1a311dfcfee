"""Attention kernels as one fused flash-style Triton kernel, recognised in the loop IR.

The loop lowering of ``tensor.attention`` (a kernel of kind ``attention``) computes, per query
row (batch, head, position) and key index ``j``, a score ``S(j)`` (a contraction of the query
row with key ``j`` over the head dimension, then scale, causal or padding mask as selects), and
from it the max-shifted softmax three times over: ``m = max_j S(j)``, ``l = sum_j exp(S(j) - m)``
and, per value column ``e``, ``o = sum_j exp(S(j) - m) * V(j, e)``, then ``o / l`` and the
epilogue. :func:`match_flash` checks that shape (one row-level ``max`` and ``add``, one
``add`` per value column, the three scores the same expression up to the names of their
variables) and returns a plan; :func:`emit_flash` writes it as FlashAttention does: a block of
``BM`` query rows per program (the batch and head as the program's other coordinates), its
query tile loaded once, a loop over key blocks of ``BN`` computing the score tile with
``tl.dot``, the mask and scale ops of ``S`` on it, an online softmax (running max and sum,
rescaling the accumulator) and ``P @ V`` with ``tl.dot``; after the loop ``m``, ``l`` and
``o`` stand for the three reductions and the epilogue runs as written. 16-bit queries, keys and
values go to the tensor cores (``P`` rounded to that type, as FlashAttention does); float32
ones use IEEE dots unless TF32 is allowed. Anything else in an attention kernel (a score that is
not a contraction, as ``score_mode="concat"``) is left to the generic code generator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from neuralc.ir.core import Op, Value
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import Dim, subs, sym, symbols

MAX_HEAD = 256  # largest static head (contraction) or value width held as one tile


@dataclass
class FlashPlan:
    m_vars: list[str]  # query-row variables spread over BM rows
    b_vars: list[str]  # row variables the keys and values depend on (per program)
    e_var: str  # the value column loop
    j_lower: Dim
    j_upper: Dim
    reduce_max: Op
    reduce_sum: Op
    reduce_out: Op
    score: Value  # S in the output reduction's body
    value: Value  # V in the output reduction's body
    contraction: Op  # the q.k contraction inside S
    q_side: Any
    k_side: Any
    qk_dtype: str
    v_narrow: Value  # V as a 16-bit value where it is one
    head: int  # static contraction extent
    width: int  # static value extent


class _NoMatch(Exception):
    pass


def _need(cond: bool) -> None:
    if not cond:
        raise _NoMatch


def _single(op: Op) -> tuple[str, Dim, Dim]:
    a = op.attributes
    _need(len(a["vars"]) == 1)
    return str(a["vars"][0]), dim(a["lower"][0]), dim(a["upper"][0])


def _yield(op: Op) -> Value:
    term = op.regions[0].blocks[0].terminator
    assert term is not None
    return term.operands[0]


def _producer(v: Value, name: str, fn: str | None = None) -> Op:
    op = getattr(v, "op", None)
    _need(op is not None and op.name == name and (fn is None or op.attributes.get("fn") == fn))
    return op


class _Canon:
    """Structural form of a value's DAG with reduction variables renamed in order (two scores
    computed by the three reductions must be equal in this form)."""

    def __init__(self, kernel: Op):
        self.kernel = kernel

    def of(self, v: Value, names: dict[str, str]) -> tuple:
        op = getattr(v, "op", None)
        if op is None or op.parent_op() is self.kernel:
            return ("outer", id(v))
        if op.name == "loop.reduce":
            fresh = dict(names)
            for k, n in enumerate(op.attributes["vars"]):
                fresh[str(n)] = f"_r{len(names)}_{k}"
            return ("reduce", op.attributes["kind"], bool(op.attributes.get("contraction")),
                    self.texts(op.attributes["lower"], names),
                    self.texts(op.attributes["upper"], names),
                    self.of(_yield(op), fresh))
        _need(not op.regions and op.name != "loop.bind")
        attrs = []
        for k in sorted(op.attributes):
            val = op.attributes[k]
            if k in ("index",):
                val = self.texts(val, names)
            elif k in ("guard", "conds"):
                val = tuple(self.texts(c, names) for c in val)
            elif k == "expr":
                val = self.texts([val], names)
            attrs.append((k, repr(val)))
        inner = tuple(self.of(x, names) if getattr(x, "op", None) is not None else ("arg", id(x))
                      for x in op.operands)
        return (op.name, tuple(attrs), inner, op.results[0].type.dtype)

    @staticmethod
    def texts(texts: list[str], names: dict[str, str]) -> tuple[str, ...]:
        ren = {k: sym(v) for k, v in names.items()}
        return tuple(str(subs(dim(t), ren)) for t in texts)


def match_flash(writer: Any, top: list[Op]) -> Any:
    """A flash plan for the kernel's one attention nest, or None (generic code then)."""
    if "attention" not in writer.kind:
        return None
    nests = [o for o in top if o.name == "loop.for"]
    if len(nests) != 1 or any(o.regions for o in top if o.name != "loop.for"):
        return None
    from neuralc.backends.cuda.kernel_codegen import CodegenError, PhasePlan, chain

    try:
        levels = chain(nests[0])
        plan = PhasePlan(levels, "flash", flash=_match(writer, levels))
    except (_NoMatch, CodegenError, KeyError):
        return None
    seq = writer.nominal(plan.flash.j_upper - plan.flash.j_lower)
    block = 64 if seq >= 64 else max(16, 1 << (max(seq, 1) - 1).bit_length())
    writer.config.update({"BM": block, "BN": block})
    f = plan.flash
    rows = writer.extent(levels, f.m_vars + f.b_vars)
    writer.flops = 2 * rows * (f.j_upper - f.j_lower) * (f.head + f.width)
    writer.tunable.update({"BM": (32, 64, 128), "BN": (32, 64, 128)})
    writer.interp.update({"BM": 128, "BN": 128})
    return plan


def _match(writer: Any, levels: list[Any]) -> FlashPlan:
    _need(len(levels) >= 2)
    rows, col = levels[:-1], levels[-1]
    row_ops = rows[-1].ops
    _need(all(not any(o.regions for o in lv.ops) for lv in rows[:-1]))
    reds = [o for o in row_ops if o.name == "loop.reduce"]
    _need(len(reds) == 2)
    r_max, r_sum = reds
    _need(r_max.attributes["kind"] == "max" and r_sum.attributes["kind"] == "add")
    outs = [o for o in col.ops if o.name == "loop.reduce"]
    _need(len(outs) == 1 and outs[0].attributes["kind"] == "add")
    r_out = outs[0]
    j1, lo, hi = _single(r_max)
    j2, lo2, hi2 = _single(r_sum)
    j3, lo3, hi3 = _single(r_out)
    _need(lo == lo2 == lo3 and hi == hi2 == hi3)
    _need(not (symbols(lo) | symbols(hi)) - set(writer.symbols))
    # the three bodies: S, exp(S - m), exp(S - m) * V
    s1 = _yield(r_max)
    e2 = _producer(_yield(r_sum), "loop.unary", "exp")
    d2 = _producer(e2.operands[0], "loop.binary", "sub")
    _need(d2.operands[1] is r_max.results[0])
    s2 = d2.operands[0]
    prod = _producer(_yield(r_out), "loop.binary", "mul")
    v_val = None
    e3 = None
    for a, b in ((0, 1), (1, 0)):
        op = getattr(prod.operands[a], "op", None)
        if op is not None and op.name == "loop.unary" and op.attributes["fn"] == "exp":
            e3, v_val = op, prod.operands[b]
            break
    _need(e3 is not None and v_val is not None)
    d3 = _producer(e3.operands[0], "loop.binary", "sub")
    _need(d3.operands[1] is r_max.results[0])
    s3 = d3.operands[0]
    canon = _Canon(writer.kernel)
    c1 = canon.of(s1, {j1: "_j"})
    _need(c1 == canon.of(s2, {j2: "_j"}) == canon.of(s3, {j3: "_j"}))
    # the score's one contraction (q . k over the head)
    body = list(r_out.regions[0].blocks[0].ops)
    contractions = [o for o in body if o.name == "loop.reduce"]
    _need(len(contractions) == 1)
    con = contractions[0]
    row_vars = [lv.var for lv in rows]
    got = writer.contraction_sides(con, [*row_vars, j3])
    _need(got is not None)
    x, y, dtype, px, py = got
    if j3 in px:
        x, y, px, py = y, x, py, px
    _need(j3 in py and j3 not in px)
    head = writer.reduce_total(con)
    _need(isinstance(head, int) and head <= MAX_HEAD)
    width = col.upper - col.lower
    _need(isinstance(width, int) and width <= MAX_HEAD)
    # V: its own ops in the body, depending on j, e and batch rows only
    deps_v = set(writer.deps.of_value.get(id(v_val), frozenset()))
    _need(not deps_v - {j3, col.var, *row_vars} - writer.serial_vars)
    b_vars = [v for v in row_vars if v in (py | deps_v) - {j3}]
    m_vars = [v for v in row_vars if v not in b_vars]
    _need(bool(m_vars) and not (set(m_vars) & py))
    score_deps = set(writer.deps.of_value.get(id(s3), frozenset()))
    _need(not score_deps - {j3, *row_vars})
    _side_ops(s3, body, con)  # the score's other ops are plain scalar ops
    _side_ops(v_val, body)
    v_narrow = writer.narrow(v_val, body)
    if v_narrow.type.dtype != dtype or dtype == "f32":
        v_narrow = v_val
    _need(v_val.type.dtype == "f32")
    return FlashPlan(m_vars, b_vars, col.var, lo3, hi3, r_max, r_sum, r_out, s3, v_val, con,
                     x, y, dtype, v_narrow, head, width)


def flash_program_count(writer: Any, plan: Any) -> tuple[str, str]:
    from neuralc.backends.cuda.kernel_codegen import host_text

    f: FlashPlan = plan.flash
    em = writer.extent(plan.levels, f.m_vars)
    eb = writer.extent(plan.levels, f.b_vars)
    return (f"(({writer.sym_text(em)}) + BM - 1) // BM * ({writer.sym_text(eb)})",
            f"(({host_text(em)}) + cfg['BM'] - 1) // cfg['BM'] * ({host_text(eb)})")


def _side_ops(v: Value, body: list[Op], stop: Op | None = None) -> list[Op]:
    """The ops of ``body`` computing ``v``, in order; ``stop`` (the contraction) is a leaf."""
    inside = {id(o) for o in body}
    need: set[int] = set()
    todo = [v]
    while todo:
        x = todo.pop()
        op = getattr(x, "op", None)
        if op is None or id(op) not in inside or id(op) in need:
            continue
        need.add(id(op))
        if op is stop:
            continue
        _need(not op.regions and op.name != "loop.bind")
        todo.extend(op.operands)
    return [o for o in body if id(o) in need and o is not stop]


def emit_flash(w: Any, plan: Any, pid: str, env: Any) -> None:
    """The flash kernel of ``plan`` for program ``pid`` (see the module docstring)."""
    from neuralc.backends.cuda.kernel_codegen import Env, Val, pow2_ceil, zero_outside

    f: FlashPlan = plan.flash
    levels = plan.levels
    w.families.append("attention (flash, online softmax)")
    em = w.extent(levels, f.m_vars)
    bd = max(16, pow2_ceil(f.head))
    be = max(16, pow2_ceil(f.width))
    nm = w.assign("nm", f"(({w.sym_text(em)}) + BM - 1) // BM")
    pm = w.assign("pm", f"{pid} % {nm}")
    pb = w.assign("pb", f"{pid} // {nm}")
    row = Env(2, ["BM", "BN"], dict(env.vars), dict(env.masks), [], dict(env.ranges))
    om = w.assign("om", "pm_ * BM + tl.arange(0, BM)[:, None]".replace("pm_", pm))
    mm = w.assign("mm", f"{om} < {w.sym_text(em)}")
    row.axis_masks.append(Val(mm, 2, "i1"))
    w.decode(levels, f.m_vars, om, row, mm)
    if f.b_vars:
        scalar = Env(0, [], {}, {}, [], dict(row.ranges))
        w.decode(levels, f.b_vars, pb, scalar, None)
        for v in f.b_vars:
            row.vars[v] = scalar.vars[v]
            row.ranges[v] = scalar.ranges[v]
    rows_ops = [o for lv in levels[:-1] for o in lv.ops]
    later = {id(f.reduce_max), id(f.reduce_sum)}
    after_ids: set[int] = set()
    for o in rows_ops:
        if id(o) in later:
            continue
        if any(getattr(x, "op", None) is not None and (id(x.op) in later or id(x.op) in after_ids)
               for x in o.operands):
            after_ids.add(id(o))
            continue
        w.op(o, row)
    body = list(f.reduce_out.regions[0].blocks[0].ops)
    jvar = str(f.reduce_out.attributes["vars"][0])
    dvars = [str(n) for n in f.contraction.attributes["vars"]]
    d_lo = [dim(t) for t in f.contraction.attributes["lower"]]
    d_hi = [dim(t) for t in f.contraction.attributes["upper"]]
    d_ext = [h - lo for lo, h in zip(d_lo, d_hi)]
    # the query tile, once: [BM, BD]
    qenv = Env(2, ["BM", str(bd)], dict(row.vars), dict(row.masks), [], dict(row.ranges))
    _bind_flat(w, qenv, dvars, d_lo, d_ext, f"tl.arange(0, {bd})[None, :]", f.head)
    saved = dict(w.vals)
    for o in f.q_side.ops:
        w.op(o, qenv)
    q = w.at(w.vals[id(f.q_side.value)], 2)
    w.vals = saved
    dm = qenv.masks[dvars[0]].text
    if not zero_outside(f.q_side.ops, set(dvars)):
        q = f"tl.where({dm}, {q}, 0.0)"
    qt = w.assign("q", f"tl.broadcast_to({q}, [BM, {bd}])")
    m_i = w.assign("m_i", "tl.full([BM, 1], float(\"-inf\"), tl.float32)")
    l_i = w.assign("l_i", "tl.zeros([BM, 1], tl.float32)")
    acc = w.assign("acc", f"tl.zeros([BM, {be}], tl.float32)")
    prec = "tf32" if w.options.allow_tf32 else "ieee"
    lo_t, hi_t = w.sym_text(f.j_lower), w.sym_text(f.j_upper)
    jb = w.fresh("jb")
    with w.indented(f"for {jb} in range({lo_t}, {hi_t}, BN):"):
        # keys: [BD, BN]
        kenv = Env(2, [str(bd), "BN"], {v: row.vars[v] for v in f.b_vars},
                   {}, [], dict(row.ranges))
        jk = w.assign("jk", f"{jb} + tl.arange(0, BN)[None, :]")
        jkm = w.assign("jkm", f"{jk} < {hi_t}")
        kenv.vars[jvar] = Val(jk, 2, "i32")
        kenv.masks[jvar] = Val(jkm, 2, "i1")
        kenv.ranges[jvar] = (f.j_lower, f.j_upper - 1)
        _bind_flat(w, kenv, dvars, d_lo, d_ext, f"tl.arange(0, {bd})[:, None]", f.head)
        saved = dict(w.vals)
        for o in f.k_side.ops:
            w.op(o, kenv)
        k = w.at(w.vals[id(f.k_side.value)], 2)
        w.vals = saved
        km = kenv.masks[dvars[0]].text
        if not zero_outside(f.k_side.ops, set(dvars)):
            k = f"tl.where({km} & {jkm}, {k}, 0.0)"
        kt = w.assign("k", f"tl.broadcast_to({k}, [{bd}, BN])")
        dot = (f"tl.dot({qt}, {kt}, input_precision=\"{prec}\")" if f.qk_dtype == "f32"
               else f"tl.dot({qt}, {kt})")
        qk = w.assign("qk", dot)
        # the score's other ops (scale, masks) on the [BM, BN] tile
        senv = Env(2, ["BM", "BN"], dict(row.vars), dict(row.masks), [], dict(row.ranges))
        senv.vars[jvar] = Val(jk, 2, "i32")
        senv.masks[jvar] = Val(jkm, 2, "i1")
        senv.ranges[jvar] = (f.j_lower, f.j_upper - 1)
        saved = dict(w.vals)
        w.vals[id(f.contraction.results[0])] = Val(qk, 2, "f32")
        for o in _side_ops(f.score, body, f.contraction):
            w.op(o, senv)
        s = w.at(w.vals[id(f.score)], 2)
        w.vals = saved
        st = w.assign("s", f"tl.where({jkm}, {s}, float(\"-inf\"))")
        m_new = w.assign("m_new", f"tl.maximum({m_i}, tl.max({st}, axis=1)[:, None])")
        # a row masked so far has max -inf: shift by 0 there (exp(-inf) = 0, not nan)
        shift = w.assign("sh", f"tl.where({m_new} == float(\"-inf\"), 0.0, {m_new})")
        alpha = w.assign("alpha", f"tl.exp({m_i} - {shift})")
        p = w.assign("p", f"tl.exp({st} - {shift})")
        w.emit(f"{l_i} = {l_i} * {alpha} + tl.sum({p}, axis=1)[:, None]")
        # values: [BN, BE]
        venv = Env(2, ["BN", str(be)], {v: row.vars[v] for v in f.b_vars}, {}, [],
                   dict(row.ranges))
        jv = w.assign("jv", f"{jb} + tl.arange(0, BN)[:, None]")
        jvm = w.assign("jvm", f"{jv} < {hi_t}")
        ev = w.assign("ev", f"tl.arange(0, {be})[None, :]")
        evm = w.assign("evm", f"{ev} < {f.width}")
        venv.vars[jvar] = Val(jv, 2, "i32")
        venv.masks[jvar] = Val(jvm, 2, "i1")
        col = levels[-1]
        evar = Val(ev if col.lower == 0 else f"({w.sym_text(col.lower)} + {ev})", 2, "i32")
        venv.vars[f.e_var] = evar
        venv.masks[f.e_var] = Val(evm, 2, "i1")
        venv.ranges[f.e_var] = (col.lower, col.upper - 1)
        venv.ranges[jvar] = (f.j_lower, f.j_upper - 1)
        saved = dict(w.vals)
        for o in _side_ops(f.v_narrow, body):
            w.op(o, venv)
        v = w.at(w.vals[id(f.v_narrow)], 2)
        w.vals = saved
        if not zero_outside(_side_ops(f.v_narrow, body), {jvar}):
            v = f"tl.where({jvm} & {evm}, {v}, 0.0)"  # keys past the end must add nothing
        vt = w.assign("v", f"tl.broadcast_to({v}, [BN, {be}])")
        if f.v_narrow.type.dtype in ("f16", "bf16"):
            from neuralc.backends.cuda.kernel_codegen import TL_DTYPE

            pv = f"tl.dot(tl.cast({p}, {TL_DTYPE[f.v_narrow.type.dtype]}), {vt})"
        else:
            pv = f"tl.dot({p}, {vt}, input_precision=\"{prec}\")"
        w.emit(f"{acc} = {acc} * {alpha} + {pv}")
        w.emit(f"{m_i} = {m_new}")
    # after the loop: m, l, o stand for the three reductions
    w.vals[id(f.reduce_max.results[0])] = Val(m_i, 2, "f32")
    w.vals[id(f.reduce_sum.results[0])] = Val(l_i, 2, "f32")
    for o in rows_ops:
        if id(o) in after_ids:
            w.op(o, row)
    out = Env(2, ["BM", str(be)], dict(row.vars), dict(row.masks), list(row.axis_masks),
              dict(row.ranges))
    ec = w.assign("ec", f"tl.arange(0, {be})[None, :]")
    ecm = w.assign("ecm", f"{ec} < {f.width}")
    col = levels[-1]
    out.vars[f.e_var] = Val(ec if col.lower == 0 else f"({w.sym_text(col.lower)} + {ec})", 2,
                            "i32")
    out.masks[f.e_var] = Val(ecm, 2, "i1")
    out.axis_masks.append(Val(ecm, 2, "i1"))
    out.ranges[f.e_var] = (col.lower, col.upper - 1)
    w.vals[id(f.reduce_out.results[0])] = Val(acc, 2, "f32")
    for o in col.ops:
        if o is not f.reduce_out:
            w.op(o, out)


def _bind_flat(w: Any, env: Any, names: list[str], los: list[Dim], exts: list[Dim],
               arange: str, total: int) -> None:
    """The contraction variables from one flat index over a static box."""
    from neuralc.backends.cuda.kernel_codegen import Val, _safe, flat_term

    flat = w.assign("df", arange)
    mask = w.assign("dm", f"{flat} < {total}")
    for k, n in enumerate(names):
        t = flat_term(flat, k, los, exts, w.sym_text)
        env.vars[n] = Val(w.assign(f"x_{_safe(n)}_", t), 2, "i32")
        env.masks[n] = Val(mask, 2, "i1")
        env.ranges[n] = (los[k], exts[k] + los[k] - 1)
