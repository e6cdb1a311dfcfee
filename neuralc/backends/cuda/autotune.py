"""``--autotune`` (GPU only): each kernel's launch configuration chosen by timing.

At a kernel's first launch every configuration of the module's ``CANDIDATES[name]`` is timed
with ``triton.testing.do_bench`` on the real arguments (kernels are pure functions of their
inputs into their outputs, so running one several times changes nothing), the fastest is kept
in the program's ``config`` and stored in the cache. The cache key is the SHA-256 of the kernel
source, the candidate list, the Triton version and the GPU's compute capability, so a changed
kernel, a new Triton or another GPU tunes afresh; a configuration that does not fit the GPU
(shared memory, registers) is skipped. The cache is ``cuda/autotune.json`` in neuralc's cache
folder; an artifact carries the entries of its kernels (:func:`entries_for`), which seed the
cache where it is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

_LOCK = threading.Lock()


def cache_path() -> Path:
    from neuralc.backends.cpu.cache import cache_root

    return cache_root() / "cuda" / "autotune.json"


def tune_key(source: str, candidates: list[dict[str, int]], triton_version: str,
             capability: str) -> str:
    """The cache key of one kernel's choice."""
    h = hashlib.sha256()
    for part in ("neuralc-cuda-autotune/1", source, json.dumps(candidates, sort_keys=True),
                 triton_version, capability):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_entries(entries: dict[str, Any]) -> None:
    """Merge ``entries`` into the cache file (atomically; an unwritable cache is skipped)."""
    with _LOCK:
        data = read_cache()
        data.update(entries)
        path = cache_path()
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(tmp, path)


def entries_for(kernels: list[Any], triton_version: str, capability: str) -> dict[str, Any]:
    """The cached choices of these kernels (``KernelSource``s) on ``capability``."""
    data = read_cache()
    out = {}
    for k in kernels:
        key = tune_key(k.text, k.candidates, triton_version, capability)
        if key in data:
            out[key] = data[key]
    return out


class Autotuner:
    """Chooses launch configurations on this GPU (see the module docstring)."""

    def __init__(self, module: ModuleType, device: Any, sources: dict[str, str]):
        import torch
        import triton

        self.module = module
        self.triton = triton
        major, minor = torch.cuda.get_device_capability(device)
        self.capability = f"{major}.{minor}"
        self.sources = sources
        self.cache = read_cache()
        self.done: set[str] = set()
        self.report: list[str] = []

    def launch(self, program: Any):
        """A ``launch`` callback for the module's ``run``."""

        def launch(name: str, kernel: Any, grid: Any, args: tuple) -> None:
            if name not in self.done:
                program.config[name] = self.choose(name, kernel, grid, args)
                self.done.add(name)
            cfg = program.config[name]
            kernel[grid(cfg)](*args, **cfg)

        return launch

    def choose(self, name: str, kernel: Any, grid: Any, args: tuple) -> dict[str, int]:
        candidates = self.module.CANDIDATES[name]
        key = tune_key(self.sources[name], candidates, self.triton.__version__, self.capability)
        hit = self.cache.get(key)
        if hit is not None:
            self.report.append(f"{name}: cached {hit['config']}")
            return dict(hit["config"])
        timings = []
        for cfg in candidates:
            try:
                ms = self.triton.testing.do_bench(
                    lambda cfg=cfg: kernel[grid(cfg)](*args, **cfg), warmup=3, rep=15)
            except Exception as e:  # noqa: BLE001 - a config that does not fit this GPU
                self.report.append(f"{name}: {cfg} skipped ({type(e).__name__})")
                continue
            timings.append((ms, cfg))
        if not timings:
            return dict(self.module.CONFIG[name])
        ms, best = min(timings, key=lambda t: t[0])
        entry = {"kernel": name, "config": best, "ms": ms,
                 "tried": len(timings), "capability": self.capability}
        self.cache[key] = entry
        write_entries({key: entry})
        self.report.append(f"{name}: {best} ({ms:.4f} ms of {len(timings)} timed)")
        return dict(best)
