"""The result as tables: for the terminal (``trtexec``-like summary) and as Markdown.

Both read only the result dict (what ``--json`` writes), so a saved result can be shown again
and the README's tables are the same text the terminal shows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from neuralc.bench.machine import machine_line, versions_line


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.0f}%"


def _x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x" if v >= 0.1 else f"{v:.2g}x"


def _us(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    us = seconds * 1e6
    return f"{us:.2f}" if us < 10 else f"{us:,.1f}"


def _render(header: list[str], rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), "  ".join("-" * w for w in widths), *(line(r) for r in rows)]


def _markdown(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(r) + " |" for r in rows)]


LATENCY_HEADER = ["runner", "batch", "prec", "status", "median ms", "p10", "p90", "first ms",
                  "prepare s cold/warm", "peak RSS", "arena", "threads", "vs fastest peer"]


def latency_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for c in result["cells"]:
        lat = c.get("latency_ms") or {}
        prep = c.get("prepare_s")
        prepare = f"{prep['cold']:.2f} / {prep['warm']:.2f}" if prep else "-"
        if c.get("cache"):
            prepare += f" ({c['cache']['cold']}/{c['cache']['warm']})"
        label = c["runner"] + (" (peer)" if c["kind"] == "peer" else "")
        rows.append([label, str(c["batch"]), c["precision"], c["status"], _ms(lat.get("median")),
                     _ms(lat.get("p10")), _ms(lat.get("p90")), _ms(c.get("first_call_ms")),
                     prepare, _size(c.get("peak_rss_bytes")), _size(c.get("arena_bytes")),
                     str(c.get("threads") or "-"), _x(c.get("vs_fastest_peer"))])
    return rows


KERNEL_HEADER = ["kernel", "kind", "us", "share", "bytes", "FLOPs", "GB/s", "GFLOP/s", "%FMA",
                 "%BW (level)", "-O0 kernels", "-O0 us", "fusion gain", ".nr lines"]


def kernel_rows(k: dict[str, Any]) -> list[list[str]]:
    total = k["fused"]["kernel_s"] or 0.0
    rows = []
    for r in k["fused"]["kernels"]:
        s = r.get("seconds")
        bw = (f"{_pct(r.get('bw_fraction'))} ({r['bw_level']})" if r.get("bw_level") else "-")
        un = r.get("unfused") or {}
        lines = ", ".join(Path(x).name for x in r["lines"]) or "-"
        rows.append([r["name"], r["kind"], _us(s),
                     _pct(s / total if s and total else None), f"{r['bytes']:,}",
                     f"{r['flops']:,}", "-" if r.get("gbs") is None else f"{r['gbs']:.1f}",
                     "-" if r.get("gflops") is None else f"{r['gflops']:.1f}",
                     _pct(r.get("fma_fraction")), bw, str(len(un.get("kernels", []))),
                     _us(un["seconds"]) if un else "-", _x(un.get("speedup")), lines])
    return rows


def _ceilings_line(c: dict[str, Any] | None) -> str:
    if not c:
        return "ceilings: not measured"
    if "fma" not in c:
        return f"ceilings: not measured ({c.get('error')})"
    copy = ", ".join(f"{x['level']} {x['gbs']:.0f}" for x in c["copy"])
    when = "cached from " + c["measured"] if c.get("cached") else "measured " + c["measured"]
    threads = c.get("threads", 1)
    return (f"ceilings ({threads} thread{'s' * (threads != 1)}, {when}): FMA "
            f"{c['fma']['gflops']:.1f} GFLOP/s; copy GB/s {copy}")


def _kernel_title(k: dict[str, Any]) -> str:
    f, u = k["fused"], k["unfused"]
    return (f"Kernels of the {k['target']} target, batch {k['batch']}, {k['precision']}: "
            f"-O{f['opt']} {len(f['kernels'])} kernels, {_ms(f['kernel_s'] * 1e3)} ms in "
            f"kernels of {_ms(f['call_ms']['median'])} ms per inference; -O{u['opt']} "
            f"{len(u['kernels'])} kernels, {_ms(u['call_ms']['median'])} ms per inference")


def _kernel_notes(k: dict[str, Any]) -> list[str]:
    out = []
    gone = k["removed_at_opt"]
    if gone["kernels"]:
        out.append(f"  -O0 kernels no fused kernel holds (folded into the weights at load, or "
                   f"removed): {len(gone['kernels'])}, {_ms(gone['seconds'] * 1e3)} ms")
    for label in ("fused", "unfused"):
        outside = k[label]["flops_outside_kernels"]
        if outside:
            names = ", ".join(f"{x['name']} ({x['flops']:,})" for x in outside)
            out.append(f"  FLOPs of layers no -O{k[label]['opt']} kernel runs per inference: "
                       f"{names}")
    return out


def _header(result: dict[str, Any]) -> list[str]:
    m = result["model"]
    inputs = "; ".join(f"batch {b}: " + ", ".join(f"{i['name']} {tuple(i['shape'])} {i['dtype']}"
                                                   for i in specs)
                       for b, specs in m["inputs"].items())
    bounds = ", ".join(f"{k} {v:.0e}" for k, v in result["check"]["bounds"].items()
                       if k in result["config"]["precisions"])
    out = [f"neuralc bench: {m['network']} ({m['path']}, sha256 {str(m['sha256'])[:12]})",
           f"command:  {result['command']}",
           f"machine:  {machine_line(result['machine'], result['config']['threads'])}",
           f"versions: {versions_line(result['versions'])}",
           f"inputs:   {inputs}; weights: {m['weights']}",
           f"check:    every output against the reference interpreter before timing "
           f"(norm-wise error bound {bounds})"]
    for a in result["absent"]:
        out.append(f"absent:   {a['peer']} ({a['reason']}: {a['install']})")
    return out


def _problems(result: dict[str, Any]) -> list[str]:
    out = []
    for c in [*result["cells"], *result["kernels"]]:
        if c["status"] != "ok":
            out.append(f"  {c['id']}: {c['status']}: {c.get('message') or ''}".rstrip(": "))
    return out


def format_text(result: dict[str, Any]) -> str:
    """The terminal summary: header, latency table, problems, then each kernel table."""
    out = _header(result)
    out += ["", "Latency per inference (median, 10th and 90th percentiles of single calls; "
            "vs fastest peer: its median / this median)"]
    out += _render(LATENCY_HEADER, latency_rows(result), {1, 4, 5, 6, 7, 8, 9, 10, 11, 12})
    problems = _problems(result)
    if problems:
        out += ["", "not timed:"] + problems
    for k in result["kernels"]:
        if k["status"] != "ok":
            continue
        out += ["", _kernel_title(k), _ceilings_line(result.get("ceilings"))]
        out += _render(KERNEL_HEADER, kernel_rows(k), {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
        out += _kernel_notes(k)
    return "\n".join(out) + "\n"


def format_markdown(result: dict[str, Any]) -> str:
    """The same tables in Markdown, with the command and the machine (README, results/)."""
    out = [f"`{result['command']}`", "",
           f"Machine: {machine_line(result['machine'], result['config']['threads'])}; "
           f"{versions_line(result['versions'])}.", ""]
    out += _markdown(LATENCY_HEADER, latency_rows(result))
    problems = _problems(result)
    if problems:
        out += ["", "Not timed:", ""] + [f"- {p.strip()}" for p in problems]
    for k in result["kernels"]:
        if k["status"] != "ok":
            continue
        out += ["", _kernel_title(k) + ". " + _ceilings_line(result.get("ceilings")) + ".", ""]
        out += _markdown(KERNEL_HEADER, kernel_rows(k))
        notes = _kernel_notes(k)
        if notes:
            out += [""] + [f"- {n.strip()}" for n in notes]
    return "\n".join(out) + "\n"
