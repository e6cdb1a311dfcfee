"""From a :class:`BenchConfig` to the cells of a run, and the data every cell shares.

The parent process compiles the model once (a model error stops here, at its line, before
any cell starts), fixes the weights (``--weights``, else the seeded initial ones) and, per
batch size, seeded inputs and the oracle's outputs: the reference interpreter on the graph IR
in float32. They go to files in the run's folder, which every cell reads, so each target and
peer sees the same bytes.

A cell is one (target or peer, batch, precision). A target that cannot run here (not built,
its packages missing, no GPU) is ``skipped`` with the reason; a peer whose packages are not
installed is ``absent``, with the extra that brings them; neither starts a process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.bench.config import DEFAULT_OTHER_SIZE, PEER_NEEDS, PROFILED_TARGETS, BenchConfig
from neuralc.driver import UsageError
from neuralc.frontend.model import CompiledModel


@dataclass
class Cell:
    """One measurement; ``spec`` is the worker's request (None when nothing runs)."""

    id: str
    runner: str  # a target or peer name
    kind: str  # "target", "peer" or "kernels"
    batch: int
    precision: str
    spec: dict[str, Any] | None = None
    result: dict[str, Any] = field(default_factory=dict)
    worker: list[str] | None = None  # the command that runs it (default: neuralc's worker)


@dataclass
class Plan:
    config: BenchConfig
    model: CompiledModel
    folder: Path
    sizes: dict[int, dict[str, int]]  # batch -> the symbol sizes of its inputs
    inputs: dict[int, list[dict[str, Any]]]  # batch -> name, shape, dtype of each input
    cells: list[Cell]
    absent: list[dict[str, str]]


def default_targets() -> list[str]:
    """Every target that runs here, fastest first: cpu, onnx, cuda (with a GPU), reference."""
    from neuralc.backends.select import runnable_targets

    out = runnable_targets()
    if target_unavailable("cuda") is None:
        out.insert(0, "cuda")
    return out


def target_unavailable(name: str) -> str | None:
    """Why target ``name`` cannot run on this machine, or None when it can."""
    from neuralc.backends.base import BackendUnavailable
    from neuralc.backends.registry import get_backend
    from neuralc.backends.select import probe_cuda

    if name == "reference":
        return None
    backend = get_backend(name)
    if backend is None:
        return f"the {name} target is not built in this neuralc"
    try:
        backend.check_available()
    except BackendUnavailable as e:
        return str(e)
    if not backend.runnable:
        return f"the {name} target writes source code; nothing here runs it"
    if name in ("cuda", "tensorrt"):
        cuda = probe_cuda()
        if not cuda.gpus:
            return f"no CUDA GPU here ({cuda.problem})"
    return None


def peer_absent(name: str) -> dict[str, str] | None:
    """The missing packages of peer ``name`` and the extra that installs them, or None."""
    from neuralc.backends.select import has_module

    needs, extra = PEER_NEEDS[name]
    missing = [m for m in needs if not has_module(m)]
    if not missing:
        return None
    return {"peer": name, "reason": f"{' and '.join(missing)} not installed",
            "install": f"pip install 'neuralc[{extra}]'"}


def _sizes(model: CompiledModel, batch: int, dims: dict[str, int]) -> dict[str, int]:
    from neuralc.runtime.samples import input_symbols, symbol_sizes

    known = input_symbols(model.module)
    for k in dims:
        if k not in known:
            raise UsageError(f"--dim {k}: the model has no symbolic dim '{k}'"
                             + (f"; it has: {', '.join(known)}" if known else ""))
    return symbol_sizes(model.module, batch, DEFAULT_OTHER_SIZE) | dims


def _data(config: BenchConfig, model: CompiledModel, folder: Path
          ) -> tuple[dict[int, dict[str, int]], dict[int, dict[str, list[str]]],
                     dict[int, list[dict[str, Any]]]]:
    """Weights, inputs and oracle outputs on disk; per batch: sizes, file paths, input specs."""
    from neuralc.runtime.interpreter import run_module
    from neuralc.runtime.samples import random_inputs
    from neuralc.runtime.signature import input_names
    from neuralc.runtime.weights import init_weights, load_weights, save_weights

    weights = (load_weights(config.weights, model.module) if config.weights
               else init_weights(model.module, seed=config.seed))
    save_weights(folder / "weights.safetensors", weights)
    names = input_names(model.module.funcs[0])
    sizes, files, specs = {}, {}, {}
    for batch in config.batches:
        s = _sizes(model, batch, config.dims)
        xs = random_inputs(model.module, s, np.random.default_rng(config.seed + batch))
        ys = run_module(model.module, xs, weights)
        paths: dict[str, list[str]] = {"inputs": [], "expected": []}
        for kind, arrays in (("inputs", xs), ("expected", ys)):
            for i, a in enumerate(arrays):
                p = folder / f"b{batch}-{kind}-{i}.npy"
                np.save(p, np.ascontiguousarray(a))
                paths[kind].append(str(p))
        sizes[batch], files[batch] = s, paths
        specs[batch] = [{"name": n, "shape": list(x.shape), "dtype": str(x.dtype)}
                        for n, x in zip(names, xs)]
    return sizes, files, specs


def make_plan(config: BenchConfig, folder: Path) -> Plan:
    """Compile the model, write the shared data and list the cells (nothing runs yet)."""
    from neuralc.driver import compile_file
    from neuralc.frontend.hparams import HParams

    try:
        hparams = HParams.from_strings(config.hparams)
    except ValueError as e:
        raise UsageError(str(e)) from None
    model = compile_file(config.model, network=config.network, hparams=hparams,
                         opt_level=config.opt)
    sizes, files, specs = _data(config, model, folder)
    skipped = {t: target_unavailable(t) for t in config.targets}
    absent = [a for a in (peer_absent(p) for p in config.peers) if a is not None]
    gone = {a["peer"] for a in absent}
    cells: list[Cell] = []
    for batch in config.batches:
        for precision in config.precisions:
            group = [(t, "target") for t in config.targets]
            group += [(p, "peer") for p in config.peers if p not in gone]
            if config.kernels:
                group += [(t, "kernels") for t in config.targets if t in PROFILED_TARGETS]
            for runner, kind in group:
                suffix = "/kernels" if kind == "kernels" else ""
                cell = Cell(f"{runner}/b{batch}/{precision}{suffix}", runner, kind, batch,
                            precision)
                why = skipped.get(runner) if kind != "peer" else None
                if why is not None:
                    cell.result = {"status": "skipped", "message": why}
                else:
                    cell.spec = cell_spec(config, cell, sizes[batch], files[batch], folder)
                cells.append(cell)
    return Plan(config, model, folder, sizes, specs, cells, absent)


def cell_spec(config: BenchConfig, cell: Cell, sizes: dict[str, int],
              files: dict[str, list[str]], folder: Path) -> dict[str, Any]:
    """The worker's request for ``cell`` (JSON-able)."""
    return {
        "job": "kernels" if cell.kind == "kernels" else "time",
        "runner": cell.runner, "kind": cell.kind, "batch": cell.batch,
        "precision": cell.precision, "sizes": sizes, "threads": config.threads,
        "model": config.model, "network": config.network, "hparams": config.hparams,
        "opt": config.opt, "weights": str(folder / "weights.safetensors"),
        "inputs": files["inputs"], "expected": files["expected"],
        "repeat": config.repeat, "min_time": config.min_time, "warmup": config.warmup,
        "kernel_repeat": config.kernel_repeat,
        "tmp": str(folder / cell.id.replace("/", "_")),
    }
