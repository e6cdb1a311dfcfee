"""Building a TensorRT engine from neuralc's ONNX model.

- The network is strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``): its types
  are those of the ONNX model, so ``--precision fp16`` comes from the float16 ONNX that the
  onnx backend writes. bf16 and mixed are refused: the onnx backend does not write bfloat16.
- One optimisation profile covers every symbolic dim of the inputs (:func:`profile_shapes`):
  min and max from the ``dims { }`` ranges, opt from the nominal sizes; an open upper bound
  gets :data:`OPEN_BATCH_MAX` for the batch dim and ``OPEN_FACTOR`` times the nominal size
  for the others. The profile is recorded with the engine, so a size outside it is refused
  with a message that says how to widen it.
- The timing cache lives in neuralc's cache folder (``tensorrt/timing-<gpu>-<version>.cache``)
  and is reused across builds.
- ONNX parser errors are mapped back to the ``.nr`` line of the layer that failed
  (:func:`parser_diagnostics`): the onnx backend names every node ``<layer name>/<op>``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.backends.base import Artifact, BackendError, BackendOptions, BackendUnavailable
from neuralc.diagnostics import Diagnostic
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import func_body, network_inputs
from neuralc.ir.dims import dim_facts, evaluate, fit_size, symbols
from neuralc.layers import catalog
from neuralc.runtime.samples import batch_symbol
from neuralc.runtime.signature import input_names, select_func

OPEN_BATCH_MAX = 64
OPEN_FACTOR = 4
NOT_RUN = "neuralc's TensorRT target has not been run in this project's CI"


def missing() -> str | None:
    """Why the TensorRT target cannot be used here (one line), or None."""
    from neuralc.backends.select import has_module, probe_cuda

    if not has_module("tensorrt"):
        return ("the tensorrt target needs TensorRT, which is not installed (pip install "
                f"tensorrt, on a machine with an NVIDIA GPU and driver); {NOT_RUN}")
    if not has_module("torch"):
        return "the tensorrt target runs engines on torch CUDA tensors: pip install torch"
    if not (has_module("onnx") and has_module("onnxruntime")):
        return "the tensorrt target builds from neuralc's ONNX: pip install 'neuralc[onnx]'"
    cuda = probe_cuda()
    if cuda.problem:
        return f"the tensorrt target needs an NVIDIA GPU: {cuda.problem}"
    return None


# -- the optimisation profile ----------------------------------------------------------------


def profile_shapes(model: CompiledModel) -> dict[str, dict[str, list[int]]]:
    """For each input, by its ONNX name: ``{"min": shape, "opt": shape, "max": shape}``."""
    module = model.module
    func = select_func(module)
    ranges = module.attributes.get("dims") or {}
    nominal = module.attributes.get("dim_nominal") or {}
    lead = batch_symbol(module)
    envs: dict[str, dict[str, int]] = {"min": {}, "opt": {}, "max": {}}
    for a in network_inputs(func):
        for d in a.type.shape or ():
            for s in symbols(d):
                if s in envs["min"]:
                    continue
                lo, hi, step = dim_facts(ranges.get(s))
                low = fit_size(lo or 1, lo, hi, step)
                nom = fit_size(int(nominal.get(s, low)), lo, hi, step)
                if hi is None:
                    hi = OPEN_BATCH_MAX if s == lead else max(OPEN_FACTOR * nom, low)
                high = fit_size(hi, lo, hi, step)
                envs["min"][s], envs["opt"][s], envs["max"][s] = low, nom, high
    out: dict[str, dict[str, list[int]]] = {}
    for name, a in zip(input_names(func), network_inputs(func)):
        out[name] = {k: [evaluate(d, env) for d in a.type.shape or ()] for k, env in envs.items()}
    return out


def profile_problem(profile: dict[str, dict[str, list[int]]], name: str,
                    shape: Sequence[int]) -> str | None:
    """Why ``shape`` of input ``name`` is outside the engine's profile, or None."""
    p = profile.get(name)
    if p is None:
        return None
    for axis, (lo, hi, n) in enumerate(zip(p["min"], p["max"], shape)):
        if not lo <= n <= hi:
            return (f"input '{name}' dim {axis} is {n}, outside the {lo}..{hi} the TensorRT "
                    "engine was built for; give the dim a range in the model's dims { } and "
                    "rebuild")
    return None


# -- parser errors back to .nr lines -----------------------------------------------------------


@dataclass(frozen=True)
class ParserProblem:
    """One ONNX parser error, as TensorRT reports it."""

    node_index: int  # -1 when the error is not about one node
    node_name: str
    operator: str
    description: str


def parser_diagnostics(problems: Sequence[ParserProblem], node_names: Sequence[str],
                       model: CompiledModel) -> list[Diagnostic]:
    """One located diagnostic per parser error: at the ``.nr`` line of the layer whose ONNX
    node failed (node names are ``<layer>/<op>``), else unlocated with the node's name."""
    layers = {str(op.attributes.get("name")): op
              for op in func_body(select_func(model.module)).ops if "name" in op.attributes}
    out: list[Diagnostic] = []
    for p in problems:
        node = p.node_name or (node_names[p.node_index]
                               if 0 <= p.node_index < len(node_names) else "")
        op = layers.get(node.split("/", 1)[0]) if node else None
        what = f"ONNX node '{node}'" + (f" ({p.operator})" if p.operator else "")
        if op is None:
            out.append(Diagnostic("error", f"TensorRT cannot parse the ONNX model: "
                                  f"{p.description}" + (f" at {what}" if node else "")))
            continue
        spec = catalog.by_op(op.name)
        kind = spec.name if spec else op.name
        out.append(Diagnostic("error", f"TensorRT cannot build {kind} layer "
                              f"'{op.attributes.get('name')}': {p.description} ({what})",
                              op.location))
    return out


def _problems(parser: Any) -> list[ParserProblem]:
    out = []
    for i in range(parser.num_errors):
        e = parser.get_error(i)
        name = e.node_name() if hasattr(e, "node_name") else ""  # TensorRT 10+
        op = e.node_operator() if hasattr(e, "node_operator") else ""
        out.append(ParserProblem(int(e.node()), str(name or ""), str(op or ""), str(e.desc())))
    return out


# -- the build ---------------------------------------------------------------------------------


@dataclass
class EngineBuild:
    engine: bytes
    key: str  # "sm90-trt10.3.0": what the engine is tied to
    meta: dict[str, Any]


def onnx_for_engine(model: CompiledModel, weights: dict[str, np.ndarray], opset: int,
                    precision: str) -> Artifact:
    """neuralc's ONNX model with float32 inputs and outputs, in ``precision`` inside."""
    from neuralc.backends.registry import get_backend

    if precision not in ("fp32", "fp16"):
        raise BackendUnavailable(f"the tensorrt target builds fp32 or fp16 engines, not "
                                 f"{precision}: neuralc's ONNX (which TensorRT's strongly typed "
                                 "networks take their types from) has no bfloat16 yet")
    onnx = get_backend("onnx")
    assert onnx is not None
    return onnx.emit(model, weights, BackendOptions(opset, precision, keep_io_fp32=True))


def _cache_file(key: str) -> Path:
    from neuralc.backends.cpu.cache import cache_root

    return cache_root() / "tensorrt" / f"timing-{key}.cache"


def _save_cache(path: Path, data: bytes) -> None:
    """Atomic and best-effort: a cache that cannot be written only costs time next build."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError:
        pass


def build_engine(onnx_artifact: Artifact, model: CompiledModel, precision: str,
                 gpu: int = 0) -> EngineBuild:
    """Parse the ONNX model, set the profile and timing cache, build and serialize."""
    import tensorrt as trt
    import torch

    from neuralc.backends.onnx.emit import load_artifact_model
    from neuralc.backends.select import probe_cuda

    cuda = probe_cuda()
    if cuda.problem or gpu >= len(cuda.gpus):
        raise BackendUnavailable(f"the tensorrt target needs GPU {gpu}: "
                                 f"{cuda.problem or 'there is no such GPU'}")
    device = cuda.gpus[gpu]
    key = f"sm{device.capability[0]}{device.capability[1]}-trt{trt.__version__}"
    node_names = [n.name for n in load_artifact_model(onnx_artifact).graph.node]
    profile = profile_shapes(model)
    logger = trt.Logger(trt.Logger.WARNING)
    with torch.cuda.device(gpu):
        builder = trt.Builder(logger)
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        network = builder.create_network(flags)
        parser = trt.OnnxParser(network, logger)
        if onnx_artifact.side_files:  # external weights: the parser reads them beside the model
            with tempfile.TemporaryDirectory() as tmp:
                path = onnx_artifact.write(Path(tmp) / onnx_artifact.filename)[0]
                ok = parser.parse_from_file(str(path))
        else:
            ok = parser.parse(onnx_artifact.data)
        if not ok:
            raise BackendError(parser_diagnostics(_problems(parser), node_names, model))
        config = builder.create_builder_config()
        opt_profile = builder.create_optimization_profile()
        for name, shapes in profile.items():
            opt_profile.set_shape(name, shapes["min"], shapes["opt"], shapes["max"])
        config.add_optimization_profile(opt_profile)
        cache_path = _cache_file(key)
        cached = cache_path.read_bytes() if cache_path.is_file() else b""
        config.set_timing_cache(config.create_timing_cache(cached), False)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError([Diagnostic(
                "error", f"TensorRT could not build an engine for network '{model.info.name}' "
                         "(its log above says why)")])
        _save_cache(cache_path, bytes(config.get_timing_cache().serialize()))
    outputs = [o.name for o in load_artifact_model(onnx_artifact).graph.output]
    meta = {"tensorrt_version": trt.__version__, "gpu_name": device.name,
            "compute_capability": f"{device.capability[0]}.{device.capability[1]}",
            "precision": precision, "profile": profile, "inputs": list(profile),
            "outputs": outputs}
    return EngineBuild(bytes(serialized), key, meta)
