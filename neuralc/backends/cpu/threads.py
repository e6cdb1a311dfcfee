"""A thread pool inside the generated code, as LLVM IR text.

The host program runs a kernel that the schedule split (``split_work`` on one of its loops)
through ``nc_parallel(task, args, lo, hi, step, work)``: ``task(args, lo', hi')`` runs the
kernel's iterations ``[lo', hi')`` of that loop. ``nc_parallel`` runs the whole range on the
calling thread when the pool is not started, when ``work`` (the cost model's estimate in
element operations) is below :data:`MIN_PARALLEL_WORK` (a dispatch costs about a microsecond),
or when the range has fewer than two steps; otherwise it publishes the task, wakes sleeping
workers, and takes chunks itself until none is left, then waits for the chunks others took.

Workers spin on a generation counter (``pause`` between reads) for about a millisecond after
their last task, then sleep on it with ``futex`` (the caller wakes them only when one sleeps).
Correctness under races, the part that is easy to get wrong:

- The task's fields are written under a sequence lock (odd while being written); a worker
  reads them until it sees the same even sequence before and after, so it never acts on a
  torn task.
- Chunks are claimed by compare-and-swap on one 64-bit word holding (generation, next
  chunk); a claim succeeds only for the generation of the task the worker read, so a worker
  that read an old task can never take a chunk of a newer one.
- The caller returns only when every chunk of its generation is done, and resets the done
  count before publishing the next generation, so no late increment can be counted twice.
- A worker announces itself as a sleeper before re-checking the generation and sleeping
  with the generation it saw as the futex's expected value; the caller publishes before
  reading the sleeper count (all sequentially consistent), so a wake-up is never lost.
- A worker checks the quit flag each time it starts waiting, not only when the generation
  moves: one that starts after a stop has already moved the generation would otherwise wait
  for a change that never comes (and its join would hang).

``nc_pool_start(n)`` starts ``n`` workers (the caller is one more thread), ``nc_pool_stop()``
stops and joins them (before the code is unloaded). A process that forked after the start
runs every kernel on its calling thread (the pool remembers its process id).
"""

from __future__ import annotations

MIN_PARALLEL_WORK = 30000  # element operations; below this a kernel stays on one thread
CHUNKS_PER_THREAD = 2  # chunks per thread (the caller included), for balance
SPIN = 1 << 15  # pause iterations before a worker sleeps (about a millisecond)
MAX_THREADS = 64

_SYS_FUTEX = {"x86_64": 202, "aarch64": 98}
_PAUSE = {"x86_64": "call void @llvm.x86.sse2.pause()",
          "aarch64": "call void @llvm.aarch64.hint(i32 1)"}
_FUTEX_WAIT, _FUTEX_WAKE = 128, 129  # the _PRIVATE forms


def pool_ir(arch: str) -> str:
    """The pool's globals and functions for ``arch`` (x86_64 or aarch64)."""
    if arch not in _SYS_FUTEX:
        raise ValueError(f"no thread pool for architecture {arch}")
    pause, futex = _PAUSE[arch], _SYS_FUTEX[arch]
    return f"""
%nc.task = type {{ ptr, ptr, i64, i64, i64, i64, i64 }}
@nc_pool_gen = internal global i32 0, align 64
@nc_pool_sleepers = internal global i32 0, align 64
@nc_pool_claim = internal global i64 0, align 64
@nc_pool_done = internal global i64 0, align 64
@nc_pool_seq = internal global i64 0, align 64
@nc_pool_task = internal global %nc.task zeroinitializer, align 64
@nc_pool_threads = internal global i32 0, align 64
@nc_pool_quit = internal global i32 0
@nc_pool_pid = internal global i32 0
@nc_pool_tids = internal global [{MAX_THREADS} x i64] zeroinitializer

declare i32 @pthread_create(ptr, ptr, ptr, ptr)
declare i32 @pthread_join(i64, ptr)
declare i32 @getpid()
declare i64 @syscall(i64, ...)

; Takes chunks of generation %g until none is left: chunk n is [lo + n*chunk, +chunk) & hi.
define internal void @nc_pool_work(i64 %g, ptr %fn, ptr %args, i64 %lo, i64 %hi, i64 %chunk,
                                   i64 %nchunks) nounwind {{
entry:
  br label %claim
claim:
  %c = load atomic i64, ptr @nc_pool_claim seq_cst, align 8
  %cg = lshr i64 %c, 32
  %same = icmp eq i64 %cg, %g
  br i1 %same, label %check, label %out
check:
  %n = and i64 %c, 4294967295
  %more = icmp ult i64 %n, %nchunks
  br i1 %more, label %take, label %out
take:
  %c1 = add i64 %c, 1
  %pair = cmpxchg ptr @nc_pool_claim, i64 %c, i64 %c1 seq_cst seq_cst
  %ok = extractvalue {{ i64, i1 }} %pair, 1
  br i1 %ok, label %run, label %claim
run:
  %off = mul i64 %n, %chunk
  %clo = add i64 %lo, %off
  %cend = add i64 %clo, %chunk
  %chi = call i64 @llvm.smin.i64(i64 %cend, i64 %hi)
  call void %fn(ptr %args, i64 %clo, i64 %chi)
  atomicrmw add ptr @nc_pool_done, i64 1 seq_cst
  br label %claim
out:
  ret void
}}

define internal void @nc_parallel(ptr %fn, ptr %args, i64 %lo, i64 %hi, i64 %step,
                                  i64 %work) nounwind {{
entry:
  %span = sub i64 %hi, %lo
  %span1 = add i64 %span, %step
  %span2 = sub i64 %span1, 1
  %steps = sdiv i64 %span2, %step
  %threads = load atomic i32, ptr @nc_pool_threads monotonic, align 4
  %none = icmp eq i32 %threads, 0
  %iters = mul i64 %span, %work
  %small = icmp slt i64 %iters, {MIN_PARALLEL_WORK}
  %few = icmp slt i64 %steps, 2
  %a = or i1 %none, %small
  %alone = or i1 %a, %few
  br i1 %alone, label %inline, label %pidcheck
pidcheck:
  %pid = call i32 @getpid()
  %owner = load i32, ptr @nc_pool_pid, align 4
  %forked = icmp ne i32 %pid, %owner
  br i1 %forked, label %inline, label %publish
inline:
  call void %fn(ptr %args, i64 %lo, i64 %hi)
  ret void
publish:
  %t64 = zext i32 %threads to i64
  %all = add i64 %t64, 1
  %want = mul i64 %all, {CHUNKS_PER_THREAD}
  %nc0 = call i64 @llvm.smin.i64(i64 %steps, i64 %want)
  %per0 = add i64 %steps, %nc0
  %per1 = sub i64 %per0, 1
  %per = sdiv i64 %per1, %nc0
  %nc1 = add i64 %steps, %per
  %nc2 = sub i64 %nc1, 1
  %nchunks = sdiv i64 %nc2, %per
  %chunk = mul i64 %per, %step
  %g0 = load atomic i32, ptr @nc_pool_gen seq_cst, align 4
  %g32 = add i32 %g0, 1
  %g = zext i32 %g32 to i64
  atomicrmw add ptr @nc_pool_seq, i64 1 seq_cst
  store atomic ptr %fn, ptr @nc_pool_task monotonic, align 8
  %f1 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 1
  store atomic ptr %args, ptr %f1 monotonic, align 8
  %f2 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 2
  store atomic i64 %lo, ptr %f2 monotonic, align 8
  %f3 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 3
  store atomic i64 %hi, ptr %f3 monotonic, align 8
  %f4 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 4
  store atomic i64 %chunk, ptr %f4 monotonic, align 8
  %f5 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 5
  store atomic i64 %nchunks, ptr %f5 monotonic, align 8
  %f6 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 6
  store atomic i64 %g, ptr %f6 monotonic, align 8
  atomicrmw add ptr @nc_pool_seq, i64 1 seq_cst
  store atomic i64 0, ptr @nc_pool_done seq_cst, align 8
  %claim0 = shl i64 %g, 32
  store atomic i64 %claim0, ptr @nc_pool_claim seq_cst, align 8
  store atomic i32 %g32, ptr @nc_pool_gen seq_cst, align 4
  %sleepers = load atomic i32, ptr @nc_pool_sleepers seq_cst, align 4
  %wake = icmp sgt i32 %sleepers, 0
  br i1 %wake, label %wakeup, label %dowork
wakeup:
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr @nc_pool_gen, i32 {_FUTEX_WAKE},
                                    i32 2147483647)
  br label %dowork
dowork:
  call void @nc_pool_work(i64 %g, ptr %fn, ptr %args, i64 %lo, i64 %hi, i64 %chunk,
                          i64 %nchunks)
  br label %wait
wait:
  %d = load atomic i64, ptr @nc_pool_done seq_cst, align 8
  %finished = icmp sge i64 %d, %nchunks
  br i1 %finished, label %done, label %spin
spin:
  {pause}
  br label %wait
done:
  ret void
}}

define internal ptr @nc_pool_worker(ptr %unused) nounwind {{
entry:
  %seen0 = load atomic i32, ptr @nc_pool_gen seq_cst, align 4
  br label %wait
wait:
  %seen = phi i32 [ %seen0, %entry ], [ %seen, %slept ], [ %cur, %ran ]
  %quit0 = load atomic i32, ptr @nc_pool_quit seq_cst, align 4
  %stop0 = icmp ne i32 %quit0, 0
  br i1 %stop0, label %exit, label %spin
spin:
  %k = phi i32 [ 0, %wait ], [ %k1, %spin.next ]
  %g = load atomic i32, ptr @nc_pool_gen seq_cst, align 4
  %changed = icmp ne i32 %g, %seen
  br i1 %changed, label %go, label %spin.next
spin.next:
  {pause}
  %k1 = add i32 %k, 1
  %tired = icmp sge i32 %k1, {SPIN}
  br i1 %tired, label %sleep, label %spin
sleep:
  atomicrmw add ptr @nc_pool_sleepers, i32 1 seq_cst
  %g2 = load atomic i32, ptr @nc_pool_gen seq_cst, align 4
  %still = icmp eq i32 %g2, %seen
  br i1 %still, label %futex, label %awake
futex:
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr @nc_pool_gen, i32 {_FUTEX_WAIT},
                                    i32 %seen, ptr null)
  br label %awake
awake:
  atomicrmw sub ptr @nc_pool_sleepers, i32 1 seq_cst
  br label %slept
slept:
  br label %wait
go:
  %cur = phi i32 [ %g, %spin ]
  %quit = load atomic i32, ptr @nc_pool_quit seq_cst, align 4
  %stop = icmp ne i32 %quit, 0
  br i1 %stop, label %exit, label %read
read:
  %s1 = load atomic i64, ptr @nc_pool_seq seq_cst, align 8
  %odd = and i64 %s1, 1
  %writing = icmp ne i64 %odd, 0
  br i1 %writing, label %read.again, label %fields
read.again:
  {pause}
  br label %read
fields:
  %fn = load atomic ptr, ptr @nc_pool_task monotonic, align 8
  %p1 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 1
  %args = load atomic ptr, ptr %p1 monotonic, align 8
  %p2 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 2
  %lo = load atomic i64, ptr %p2 monotonic, align 8
  %p3 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 3
  %hi = load atomic i64, ptr %p3 monotonic, align 8
  %p4 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 4
  %chunk = load atomic i64, ptr %p4 monotonic, align 8
  %p5 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 5
  %nchunks = load atomic i64, ptr %p5 monotonic, align 8
  %p6 = getelementptr %nc.task, ptr @nc_pool_task, i32 0, i32 6
  %tg = load atomic i64, ptr %p6 monotonic, align 8
  %s2 = load atomic i64, ptr @nc_pool_seq seq_cst, align 8
  %torn = icmp ne i64 %s1, %s2
  br i1 %torn, label %read, label %run
run:
  call void @nc_pool_work(i64 %tg, ptr %fn, ptr %args, i64 %lo, i64 %hi, i64 %chunk,
                          i64 %nchunks)
  br label %ran
ran:
  br label %wait
exit:
  ret ptr null
}}

; Starts up to %n workers (the caller is one more thread); returns how many run.
define i32 @nc_pool_start(i32 %n) nounwind {{
entry:
  %have = load i32, ptr @nc_pool_threads, align 4
  %started = icmp ne i32 %have, 0
  br i1 %started, label %already, label %init
already:
  ret i32 %have
init:
  %pid = call i32 @getpid()
  store i32 %pid, ptr @nc_pool_pid, align 4
  store atomic i32 0, ptr @nc_pool_quit seq_cst, align 4
  %n1 = call i32 @llvm.smin.i32(i32 %n, i32 {MAX_THREADS})
  br label %loop
loop:
  %i = phi i32 [ 0, %init ], [ %i1, %next ]
  %count = phi i32 [ 0, %init ], [ %count1, %next ]
  %more = icmp slt i32 %i, %n1
  br i1 %more, label %create, label %finish
create:
  %slot = getelementptr [{MAX_THREADS} x i64], ptr @nc_pool_tids, i32 0, i32 %count
  %rc = call i32 @pthread_create(ptr %slot, ptr null, ptr @nc_pool_worker, ptr null)
  %ok = icmp eq i32 %rc, 0
  %inc = zext i1 %ok to i32
  %count1 = add i32 %count, %inc
  br label %next
next:
  %i1 = add i32 %i, 1
  br label %loop
finish:
  store atomic i32 %count, ptr @nc_pool_threads seq_cst, align 4
  ret i32 %count
}}

; Stops and joins the workers (call before the code is unloaded).
define void @nc_pool_stop() nounwind {{
entry:
  %have = load i32, ptr @nc_pool_threads, align 4
  %none = icmp eq i32 %have, 0
  br i1 %none, label %out, label %stop
stop:
  store atomic i32 0, ptr @nc_pool_threads seq_cst, align 4
  store atomic i32 1, ptr @nc_pool_quit seq_cst, align 4
  atomicrmw add ptr @nc_pool_gen, i32 1 seq_cst
  %r = call i64 (i64, ...) @syscall(i64 {futex}, ptr @nc_pool_gen, i32 {_FUTEX_WAKE},
                                    i32 2147483647)
  br label %loop
loop:
  %i = phi i32 [ 0, %stop ], [ %i1, %loop ]
  %slot = getelementptr [{MAX_THREADS} x i64], ptr @nc_pool_tids, i32 0, i32 %i
  %tid = load i64, ptr %slot, align 8
  %j = call i32 @pthread_join(i64 %tid, ptr null)
  %i1 = add i32 %i, 1
  %more = icmp slt i32 %i1, %have
  br i1 %more, label %loop, label %out
out:
  ret void
}}
"""
