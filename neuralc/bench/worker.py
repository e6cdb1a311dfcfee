"""One cell in its own process: ``python -m neuralc.bench.worker SPEC.json RESULT.json``.

The parent (:mod:`neuralc.bench.isolate`) writes the cell's request, starts this module with
a timeout and reads the result; a crash or a hang here loses this cell only. Jobs:

- ``time``: prepare the target or peer cold then warm, call it once and check the output
  against the reference (a wrong output is reported and not timed), then warm up and time
  single calls; record the peak resident set and the planned arena.
- ``kernels``: time each fused kernel of the cpu target, at ``-O`` and at ``-O0``
  (:mod:`neuralc.bench.kernels`).
- ``ceilings``: the machine's FMA throughput and copy bandwidths
  (:mod:`neuralc.bench.ceilings`).

Every Python exception is caught and written as the cell's ``error`` (or ``unsupported`` for
a model the target cannot express), so the exit status is 0 whenever a result was written.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from neuralc.bench.check import compare
from neuralc.bench.context import CellContext, load_context
from neuralc.bench.timing import summary_ms, time_calls

# What a runner imports before its preparation is timed (import time is reported apart).
_IMPORTS = {"torch": ("torch",), "torch-compile": ("torch",), "onnxruntime": ("onnxruntime",),
            "onnx": ("onnx", "onnxruntime"), "cpu": ("llvmlite.binding",)}


def rss_bytes() -> int | None:
    """The resident set of this process now (``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes() -> int:
    """The most this process has held resident: ``VmHWM`` of ``/proc/self/status``, which
    starts afresh at ``exec``. (``ru_maxrss`` is no use here: Linux keeps it across ``exec``,
    so a cell would report at least the parent's resident set.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def _unsupported_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean "this target cannot run this model" rather than a fault."""
    from neuralc.backends.base import BackendError, BackendUnavailable
    from neuralc.diagnostics import CompileError
    from neuralc.driver import UsageError

    return (BackendError, BackendUnavailable, UsageError, CompileError, LookupError)


def _message(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def time_job(ctx: CellContext) -> dict[str, Any]:
    from neuralc.bench.peers import PEER_RUNNERS, PEER_SETUP
    from neuralc.bench.targets import prepare_target

    spec = ctx.spec
    runner = str(spec["runner"])
    out: dict[str, Any] = {"frontend_s": ctx.frontend_s}
    t0 = time.perf_counter()
    for name in _IMPORTS.get(runner, ()):
        importlib.import_module(name)
    out["import_s"] = time.perf_counter() - t0
    out["rss_before_prepare_bytes"] = rss_bytes()
    prepare = PEER_RUNNERS[runner] if spec["kind"] == "peer" else prepare_target
    try:
        setup = PEER_SETUP.get(runner) if spec["kind"] == "peer" else None
        if setup is not None:
            setup(ctx)
        t0 = time.perf_counter()
        cold = prepare(ctx, "cold")
        t1 = time.perf_counter()
        cache_cold = cold.cache
        del cold
        t2 = time.perf_counter()
        warm = prepare(ctx, "warm")
        t3 = time.perf_counter()
    except _unsupported_errors() as e:
        return out | {"status": "unsupported", "message": _message(e)}
    out["prepare_s"] = {"cold": t1 - t0, "warm": t3 - t2}
    if warm.cache is not None:
        out["cache"] = {"cold": cache_cold, "warm": warm.cache}
    out["threads"] = warm.threads
    out["arena_bytes"] = warm.arena_bytes
    t0 = time.perf_counter()
    result = warm.call()
    out["first_call_ms"] = (time.perf_counter() - t0) * 1e3
    verdict = compare(result, ctx.expected, ctx.precision)
    out["error"] = verdict.error
    if not verdict.ok:
        out["peak_rss_bytes"] = peak_rss_bytes()
        return out | {"status": "wrong", "message": verdict.message}
    samples = time_calls(warm.call, spec.get("repeat"), float(spec["min_time"]),
                         int(spec["warmup"]))
    out["latency_ms"] = summary_ms(samples)
    out["samples_ms"] = [s * 1e3 for s in samples]
    out["peak_rss_bytes"] = peak_rss_bytes()
    return out | {"status": "ok", "message": None}


def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """The result of one job; exceptions become an ``error`` result, never a traceback."""
    try:
        if spec["job"] == "ceilings":
            from neuralc.bench.ceilings import measure_ceilings

            return {"status": "ok", "message": None,
                    "ceilings": measure_ceilings(quick=bool(spec.get("quick")),
                                                 threads=int(spec.get("threads", 1)))}
        ctx = load_context(spec)
        if spec["job"] == "kernels":
            from neuralc.bench.kernels import kernels_job

            return kernels_job(ctx)
        return time_job(ctx)
    except Exception as e:  # noqa: BLE001 - any failure is this cell's result, reported
        tail = traceback.format_exc().strip().splitlines()[-12:]
        return {"status": "error", "message": _message(e), "detail": "\n".join(tail),
                "peak_rss_bytes": peak_rss_bytes()}


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m neuralc.bench.worker SPEC.json RESULT.json\n")
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = run_job(spec)
    tmp = Path(argv[1] + ".part")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, argv[1])  # the parent sees the whole result or none
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
