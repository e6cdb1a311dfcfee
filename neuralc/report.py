"""The per-layer table of ``neuralc check``: output shapes, parameter counts and FLOPs."""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.ir.core import Module, func_body
from neuralc.ir.dims import Dim, parse_dim
from neuralc.ir.types import shape_str
from neuralc.layers import catalog
from neuralc.location import source_lines


@dataclass
class Row:
    name: str
    layer: str
    shape: str
    params: int
    flops: Dim


def layer_rows(module: Module) -> list[Row]:
    """One row per input and per layer, in program order."""
    func = module.funcs[0]
    body = func_body(func)
    rows = [
        Row(a.name_hint or "input", f"Input[{a.type.dtype}]", shape_str(a.type.shape or ()), 0, 0)
        for a in body.args
    ]
    for op in body.ops:
        spec = catalog.by_op(op.name)
        if spec is None:
            continue
        ins = [v.type for v in op.operands]
        outs = [r.type for r in op.results]
        weights = spec.weights(op.attributes, ins)
        n = 0
        for w in weights.values():
            if w.dtype.startswith("f"):
                size = 1
                for d in w.shape:
                    size *= d
                n += size
        shape = ", ".join(shape_str(t.shape or ()) for t in outs)
        rows.append(
            Row(
                str(op.attributes.get("name")),
                spec.name,
                shape,
                n,
                spec.flops(op.attributes, ins, outs),
            )
        )
    return rows


def format_table(module: Module) -> str:
    rows = layer_rows(module)
    total_params = sum(r.params for r in rows)
    total_flops: Dim = 0
    for r in rows:
        total_flops = total_flops + r.flops
    header = ("layer", "op", "output shape", "params", "FLOPs/sample")
    body = [(r.name, r.layer, r.shape, f"{r.params:,}", _flops(r.flops)) for r in rows]
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(header)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.rjust(w) if i >= 3 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    out = [f"network {module.name}", line(header), sep, *(line(b) for b in body), sep]
    out.append(
        f"total: {len(rows) - len(func_body(module.funcs[0]).args)} layers, "
        f"{total_params:,} parameters, {_flops(total_flops)} FLOPs per sample"
    )
    dims = module.attributes.get("dims")
    if dims:
        rngs = ", ".join(
            f"{k}: {'' if v[0] is None else v[0]}..{'' if v[1] is None else v[1]}"
            for k, v in dims.items()
        )
        out.append(f"dims: {rngs}")
    return "\n".join(out)


def _flops(f: Dim) -> str:
    return f"{f:,}" if isinstance(f, int) else str(f)


# -- the kernel view and the optimisation report --------------------------------------------


def format_kernels(module: Module) -> str:
    """Each fused kernel with its ops, the .nr lines it covers and the bytes it moves."""
    from neuralc.passes import analysis

    sizes = analysis.nominal_sizes(module)
    rows = {r.name: r for r in analysis.traffic(module)}
    out = [f"kernels of {module.name} ({analysis.kernel_count(module)}; bytes at "
           + ", ".join(f"{k}={v}" for k, v in sorted(sizes.items())) + ")"]
    for func in module.funcs:
        for op in func_body(func).ops:
            if op.name != "kernel.fused":
                continue
            body = [o.name.split(".", 1)[1] for o in op.regions[0].blocks[0].ops
                    if o.name != "kernel.yield"]
            name = str(op.attributes.get("name"))
            moved = ""
            row = rows.get(name)
            if row is not None:
                rd = analysis.eval_dim(row.reads, sizes)
                wr = analysis.eval_dim(row.writes, sizes)
                moved = f"  reads {rd:,} B, writes {wr:,} B"
            lines = ", ".join(source_lines(op.location)) or "-"
            out.append(f"{name:<10} {str(op.attributes.get('kind', '')):<28} {moved}")
            out.append(f"           ops: {' '.join(body)}")
            out.append(f"           from: {lines}")
    return "\n".join(out)


def format_optimisation_report(before: Module, after: Module, level: int) -> str:
    """Kernel count, bytes moved per inference before/after fusion, peak activation memory."""
    from neuralc.passes import analysis

    sizes = analysis.nominal_sizes(after)
    at = ", ".join(f"{k}={v}" for k, v in sorted(sizes.items()))
    b0 = analysis.bytes_moved(before, sizes)
    b1 = analysis.bytes_moved(after, sizes)
    peak = analysis.peak_memory(after, sizes)
    lines = [
        f"optimisation report (-O{level}; sizes {at})",
        f"  kernels:            {analysis.kernel_count(before):>12,} unfused -> "
        f"{analysis.kernel_count(after):,} at -O{level}",
        f"  bytes moved:        {b0:>12,} unfused -> {b1:,} "
        f"({100 * (1 - b1 / b0) if b0 else 0:.0f}% less)",
        f"  peak activations:   {peak:>12,} bytes (memory plan)",
    ]
    for func in after.networks:
        arena = func.attributes.get("arena_bytes")
        if arena is None:
            continue
        at_sizes = analysis.eval_dim(parse_dim(str(arena)), sizes)
        lines.append(f"  arena:              {at_sizes:>12,} bytes (64-byte aligned slots; "
                     "what generated code allocates)")
        lines.append(f"  arena (symbolic):   {arena}")
    return "\n".join(lines)
