"""Building the examples as standalone binaries once for the edge tests (a module with a unique
name: tests/ is not a package).

One session builds everything (host executables and libraries, aarch64 executables, the C
driver of each library) in parallel processes, under a file lock in pytest's shared temporary
folder, so pytest-xdist workers reuse one build. Each example's record lists the files and the
expected outputs: the in-process cpu target's (CpuExecutable) and the reference
interpreter's on the graph IR, for the same seeded inputs.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import multiprocessing
import os
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.nr"))
DRIVER = Path(__file__).resolve().parent / "c" / "driver.c"
# Different aarch64 cpus across the examples, so each --cpu is built and run somewhere.
ARM_CPUS = ("generic", "cortex-a76", "neoverse-n1")
RTOL, ATOL = 1e-4, 1e-5  # the cpu target against the reference interpreter, float32
# Set by .ci/run: what CI installs must be there, so a missing tool fails instead of skipping.
REQUIRED = os.environ.get("NEURALC_EDGE_REQUIRED") == "1"


def missing(reason: str) -> None:
    """Skip saying why, or fail where CI promises the tool (NEURALC_EDGE_REQUIRED=1)."""
    import pytest

    if REQUIRED:
        pytest.fail(f"{reason} (NEURALC_EDGE_REQUIRED=1: CI installs it)")
    pytest.skip(reason)


def qemu() -> str | None:
    """The qemu user-mode emulator for aarch64, if installed."""
    return shutil.which("qemu-aarch64") or shutil.which("qemu-aarch64-static")


def zig_cc() -> list[str]:
    """The C compiler the tests build their own C programs with (the toolchain's)."""
    from neuralc.backends.cpu.edge.toolchain import EdgeTarget, find_toolchain
    from neuralc.backends.cpu.host import TargetSpec

    return find_toolchain(EdgeTarget(TargetSpec.host()), "exe").cc()


def in_process(comp: Any, model: Any, weights: Any) -> Any:
    """The in-process cpu target on one thread, as the edge binaries run their kernels (and
    without starting a thread pool the test process would have to stop again)."""
    import inspect

    from neuralc.backends.cpu.runtime import CpuExecutable

    if "threads" in inspect.signature(CpuExecutable).parameters:
        return CpuExecutable(comp, model, weights, threads=1)
    return CpuExecutable(comp, model, weights)


def seeded_inputs(module: Any, batch: int = 2, other: int = 8, seed: int = 0) -> list[np.ndarray]:
    from neuralc.runtime.samples import random_inputs, symbol_sizes

    return random_inputs(module, symbol_sizes(module, batch, other), np.random.default_rng(seed))


def _host_job(name: str, out: str) -> dict[str, Any]:
    """Host executable and library of one example, its inputs, and the expected outputs."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.driver import compile_file
    from neuralc.runtime.interpreter import run_module
    from neuralc.runtime.signature import bind_inputs
    from neuralc.runtime.weights import init_weights

    d = Path(out) / name
    d.mkdir(parents=True, exist_ok=True)
    model = compile_file(ROOT / "examples" / f"{name}.nr")
    weights = init_weights(model.module, seed=0)
    comp = compile_for_cpu(model)
    exe = build_edge(comp, model, weights, EdgeRequest("exe", d / name, comp.spec))
    lib = build_edge(comp, model, weights, EdgeRequest("lib", d / f"lib{name}.so", comp.spec))
    inputs = seeded_inputs(model.module)
    _, env = bind_inputs(model.module.funcs[0], inputs, model.module.attributes.get("dims"))
    rec: dict[str, Any] = {
        "name": name, "exe": str(exe.binary), "lib": str(lib.binary), "header": str(lib.header),
        "prefix": lib.prefix, "inputs": [], "raw_inputs": [], "cpu": [], "ref": [],
        "sizes": [env[s] for s in comp.program.symbols], "exe_bytes": exe.file_bytes,
        "code_bytes": exe.code_bytes, "weights_bytes": exe.weights_bytes}
    for k, x in enumerate(inputs):
        np.save(d / f"in{k}.npy", x)
        (d / f"in{k}.bin").write_bytes(np.ascontiguousarray(x).tobytes())
        rec["inputs"].append(str(d / f"in{k}.npy"))
        rec["raw_inputs"].append(str(d / f"in{k}.bin"))
    for k, y in enumerate(in_process(comp, model, weights)(inputs)):
        np.save(d / f"cpu{k}.npy", y)
        rec["cpu"].append(str(d / f"cpu{k}.npy"))
    for k, y in enumerate(run_module(model.module, inputs, weights)):
        np.save(d / f"ref{k}.npy", y)
        rec["ref"].append(str(d / f"ref{k}.npy"))
    driver = d / "driver"
    cmd = [*zig_cc(), "-std=gnu11", "-O1", "-Wall", "-Werror", f"-DNCP={lib.prefix}",
           f'-DNC_HEADER="{lib.header.name}"', f"-I{d}", str(DRIVER), str(lib.binary),
           f"-Wl,-rpath,{d}", "-o", str(driver)]
    subprocess.run(cmd, check=True, capture_output=True)
    rec["driver"] = str(driver)
    return rec


def _arm_job(name: str, out: str, cpu: str) -> dict[str, Any]:
    """A static aarch64 executable of one example (for qemu-user)."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.backends.cpu.host import TargetSpec
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    d = Path(out) / name
    d.mkdir(parents=True, exist_ok=True)
    model = compile_file(ROOT / "examples" / f"{name}.nr")
    spec = TargetSpec.aarch64(cpu)
    comp = compile_for_cpu(model, spec=spec)
    built = build_edge(comp, model, init_weights(model.module, seed=0),
                       EdgeRequest("exe", d / f"{name}-aarch64", spec, static=True))
    return {"name": name, "cpu": cpu, "exe": str(built.binary), "exe_bytes": built.file_bytes,
            "code_bytes": built.code_bytes, "weights_bytes": built.weights_bytes}


def build_all(root: Path) -> dict[str, Any]:
    """Every example built once (host and aarch64), reused by every worker of the session."""
    root.mkdir(parents=True, exist_ok=True)
    done = root / "builds.json"
    with open(root / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists():
            return json.loads(done.read_text())
        workers = max(1, min(2, os.cpu_count() or 1))
        # Spawned, not forked: the test process may hold threads (a code generator's thread
        # pool, LLVM's), and a fork copies their locks held.
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            host = {n: pool.submit(_host_job, n, str(root / "host")) for n in EXAMPLES}
            arm = {n: pool.submit(_arm_job, n, str(root / "aarch64"), ARM_CPUS[k % 3])
                   for k, n in enumerate(EXAMPLES)}
            result = {"host": {n: f.result() for n, f in host.items()},
                      "aarch64": {n: f.result() for n, f in arm.items()}}
        done.write_text(json.dumps(result, indent=1))
        return result


def run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)


# -- a model's shared library through ctypes ---------------------------------------------------


class NcTensorInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("dtype", ctypes.c_int), ("rank", ctypes.c_int),
                ("dims", ctypes.POINTER(ctypes.c_char_p)), ("shape", ctypes.c_char_p)]


class NcSymbolInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("min", ctypes.c_int64), ("max", ctypes.c_int64),
                ("step", ctypes.c_int64), ("nominal", ctypes.c_int64)]


class NcModelInfo(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("neuralc_version", ctypes.c_char_p),
                ("precision", ctypes.c_char_p), ("triple", ctypes.c_char_p),
                ("cpu", ctypes.c_char_p), ("vector_bits", ctypes.c_int),
                ("opt_level", ctypes.c_int), ("num_inputs", ctypes.c_int),
                ("inputs", ctypes.POINTER(NcTensorInfo)), ("num_outputs", ctypes.c_int),
                ("outputs", ctypes.POINTER(NcTensorInfo)), ("num_symbols", ctypes.c_int),
                ("symbols", ctypes.POINTER(NcSymbolInfo)), ("num_weights", ctypes.c_int),
                ("weights_bytes", ctypes.c_uint64), ("weights_sha256", ctypes.c_char_p),
                ("external_weights", ctypes.c_int), ("arena_bytes", ctypes.c_char_p)]


class Lib:
    """A model's shared library through ctypes, as a Python user would call it."""

    def __init__(self, path: str, prefix: str):
        self.dll = ctypes.CDLL(path)
        f = lambda n: getattr(self.dll, f"{prefix}_{n}")  # noqa: E731
        self.info = f("info")
        self.info.restype = ctypes.POINTER(NcModelInfo)
        self.create = f("create")
        self.create.restype = ctypes.c_void_p
        self.create.argtypes = [ctypes.c_char_p]
        self.destroy = f("destroy")
        self.destroy.argtypes = [ctypes.c_void_p]
        self.last_error = f("last_error")
        self.last_error.restype = ctypes.c_char_p
        self.last_error.argtypes = [ctypes.c_void_p]
        self.shape = f("shape")
        self.shape.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64), ctypes.c_int,
                               ctypes.POINTER(ctypes.c_int64)]
        self.bind = f("bind")
        self.bind.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_int64)),
                              ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int64)]
        self.run = f("run")
        self.run.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t),
                             ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_size_t)]
        self.set_threads = f("set_threads")
        self.set_threads.argtypes = [ctypes.c_void_p, ctypes.c_int]
        self.threads = f("threads")
        self.threads.argtypes = [ctypes.c_void_p]
        self.set_check_finite = f("set_check_finite")
        self.set_check_finite.argtypes = [ctypes.c_void_p, ctypes.c_int]

    def error(self, ctx: int | None) -> str:
        return self.last_error(ctx).decode()

    def sizes_of(self, ctx: int, arrays: list[np.ndarray]) -> np.ndarray:
        """The symbolic sizes the inputs' shapes give (the library's binder)."""
        n = self.info().contents.num_symbols
        shapes = [np.array(a.shape, np.int64) for a in arrays]
        table = (ctypes.POINTER(ctypes.c_int64) * max(len(arrays), 1))(
            *[s.ctypes.data_as(ctypes.POINTER(ctypes.c_int64)) for s in shapes])
        ranks = (ctypes.c_int * max(len(arrays), 1))(*[a.ndim for a in arrays])
        sizes = np.zeros(max(n, 1), np.int64)
        if self.bind(ctx, table, ranks, sizes.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))):
            raise ValueError(self.error(ctx))
        return sizes

    def __call__(self, ctx: int, arrays: list[np.ndarray],
                 sizes: np.ndarray | None = None) -> list[np.ndarray]:
        info = self.info().contents
        sizes = self.sizes_of(ctx, arrays) if sizes is None else sizes
        p64 = sizes.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))
        outs = []
        for j in range(info.num_outputs):
            shape = np.zeros(32, np.int64)
            if self.shape(ctx, p64, info.num_inputs + j,
                          shape.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))):
                raise ValueError(self.error(ctx))
            outs.append(np.empty(tuple(shape[:info.outputs[j].rank]), np.float32))
        ins = (ctypes.c_void_p * max(len(arrays), 1))(*[a.ctypes.data for a in arrays])
        in_b = (ctypes.c_size_t * max(len(arrays), 1))(*[a.nbytes for a in arrays])
        out_p = (ctypes.c_void_p * max(len(outs), 1))(*[o.ctypes.data for o in outs])
        out_b = (ctypes.c_size_t * max(len(outs), 1))(*[o.nbytes for o in outs])
        if self.run(ctx, p64, ins, in_b, out_p, out_b):
            raise ValueError(self.error(ctx))
        return outs
