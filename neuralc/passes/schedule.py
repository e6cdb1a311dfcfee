"""``schedule``: choose, for each loop nest of the loop IR, which loop runs in vector lanes.

A schedule is data on the loop IR (``vectorize = W`` on a ``loop.for`` or a ``loop.reduce``);
code generators read it, the interpreter ignores it. This default schedule vectorises one loop
per innermost nest, the one whose accesses are cheapest in lanes:

- the candidates are the innermost ``loop.for`` of a nest (when a store there is contiguous in
  its variable: the variable is the last index, plus something that does not depend on it)
  and each variable of each ``loop.reduce`` in it (which would then run innermost);
- a candidate's cost is the number of loads and stores it turns into gathers or scatters
  (an index that depends on the variable other than as the contiguous last index); a load that
  does not depend on it stays one scalar broadcast to the lanes;
- the cheapest wins, the ``loop.for`` on a tie (no horizontal reduction at the end).

A matmul with (out, in) weights thus vectorises its reduction (both operands are contiguous
along it), an elementwise kernel its last axis, a softmax its row reductions and its row.
The width is ``vector_bits`` over the element size (16 float32 lanes at 512 bits), halved
while half of it still covers the loop's static extent (10 iterations: one masked step of 16
lanes); loops of fewer than 4 iterations stay scalar, and where such a loop is the
innermost of its nest, its parent loop runs in lanes instead (a softmax over 3 classes per
pixel: the pixels in lanes, through gathers and scatters).

Around a reduction the schedule also unrolls and jams (``jam = J``): the vectorised loop runs
up to 4 vectors at a time and its parent loop several rows, sized so the tile of accumulators
fits the register file (32 vector registers with AVX-512, 16 below): a matmul's or a
convolution's inner loop becomes a register-blocked microkernel.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, Op, Rewriter
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import evaluate, sym, symbols
from neuralc.ir.types import MemRefType, ScalarType
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.registry import register_pass

_ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4, "i8": 1, "i1": 1}
MIN_LANES = 4


def _accesses(op: Op) -> list[Op]:
    return [o for o in op.walk() if o.name in ("loop.load", "loop.store")]


def _contiguous(texts: list[str], var: str) -> bool | None:
    """None: the access does not depend on ``var``; True: contiguous in it; False: a gather."""
    exprs = [dim(t) for t in texts]
    users = [k for k, e in enumerate(exprs) if var in symbols(e)]
    if not users:
        return None
    last = exprs[-1]
    return users == [len(exprs) - 1] and var not in symbols(last - sym(var))


def _gathers(scope: Op, var: str) -> int:
    return sum(1 for o in _accesses(scope)
               if _contiguous(o.attributes["index"], var) is False
               or (o.name == "loop.load" and o.attributes.get("guard") and any(
                   var in symbols(dim(t)) for c in o.attributes["guard"] for t in c)
                   and _contiguous(o.attributes["index"], var) is not True))


def _element_type(op: Op) -> str:
    """The widest element type a candidate computes on (its lanes are counted in it)."""
    best = "i1"
    for o in op.walk():
        for r in o.results:
            if isinstance(r.type, ScalarType) and _ITEMSIZE[r.type.dtype] > _ITEMSIZE[best]:
                best = r.type.dtype
        for v in o.operands:
            if isinstance(v.type, MemRefType) and _ITEMSIZE[v.type.dtype] > _ITEMSIZE[best]:
                best = v.type.dtype
    return "f32" if best == "i1" else best


def _lanes(vector_bits: int, dtype: str, extent: object) -> int:
    lanes = max(1, vector_bits // (8 * _ITEMSIZE[dtype]))
    if isinstance(extent, int):
        while lanes // 2 >= extent:  # the fewest lanes that cover it in one (masked) step
            lanes //= 2
    if isinstance(extent, int) and extent < MIN_LANES:
        return 1
    return lanes if lanes >= MIN_LANES else 1


def _innermost_fors(op: Op) -> list[Op]:
    out = []
    for o in op.walk():
        if o.name == "loop.for" and not any(x.name == "loop.for" for x in list(o.walk())[1:]):
            out.append(o)
    return out


def _top_reduces(scope: Op) -> list[Op]:
    """Reductions in ``scope`` not nested in another reduction."""
    out = []
    for o in list(scope.walk())[1:]:
        if o.name != "loop.reduce":
            continue
        parent = o.parent_op()
        while parent is not None and parent is not scope and parent.name != "loop.reduce":
            parent = parent.parent_op()
        if parent is scope or parent is None:
            out.append(o)
    return out


def schedule_kernel(kernel: Op, vector_bits: int, rewriter: Rewriter,
                    nominal: dict[str, int] | None = None) -> None:
    """Vector lanes, register tiles and the thread split of one kernel; ``nominal``: the
    sizes the cost estimates assume for the model's symbols."""
    nominal = nominal or {}
    fors = _innermost_fors(kernel)
    inner = {id(f) for f in fors}
    for f in fors:
        var = f.attributes["var"]
        candidates: list[tuple[int, int, Op, str]] = []
        stores = [o for o in _accesses(f) if o.name == "loop.store"]
        if stores and all(_contiguous(s.attributes["index"], var) for s in stores):
            candidates.append((_gathers(f, var), 0, f, var))
        for r in _top_reduces(f):
            for v in r.attributes["vars"]:
                candidates.append((_gathers(r, v), 1, r, v))
        winner = _apply(candidates, vector_bits, rewriter)
        if winner is not None and winner.name == "loop.reduce":
            # The loop stays scalar: every other reduction in it gets its own best lanes (an
            # LSTM step's four gate products, not only the first).
            for r in _top_reduces(f):
                if r is not winner:
                    _apply([(_gathers(r, v), 1, r, v) for v in r.attributes["vars"]],
                           vector_bits, rewriter)
        _jam(f, vector_bits, rewriter)
    # Reductions outside every innermost loop (a softmax's row max and sum, computed once per
    # row before the loop over the row's elements) are nests of their own.
    for r in _top_reduces(kernel):
        if any(id(a) in inner for a in _ancestors(r, kernel)):
            continue
        _apply([(_gathers(r, v), 1, r, v) for v in r.attributes["vars"]], vector_bits,
               rewriter)
    for f in fors:
        _vectorize_around_narrow(f, vector_bits, rewriter)
    for r in [o for o in kernel.walk() if o.name == "loop.reduce"]:
        if not r.attributes.get("vectorize"):
            _order_reduction(r, rewriter)
    _split(kernel, nominal, rewriter)


def _vectorize_around_narrow(f: Op, vector_bits: int, rewriter: Rewriter) -> None:
    """An innermost loop too short for lanes (a softmax over 3 classes per pixel) leaves its
    whole nest scalar; its parent parallel loop (the pixels) then runs in lanes instead, its
    accesses gathers and scatters. Only where nothing in the parent is vectorised already,
    the parent holds no other loop, and the parent is long enough for lanes."""
    parent = f.parent_op()
    if f.attributes.get("vectorize") or parent is None or parent.name != "loop.for" \
            or parent.attributes.get("kind") != "parallel" or parent.attributes.get("vectorize"):
        return
    extent = dim(f.attributes["upper"]) - dim(f.attributes["lower"])
    if not isinstance(extent, int) or extent >= MIN_LANES:
        return
    inside = list(parent.walk())[1:]
    if any(o.name == "loop.for" and o is not f for o in inside) or any(
            o.attributes.get("vectorize") or o.name in ("loop.bind", "loop.call")
            for o in inside):
        return
    outer = dim(parent.attributes["upper"]) - dim(parent.attributes["lower"])
    lanes = _lanes(vector_bits, _element_type(parent), outer)
    if lanes > 1:
        rewriter.set_attr(parent, "vectorize", lanes)


def _ancestors(op: Op, stop: Op) -> list[Op]:
    out = []
    p = op.parent_op()
    while p is not None and p is not stop:
        out.append(p)
        p = p.parent_op()
    return out


def _apply(candidates: list[tuple[int, int, Op, str]], vector_bits: int,
           rewriter: Rewriter) -> Op | None:
    """Vectorises the cheapest candidate; returns the op that won (vectorised or not)."""
    if not candidates:
        return None
    _, _, op, var = min(candidates, key=lambda c: (c[0], c[1]))
    dtype = _element_type(op)
    if op.name == "loop.for":
        extent = dim(op.attributes["upper"]) - dim(op.attributes["lower"])
        lanes = _lanes(vector_bits, dtype, extent)
        if lanes > 1:
            rewriter.set_attr(op, "vectorize", lanes)
        return op
    names = list(op.attributes["vars"])
    k = names.index(var)
    order = [i for i in range(len(names)) if i != k] + [k]
    extent = dim(op.attributes["upper"][k]) - dim(op.attributes["lower"][k])
    lanes = _lanes(vector_bits, dtype, extent)
    if lanes <= 1:
        return op
    for key in ("vars", "lower", "upper"):
        values = list(op.attributes[key])
        rewriter.set_attr(op, key, [values[i] for i in order])
    rewriter.set_attr(op, "vectorize", lanes)
    return op


def _order_reduction(r: Op, rewriter: Rewriter) -> None:
    """Nest a reduction's variables so that the innermost walks memory most nearly in order:
    each variable is scored by how far from the last index it appears in the loads of the
    body (a convolution's input channel, last in NHWC activations and HWIO weights, runs
    innermost; its window offsets, whose guards then hold for a whole channel run, outside).
    Only where no bound depends on another of its variables."""
    names = list(r.attributes["vars"])
    bounds = [dim(t) for t in [*r.attributes["lower"], *r.attributes["upper"]]]
    if len(names) < 2 or any(set(names) & symbols(b) for b in bounds):
        return
    score = {n: 0 for n in names}
    for o in r.walk():
        if o.name != "loop.load":
            continue
        index = [dim(t) for t in o.attributes["index"]]
        for n in names:
            at = [k for k, e in enumerate(index) if n in symbols(e)]
            if at:
                score[n] += len(index) - 1 - max(at)
    order = sorted(range(len(names)), key=lambda i: (-score[names[i]], i))
    if order != list(range(len(names))):
        for key in ("vars", "lower", "upper"):
            values = list(r.attributes[key])
            rewriter.set_attr(r, key, [values[i] for i in order])


GUESS_EXTENT = 16  # a loop extent the cost estimate cannot evaluate


def _extent(lo: str, hi: str, nominal: dict[str, int]) -> int:
    d = dim(hi) - dim(lo)
    if isinstance(d, int):
        return max(d, 0)
    if symbols(d) <= set(nominal):
        return max(int(evaluate(d, nominal)), 0)
    return GUESS_EXTENT


def _work(block_ops: list[Op], nominal: dict[str, int]) -> int:
    """Element operations of one run of a block (the cost model's unit)."""
    total = 0
    for o in block_ops:
        a = o.attributes
        if o.name == "loop.for":
            total += _extent(a["lower"], a["upper"], nominal) * _work(
                o.regions[0].blocks[0].ops, nominal)
        elif o.name == "loop.reduce":
            n = 1
            for lo, hi in zip(a["lower"], a["upper"]):
                n *= _extent(lo, hi, nominal)
            total += n * _work(o.regions[0].blocks[0].ops, nominal) + 1
        elif o.name != "loop.yield":
            total += 1
    return total


def _split(kernel: Op, nominal: dict[str, int], rewriter: Rewriter) -> None:
    """The loop the kernel's work is split on across threads: in the band of perfectly
    nested parallel loops at its top (bounds on sizes only), the outermost one with at least
    ``SPLIT_STEPS`` tiles at the nominal sizes, else the one with the most (two at least).
    A symbolic batch loop (nominal 1) thus leaves the split to a static loop inside it, which
    has the same tiles at every batch size. Recurrences (serial loops) are never split."""
    ops = [o for o in kernel.regions[0].blocks[0].ops if o.name != "loop.yield"]
    sizes = set(kernel.attributes.get("symbols") or [])
    best: tuple[int, Op] | None = None
    while len(ops) == 1 and ops[0].name == "loop.for" \
            and ops[0].attributes.get("kind") == "parallel":
        loop = ops[0]
        a = loop.attributes
        bounds_ok = (symbols(dim(a["lower"])) | symbols(dim(a["upper"]))) <= sizes
        step = int(a.get("jam") or 1) * int(a.get("vectorize") or 1)
        tiles = -(-_extent(a["lower"], a["upper"], nominal) // step)
        if bounds_ok and tiles >= 2 and (best is None or tiles > best[0]):
            best = (tiles, loop)
            if tiles >= SPLIT_STEPS:
                break
        ops = [o for o in loop.regions[0].blocks[0].ops if o.name != "loop.yield"]
    if best is not None:
        loop = best[1]
        work = _work(loop.regions[0].blocks[0].ops, nominal)
        rewriter.set_attr(loop, "split_work", max(1, work))


SPLIT_STEPS = 4


def _static_extent(op: Op) -> int | None:
    extent = dim(op.attributes["upper"]) - dim(op.attributes["lower"])
    return extent if isinstance(extent, int) else None


def _jam(f: Op, vector_bits: int, rewriter: Rewriter) -> None:
    """Register tiles for the loops around a reduction: the innermost loop runs ``nr`` vectors
    (or ``nr`` dot products) at once and its parent ``mr`` rows, so a matmul or convolution
    keeps ``mr x nr`` independent accumulators in registers, each k's loads shared by a row or
    a column of the tile (and an FMA's latency hidden behind the others)."""
    if f.attributes.get("kind") != "parallel" or not _top_reduces(f):
        return
    registers = 32 if vector_bits >= 512 else 16
    extent = _static_extent(f)
    width = int(f.attributes.get("vectorize") or 1)
    # Reductions over the same box share one loop nest (kernel_codegen groups them): an LSTM
    # step's four gate products need four accumulators per tile element.
    group = max(1, len(_top_reduces(f)))
    if width > 1:
        nr = min(4 if registers == 32 else 2, extent // width if extent is not None else 4)
        nr = max(1, min(nr, (registers * 3 // 4) // group))
        mr = min(8, (registers - nr - 2) // max(nr * group, 1))
    elif any(r.attributes.get("vectorize") for r in _top_reduces(f)):
        nr = min(4, extent if extent is not None else 4)
        mr = 1
    else:
        return
    if nr > 1:
        rewriter.set_attr(f, "jam", nr)
    parent = f.parent_op()
    if mr > 1 and parent is not None and parent.name == "loop.for" \
            and parent.attributes.get("kind") == "parallel":
        pext = _static_extent(parent)
        mr = min(mr, pext) if pext is not None else mr
        if mr > 1:
            rewriter.set_attr(parent, "jam", mr)


@register_pass
@dataclass
class SchedulePass(Pass):
    """Option ``vector_bits``: the target's vector register width (512 for AVX-512, 256 for
    AVX2, 128 for NEON and SSE); 0 leaves every loop scalar."""

    name = "schedule"
    level = "any"
    summary = "choose the loop each nest runs in vector lanes (vectorize = W)"

    vector_bits: int = 512

    def run(self, module: Module, ctx: PassContext) -> None:
        if self.vector_bits <= 0:
            return
        rewriter = Rewriter()
        nominal = {str(k): int(v) for k, v in
                   dict(module.attributes.get("dim_nominal") or {}).items()}
        for op in module.body.ops:
            if op.name == "loop.kernel":
                schedule_kernel(op, self.vector_bits, rewriter, nominal)
