"""Ahead-of-time compilation of the cuda target's kernels: cubins without a GPU.

``triton.compile(ASTSource(kernel, signature, constexprs), target=GPUTarget("cuda", cc, 32))``
compiles one kernel for one compute capability on any machine. Each kernel is compiled with
its default launch configuration (``CONFIG``): buffers as pointers of their element types,
sizes as 32-bit integers (never specialised, so one cubin serves every size), block sizes as
constants. Kernels compile in parallel worker processes (spawned without ``TRITON_INTERPRET``,
which would make ``@triton.jit`` build interpreter functions), and every result is cached in
neuralc's cache folder (``cuda/aot/<key>.json``, or ``$NEURALC_CUDA_AOT_CACHE``), keyed by
the kernel's source and the helper functions it calls, its signature and configuration, the
compute capability and the Triton version, so a second build (or test run) compiles only what
changed.

A result records the cubin, the PTX, the shared memory the kernel needs (checked against the
architecture's per-block limit: :data:`SHARED_LIMIT`) and Triton's metadata.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuralc.backends.cuda.kernel_codegen import KernelSource
from neuralc.backends.cuda.module import HELPERS, ProgramSource

# Shared memory one block may use (opt-in maximum), bytes.
SHARED_LIMIT = {80: 166912, 86: 101376, 89: 101376, 90: 232448}
POINTER = {"f32": "*fp32", "f16": "*fp16", "bf16": "*bf16", "f64": "*fp64", "i64": "*i64",
           "i32": "*i32", "i8": "*i8", "i1": "*i1"}
FORMAT = "neuralc-cuda-aot/1"


class AotError(Exception):
    """A kernel failed to compile (or to fit) for an architecture."""


@dataclass
class AotKernel:
    name: str
    capability: int
    cubin: bytes
    ptx: str
    shared: int
    num_warps: int
    metadata: dict[str, Any]

    def fits(self) -> bool:
        return self.shared <= SHARED_LIMIT.get(self.capability, 101376)


def parse_arch(text: str) -> list[int]:
    """``sm_80,sm_90`` (or ``80,90``) -> [80, 90]."""
    out = []
    for part in text.split(","):
        p = part.strip().lower().removeprefix("sm_").removeprefix("compute_")
        if not p.isdigit() or not 50 <= int(p) <= 130:
            raise ValueError(f"'{part.strip()}' is not a CUDA architecture (like sm_80)")
        out.append(int(p))
    return sorted(set(out))


def signature(k: KernelSource) -> tuple[dict[str, str], dict[str, Any], dict[str, int]]:
    """(signature, constexprs, options) of a kernel at its default configuration."""
    sig: dict[str, str] = {}
    for i, t in enumerate(k.buffers):
        sig[f"b{i}"] = POINTER[t.dtype]
    for s in k.symbols:
        sig[f"s_{s}"] = "i32"
    consts = {n: v for n, v in k.config.items() if n not in ("num_warps", "num_stages")}
    for n in consts:
        sig[n] = "constexpr"
    opts = {"num_warps": int(k.config["num_warps"]), "num_stages": int(k.config["num_stages"])}
    return sig, consts, opts


def helpers_of(text: str) -> list[str]:
    """The module helpers a kernel (or helper) text calls, transitively."""
    out: list[str] = []
    todo = [text]
    while todo:
        t = todo.pop()
        for name, body in HELPERS.items():
            if name not in out and f"{name}(" in t:
                out.append(name)
                todo.append(body)
    return sorted(out)


def aot_key(k: KernelSource, capability: int, triton_version: str) -> str:
    sig, consts, opts = signature(k)
    h = hashlib.sha256()
    parts = [FORMAT, k.text, *(HELPERS[n] for n in helpers_of(k.text)),
             json.dumps([sig, consts, opts], sort_keys=True), str(capability), triton_version]
    for p in parts:
        data = p.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def cache_folder() -> Path:
    """``$NEURALC_CUDA_AOT_CACHE`` if set (entries are content-addressed, so one folder can
    serve every session: the tests keep one across runs), else ``cuda/aot`` in neuralc's
    cache folder."""
    explicit = os.environ.get("NEURALC_CUDA_AOT_CACHE")
    if explicit:
        return Path(explicit)
    from neuralc.backends.cpu.cache import cache_root

    return cache_root() / "cuda" / "aot"


def _from_json(data: dict[str, Any]) -> AotKernel:
    return AotKernel(data["name"], int(data["capability"]), base64.b64decode(data["cubin"]),
                     data["ptx"], int(data["shared"]), int(data["num_warps"]), data["metadata"])


def _to_json(k: AotKernel) -> dict[str, Any]:
    return {"name": k.name, "capability": k.capability,
            "cubin": base64.b64encode(k.cubin).decode(), "ptx": k.ptx, "shared": k.shared,
            "num_warps": k.num_warps, "metadata": k.metadata}


def _cached(key: str) -> AotKernel | None:
    try:
        return _from_json(json.loads((cache_folder() / f"{key}.json").read_text()))
    except (OSError, ValueError, KeyError):
        return None


def _store(key: str, k: AotKernel) -> None:
    folder = cache_folder()
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(_to_json(k)))
        os.replace(tmp, folder / f"{key}.json")


def _worker_init() -> None:
    os.environ.pop("TRITON_INTERPRET", None)
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")


def _compile_one(module_path: str, name: str, sig: dict[str, str], consts: dict[str, Any],
                 opts: dict[str, int], capability: int) -> dict[str, Any]:
    """In a worker: import the generated module and compile one kernel."""
    import importlib.util

    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    mod_name = "neuralc_aot_" + hashlib.sha256(module_path.encode()).hexdigest()[:12]
    import sys

    mod = sys.modules.get(mod_name)
    if mod is None:
        spec = importlib.util.spec_from_file_location(mod_name, module_path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules[mod_name] = mod
        spec.loader.exec_module(mod)
    fn = getattr(mod, name)
    src = ASTSource(fn, sig, constexprs=consts)
    try:
        ck = triton.compile(src, target=GPUTarget("cuda", capability, 32), options=dict(opts))
    except Exception as e:  # noqa: BLE001 - reported with the kernel's name
        return {"error": f"{type(e).__name__}: {e}"}
    meta = ck.metadata._asdict() if hasattr(ck.metadata, "_asdict") else dict(vars(ck.metadata))
    meta = json.loads(json.dumps(meta, default=str))
    return _to_json(AotKernel(name, capability, ck.asm["cubin"], ck.asm["ptx"],
                              int(ck.metadata.shared), int(ck.metadata.num_warps), meta))


def compile_program(program: ProgramSource, capabilities: Iterable[int], jobs: int | None = None,
                    use_cache: bool = True) -> dict[int, dict[str, AotKernel]]:
    """Every kernel of ``program`` for every capability: ``{cc: {kernel: AotKernel}}``.
    Raises AotError naming each kernel that failed to compile or does not fit."""
    import triton

    from neuralc.backends.cuda.runtime import module_folder

    caps = list(capabilities)
    out: dict[int, dict[str, AotKernel]] = {cc: {} for cc in caps}
    todo: list[tuple[str, KernelSource, int]] = []
    for cc in caps:
        for k in program.kernels:
            key = aot_key(k, cc, triton.__version__)
            hit = _cached(key) if use_cache else None
            if hit is not None:
                out[cc][k.name] = hit
            else:
                todo.append((key, k, cc))
    errors: list[str] = []
    if todo:
        path = module_folder() / f"{program.sha256}.py"
        if not path.exists() or path.read_text() != program.text:
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(program.text)
            os.replace(tmp, path)
        import multiprocessing

        workers = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init) as pool:
            futures = []
            for key, k, cc in todo:
                sig, consts, opts = signature(k)
                futures.append((key, k, cc, pool.submit(_compile_one, str(path), k.name, sig,
                                                        consts, opts, cc)))
            for key, k, cc, fut in futures:
                got = fut.result()
                if "error" in got:
                    errors.append(f"{k.name} for sm_{cc}: {got['error']}")
                    continue
                ak = _from_json(got)
                out[cc][k.name] = ak
                if use_cache:
                    _store(key, ak)
    for cc in caps:
        for k in out[cc].values():
            if not k.fits():
                errors.append(f"{k.name} for sm_{cc} needs {k.shared} bytes of shared memory "
                              f"(the limit is {SHARED_LIMIT.get(cc)})")
    if errors:
        raise AotError("; ".join(errors))
    return out


def bundle(program: ProgramSource, compiled: dict[int, dict[str, AotKernel]]) -> bytes:
    """``-o model.cubins``: one JSON file holding every cubin (base64), its PTX and metadata,
    and the Triton source they were compiled from."""
    import triton

    data = {"format": FORMAT, "network": program.network, "triton_version": triton.__version__,
            "source_sha256": program.sha256, "source": program.text,
            "architectures": {f"sm_{cc}": {n: _to_json(k) for n, k in ks.items()}
                              for cc, ks in compiled.items()}}
    return json.dumps(data, indent=1).encode()
