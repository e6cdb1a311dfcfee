"""The machine's ceilings for the roofline: FMA throughput and copy bandwidth.

Both are native code generated here as LLVM IR and compiled by llvmlite for this CPU (its
name and features, as the cpu target compiles: ``TargetSpec.host()``), so they use the same
vector width and instructions the generated kernels can:

- FMA: a loop of ``llvm.fma`` on full vector registers with enough independent accumulators
  to hide the FMA latency (all registers but four: 28 with 32 vector registers, 12 with 16).
  GFLOP/s counts an FMA as two operations, as the kernels' FLOPs count a multiply-add.
- Copy: vector loads then stores (volatile, so LLVM cannot turn the loop into ``memcpy`` or
  drop a repeated pass), four vectors per iteration, over two buffers whose combined size is
  half of each cache level (L1, L2, L3, from ``/sys``) and, for DRAM, four times the last
  level (at least 64 MiB). GB/s counts the bytes read plus the bytes written, as the kernels'
  traffic does.

Each figure is the best of several timed calls, each long enough (about 10 ms) for the clock.
The ceilings are measured on as many threads as the cpu target's kernels ran on (``threads``:
one loop per thread, started together; the private L1 and L2 sizes per thread, the shared
levels split between the threads), so a kernel's fractions compare like with like. Results
are cached per machine (host name, LLVM triple, CPU name and features) and thread count in
neuralc's cache folder (``bench/ceilings-*.json``); ``--refresh-ceilings`` measures again.
"""

from __future__ import annotations

import ctypes
import datetime
import hashlib
import json
import os
import platform
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FORMAT = 1
_DEFAULT_CACHES = {1: 32 * 1024, 2: 1024 * 1024, 3: 32 * 1024 * 1024}


def cache_levels() -> dict[int, int]:
    """Data cache size per level (bytes) from ``/sys``; common sizes where it says nothing."""
    found: dict[int, int] = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    for index in sorted(base.glob("index*")):
        try:
            kind = (index / "type").read_text().strip()
            level = int((index / "level").read_text())
            text = (index / "size").read_text().strip().upper()
        except (OSError, ValueError):
            continue
        if kind not in ("Data", "Unified"):
            continue
        scale = {"K": 1024, "M": 1024 * 1024, "G": 1024 ** 3}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            found[level] = int(digits) * scale
    return found or dict(_DEFAULT_CACHES)


def _accumulators(spec: Any) -> int:
    registers = 32 if spec.has("avx512f") or spec.arch == "aarch64" else 16
    return registers - 4


def _vec(width: int) -> str:
    return f"<{width} x float>"


def fma_ir(width: int, accumulators: int) -> str:
    """``float nc_bench_fma(i64 iters, float a, float b)``: ``accumulators`` independent
    chains of ``acc = fma(acc, a, b)`` on ``width``-lane vectors, ``iters`` times."""
    v = _vec(width)
    zeros = f"<{width} x i32> zeroinitializer"
    lines = [f"declare {v} @llvm.fma.v{width}f32({v}, {v}, {v})", "",
             "define float @nc_bench_fma(i64 %iters, float %a, float %b) nounwind {",
             "entry:",
             f"  %a0 = insertelement {v} poison, float %a, i64 0",
             f"  %va = shufflevector {v} %a0, {v} poison, {zeros}",
             f"  %b0 = insertelement {v} poison, float %b, i64 0",
             f"  %vb = shufflevector {v} %b0, {v} poison, {zeros}"]
    for k in range(accumulators):
        c = ", ".join([f"float {float(k + 1):e}"] * width)
        lines.append(f"  %init{k} = fmul {v} %vb, <{c}>")
    lines += ["  br label %loop", "loop:", "  %i = phi i64 [ 0, %entry ], [ %i1, %loop ]"]
    lines += [f"  %acc{k} = phi {v} [ %init{k}, %entry ], [ %n{k}, %loop ]"
              for k in range(accumulators)]
    lines += [f"  %n{k} = call {v} @llvm.fma.v{width}f32({v} %acc{k}, {v} %va, {v} %vb)"
              for k in range(accumulators)]
    lines += ["  %i1 = add i64 %i, 1", "  %more = icmp ult i64 %i1, %iters",
              "  br i1 %more, label %loop, label %done", "done:", f"  %s0 = fadd {v} %n0, %n0"]
    lines += [f"  %s{k} = fadd {v} %s{k - 1}, %n{k}" for k in range(1, accumulators)]
    lines += [f"  %r = extractelement {v} %s{accumulators - 1}, i64 0", "  ret float %r", "}"]
    return "\n".join(lines) + "\n"


def copy_ir(width: int, unroll: int = 4) -> str:
    """``void nc_bench_copy(ptr dst, ptr src, i64 nvec, i64 reps)``: ``reps`` passes copying
    ``nvec`` vectors (a multiple of ``unroll``) with volatile vector loads and stores."""
    v = _vec(width)
    align = width * 4
    lines = ["define void @nc_bench_copy(ptr %dst, ptr %src, i64 %nvec, i64 %reps) nounwind {",
             "entry:", "  br label %outer", "outer:",
             "  %r = phi i64 [ 0, %entry ], [ %r1, %next ]", "  br label %inner", "inner:",
             "  %i = phi i64 [ 0, %outer ], [ %i1, %inner ]"]
    for u in range(unroll):
        lines += [f"  %j{u} = add i64 %i, {u}",
                  f"  %ps{u} = getelementptr {v}, ptr %src, i64 %j{u}",
                  f"  %x{u} = load volatile {v}, ptr %ps{u}, align {align}"]
    for u in range(unroll):
        lines += [f"  %pd{u} = getelementptr {v}, ptr %dst, i64 %j{u}",
                  f"  store volatile {v} %x{u}, ptr %pd{u}, align {align}"]
    lines += [f"  %i1 = add i64 %i, {unroll}", "  %more = icmp ult i64 %i1, %nvec",
              "  br i1 %more, label %inner, label %next", "next:", "  %r1 = add i64 %r, 1",
              "  %again = icmp ult i64 %r1, %reps", "  br i1 %again, label %outer, label %done",
              "done:", "  ret void", "}"]
    return "\n".join(lines) + "\n"


def _together(fn: Any, args: list[tuple]) -> Callable[[], None]:
    """Calls ``fn(*a)`` for every ``a`` at once, one thread each (ctypes releases the GIL)."""
    if len(args) == 1:
        return lambda: fn(*args[0])

    def run() -> None:
        threads = [threading.Thread(target=fn, args=a) for a in args]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return run


def _best(make: Callable[[int], Callable[[], None]], target_s: float,
          tries: int) -> tuple[float, int]:
    """(best seconds, n) of ``make(n)()`` with ``n`` doubled until one run takes ``target_s``."""
    n = 1
    while True:
        run = make(n)
        t0 = time.perf_counter()
        run()
        if time.perf_counter() - t0 >= target_s or n >= 1 << 40:
            break
        n *= 2
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
    return best, n


def measure_ceilings(quick: bool = False, threads: int = 1) -> dict[str, Any]:
    """Measure FMA GFLOP/s and copy GB/s per cache level on ``threads`` threads."""
    from neuralc.backends.cpu.host import TargetSpec
    from neuralc.backends.cpu.jit import JitModule
    from neuralc.backends.cpu.runtime import aligned_bytes

    spec = TargetSpec.host()
    width, accs = spec.vector_width_f32, _accumulators(spec)
    target_s, tries = (0.002, 3) if quick else (0.01, 7)
    fma_jit = JitModule(fma_ir(width, accs), spec, use_cache=False)
    fma = fma_jit.function("nc_bench_fma", ctypes.c_float, ctypes.c_int64, ctypes.c_float,
                           ctypes.c_float)
    secs, n = _best(lambda n: _together(fma, [(n * 1024, 0.999999, 1e-7)] * threads),
                    target_s, tries)
    gflops = threads * n * 1024 * accs * width * 2 / secs / 1e9
    copy_jit = JitModule(copy_ir(width), spec, use_cache=False)
    copy = copy_jit.function("nc_bench_copy", None, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_int64, ctypes.c_int64)
    levels = cache_levels()
    last = max(levels)
    # (level, bytes of src + dst per thread): private levels per thread, shared ones split.
    footprints = [(f"L{lv}", size // 2 if lv < 3 else size // 2 // threads)
                  for lv, size in sorted(levels.items())]
    footprints.append(("DRAM", max(4 * levels[last], 64 << 20) // threads))
    chunk = width * 4 * 4  # bytes of one unrolled iteration
    bandwidth = []
    for name, footprint in footprints:
        each = max(chunk, (footprint // 2) // chunk * chunk)
        buffers = [(aligned_bytes(each), aligned_bytes(each)) for _ in range(threads)]
        for src, _ in buffers:
            src[:] = 1
        nvec = each // (width * 4)
        args = [(d.ctypes.data, s.ctypes.data, nvec) for s, d in buffers]
        secs, reps = _best(lambda n, a=args: _together(copy, [(*x, n) for x in a]),
                           target_s, tries)
        bandwidth.append({"level": name, "bytes": threads * 2 * each,
                          "gbs": threads * 2 * each * reps / secs / 1e9})
        del buffers
    return {"format": FORMAT, "cpu": spec.cpu, "triple": spec.triple,
            "vector_bits": spec.vector_bits, "threads": threads,
            "fma": {"gflops": gflops, "accumulators": accs, "lanes": width},
            "copy": bandwidth, "caches": {f"L{k}": v for k, v in sorted(levels.items())},
            "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "quick": quick}


def _cache_file(threads: int) -> Path:
    from neuralc.backends.cpu.cache import cache_root
    from neuralc.backends.cpu.host import TargetSpec

    key = f"{FORMAT}|{platform.node()}|{TargetSpec.host().key()}|{threads}"
    return cache_root() / "bench" / f"ceilings-{hashlib.sha256(key.encode()).hexdigest()[:20]}.json"


def cached_ceilings(threads: int = 1) -> dict[str, Any] | None:
    """This machine's ceilings on ``threads`` threads from an earlier run, or None."""
    try:
        data = json.loads(_cache_file(threads).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("quick"):
        return None
    return data


def store_ceilings(data: dict[str, Any]) -> None:
    """Keep ``data`` for the next run (the cache is an optimisation: failures are ignored)."""
    path = _cache_file(int(data["threads"]))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(data, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass


def bandwidth_for(ceilings: dict[str, Any], footprint: int) -> tuple[str, float]:
    """The copy bandwidth of the smallest level whose measured footprint holds
    ``footprint`` bytes (DRAM beyond the last cache)."""
    levels = ceilings["copy"]
    for lv in levels:
        if lv["level"] != "DRAM" and footprint <= lv["bytes"]:
            return lv["level"], float(lv["gbs"])
    return levels[-1]["level"], float(levels[-1]["gbs"])
