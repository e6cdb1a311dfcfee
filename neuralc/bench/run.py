"""A whole ``neuralc bench`` run: plan, run every cell in its own process, put it together.

``run_bench`` is the one call (the CLI's); :func:`execute` and :func:`assemble` are the two
halves the tests drive separately, so that they can change a cell between them.
"""

from __future__ import annotations

import datetime
import hashlib
import tempfile
from pathlib import Path
from typing import Any

from neuralc.bench.config import BenchConfig
from neuralc.bench.isolate import run_isolated
from neuralc.bench.plan import Cell, Plan, make_plan
from neuralc.bench.progress import Progress

SCHEMA = "neuralc-bench/1"
FAILED = ("wrong", "error", "crashed", "timeout")  # statuses that make the run fail (exit 1)
_TIMING_KINDS = ("target", "peer")


def execute(plan: Plan, progress: bool | None = False) -> dict[str, Any] | None:
    """Run every cell that has a request, one process each; then the ceilings, on as many
    threads as the timed kernels ran, if kernels were timed. Returns the ceilings (None
    without ``--kernels``). ``progress``: draw the bar (None: when standard error is a
    terminal)."""
    from neuralc.bench.ceilings import cached_ceilings

    cells = [c for c in plan.cells if c.spec is not None]
    profiled = plan.config.kernels and any(c.kind == "kernels" for c in cells)
    with Progress(len(cells) + int(profiled), enabled=progress) as bar:
        for cell in cells:
            bar.start(cell.id)
            assert cell.spec is not None
            cell.result = run_isolated(cell.spec, Path(cell.spec["tmp"]), plan.config.timeout,
                                       cell.worker)
            bar.done(cell.id, cell.result.get("status", "?"))
        if not profiled:
            return None
        threads = next((int(c.result.get("threads") or 1) for c in cells
                        if c.kind == "kernels" and c.result.get("status") == "ok"), 1)
        ceilings = None if plan.config.refresh_ceilings else cached_ceilings(threads)
        if ceilings is not None:
            bar.done("ceilings", "ok")
            return ceilings | {"cached": True}
        bar.start(f"ceilings (FMA, copy; {threads} threads)")
        ceilings = _measure_ceilings(plan, threads)
        bar.done("ceilings", "ok" if "fma" in ceilings else "failed")
        return ceilings


def _measure_ceilings(plan: Plan, threads: int) -> dict[str, Any]:
    from neuralc.bench.ceilings import store_ceilings

    got = run_isolated({"job": "ceilings", "threads": threads}, plan.folder / "ceilings",
                       plan.config.timeout)
    if got.get("status") != "ok":
        return {"error": got.get("message") or got.get("status")}
    data = got["ceilings"]
    store_ceilings(data)
    return data | {"cached": False}


def _sha256(path: str) -> str | None:
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def _timing_cell(cell: Cell, sizes: dict[str, int]) -> dict[str, Any]:
    r = dict(cell.result)
    return {"id": cell.id, "runner": cell.runner, "kind": cell.kind, "batch": cell.batch,
            "precision": cell.precision, "sizes": sizes, "status": r.pop("status", "error"),
            "message": r.pop("message", None), **r}


def _fastest_peers(cells: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per (batch, precision): the peer with the lowest median latency among the ok ones."""
    best: dict[str, dict[str, Any]] = {}
    for c in cells:
        if c["kind"] != "peer" or c["status"] != "ok":
            continue
        key = f"b{c['batch']}/{c['precision']}"
        if key not in best or c["latency_ms"]["median"] < best[key]["median_ms"]:
            best[key] = {"peer": c["runner"], "median_ms": c["latency_ms"]["median"]}
    return best


def annotate_kernel(row: dict[str, Any], ceilings: dict[str, Any] | None) -> None:
    """Achieved GB/s and GFLOP/s of a timed kernel, and its fractions of the ceilings."""
    from neuralc.bench.ceilings import bandwidth_for

    s = row.get("seconds")
    if not s:
        return
    row["gbs"] = row["bytes"] / s / 1e9
    row["gflops"] = row["flops"] / s / 1e9
    row["intensity"] = row["flops"] / row["bytes"] if row["bytes"] else None
    if not ceilings or "fma" not in ceilings:
        return
    peak = float(ceilings["fma"]["gflops"])
    level, bw = bandwidth_for(ceilings, row["bytes"])
    row["bw_level"], row["bw_fraction"] = level, row["gbs"] / bw
    row["fma_fraction"] = row["gflops"] / peak
    roof = min(peak, row["intensity"] * bw) if row["intensity"] else None
    row["roofline_fraction"] = row["gflops"] / roof if roof else None


def _kernel_cell(cell: Cell, ceilings: dict[str, Any] | None) -> dict[str, Any]:
    r = dict(cell.result)
    out = {"id": cell.id, "target": cell.runner, "batch": cell.batch,
           "precision": cell.precision, "status": r.pop("status", "error"),
           "message": r.pop("message", None), **r}
    if out["status"] != "ok":
        return out
    for label in ("fused", "unfused"):
        level = out[label]
        for row in level["kernels"]:
            annotate_kernel(row, ceilings)
        level["kernel_s"] = sum(row.get("seconds") or 0.0 for row in level["kernels"])
    unfused = {row["name"]: row for row in out["unfused"]["kernels"]}
    mapping: dict[str, str | None] = out["unfused_to_fused"]
    for row in out["fused"]["kernels"]:
        names = [u for u, f in mapping.items() if f == row["name"]]
        secs = sum(unfused[u].get("seconds") or 0.0 for u in names)
        row["unfused"] = {"kernels": names, "seconds": secs,
                          "speedup": secs / row["seconds"] if row.get("seconds") else None}
    gone = [u for u, f in mapping.items() if f is None]
    out["removed_at_opt"] = {"kernels": gone,
                             "seconds": sum(unfused[u].get("seconds") or 0.0 for u in gone)}
    out["fused"]["kernels"].sort(key=lambda row: -(row.get("seconds") or 0.0))
    return out


def assemble(plan: Plan, ceilings: dict[str, Any] | None) -> dict[str, Any]:
    """The result file's content (``--json``): everything needed to read and repeat the run."""
    from neuralc.bench.check import BOUNDS, MEASURE
    from neuralc.bench.machine import describe_machine, versions

    config = plan.config
    cells = [_timing_cell(c, plan.sizes[c.batch]) for c in plan.cells
             if c.kind in _TIMING_KINDS]
    fastest = _fastest_peers(cells)
    for c in cells:
        best = fastest.get(f"b{c['batch']}/{c['precision']}")
        c["vs_fastest_peer"] = (best["median_ms"] / c["latency_ms"]["median"]
                                if best and c["status"] == "ok" else None)
    kernels = [_kernel_cell(c, ceilings) for c in plan.cells if c.kind == "kernels"]
    info = plan.model.info
    return {
        "schema": SCHEMA,
        "command": config.command(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": describe_machine(),
        "versions": versions(),
        "model": {"path": config.model, "network": str(info.name),
                  "sha256": _sha256(config.model),
                  "weights": config.weights or f"seeded initial weights (seed {config.seed})",
                  "inputs": {str(b): specs for b, specs in plan.inputs.items()}},
        "config": {"targets": config.targets, "peers": config.peers,
                   "batches": config.batches, "dims": config.dims,
                   "precisions": config.precisions, "threads": config.threads,
                   "repeat": config.repeat, "min_time_s": config.min_time,
                   "warmup": config.warmup, "timeout_s": config.timeout, "opt": config.opt,
                   "seed": config.seed, "kernels": config.kernels},
        "check": {"oracle": "neuralc's reference interpreter on the graph IR, float32, same "
                            "weights and inputs", "measure": MEASURE, "bounds": BOUNDS},
        "absent": plan.absent,
        "cells": cells,
        "fastest_peer": fastest,
        "kernels": kernels,
        "ceilings": ceilings,
    }


def failures(result: dict[str, Any]) -> list[str]:
    """Ids of cells (timing and kernels) that failed: wrong, error, crashed or timeout."""
    return [c["id"] for c in [*result["cells"], *result["kernels"]] if c["status"] in FAILED]


def run_bench(config: BenchConfig, progress: bool | None = False) -> dict[str, Any]:
    """Plan, execute and assemble one run; the run's folder is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="neuralc-bench-") as tmp:
        plan = make_plan(config, Path(tmp))
        ceilings = execute(plan, progress)
        return assemble(plan, ceilings)
