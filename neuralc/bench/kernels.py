"""``neuralc bench --kernels``: where the time goes, fused kernel by fused kernel.

For the cpu target at the run's ``-O`` level and, beside it, at ``-O0`` (one kernel per op),
each kernel's time inside a whole inference (:func:`neuralc.backends.cpu.profile.kernel_profile`),
its bytes moved (the traffic ``neuralc check --report`` and ``--emit kernels`` count: each
operand read once, each result written once), its FLOPs (``check``'s per-layer figures split
over kernels, :mod:`neuralc.bench.flops`) and the ``.nr`` lines it covers. Each ``-O0``
kernel is matched to the fused kernel that took its op (same op, same layer), so the gain of
fusion shows kernel by kernel; ``-O0`` kernels whose op no fused kernel has were folded into
the weights at load time or removed (Dropout).

The static part (:func:`static_rows`) needs no timing and is what the tests compare with
``check --report``; the job (:func:`kernels_job`) runs in a cell process.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from neuralc.bench.context import CellContext
from neuralc.bench.flops import LayerFlops, kernel_flops
from neuralc.ir.core import Module, Op
from neuralc.location import FusedLoc, source_lines
from neuralc.passes.analysis import eval_dim, kernel_ops, traffic


@dataclass
class KernelRow:
    name: str
    kind: str
    ops: list[str]
    lines: list[str]
    reads: int
    writes: int
    flops: int
    seconds: float | None = None
    calls: int | None = None
    keys: list[tuple] = field(default_factory=list, repr=False)  # for matching -O0 ops

    @property
    def bytes(self) -> int:
        return self.reads + self.writes

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("keys")
        d["bytes"] = self.bytes
        return d





def _body(op: Op) -> list[Op]:
    if op.name == "kernel.fused":
        return [o for o in op.regions[0].blocks[0].ops if o.name != "kernel.yield"]
    return [op]


def _op_keys(op: Op) -> list[tuple]:
    """How an op is recognised at another ``-O`` level: op, its function, its layer."""
    locs = list(op.location.locs) if isinstance(op.location, FusedLoc) else [op.location]
    fn = op.attributes.get("fn", op.attributes.get("kind"))
    return [(op.name, str(fn), loc) for loc in locs]


def static_rows(tensor: Module, graph: Module, sizes: dict[str, int],
                batch: int) -> tuple[list[KernelRow], list[LayerFlops]]:
    """Every kernel of ``tensor`` in program order, with bytes and FLOPs at ``sizes``; and
    the layers whose FLOPs no kernel runs per inference."""
    moved = {r.name: r for r in traffic(tensor)}
    fl = kernel_flops(tensor, graph, sizes, batch)
    rows = []
    for func in tensor.networks:
        for k in kernel_ops(func):
            name = str(k.attributes.get("name")) if k.name == "kernel.fused" else k.name
            t = moved[name]
            body = _body(k)
            rows.append(KernelRow(
                name, str(k.attributes.get("kind", t.kind)),
                [o.name.split(".", 1)[1] for o in body], source_lines(k.location),
                int(eval_dim(t.reads, sizes)), int(eval_dim(t.writes, sizes)),
                fl.per_kernel.get(name, 0), keys=[key for o in body for key in _op_keys(o)]))
    return rows, fl.outside


def match_unfused(fused: list[KernelRow], unfused: list[KernelRow]) -> dict[str, str | None]:
    """Each ``-O0`` kernel's fused kernel: the one holding the same op of the same layer
    (each taken once, so a layer's second ``add`` finds the second), else the same op kind of
    the layer, else any op of the layer; None when no fused kernel has it. Both lists are in
    program order, so the search starts at the last match: a block repeated by a macro
    (``ResBlock(16) * 2``, the same locations twice) maps to its own kernels."""
    left = [Counter(r.keys) for r in fused]
    rules = (lambda k, c: c[k] > 0,
             lambda k, c: any(x[0] == k[0] and x[2] == k[2] for x in c),
             lambda k, c: any(x[2] == k[2] for x in c))
    out: dict[str, str | None] = {}
    at = 0
    for u in unfused:
        order = list(range(at, len(fused))) + list(range(at))
        found = None
        for rule in rules:
            for key in u.keys:
                found = next((i for i in order if rule(key, left[i])), None)
                if found is not None:
                    if left[found][key] > 0:
                        left[found][key] -= 1
                    break
            if found is not None:
                break
        out[u.name] = None if found is None else fused[found].name
        at = at if found is None else found
    return out


def kernels_job(ctx: CellContext) -> dict[str, Any]:
    """Profile the cpu target at ``-O`` and ``-O0`` on the cell's inputs (checked first)."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.profile import kernel_profile
    from neuralc.backends.cpu.runtime import CpuExecutable
    from neuralc.bench.check import compare
    from neuralc.bench.timing import summary_ms, time_calls

    repeat = int(ctx.spec.get("kernel_repeat", 20))
    batch = int(ctx.spec["batch"])
    levels: dict[str, Any] = {}
    threads = 1
    rows_at: dict[str, list[KernelRow]] = {}
    for label, level in (("fused", ctx.opt), ("unfused", 0)):
        comp = compile_for_cpu(ctx.model, level, ctx.precision)
        exe = CpuExecutable(comp, ctx.model, ctx.weights, threads=ctx.threads)
        threads = exe.threads
        verdict = compare(exe(ctx.inputs), ctx.expected, ctx.precision)
        if not verdict.ok:
            return {"status": "wrong", "message": f"-O{level}: {verdict.message}",
                    "error": verdict.error}
        call = summary_ms(time_calls(lambda e=exe: e(ctx.inputs), repeat, 0.0, 2))
        times = {t.name: t for t in kernel_profile(exe, ctx.inputs, repeat)}
        rows, outside = static_rows(comp.tensor, ctx.model.module, ctx.sizes, batch)
        for r in rows:
            t = times.get(r.name)
            if t is not None:
                r.seconds, r.calls = t.seconds, t.calls
        rows_at[label] = rows
        levels[label] = {
            "opt": level, "call_ms": call, "error": verdict.error,
            "kernels": [r.to_json() for r in rows],
            "untimed": sorted(set(times) - {r.name for r in rows}),
            "flops_outside_kernels": [asdict(x) for x in outside],
        }
    levels["unfused_to_fused"] = match_unfused(rows_at["fused"], rows_at["unfused"])
    return {"status": "ok", "message": None, "target": "cpu", "threads": threads, **levels}
