"""Running a model's native code in this process: one call per inference.

Loading binds the weights (one pointer table, in the program's order), runs the init program
once (``nc_init``: folded weights and the like), and keeps one 64-byte aligned arena that grows
to the largest size seen. A call checks the inputs against the model's symbolic signature
first (shapes, dtypes, ``dims`` ranges and steps, sizes each layer can take, token indices:
the same checks and messages as every target), so no input can make the generated code read
or write outside its buffers; then it passes pointers to the inputs, fresh outputs, the init
buffers, the weights, the arena and the sizes to ``nc_run``. ctypes releases the GIL for the
call; a lock keeps one inference at a time per executable (they share the arena and the
thread pool). Kernels the schedule split run on the generated code's own thread pool
(:mod:`neuralc.backends.cpu.threads`), started here with ``threads - 1`` workers (default: the
CPUs this process may use) and stopped when the executable is closed or collected.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import numpy as np

from neuralc.backends.base import Executable
from neuralc.backends.cpu.compile import CpuCompilation
from neuralc.backends.cpu.jit import JitModule
from neuralc.frontend.model import CompiledModel
from neuralc.ir.dims import evaluate
from neuralc.ir.numeric import np_dtype
from neuralc.ir.types import MemRefType
from neuralc.runtime.signature import InputError, bind_inputs, select_func
from neuralc.runtime.sizes import check_run

_P = ctypes.c_void_p
ALIGN = 64
GUARD = 256  # bytes of canary before and after every buffer in bounds-checking mode
_CANARY = 0xA5


class BoundsError(RuntimeError):
    """Generated code wrote outside a buffer (found by the guard bytes around it)."""


class _Guarded:
    """Buffers with canary bytes on both sides, checked after each call (``--check-bounds``
    style debugging: a write outside any buffer shows up as a changed canary)."""

    def __init__(self) -> None:
        self.raws: list[tuple[str, np.ndarray]] = []

    def wrap(self, what: str, data: np.ndarray) -> np.ndarray:
        """A copy of ``data`` (contiguous, 64-byte aligned) between two guard zones."""
        n = data.nbytes
        raw = np.full(n + 2 * GUARD + ALIGN, _CANARY, np.uint8)
        start = GUARD + (-(raw.ctypes.data + GUARD)) % ALIGN
        inner = raw[start:start + n].view(data.dtype).reshape(data.shape)
        inner[...] = data
        self.raws.append((what, raw[start - GUARD:start + n + GUARD]))
        return inner

    def check(self) -> None:
        for what, raw in self.raws:
            head, tail = raw[:GUARD], raw[-GUARD:]
            if (head != _CANARY).any() or (tail != _CANARY).any():
                side = "before" if (head != _CANARY).any() else "after"
                raise BoundsError(f"generated code wrote {side} {what}")


def aligned_bytes(n: int) -> np.ndarray:
    """A zeroed byte buffer of ``n`` bytes whose first byte is 64-byte aligned."""
    raw = np.zeros(n + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + n]


def contiguous(a: Any, dtype: str) -> np.ndarray:
    """``a`` as a C-contiguous array of ``dtype``, keeping its shape (``np.ascontiguousarray``
    would turn a 0-d array into a 1-d one)."""
    out = np.asarray(a, dtype=np_dtype(dtype))
    return out if out.flags.c_contiguous else out.copy(order="C")


def _address(a: np.ndarray) -> int:
    """The data pointer of ``a`` (``ndarray.ctypes.data`` costs about a microsecond)."""
    return a.__array_interface__["data"][0]


def _table(arrays: list[np.ndarray]) -> Any:
    return (_P * max(len(arrays), 1))(*[_address(a) for a in arrays])


def _shape(t: MemRefType, env: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(int(evaluate(d, env)) for d in t.shape)


class CpuExecutable(Executable):
    """Native code for one model, loaded with its weights; ``exe(inputs)`` -> outputs."""

    def __init__(self, compilation: CpuCompilation, model: CompiledModel,
                 weights: Mapping[str, np.ndarray], use_cache: bool = True,
                 check_bounds: bool = False, threads: int | None = None):
        program = compilation.program
        self._lock = threading.Lock()  # one inference at a time: one arena, one pool
        self.guard = _Guarded() if check_bounds else None
        self.compilation = compilation
        self.program = program
        self.model = model
        self.func = select_func(model.module)
        self.dims = model.module.attributes.get("dims")
        self.constraints = model.module.attributes.get("dim_constraints")
        self.jit = JitModule(program.llvm_ir, compilation.spec, use_cache=use_cache)
        table = ctypes.POINTER(_P)
        self._run = self.jit.function("nc_run", None, table, table, _P, _P, _P, _P)
        self.weights = [contiguous(weights[n], program.weight_types[n].dtype)
                        for n in program.weights]
        for name, w in zip(program.weights, self.weights):
            want = _shape(program.weight_types[name], {})
            if w.shape != want:
                raise InputError(f"weight '{name}' has shape {w.shape}, expected {want}")
        if self.guard is not None:
            self.weights = [self.guard.wrap(f"weight '{n}'", w)
                            for n, w in zip(program.weights, self.weights)]
        self._weights = _table(self.weights)
        self.init_buffers = [self._buffer(f"init buffer {k}", _shape(t, {}), t.dtype)
                             for k, t in enumerate(program.init_buffers)]
        self._init = _table(self.init_buffers)
        if program.has_init:
            init = self.jit.function("nc_init", None, _P, _P, _P)
            size = max(int(evaluate(program.init_arena_bytes, {})), ALIGN)
            arena = self._buffer("the init arena", (size,), "i8")
            init(ctypes.cast(self._init, _P), ctypes.cast(self._weights, _P), arena.ctypes.data)
            if self.guard is not None:
                self.guard.check()
        self._arena = aligned_bytes(ALIGN)
        self._init_ptr = ctypes.cast(self._init, _P)
        self._weights_ptr = ctypes.cast(self._weights, _P)
        self._plans: dict[tuple, tuple] = {}
        self._token_limits = _token_limits(self.func)
        self.threads = 1
        if "nc_pool_start" in program.llvm_ir:
            want = default_threads() if threads is None else max(int(threads), 1)
            start = self.jit.function("nc_pool_start", ctypes.c_int32, ctypes.c_int32)
            self.threads = 1 + int(start(want - 1))
            stop = self.jit.function("nc_pool_stop", None)
            # Workers run this module's code: stop them before it can be unloaded.
            self._finalizer = weakref.finalize(self, _stop_pool, stop, self.jit)

    def close(self) -> None:
        """Stops the worker threads (also done when the executable is collected)."""
        finalizer = getattr(self, "_finalizer", None)
        if finalizer is not None:
            finalizer()

    def _buffer(self, what: str, shape: tuple[int, ...], dtype: str) -> np.ndarray:
        a = np.zeros(shape, np_dtype(dtype))
        return self.guard.wrap(what, a) if self.guard is not None else a

    def __call__(self, inputs: list[np.ndarray] | dict[str, np.ndarray]) -> list[np.ndarray]:
        fast = self._known_shapes(inputs)
        if fast is not None:
            ins, (sizes, out_shapes, need) = fast
            self._check_tokens(ins)
        else:
            ins, (sizes, out_shapes, need) = self._checked(inputs)
        prog = self.program
        outs = [np.empty(shape, dt) for shape, dt in out_shapes]
        if self.guard is not None:
            ins = [self.guard.wrap(f"input {k}", a) for k, a in enumerate(ins)]
            outs = [self.guard.wrap(f"output {k}", a) for k, a in enumerate(outs)]
            self._arena = self.guard.wrap("the arena", np.zeros(max(need, 1), np.uint8))
        with self._lock:
            if need > self._arena.size and self.guard is None:
                self._arena = aligned_bytes(need)
            self._run(_table(ins), _table(outs), self._init_ptr, self._weights_ptr,
                      _address(self._arena), _address(sizes))
        if self.guard is not None:
            self.guard.check()
            self.guard.raws = self.guard.raws[:len(self.weights) + len(self.init_buffers) + 1]
            return [o.copy() for o in outs]
        del prog
        return outs

    # -- input checks -----------------------------------------------------------------------
    def _checked(self, inputs: Any) -> tuple[list[np.ndarray], tuple]:
        """Every check of the model's signature (the slow path); remembers what the shapes
        gave, so the next call with the same shapes and dtypes checks only token values."""
        arrays, env = bind_inputs(self.func, inputs, self.dims)
        check_run(self.func, arrays, env, self.constraints)
        prog = self.program
        missing = [s for s in prog.symbols if s not in env]
        if missing:
            raise InputError(f"the inputs do not determine the sizes {', '.join(missing)}")
        ins = [contiguous(a, t.dtype) for a, t in zip(arrays, prog.inputs)]
        plan = (np.array([env[s] for s in prog.symbols] or [0], np.int64),
                [(_shape(t, env), np_dtype(t.dtype)) for t in prog.outputs],
                int(evaluate(prog.arena_bytes, env)))
        if len(self._plans) < 64:
            self._plans[_shape_key(ins)] = plan
        return ins, plan

    def _known_shapes(self, inputs: Any) -> tuple[list[np.ndarray], tuple] | None:
        """The cached plan when ``inputs`` are arrays in order with shapes, dtypes and layout
        already checked once."""
        if not isinstance(inputs, (list, tuple)) or not self._plans:
            return None
        if not all(type(a) is np.ndarray and a.flags.c_contiguous for a in inputs):
            return None
        plan = self._plans.get(_shape_key(inputs))
        return None if plan is None else (list(inputs), plan)

    def _check_tokens(self, ins: list[np.ndarray]) -> None:
        """Token ids must be in range on every call: they are values, not shapes."""
        for k, rows, what in self._token_limits:
            x = ins[k]
            if x.size and (int(x.min()) < 0 or int(x.max()) >= rows):
                bad = int(x.min()) if int(x.min()) < 0 else int(x.max())
                raise InputError(f"{what} holds the token index {bad}, but the embedding it "
                                 f"feeds has {rows} rows (indices 0 to {rows - 1})")


def default_threads() -> int:
    """The CPUs this process may run on (its affinity mask, not the machine's count)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def _stop_pool(stop: Any, jit: JitModule) -> None:
    """``nc_pool_stop`` (``jit`` kept alive until then, so the code is still loaded)."""
    stop()
    del jit


def _shape_key(arrays: list[np.ndarray] | tuple) -> tuple:
    return tuple((a.shape, a.dtype.str) for a in arrays)


def _token_limits(func: Any) -> list[tuple[int, int, str]]:
    """(input position, embedding rows, name) for every input that feeds an embedding."""
    from neuralc.ir.core import network_inputs
    from neuralc.runtime.sizes import embedding_attrs

    out = []
    for k, arg in enumerate(network_inputs(func)):
        for user in arg.users():
            attrs = embedding_attrs(user)
            if attrs is not None:
                out.append((k, int(attrs["input_dim"]), f"input '{arg.name_hint}'"))
    return out
