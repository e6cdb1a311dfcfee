"""The generated thread pool (neuralc/backends/cpu/threads.py) under stress.

A harness task adds 1 to each element of its chunk of a counter array; after R dispatches
over the whole range, every element must be exactly R: a chunk run twice, skipped, or run
with another dispatch's bounds (the races the pool's design guards against) shows up as a
wrong count. Dispatches alternate between ranges and steps so consecutive tasks differ, and
run with workers both spinning and asleep; the whole run has a deadline, so a deadlock fails
the test instead of hanging it. Models with split kernels match the single-thread results.
"""

from __future__ import annotations

import ctypes
import threading
import time

import numpy as np
import pytest

from neuralc.backends.cpu.compile import compile_for_cpu
from neuralc.backends.cpu.host import TargetSpec
from neuralc.backends.cpu.jit import JitModule
from neuralc.backends.cpu.runtime import CpuExecutable
from neuralc.backends.cpu.threads import MIN_PARALLEL_WORK, pool_ir
from neuralc.driver import compile_source
from neuralc.runtime import samples
from neuralc.runtime.weights import init_weights

HARNESS = """
define internal void @bump(ptr %a, i64 %lo, i64 %hi) nounwind {
entry:
  br label %loop
loop:
  %i = phi i64 [ %lo, %entry ], [ %i1, %body ]
  %more = icmp slt i64 %i, %hi
  br i1 %more, label %body, label %done
body:
  %p = getelementptr i64, ptr %a, i64 %i
  %v = load i64, ptr %p, align 8
  %v1 = add i64 %v, 1
  store i64 %v1, ptr %p, align 8
  %i1 = add i64 %i, 1
  br label %loop
done:
  ret void
}

declare i64 @pthread_self()

; Writes the running thread's id at each index of its chunk, slowly (a few ms per chunk).
define internal void @tag(ptr %a, i64 %lo, i64 %hi) nounwind {
entry:
  %slow = alloca i64, align 8
  br label %loop
loop:
  %i = phi i64 [ %lo, %entry ], [ %i1, %spun ]
  %more = icmp slt i64 %i, %hi
  br i1 %more, label %body, label %done
body:
  %me = call i64 @pthread_self()
  %p = getelementptr i64, ptr %a, i64 %i
  store i64 %me, ptr %p, align 8
  br label %spin
spin:
  %k = phi i64 [ 0, %body ], [ %k1, %spin ]
  store volatile i64 %k, ptr %slow, align 8
  %k1 = add i64 %k, 1
  %again = icmp slt i64 %k1, 2000000
  br i1 %again, label %spin, label %spun
spun:
  %i1 = add i64 %i, 1
  br label %loop
done:
  ret void
}

define void @tag_all(ptr %a, i64 %n) nounwind {
entry:
  call void @nc_parallel(ptr @tag, ptr %a, i64 0, i64 %n, i64 1, i64 WORK)
  ret void
}

; %rounds dispatches alternating over [0, n) step 1 and [0, n) step 3 (forced parallel).
define void @stress(ptr %a, i64 %n, i64 %rounds) nounwind {
entry:
  br label %loop
loop:
  %r = phi i64 [ 0, %entry ], [ %r1, %loop ]
  %bit = and i64 %r, 1
  %odd = icmp ne i64 %bit, 0
  %step = select i1 %odd, i64 3, i64 1
  call void @nc_parallel(ptr @bump, ptr %a, i64 0, i64 %n, i64 %step, i64 WORK)
  %r1 = add i64 %r, 1
  %more = icmp slt i64 %r1, %rounds
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""


@pytest.fixture(scope="module")
def pool() -> JitModule:
    spec = TargetSpec.host()
    ir = HARNESS.replace("WORK", str(MIN_PARALLEL_WORK)) + pool_ir(spec.arch)
    jit = JitModule(ir, spec, use_cache=False)
    start = jit.function("nc_pool_start", ctypes.c_int32, ctypes.c_int32)
    assert start(3) == 3
    yield jit
    jit.function("nc_pool_stop", None)()


def _stress(jit: JitModule, counts: np.ndarray, rounds: int, deadline_s: float) -> None:
    fn = jit.function("stress", None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64)
    t = threading.Thread(target=fn, args=(counts.ctypes.data, counts.size, rounds),
                         daemon=True)
    t.start()
    t.join(deadline_s)
    assert not t.is_alive(), "the pool deadlocked"


def test_two_hundred_thousand_dispatches_run_every_chunk_once(pool: JitModule) -> None:
    counts = np.zeros(37, np.int64)
    _stress(pool, counts, 200_000, 120.0)
    assert (counts == 200_000).all(), counts


def test_the_workers_take_chunks(pool: JitModule) -> None:
    ids = np.zeros(16, np.uint64)
    fn = pool.function("tag_all", None, ctypes.c_void_p, ctypes.c_int64)
    fn(ids.ctypes.data, ids.size)
    assert (ids != 0).all()
    assert len(set(ids.tolist())) >= 2, "every chunk ran on the calling thread"


def test_dispatches_after_the_workers_fell_asleep(pool: JitModule) -> None:
    counts = np.zeros(1000, np.int64)
    for _ in range(5):
        time.sleep(0.02)  # past the spin budget: the workers sleep on the futex
        _stress(pool, counts, 100, 30.0)
    assert (counts == 500).all()


def test_a_pool_restarts_after_a_stop() -> None:
    spec = TargetSpec.host()
    jit = JitModule(HARNESS.replace("WORK", str(MIN_PARALLEL_WORK)) + pool_ir(spec.arch),
                    spec, use_cache=False)
    start = jit.function("nc_pool_start", ctypes.c_int32, ctypes.c_int32)
    stop = jit.function("nc_pool_stop", None)
    counts = np.zeros(64, np.int64)
    for _ in range(3):
        assert start(2) == 2
        _stress(jit, counts, 1000, 30.0)
        stop()
    _stress(jit, counts, 10, 30.0)  # stopped: runs on the calling thread
    assert (counts == 3010).all()


SPLIT_MODEL = """network S {
  input: (24, 24, 8)
  layers:
    Conv2D(32, (3, 3), padding="same", activation="relu")
    Conv2D(32, (3, 3), strides=2, padding="same")
    Flatten()
    Dense(64, activation="relu")
    Dense(10)
}
"""


def test_split_kernels_on_threads_match_one_thread() -> None:
    model = compile_source(SPLIT_MODEL, "s.nr")
    comp = compile_for_cpu(model, 2)
    assert "@nc_parallel" in comp.program.llvm_ir
    weights = init_weights(model.module, seed=3)
    one = CpuExecutable(comp, model, weights, threads=1)
    many = CpuExecutable(comp, model, weights, threads=3)
    assert (one.threads, many.threads) == (1, 3)
    rng = np.random.default_rng(0)
    for batch in (1, 5, 1, 7):
        xs = samples.random_inputs(model.module, {"batch": batch}, rng)
        for _ in range(50):
            want, got = one(xs), many(xs)
            for w, g in zip(want, got):
                np.testing.assert_array_equal(w, g)  # same code, same order per element
    many.close()
    many.close()  # idempotent
