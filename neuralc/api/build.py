"""Building an artifact from a compiled model: the CLI (``-o model.ncz``) and ``neuralc.compile``
both call :func:`build_artifact`, so both write the same file.
"""

from __future__ import annotations

import importlib
import json
import struct
from typing import Any

import numpy as np

from neuralc.api.signature import Signature
from neuralc.backends.base import BackendError, BackendUnavailable
from neuralc.diagnostics import Diagnostic
from neuralc.driver import UsageError, tensor_stage
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Module
from neuralc.ir.printer import print_module
from neuralc.location import primary
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.runtime.artifact import (
    FORMAT,
    FORMAT_VERSION,
    GRAPH,
    WEIGHTS,
    ArtifactData,
    neuralc_version,
    pack,
    sha256,
)
from neuralc.runtime.artifact_variants import (
    AUTO_KINDS,
    BuildInput,
    VariantEntry,
    VariantUnavailable,
    get_variant,
    registered_kinds,
)
from neuralc.runtime.weights import encode_weights

# Modules that register a variant kind when imported. A kind's package adds itself here
# (the native cpu target: "neuralc.backends.cpu.variant"; cuda: "neuralc.backends.cuda.variant").
VARIANT_MODULES: tuple[str, ...] = (
    "neuralc.runtime.artifact_reference",
    "neuralc.api.onnx_variant",
    "neuralc.backends.cpu.variant",
    "neuralc.backends.tensorrt.variant",
    "neuralc.backends.cuda.variant",
)

# What each --target puts in an artifact, best first. tensorrt keeps the ONNX model it was
# built from, which runs anywhere the engine does not.
TARGET_KINDS: dict[str, tuple[str, ...]] = {
    "auto": AUTO_KINDS,
    "reference": ("reference",),
    "onnx": ("onnx",),
    "cpu": ("cpu",),
    "cuda": ("cuda",),
    "tensorrt": ("tensorrt", "onnx"),
}


def load_variant_modules() -> list[str]:
    """Import every variant module that exists; returns the kinds now registered."""
    for name in VARIANT_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as e:
            # Absent (a kind not built yet) is fine; an existing module missing a dependency is
            # a bug and is raised.
            if e.name is None or not (name == e.name or name.startswith(e.name + ".")):
                raise
    return registered_kinds()


def kinds_for_target(target: str) -> tuple[str, ...]:
    """The variant kinds ``target`` builds; a UsageError for a target without variants."""
    if target in ("pytorch", "keras"):
        raise UsageError(f"target '{target}' writes source code, not a runnable artifact; "
                         f"write it with: neuralc MODEL.nr --target {target} -o model.py")
    if target not in TARGET_KINDS:
        raise UsageError(f"unknown target '{target}'; artifact targets: "
                         f"{', '.join(TARGET_KINDS)}")
    kinds = TARGET_KINDS[target]
    registered = load_variant_modules()
    if target != "auto" and kinds[0] not in registered:
        raise UsageError(f"target '{target}' is not built yet in this neuralc; artifact "
                         f"targets built: auto, {', '.join(registered)}")
    return kinds


def weights_bytes(weights: dict[str, np.ndarray]) -> bytes:
    """The weights as a safetensors file (bytes), in program order."""
    return encode_weights(weights)


def safetensors_offsets(data: bytes) -> dict[str, tuple[int, int]]:
    """Each tensor's (offset, length) in a safetensors file, from its JSON header."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name != "__metadata__":
            begin, end = info["data_offsets"]
            out[name] = (8 + n + begin, end - begin)
    return out


def _json_value(v: Any) -> Any:
    try:
        json.dumps(v)
        return v
    except (TypeError, ValueError):
        return repr(v)


def _first_problem(e: BackendError) -> str:
    d: Diagnostic = e.diagnostics[0]
    where = primary(d.location) if d.location is not None else None
    return f"{where}: {d.message}" if where is not None else d.message


def build_artifact(model: CompiledModel, weights: dict[str, np.ndarray], *, source_text: str,
                   target: str = "auto", opt: int = 2, precision: str = "fp32",
                   opset: int = 17, options: dict[str, Any] | None = None,
                   stage_warnings: list[Diagnostic] | None = None) -> ArtifactData:
    """Every variant ``target`` asks for, built from ``model`` with ``weights``, in one artifact.

    With ``target="auto"`` a kind that cannot be built here is recorded in the manifest's
    ``not_built`` with the reason (the selection report shows it); with a named target it is
    an error. Warnings of the tensor pipeline are appended to ``stage_warnings``.
    """
    kinds = kinds_for_target(target)
    weights_file = weights_bytes(weights)
    warnings = stage_warnings if stage_warnings is not None else []

    def tensor_module(layout_target: str) -> Module:
        passes = tensor_pipeline(opt, precision, layout_target)[len(pipeline(opt)):]
        module, found = tensor_stage(model, passes)
        warnings.extend(d for d in found if d not in warnings)
        return module

    b = BuildInput(model, weights, tensor_module, weights_file,
                   safetensors_offsets(weights_file), precision, opt, opset, dict(options or {}))
    entries: list[VariantEntry] = []
    not_built: dict[str, str] = {}
    for kind in kinds:
        variant = get_variant(kind)
        try:
            if variant is None:
                raise VariantUnavailable(f"this neuralc does not build {kind} variants yet")
            entries += variant.build(b)
        except VariantUnavailable as e:
            if target != "auto":
                raise BackendUnavailable(f"target '{target}': {e}") from None
            not_built[kind] = str(e)
        except BackendError as e:
            if target != "auto":
                raise
            not_built[kind] = _first_problem(e)
    info = model.info
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "neuralc_version": neuralc_version(),
        "model": {
            "name": info.name,
            "source_file": model.filename,
            "source_sha256": sha256(source_text.encode("utf-8")),
            "execution_device": info.training.device,
            "hparams": {u.path: _json_value(u.value) for u in info.hparams.uses},
            "signature": Signature.from_module(model.module).to_json(),
        },
        "target": target,
        "precision": precision,
        "opt_level": opt,
        "variants": [e.to_json() for e in entries],
        "not_built": not_built,
    }
    shared = {GRAPH: (print_module(model.module) + "\n").encode(), WEIGHTS: weights_file}
    return pack(manifest, shared, [e.files for e in entries])
