"""The ``cpu`` variant of an artifact: the native CPU target's object code, run in-process.

Building compiles the model for one or more CPU levels, each an entry of its own:

- the host's level, always: ``cpu-avx512`` (x86-64-v4: AVX-512 F/BW/CD/DQ/VL) where the host
  has it, else ``cpu-x86-64-v3`` (AVX2, FMA), else ``cpu-x86-64`` (SSE2); ``cpu-aarch64`` on
  Arm. The host entry is compiled for the portable level, not for this exact processor model,
  so the artifact runs on every machine of that level and says what it needs in plain
  /proc/cpuinfo names (``cpu-avx512: host lacks avx512f``);
- more levels when asked: ``options["cpu_levels"]`` of the build (``host``, ``x86-64-v3``,
  ``x86-64``, ``aarch64``), else the ``NEURALC_CPU_LEVELS`` environment variable
  (``x86-64-v3,aarch64``).

Each entry holds the relocatable object (``model.o``, PIC) and ``program.json``: the entry
points' table orders and buffer types (symbols, weights, inputs, outputs, load-time buffers,
arena sizes as dim expressions). Loading reads the JSON with ``json`` and the dims with
neuralc's dim parser, and hands the digest-checked object to LLVM's loader (MCJIT's
RuntimeDyld, as the JIT does): nothing is recompiled, and nothing but neuralc's own kernels
for this machine runs. The inputs are checked by the caller (``neuralc.api.model.Model``,
the same checks as every variant) before :meth:`CpuRunner.run`. The runner starts no thread
pool: where the code generator emits one, its kernels run on the calling thread. Calls from
several threads run one at a time (they share the arena; ctypes releases the GIL).
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
from collections.abc import Mapping
from typing import Any

import llvmlite.binding as llvm
import numpy as np

from neuralc.backends.cpu import objfile
from neuralc.backends.cpu.host import LLVM_LOCK, TargetSpec, fresh_target_machine
from neuralc.ir.dims import Dim, evaluate, parse_dim, symbols
from neuralc.ir.numeric import np_dtype
from neuralc.ir.types import ELEMENT_TYPES, MemRefType
from neuralc.runtime.artifact import ArtifactError
from neuralc.runtime.artifact_variants import (
    BuildInput,
    LoadInput,
    Runner,
    Variant,
    VariantEntry,
    VariantUnavailable,
    register_variant,
)
from neuralc.runtime.signature import bind_inputs, select_func

PROGRAM_FORMAT = 1
ALIGN = 64
_P = ctypes.c_void_p

# LLVM's features of each portable level (what `TargetSpec.has` answers) and what the host must
# show in /proc/cpuinfo to run it (the selection probe's names), most telling first.
_V2 = ("cmov", "cx16", "cx8", "fxsr", "popcnt", "sahf", "sse", "sse2", "sse3", "sse4.1",
       "sse4.2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
_CPUINFO_V2 = ("cx16", "popcnt", "lahf_lm", "pni", "sse4_1", "sse4_2", "ssse3")
_CPUINFO_V3 = ("avx2", "fma", "avx", "bmi1", "bmi2", "f16c", "abm", "movbe", "xsave") + _CPUINFO_V2
_CPUINFO_V4 = ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl") + _CPUINFO_V3


def _features(names: tuple[str, ...]) -> str:
    return ",".join(f"+{n}" for n in names)


# name -> (entry name, spec, requires, summary)
LEVELS: dict[str, tuple[str, TargetSpec, dict[str, Any], str]] = {
    "x86-64-v4": ("cpu-avx512",
                  TargetSpec("x86_64-unknown-linux-gnu", "x86-64-v4", _features(_V4)),
                  {"arch": "x86_64", "cpu_features": list(_CPUINFO_V4)},
                  "neuralc's native x86-64-v4 code with AVX-512, run in-process"),
    "x86-64-v3": ("cpu-x86-64-v3", TargetSpec.x86_64_v3(),
                  {"arch": "x86_64", "cpu_features": list(_CPUINFO_V3)},
                  "neuralc's native x86-64-v3 code with AVX2 and FMA, run in-process"),
    "x86-64": ("cpu-x86-64", TargetSpec.x86_64(), {"arch": "x86_64", "cpu_features": []},
               "neuralc's native baseline x86-64 code, run in-process"),
    "aarch64": ("cpu-aarch64", TargetSpec.aarch64(), {"arch": "aarch64", "cpu_features": ["neon"]},
                "neuralc's native aarch64 code with NEON, run in-process"),
}


def host_level() -> str:
    """The best portable level this machine runs (``x86-64-v4`` here with AVX-512)."""
    host = TargetSpec.host()
    if host.arch == "aarch64":
        return "aarch64"
    if host.arch != "x86_64":
        raise VariantUnavailable(f"the cpu target generates code for x86_64 and aarch64, not "
                                 f"{host.arch}")
    for level in ("x86-64-v4", "x86-64-v3"):
        if LEVELS[level][1].enabled_features <= host.enabled_features:
            return level
    return "x86-64"


def requested_levels(options: Mapping[str, Any]) -> list[str]:
    """The levels to build: the host's, then those asked for (option or environment)."""
    asked = options.get("cpu_levels")
    if asked is None:
        asked = [s for s in os.environ.get("NEURALC_CPU_LEVELS", "").split(",") if s.strip()]
    if isinstance(asked, str):
        asked = asked.split(",")
    levels = [host_level()]
    for raw in asked:
        name = str(raw).strip()
        name = host_level() if name == "host" else name
        if name not in LEVELS:
            raise VariantUnavailable(f"unknown cpu level '{name}'; known: host, "
                                     f"{', '.join(LEVELS)}")
        if name not in levels:
            levels.append(name)
    return levels


# -- the program's tables, as JSON ----------------------------------------------------------


def _type_json(t: MemRefType) -> dict[str, Any]:
    return {"dtype": t.dtype, "shape": [d if isinstance(d, int) else str(d) for d in t.shape]}


def _type_from(entry: Any, what: str) -> MemRefType:
    try:
        dtype = str(entry["dtype"])
        if dtype not in ELEMENT_TYPES:
            raise ValueError(f"element type {dtype!r}")
        shape = tuple(d if isinstance(d, int) else parse_dim(str(d)) for d in entry["shape"])
        return MemRefType(shape, dtype)
    except (KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{what}: a buffer type is invalid ({e})") from None


def program_json(program: Any, spec: TargetSpec) -> bytes:
    """The tables a loader needs to call ``nc_run``/``nc_init`` (see the module docstring)."""
    data = {
        "format": PROGRAM_FORMAT,
        "network": program.network,
        "target": {"triple": spec.triple, "cpu": spec.cpu, "features": spec.features},
        "symbols": list(program.symbols),
        "weights": [{"name": n, **_type_json(program.weight_types[n])} for n in program.weights],
        "inputs": [_type_json(t) for t in program.inputs],
        "outputs": [_type_json(t) for t in program.outputs],
        "init_buffers": [_type_json(t) for t in program.init_buffers],
        "arena_bytes": str(program.arena_bytes),
        "init_arena_bytes": str(program.init_arena_bytes),
        "has_init": bool(program.has_init),
    }
    return json.dumps(data, indent=1).encode()


class ProgramTables:
    """``program.json`` read back: orders and types of the entry points' tables."""

    def __init__(self, data: bytes, what: str):
        try:
            d = json.loads(data.decode("utf-8"))
            if d.get("format") != PROGRAM_FORMAT:
                raise ValueError(f"format {d.get('format')!r}, expected {PROGRAM_FORMAT}")
            t = d["target"]
            self.spec = TargetSpec(str(t["triple"]), str(t["cpu"]), str(t["features"]))
            self.symbols = [str(s) for s in d["symbols"]]
            self.weights = [str(w["name"]) for w in d["weights"]]
            self.weight_types = {str(w["name"]): _type_from(w, what) for w in d["weights"]}
            self.inputs = [_type_from(x, what) for x in d["inputs"]]
            self.outputs = [_type_from(x, what) for x in d["outputs"]]
            self.init_buffers = [_type_from(x, what) for x in d["init_buffers"]]
            self.arena_bytes: Dim = parse_dim(str(d["arena_bytes"]))
            self.init_arena_bytes: Dim = parse_dim(str(d["init_arena_bytes"]))
            self.has_init = bool(d["has_init"])
        except ArtifactError:
            raise
        except (KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
            raise ArtifactError(f"{what}: the program tables are invalid ({e})") from None


# -- loading an object file into this process ----------------------------------------------


class ObjectModule:
    """A relocatable object (neuralc's kernels) loaded into this process by LLVM's RuntimeDyld,
    as :class:`neuralc.backends.cpu.jit.JitModule` does with the objects it compiles."""

    def __init__(self, obj: bytes, spec: TargetSpec):
        if not spec.runs_here():
            host = TargetSpec.host()
            missing = sorted(spec.enabled_features - host.enabled_features)
            why = (f"this host is {host.arch}" if spec.arch != host.arch
                   else f"this host lacks {', '.join(missing)}")
            raise ArtifactError(f"the cpu code is for {spec.arch} ({spec.cpu}); {why}")
        with LLVM_LOCK:
            module = llvm.parse_assembly("")
            module.triple = spec.triple
            self._engine = llvm.create_mcjit_compiler(module, fresh_target_machine(spec))
            self._engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
            self._engine.finalize_object()

    def function(self, symbol: str, *argtypes: Any) -> Any:
        """``symbol`` as a ctypes callable returning void (the GIL is released per call)."""
        with LLVM_LOCK:
            addr = self._engine.get_function_address(symbol)
        if not addr:
            raise ArtifactError(f"the cpu object has no function {symbol}")
        fn = ctypes.CFUNCTYPE(None, *argtypes)(addr)
        fn._module = self
        return fn


def undefined_symbols(obj: bytes) -> list[str]:
    """The global symbols the object uses but does not define (ArtifactError if it is no
    64-bit little-endian ELF object)."""
    try:
        return objfile.undefined_symbols(obj)
    except objfile.ObjectFileError as e:
        raise ArtifactError(f"the cpu code {e}") from None


def unresolved(obj: bytes) -> list[str]:
    """What the object needs that this process cannot give it."""
    try:
        return objfile.unresolved(obj)
    except objfile.ObjectFileError as e:
        raise ArtifactError(f"the cpu code {e}") from None


def _aligned(n: int) -> np.ndarray:
    raw = np.zeros(n + ALIGN, np.uint8)
    start = (-raw.ctypes.data) % ALIGN
    return raw[start:start + n]


def _table(arrays: list[np.ndarray]) -> Any:
    return (_P * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])


def _shape(t: MemRefType, env: Mapping[str, int]) -> tuple[int, ...]:
    return tuple(int(evaluate(d, env)) for d in t.shape)


def _weight(value: Any, t: MemRefType, name: str) -> np.ndarray:
    a = np.asarray(value, dtype=np_dtype(t.dtype))
    if not a.flags.c_contiguous:  # not np.ascontiguousarray: it makes a 0-d weight 1-d
        a = a.copy(order="C")
    if a.shape != _shape(t, {}):
        raise ArtifactError(f"weight '{name}' has shape {a.shape}, expected {_shape(t, {})}")
    return a


class CpuRunner(Runner):
    """The loaded object with its weights and load-time buffers; one native call per run."""

    device = "cpu"

    def __init__(self, module: ObjectModule, tables: ProgramTables, li: LoadInput):
        self.tables = tables
        self.func = select_func(li.model.module)
        self.dims = li.model.module.attributes.get("dims")
        self._run = module.function("nc_run", _P, _P, _P, _P, _P, _P)
        missing = [n for n in tables.weights if n not in li.weights]
        if missing:
            raise ArtifactError(f"the weights lack '{missing[0]}', which the cpu code reads")
        self.weights = [_weight(li.weights[n], tables.weight_types[n], n) for n in tables.weights]
        self._weights = _table(self.weights)
        self.init = [np.zeros(_shape(t, {}), np_dtype(t.dtype)) for t in tables.init_buffers]
        self._init = _table(self.init)
        if tables.has_init:
            init = module.function("nc_init", _P, _P, _P)
            arena = _aligned(max(int(evaluate(tables.init_arena_bytes, {})), ALIGN))
            init(ctypes.cast(self._init, _P), ctypes.cast(self._weights, _P), arena.ctypes.data)
        self._arena = _aligned(ALIGN)
        self._lock = threading.Lock()  # one call at a time: they share the arena

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        # The arrays passed every input check already; binding again gives the sizes.
        arrays, env = bind_inputs(self.func, arrays, self.dims)
        t = self.tables
        ins = [np.ascontiguousarray(a.astype(np_dtype(x.dtype), copy=False))
               for a, x in zip(arrays, t.inputs)]
        outs = [np.empty(_shape(x, env), np_dtype(x.dtype)) for x in t.outputs]
        need = int(evaluate(t.arena_bytes, env))
        sizes = np.array([env[s] for s in t.symbols] or [0], np.int64)
        with self._lock:
            if need > self._arena.size:
                self._arena = _aligned(need)
            self._run(ctypes.cast(_table(ins), _P), ctypes.cast(_table(outs), _P),
                      ctypes.cast(self._init, _P), ctypes.cast(self._weights, _P),
                      self._arena.ctypes.data, sizes.ctypes.data)
        return outs


def _members(name: str) -> tuple[str, str]:
    return f"variants/{name}/model.o", f"variants/{name}/program.json"


@register_variant
class CpuVariant(Variant):
    kind = "cpu"
    device = "cpu"
    summary = "neuralc's native code for this CPU, run in-process"

    def build(self, b: BuildInput) -> list[VariantEntry]:
        from neuralc.backends.cpu.compile import compile_for_cpu
        from neuralc.backends.cpu.edge.build import object_code

        entries = []
        for level in requested_levels(b.options):
            name, spec, requires, summary = LEVELS[level]
            comp = compile_for_cpu(b.model, b.opt_level, b.precision, spec)
            given = {s for t in comp.program.inputs for d in t.shape for s in symbols(d)}
            missing = [s for s in comp.program.symbols if s not in given]
            if missing:
                raise VariantUnavailable(f"the inputs do not determine the sizes "
                                         f"{', '.join(missing)}")
            code = object_code(comp.program.llvm_ir, spec, True)
            missing = unresolved(code) if spec.arch == TargetSpec.host().arch else []
            if missing:
                raise VariantUnavailable(f"{name} needs {', '.join(missing)}, which this "
                                         "process's C runtime lacks, for precision "
                                         f"{b.precision} on {spec.cpu}")
            obj, tables = _members(name)
            entries.append(VariantEntry(
                name, self.kind, self.device, summary, requires=dict(requires),
                files={obj: code, tables: program_json(comp.program, spec)},
                meta={"level": level, "cpu": spec.cpu, "vector_bits": spec.vector_bits,
                      "precision": b.precision, "opt_level": b.opt_level}))
        return entries

    def load(self, li: LoadInput) -> Runner:
        obj, tables_member = _members(li.entry.name)
        tables = ProgramTables(li.files[tables_member], tables_member)
        missing = unresolved(li.files[obj])
        if missing:
            raise ArtifactError(f"{li.entry.name} needs {', '.join(missing)}, which this "
                                "process cannot provide; load another variant")
        return CpuRunner(ObjectModule(li.files[obj], tables.spec), tables, li)
