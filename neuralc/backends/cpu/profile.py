"""Where a native inference spends its time, kernel by kernel.

The model's program is generated once more with ``nc_run_profiled``: the same host program,
with each kernel call between two ``clock_gettime(CLOCK_MONOTONIC)`` readings (about 20 ns
each, through the vDSO) whose difference is added to a per-call-site counter. It runs on the
loaded executable's own weights, init buffers and arena, so the kernels see exactly the data
and addresses of an ordinary call. Timing a kernel inside the whole model (rather than alone
in a loop) keeps its caches as they really are: the producer's output is what it reads.
"""

from __future__ import annotations

import ctypes
import statistics
from dataclasses import dataclass

import numpy as np

from neuralc.backends.cpu.jit import JitModule
from neuralc.backends.cpu.program import generate
from neuralc.backends.cpu.runtime import CpuExecutable, _address, _table, aligned_bytes

_P = ctypes.c_void_p


@dataclass(frozen=True)
class KernelTime:
    """``seconds``: the median, over the timed inferences, of the time spent in the kernel per
    inference (all its call sites together); ``calls``: its call sites per inference."""

    name: str
    seconds: float
    calls: int


def kernel_profile(exe: CpuExecutable, inputs: list[np.ndarray],
                   repeat: int = 20, warmup: int = 2) -> list[KernelTime]:
    """Per-kernel times of ``exe`` on ``inputs`` over ``repeat`` inferences (after ``warmup``
    untimed ones), slowest first. The inputs are checked as for an ordinary call."""
    if repeat < 1:
        raise ValueError("repeat must be at least 1")
    comp = exe.compilation
    program = generate(comp.loops, exe.program.network, profile=True, arch=comp.spec.arch)
    sites = program.profile_calls or []
    jit = JitModule(program.llvm_ir, comp.spec)
    table = ctypes.POINTER(_P)
    run = jit.function("nc_run_profiled", None, table, table, _P, _P, _P, _P, _P)
    ins, (sizes, out_shapes, need) = exe._checked(inputs)
    outs = [np.empty(shape, dt) for shape, dt in out_shapes]
    arena = aligned_bytes(max(need, 64))
    counters = np.zeros(max(len(sites), 1), np.int64)
    per_run: list[np.ndarray] = []
    # The profiled module has its own thread pool: start it as the executable's, so each
    # kernel runs on the threads an ordinary inference gives it.
    stop = None
    if exe.threads > 1 and "nc_pool_start" in program.llvm_ir:
        jit.function("nc_pool_start", ctypes.c_int32, ctypes.c_int32)(exe.threads - 1)
        stop = jit.function("nc_pool_stop", None)
    try:
        for k in range(warmup + repeat):
            counters[:] = 0
            run(_table(ins), _table(outs), exe._init_ptr, exe._weights_ptr, _address(arena),
                _address(sizes), _address(counters))
            if k >= warmup:
                per_run.append(counters.copy())
    finally:
        if stop is not None:
            stop()
    names = list(dict.fromkeys(sites))
    out = []
    for name in names:
        at = [i for i, s in enumerate(sites) if s == name]
        totals = [int(c[at].sum()) for c in per_run]
        out.append(KernelTime(name, statistics.median(totals) * 1e-9, len(at)))
    return sorted(out, key=lambda t: -t.seconds)
