"""Loading compiled LLVM IR into this process and calling it through ctypes.

A :class:`JitModule` compiles IR text with ``host.compile_object`` (or takes the object from the
on-disk cache) and loads that object into an MCJIT execution engine: an empty module plus
``add_object_file``. Loading the very bytes that would be cached or linked into an executable
means the JIT runs the same code the artifact ships, and a cache hit skips LLVM's optimiser
and code generator entirely. RuntimeDyld resolves the object's relocations: constant pools,
calls between its functions, and libc symbols (``memset``/``memcpy`` that LLVM emits for
``llvm.memset``/``llvm.memcpy``) from the process.

Functions come back as ctypes ``CFUNCTYPE`` callables, which release the GIL for the length of
the native call, so a long inference does not stall other Python threads. Each callable keeps
its JitModule (and so the engine and the code memory) alive.
"""

from __future__ import annotations

import ctypes
import time
from typing import Any

import llvmlite.binding as llvm

from neuralc.backends.base import BackendUnavailable
from neuralc.backends.cpu import cache
from neuralc.backends.cpu.host import (
    LLVM_LOCK,
    TargetSpec,
    compile_object,
    fresh_target_machine,
)
from neuralc.backends.cpu.objfile import unresolved

__all__ = ["JitModule"]


class JitModule:
    """Native code for ``llvm_ir`` loaded into this process.

    ``spec`` defaults to the host and must describe code this machine can run (same
    architecture, no feature the host lacks): a portable spec such as ``x86-64-v3`` is fine.
    ``compile_seconds`` is the wall time from IR text to callable code (a cache hit makes it
    small); ``from_cache`` says whether the object came from the cache; ``object_code`` is the
    loaded object, for writing next to an executable.
    """

    def __init__(
        self,
        llvm_ir: str,
        spec: TargetSpec | None = None,
        *,
        use_cache: bool = True,
        opt: int = 3,
    ):
        spec = spec if spec is not None else TargetSpec.host()
        if not spec.runs_here():
            host = TargetSpec.host()
            missing = sorted(spec.enabled_features - host.enabled_features)
            why = (
                f"architecture {spec.arch}, host is {host.arch}"
                if spec.arch != host.arch
                else f"host lacks {', '.join(missing)}"
            )
            raise ValueError(f"cannot run code for {spec.triple}/{spec.cpu} here: {why}")
        self.spec = spec
        start = time.perf_counter()
        obj: bytes | None = None
        key = cache.cache_key(llvm_ir, spec, opt) if use_cache else None
        if key is not None:
            obj = cache.load(key)
        self.from_cache = obj is not None
        if obj is None:
            obj = compile_object(llvm_ir, spec, opt)
            if key is not None:
                cache.store(key, obj)
        self.object_code = obj
        missing = unresolved(obj)
        if missing:
            raise BackendUnavailable(
                f"the native code for {spec.cpu} calls {', '.join(missing)}, which this "
                "process does not provide (a conversion this CPU has no instruction for); "
                "use fp32, or another target")
        self._engine = self._load(obj, spec)
        self.compile_seconds = time.perf_counter() - start

    @staticmethod
    def _load(obj: bytes, spec: TargetSpec) -> Any:
        with LLVM_LOCK:
            # The engine takes ownership of its target machine and of the (empty) module. The
            # module lives in the global context, which is never freed before the engine is.
            module = llvm.parse_assembly("")
            module.triple = spec.triple
            engine = llvm.create_mcjit_compiler(module, fresh_target_machine(spec))
            engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            engine.finalize_object()
        return engine

    def address(self, symbol: str) -> int:
        """The address of an external function or global in the loaded code (KeyError if none)."""
        with LLVM_LOCK:
            addr = self._engine.get_function_address(symbol)
        if not addr:
            raise KeyError(f"no symbol {symbol!r} in the compiled module")
        return addr

    def function(self, symbol: str, restype: Any, *argtypes: Any) -> Any:
        """``symbol`` as a ctypes callable with the given C signature (GIL released per call).

        The callable is an instance of ``ctypes.CFUNCTYPE(restype, *argtypes)`` and holds a
        reference to this module, so the code stays mapped while the callable lives.
        """
        fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(symbol))
        fn._jit_module = self
        return fn
