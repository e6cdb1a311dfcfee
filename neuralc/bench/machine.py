"""The machine and software a result was measured on, so a result file can be reproduced.

Probes read ``/proc`` and package metadata; nothing heavy is imported (torch and onnxruntime
are named by their installed versions, not loaded).
"""

from __future__ import annotations

import platform
from typing import Any

from neuralc.backends.select import Host, module_version
from neuralc.bench.config import usable_cpus

# Distributions whose versions matter to a result (metadata only, no import).
_VERSIONED = ("numpy", "llvmlite", "onnx", "onnxruntime", "torch", "triton", "safetensors",
              "matplotlib")


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if out:
                break
            continue
        key, _, value = line.partition(":")
        out.setdefault(key.strip().lower(), value.strip())
    return out


def _physical_cores() -> int | None:
    """Distinct (package, core) pairs in /proc/cpuinfo; None where it does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    cores, package = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key == "physical id":
            package = value.strip()
        elif key == "core id":
            cores.add((package, value.strip()))
    return len(cores) or None


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def describe_machine(probe_gpu: bool = True) -> dict[str, Any]:
    """CPU model, cores, features, memory and GPUs (through the CUDA driver, if any)."""
    import os

    info = _cpuinfo()
    host = Host()
    name = (info.get("model name") or info.get("hardware") or platform.processor()
            or platform.machine())
    out: dict[str, Any] = {
        "cpu": name,
        "arch": host.cpu.arch,
        "logical_cpus": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "usable_cpus": usable_cpus(),
        "features": sorted(f for f in ("avx512f", "avx2", "fma", "neon", "dotprod", "sve")
                           if host.cpu.has(f)),
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
    }
    try:
        from neuralc.backends.cpu.host import TargetSpec

        spec = TargetSpec.host()
        out["llvm_cpu"], out["vector_bits"] = spec.cpu, spec.vector_bits
    except ImportError:  # llvmlite missing: the cpu target is unavailable anyway
        out["llvm_cpu"], out["vector_bits"] = None, None
    if probe_gpu:
        cuda = host.cuda
        out["gpus"] = [{"index": g.index, "name": g.name, "sm": g.sm} for g in cuda.gpus]
        out["gpu_note"] = cuda.problem
    return out


def versions() -> dict[str, str | None]:
    """neuralc, Python, LLVM and every package a cell may have used (None: not installed)."""
    out: dict[str, str | None] = {"neuralc": module_version("neuralc"),
                                  "python": platform.python_version()}
    for name in _VERSIONED:
        out[name] = module_version(name)
    if out["llvmlite"]:
        from neuralc.backends.cpu.host import llvm_version

        out["llvm"] = llvm_version()
    return out


def machine_line(m: dict[str, Any], threads: int) -> str:
    """One line for the table header: CPU, cores, threads used, features, GPU."""
    cores = f"{m['logical_cpus']} logical CPUs"
    if m.get("physical_cores"):
        cores = f"{m['physical_cores']} cores, " + cores
    if m.get("usable_cpus") != m.get("logical_cpus"):
        cores += f" ({m['usable_cpus']} usable)"
    feats = f"; {', '.join(m['features'])}" if m.get("features") else ""
    gpus = m.get("gpus") or []
    gpu = (", ".join(f"{g['name']} ({g['sm']})" for g in gpus) if gpus
           else f"none ({m.get('gpu_note') or 'not probed'})")
    used = f"{threads} thread{'s' * (threads != 1)} used"
    return f"{m['cpu']} ({m['arch']}, {cores}{feats}), {used}; GPU: {gpu}"


def versions_line(v: dict[str, str | None]) -> str:
    shown = [f"{k} {val}" for k, val in v.items() if val and k != "llvm"]
    if v.get("llvm"):
        shown = [s + f" (LLVM {v['llvm']})" if s.startswith("llvmlite ") else s for s in shown]
    return ", ".join(shown)
