"""Target machines and the LLVM IR -> object code step of the native CPU target.

This is the one module that initialises llvmlite and owns LLVM target machines. Code generation
asks a :class:`TargetSpec` what the machine can do (vector width, features); ``compile_object``
turns LLVM IR text into an optimised relocatable object for that machine, host or cross.

Objects are position independent (``reloc=pic``, small code model): the same bytes load into the
in-process JIT (``jit.py``) and link into PIE executables or shared libraries later.

llvmlite calls are serialised by one lock (``LLVM_LOCK``): LLVM target machines and pass
pipelines are not safe to drive from several threads at once. The lock is never held while
compiled code runs. Each compilation parses into its own LLVM context, so types do not pile up
in the global one.

LLVM reports IR it cannot parse or verify as text; that becomes a :class:`CodegenError`. A crash
inside LLVM's code generator (a fatal "Cannot select") aborts the process and cannot be caught.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import llvmlite.binding as llvm

__all__ = [
    "LLVM_LOCK",
    "CodegenError",
    "TargetSpec",
    "compile_object",
    "emit_assembly",
    "fresh_target_machine",
    "has_target",
    "llvm_version",
    "optimised_ir",
    "target_machine",
]

# Held around every llvmlite call that touches target machines, pass pipelines or engines.
LLVM_LOCK = threading.RLock()
_INITIALISED = False


class CodegenError(Exception):
    """LLVM rejected the IR (parse or verify error) or the target; carries LLVM's own message."""

    def __init__(self, message: str, llvm_message: str = ""):
        self.llvm_message = llvm_message
        super().__init__(f"{message}\n{llvm_message}".rstrip())


def _initialise() -> None:
    """Register every target LLVM was built with and their asm printers (once per process).

    llvmlite 0.50 initialises the LLVM core itself (``llvm.initialize()`` now raises); targets
    and asm printers still need registering. All of them, not only the native one, so that a
    cross triple (``aarch64-linux-gnu`` on x86-64) can emit objects and assembly.
    """
    global _INITIALISED
    if _INITIALISED:
        return
    with LLVM_LOCK:
        if not _INITIALISED:
            llvm.initialize_all_targets()
            llvm.initialize_all_asmprinters()
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _INITIALISED = True


def has_target(triple: str) -> bool:
    """Whether this llvmlite's LLVM can generate code for ``triple`` (e.g. built with AArch64)."""
    _initialise()
    try:
        llvm.Target.from_triple(triple)
    except RuntimeError:
        return False
    return True


def llvm_version() -> str:
    """The LLVM version llvmlite was built against, e.g. ``"22.1.0"``."""
    return ".".join(str(p) for p in llvm.llvm_version_info)


# Features of the named portable targets, listed so that ``has`` answers for them; the cpu name
# already implies them to LLVM.
_X86_64_V1 = ("cmov", "cx8", "fxsr", "sse", "sse2")
_X86_64_V2 = _X86_64_V1 + ("cx16", "popcnt", "sahf", "sse3", "sse4.1", "sse4.2", "ssse3")
_X86_64_V3 = _X86_64_V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_AARCH64_BASE = ("fp-armv8", "neon")
_AARCH64_CPUS: dict[str, tuple[str, ...]] = {
    "generic": _AARCH64_BASE,
    # Armv8.2-A cores: half-precision arithmetic and int8 dot products.
    "cortex-a76": _AARCH64_BASE + ("crc", "dotprod", "fullfp16", "lse", "rcpc", "rdm"),
    "neoverse-n1": _AARCH64_BASE + ("crc", "dotprod", "fullfp16", "lse", "rcpc", "rdm", "ssbs"),
}
_ARCH_ALIASES = {"amd64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64"}


def _features(names: tuple[str, ...]) -> str:
    return ",".join(f"+{n}" for n in names)


@dataclass(frozen=True)
class TargetSpec:
    """A machine to generate code for: LLVM triple, cpu name and feature string.

    ``features`` is LLVM's comma-separated ``+name``/``-name`` list; it is stored sorted so two
    specs for the same machine compare (and cache) equal whatever order they were written in.
    """

    triple: str
    cpu: str = "generic"
    features: str = ""

    def __post_init__(self) -> None:
        items = sorted({f.strip() for f in self.features.split(",") if f.strip()})
        object.__setattr__(self, "features", ",".join(items))

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def host(cls) -> TargetSpec:
        """This machine, with its cpu name and features (without them LLVM emits SSE2 code)."""
        return _host_spec()

    @classmethod
    def x86_64_v3(cls) -> TargetSpec:
        """Portable x86-64 with AVX2 and FMA (Haswell, Zen 1 and later)."""
        return cls("x86_64-unknown-linux-gnu", "x86-64-v3", _features(_X86_64_V3))

    @classmethod
    def x86_64(cls) -> TargetSpec:
        """The x86-64 baseline: SSE2 only, runs on every x86-64 machine."""
        return cls("x86_64-unknown-linux-gnu", "x86-64", _features(_X86_64_V1))

    @classmethod
    def aarch64(cls, cpu: str = "generic") -> TargetSpec:
        """64-bit Arm Linux with NEON; ``cpu`` is ``generic``, ``cortex-a76`` or ``neoverse-n1``."""
        if cpu not in _AARCH64_CPUS:
            raise ValueError(f"unknown aarch64 cpu {cpu!r}; known: {', '.join(_AARCH64_CPUS)}")
        return cls("aarch64-unknown-linux-gnu", cpu, _features(_AARCH64_CPUS[cpu]))

    @classmethod
    def named(cls, name: str) -> TargetSpec:
        """A spec by name: ``host``, ``x86-64-v3``, ``x86-64``, ``aarch64`` or ``aarch64:CPU``."""
        if name == "host":
            return cls.host()
        if name == "x86-64-v3":
            return cls.x86_64_v3()
        if name == "x86-64":
            return cls.x86_64()
        if name == "aarch64" or name.startswith("aarch64:"):
            return cls.aarch64(name.partition(":")[2] or "generic")
        raise ValueError(
            f"unknown cpu target {name!r}; known: host, x86-64-v3, x86-64, aarch64, "
            + ", ".join(f"aarch64:{c}" for c in _AARCH64_CPUS)
        )

    # -- queries -----------------------------------------------------------------------------

    @property
    def arch(self) -> str:
        """The architecture part of the triple, normalised (``x86_64``, ``aarch64``)."""
        arch = self.triple.split("-", 1)[0].lower()
        return _ARCH_ALIASES.get(arch, arch)

    @functools.cached_property
    def enabled_features(self) -> frozenset[str]:
        """The feature names switched on (``+name``) in ``features``."""
        return frozenset(f[1:] for f in self.features.split(",") if f.startswith("+"))

    def has(self, feature: str) -> bool:
        """Whether the machine has ``feature`` (LLVM's name: ``avx512f``, ``fma``, ``neon``...).

        NEON is architectural on AArch64, so it is reported even when the string omits it.
        """
        if feature == "neon" and self.arch == "aarch64":
            return "-neon" not in self.features.split(",")
        return feature in self.enabled_features

    @property
    def vector_bits(self) -> int:
        """The widest float vector register: 512 (AVX-512F), 256 (AVX/AVX2), else 128."""
        if self.arch == "x86_64":
            if self.has("avx512f"):
                return 512
            if self.has("avx2") or self.has("avx"):
                return 256
        return 128

    @property
    def vector_width_f32(self) -> int:
        """How many float32 lanes one vector register holds."""
        return self.vector_bits // 32

    @property
    def data_layout(self) -> str:
        """LLVM's data layout string for this machine (what generated modules should declare)."""
        with LLVM_LOCK:
            return str(target_machine(self).target_data)

    def key(self) -> str:
        """A stable text naming this machine, for cache keys."""
        return f"{self.triple}|{self.cpu}|{self.features}"

    def runs_here(self) -> bool:
        """Whether code for this spec can run on this machine (same arch, no missing feature)."""
        host = TargetSpec.host()
        return self.arch == host.arch and self.enabled_features <= host.enabled_features


@functools.lru_cache(maxsize=1)
def _host_spec() -> TargetSpec:
    _initialise()
    return TargetSpec(
        triple=llvm.get_process_triple(),
        cpu=llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten(),
    )


def _new_target_machine(spec: TargetSpec, opt: int):
    _initialise()
    try:
        target = llvm.Target.from_triple(spec.triple)
    except RuntimeError as exc:
        raise CodegenError(f"LLVM has no target for triple {spec.triple!r}", str(exc)) from None
    return target.create_target_machine(
        cpu=spec.cpu, features=spec.features, opt=opt, reloc="pic", codemodel="default"
    )


@functools.lru_cache(maxsize=32)
def target_machine(spec: TargetSpec, opt: int = 3):
    """The LLVM target machine for ``spec`` at codegen level ``opt`` (0-3), made once per spec.

    Do not hand the returned object to ``create_mcjit_compiler``: the engine takes ownership of
    its target machine and would free this shared one. ``fresh_target_machine`` is for that.
    """
    if not 0 <= opt <= 3:
        raise ValueError(f"opt must be 0..3, got {opt}")
    return _new_target_machine(spec, opt)


def fresh_target_machine(spec: TargetSpec, opt: int = 3):
    """A new, unshared target machine (for an execution engine, which takes ownership)."""
    return _new_target_machine(spec, opt)


@contextlib.contextmanager
def _optimised_module(llvm_ir: str, spec: TargetSpec, opt: int) -> Iterator[tuple[Any, Any]]:
    """Parse, verify and optimise ``llvm_ir`` for ``spec``: yields (module, target machine).

    The module is closed on the way out, before its context can be collected: freeing an LLVM
    context ahead of a module in it (which garbage collection of a cycle may do, e.g. through
    a traceback) crashes the process.
    """
    with LLVM_LOCK:
        tm = target_machine(spec, opt)
        context = llvm.create_context()
        try:
            module = llvm.parse_assembly(llvm_ir, context=context)
        except RuntimeError as exc:
            raise CodegenError("LLVM could not parse the generated IR", _strip(exc)) from None
        try:
            try:
                module.verify()
            except RuntimeError as exc:
                raise CodegenError("LLVM rejected the generated IR", str(exc)) from None
            module.triple = spec.triple
            module.data_layout = str(tm.target_data)
            pto = llvm.create_pipeline_tuning_options(speed_level=opt)
            # The schedule vectorises; LLVM's own vectoriser would only grow the remainders.
            pto.loop_vectorization = False
            pto.slp_vectorization = opt >= 2
            pto.loop_unrolling = False  # likewise: unroll-and-jam is the schedule's
            pto.loop_interleaving = False
            builder = llvm.create_pass_builder(tm, pto)
            builder.getModulePassManager().run(module, builder)
            builder.close()
            pto.close()
            yield module, tm
        finally:
            module.close()


def _strip(exc: BaseException) -> str:
    text = str(exc)
    prefix = "LLVM IR parsing error\n"
    return text[len(prefix) :] if text.startswith(prefix) else text


def compile_object(llvm_ir: str, spec: TargetSpec, opt: int = 3) -> bytes:
    """An ELF relocatable object for ``spec`` from LLVM IR text, optimised at ``-O{opt}``.

    Uses the new pass manager's default per-module pipeline with the target's cost model, so
    the loop and SLP vectorisers see the real vector width. Raises :class:`CodegenError` for IR
    LLVM rejects.
    """
    with _optimised_module(llvm_ir, spec, opt) as (module, tm):
        return bytes(tm.emit_object(module))


def emit_assembly(llvm_ir: str, spec: TargetSpec, opt: int = 3) -> str:
    """The assembly ``compile_object`` would assemble (for tests and ``--emit asm``)."""
    with _optimised_module(llvm_ir, spec, opt) as (module, tm):
        return tm.emit_assembly(module)


def optimised_ir(llvm_ir: str, spec: TargetSpec, opt: int = 3) -> str:
    """The LLVM IR after the optimisation pipeline, as text."""
    with _optimised_module(llvm_ir, spec, opt) as (module, _):
        return str(module)
