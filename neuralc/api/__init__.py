"""neuralc's Python API: compile a model, call it, save it, load it anywhere.

    import neuralc
    model = neuralc.compile("model.nr")            # target="auto": every variant built here
    y = model(x)                                    # numpy in, numpy out (torch in, torch out)
    model.save("model.ncz")
    model = neuralc.load("model.ncz", device=None)  # no recompilation, no .nr file
    diagnostics = neuralc.check("model.nr")         # warnings and errors, as the CLI prints them

The API and the CLI share one code path: ``compile`` runs the driver's compile pipeline,
builds the same artifact as ``neuralc MODEL.nr --target auto -o model.ncz`` and opens it
exactly as ``load`` opens a file, choosing the variant for this machine
(``neuralc.backends.select``).

Errors are exceptions with one clear message: :class:`CompileError` (problems in the model,
with ``.diagnostics`` located in the ``.nr`` text; also a layer a named target cannot
express), :class:`UsageError` (an argument: network, hyperparameter, target, device),
:class:`WeightsError`, :class:`InputError`, :class:`ArtifactError` (a damaged, tampered or
foreign artifact, or none of its variants runs here), :class:`BackendUnavailable` (a target's
packages are not installed), FileNotFoundError. Warnings (the model's, or a device that could
not be used) are :class:`NeuralcWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.api.build import build_artifact
from neuralc.api.model import Model, NeuralcWarning, open_artifact
from neuralc.api.signature import DimSpec, Signature, TensorSpec
from neuralc.backends.base import BackendError, BackendUnavailable
from neuralc.backends.select import NoVariantError
from neuralc.diagnostics import CompileError, Diagnostic, render
from neuralc.driver import UsageError, compile_source
from neuralc.frontend.hparams import HParams
from neuralc.frontend.model import CompiledModel
from neuralc.ir.types import PRECISIONS
from neuralc.runtime.artifact import ArtifactError, read_artifact
from neuralc.runtime.signature import InputError
from neuralc.runtime.weights import (
    WeightsError,
    check_weights_header,
    finish_weights,
    init_weights,
    load_weights,
    module_weights,
)
from neuralc.runtime.weights_import import LAYOUTS, apply_layout

PathLike = str | os.PathLike[str]


def _source(path_or_source: PathLike) -> tuple[str, str]:
    """(text, filename). A ``str`` holding a newline or ``{`` is model text; else a path."""
    if isinstance(path_or_source, str) and ("\n" in path_or_source or "{" in path_or_source):
        return path_or_source, "<string>"
    if not isinstance(path_or_source, (str, os.PathLike)):
        raise UsageError(f"expected a .nr path or model text, got "
                         f"{type(path_or_source).__name__}")
    p = Path(path_or_source)
    try:
        return p.read_text(encoding="utf-8"), str(path_or_source)
    except FileNotFoundError:
        raise FileNotFoundError(f"no such model file: {p}") from None
    except IsADirectoryError:
        raise UsageError(f"{p} is a directory, not a model file") from None
    except UnicodeDecodeError:
        raise UsageError(f"{p} is not a UTF-8 text file") from None


def _hparams(hparams: Mapping[str, Any] | None) -> HParams:
    if hparams is None:
        return HParams()
    if not isinstance(hparams, Mapping):
        raise UsageError(f"hparams must be a dict of name -> value, got "
                         f"{type(hparams).__name__}")
    return HParams({str(k): v for k, v in hparams.items()})


def _compile(path_or_source: PathLike, network: str | None, hparams: Mapping[str, Any] | None,
             opt: int) -> tuple[CompiledModel, str]:
    if opt not in (0, 1, 2, 3):
        raise UsageError(f"opt must be 0, 1, 2 or 3, got {opt!r}")
    text, filename = _source(path_or_source)
    model = compile_source(text, filename, network=network, hparams=_hparams(hparams),
                           opt_level=opt)
    return model, text


_FILE_CODES = {"float64": "F64", "float32": "F32", "float16": "F16", "int64": "I64",
               "int32": "I32", "int16": "I16", "int8": "I8", "uint64": "U64", "uint32": "U32",
               "uint16": "U16", "uint8": "U8", "bool": "BOOL"}


def _array(name: str, value: Any) -> np.ndarray:
    """A weight as numpy: arrays, and torch tensors (a ``state_dict``) without importing torch."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):
        t = value.detach().cpu()
        return (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        raise WeightsError(f"weight '{name}' is not an array of numbers (dtype {a.dtype})")
    return a


def weights_from_mapping(weights: Mapping[str, Any], model: CompiledModel,
                         layout: str = "neuralc") -> dict[str, np.ndarray]:
    """A dict of arrays (or a torch ``state_dict``) checked as a safetensors file would be;
    ``layout="torch"``: its Dense after a Flatten in PyTorch's NCHW order (weights_import)."""
    arrays = {str(k): _array(str(k), v) for k, v in weights.items()}
    expected = module_weights(model.module)
    header = {k: (_FILE_CODES.get(a.dtype.name, a.dtype.name.upper()), tuple(a.shape))
              for k, a in arrays.items()}
    problems = check_weights_header(expected, header)
    if problems:
        raise WeightsError(f"the weights do not fit network '{model.info.name}':\n  "
                           + "\n  ".join(problems), problems)
    out = finish_weights(expected, arrays)
    apply_layout(out, model.module, _layout(layout), None, "weights")
    return out


def _layout(layout: str) -> str:
    if layout not in LAYOUTS:
        raise UsageError(f"unknown weights layout '{layout}'; expected one of "
                         f"{', '.join(LAYOUTS)}")
    return layout


def _weights(weights: PathLike | Mapping[str, Any] | None, model: CompiledModel,
             seed: int, layout: str = "neuralc") -> dict[str, np.ndarray]:
    if weights is None:
        return init_weights(model.module, seed=seed)
    if isinstance(weights, Mapping):
        return weights_from_mapping(weights, model, layout)
    return load_weights(weights, model.module, layout=_layout(layout))


def compile(path_or_source: PathLike, target: str = "auto", opt: int = 2,
            precision: str | None = None, weights: PathLike | Mapping[str, Any] | None = None,
            network: str | None = None, hparams: Mapping[str, Any] | None = None, *,
            device: str | None = None, opset: int = 17, seed: int = 0,
            weights_layout: str = "neuralc") -> Model:
    """Compile a ``.nr`` file (or model text) into a :class:`Model` for this machine.

    ``target``: ``auto`` (every variant neuralc can build here, best first), or one of
    ``reference``, ``onnx``, ``tensorrt`` (and ``cpu``/``cuda`` once built). ``precision``:
    fp32, fp16, bf16 or mixed; None takes the model's ``execution { precision }``.
    ``weights``: a safetensors path, a dict of arrays or a torch ``state_dict``; None gives
    the seeded initial weights (``seed``). ``weights_layout="torch"``: the weights come from
    a PyTorch model that flattens NCHW (the Dense after a Flatten is permuted). ``device``:
    ``cpu``, ``cuda``, ``cuda:N``; None takes the model's ``execution { device }``.
    """
    model, text = _compile(path_or_source, network, hparams, opt)
    precision = precision or model.info.training.precision
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision '{precision}'; expected one of "
                         f"{', '.join(PRECISIONS)}")
    w = _weights(weights, model, seed, weights_layout)
    stage: list[Diagnostic] = []
    try:
        data = build_artifact(model, w, source_text=text, target=target, opt=opt,
                              precision=precision, opset=opset, stage_warnings=stage)
    except BackendError as e:
        raise CompileError(e.diagnostics) from None
    diagnostics = list(model.warnings) + stage
    for d in diagnostics:
        warnings.warn(render(d), NeuralcWarning, stacklevel=2)
    return open_artifact(data, device=device, diagnostics=diagnostics)


def load(path: PathLike, device: str | None = None, variant: str | None = None) -> Model:
    """Load an artifact (``.ncz``) without recompiling or reading the ``.nr`` file.

    ``device`` (``cpu``, ``cuda``, ``cuda:N``) overrides the model's ``execution { device }``;
    where it cannot be honoured a NeuralcWarning says so and the best runnable variant runs.
    ``variant`` picks one variant by name or kind (no fallback).
    """
    return open_artifact(read_artifact(path), device=device, variant=variant)


def check(path_or_source: PathLike, network: str | None = None,
          hparams: Mapping[str, Any] | None = None) -> list[Diagnostic]:
    """The model's diagnostics (errors and warnings, as ``neuralc check`` prints them); an
    empty list for a clean model. Render them with ``neuralc.diagnostics.render_all``."""
    try:
        model, _ = _compile(path_or_source, network, hparams, 2)
    except CompileError as e:
        return list(e.diagnostics)
    return list(model.warnings)


__all__ = ["ArtifactError", "BackendUnavailable", "CompileError", "Diagnostic", "DimSpec",
           "InputError", "Model", "NeuralcWarning", "NoVariantError", "Signature", "TensorSpec",
           "UsageError", "WeightsError", "check", "compile", "load", "weights_from_mapping"]
