"""A loaded model: an artifact, the variant chosen for this machine, and how it is called.

``neuralc.compile`` builds an artifact in memory and opens it here, exactly as
``neuralc.load`` opens a file, so a compiled model and a reloaded one behave the same.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.api.build import load_variant_modules
from neuralc.api.signature import Signature
from neuralc.backends.select import Selection, select_variant
from neuralc.diagnostics import Diagnostic
from neuralc.frontend.hparams import HParams
from neuralc.frontend.model import CompiledModel, NetworkInfo
from neuralc.frontend.sections import TrainingConfig
from neuralc.ir.core import Module
from neuralc.layers import graph_dialect  # noqa: F401  (graph.nir holds graph ops)
from neuralc.runtime.artifact import GRAPH, WEIGHTS, ArtifactData, ArtifactError
from neuralc.runtime.artifact_reference import parse_ir
from neuralc.runtime.artifact_variants import LoadInput, Runner, VariantEntry, get_variant
from neuralc.runtime.signature import InputError, bind_inputs, input_names, select_func
from neuralc.runtime.sizes import check_run
from neuralc.runtime.weights import WeightsError, load_weights


class NeuralcWarning(UserWarning):
    """Something neuralc did differently from what was asked (a device it could not use) or a
    warning of the model file."""


def _is_torch(x: Any) -> bool:
    """A torch tensor, recognised without importing torch."""
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "device")


def _values(inputs: Any) -> list[Any]:
    if isinstance(inputs, dict):
        return list(inputs.values())
    if isinstance(inputs, (list, tuple)):
        return list(inputs)
    return [inputs]


def _weights_from(data: ArtifactData, module: Module) -> dict[str, np.ndarray]:
    """The artifact's weights, checked against the network as any weights file is."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / WEIGHTS
        path.write_bytes(data.member(WEIGHTS))
        try:
            return load_weights(path, module)
        except WeightsError as e:
            problems = "; ".join(e.problems)
            raise ArtifactError(f"{data.origin}: {WEIGHTS} does not fit the network "
                                f"({problems})") from None


def _compiled_model(data: ArtifactData) -> CompiledModel:
    """The graph IR and what the runtime needs of the model, without the .nr file."""
    m = data.manifest["model"]
    module = parse_ir(data.member(GRAPH), f"{data.origin}:{GRAPH}")
    func = select_func(module)
    training = TrainingConfig(device=str(m.get("execution_device", "auto")),
                              precision=str(data.manifest.get("precision", "fp32")))
    info = NetworkInfo(str(m.get("name", func.attributes.get("sym_name"))), input_names(func),
                       training, HParams())
    return CompiledModel(module, info, str(m.get("source_file", data.origin)))


class Model:
    """A compiled model, ready to run on the variant chosen for this machine.

    Call it with numpy arrays or torch tensors: ``model(x)``, ``model(a, b)``,
    ``model([a, b])`` or ``model(image=a, meta=b)``. Inputs are checked against
    :attr:`signature` first (an :class:`InputError` names the input, dim and rule). A model with
    one output returns one array, a model with several a tuple in output order. Torch tensors
    in give torch tensors out, on the device of the first input tensor (not differentiable).
    """

    def __init__(self, data: ArtifactData, compiled: CompiledModel, runner: Runner,
                 selection: Selection, diagnostics: list[Diagnostic] | None = None):
        self._data = data
        self._compiled = compiled
        self._runner = runner
        self._selection = selection
        self._func = select_func(compiled.module)
        self._dims = compiled.module.attributes.get("dims")
        self._constraints = compiled.module.attributes.get("dim_constraints")
        self.signature: Signature = Signature.from_json(data.manifest["model"]["signature"])
        self.warnings: list[Diagnostic] = list(diagnostics or [])

    # -- what was chosen -----------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The network's name."""
        return self._compiled.info.name

    @property
    def target(self) -> str:
        """The variant that runs (``onnx``, ``reference``; later ``cpu-x86-64-v3``, ...)."""
        return self._selection.entry.name

    @property
    def device(self) -> str:
        """Where it runs: ``cpu`` or ``cuda:N``."""
        return self._selection.device

    @property
    def selection_report(self) -> str:
        """What was chosen and why each better variant was skipped."""
        return self._selection.report

    @property
    def variants(self) -> list[str]:
        """Every variant in the artifact, best first."""
        return [str(v["name"]) for v in self._data.manifest["variants"]]

    @property
    def precision(self) -> str:
        return str(self._data.manifest.get("precision", "fp32"))

    @property
    def manifest(self) -> dict[str, Any]:
        """A copy of the artifact's manifest."""
        import copy

        return copy.deepcopy(self._data.manifest)

    @property
    def compiled_model(self) -> CompiledModel:
        """The graph IR the inputs are checked against (for tools such as ``--random``)."""
        return self._compiled

    def __repr__(self) -> str:
        ins = ", ".join(str(t) for t in self.signature.inputs)
        return f"<neuralc.Model {self.name}: {self.target} on {self.device}; inputs {ins}>"

    # -- saving and calling --------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the artifact (``.ncz``); ``neuralc.load`` reads it without the .nr file."""
        return self._data.write(path)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        inputs = self._gather(args, kwargs)
        tensors = [v for v in _values(inputs) if _is_torch(v)]
        if tensors and self._runner.native_torch:
            outputs = self._run_native_torch(inputs)
        else:
            arrays, env = bind_inputs(self._func, inputs, self._dims)
            check_run(self._func, arrays, env, self._constraints)
            outputs = self._runner.run(arrays)
            if tensors:
                import torch  # the caller passed torch tensors: torch is already imported

                where = tensors[0].device
                outputs = [torch.from_numpy(np.ascontiguousarray(y)).to(where) for y in outputs]
        return outputs[0] if len(outputs) == 1 else tuple(outputs)

    def _gather(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        names = ", ".join(self.signature.input_names)
        if args and kwargs:
            raise InputError("give the inputs by position or by name, not both; the inputs "
                             f"are: {names}")
        if kwargs:
            return kwargs
        if not args:
            raise InputError(f"no input given; the inputs are: {names}")
        return args[0] if len(args) == 1 else list(args)

    def _run_native_torch(self, inputs: Any) -> list[Any]:
        """Check shapes (and token indices) on the host, then run on the tensors in place."""
        def proxy(t: Any) -> Any:  # a float tensor's shape, without copying its data
            if _is_torch(t) and t.is_floating_point():
                return np.broadcast_to(np.zeros((), np.float32), tuple(t.shape))
            return t

        if isinstance(inputs, dict):
            checked: Any = {k: proxy(v) for k, v in inputs.items()}
        elif isinstance(inputs, (list, tuple)):
            checked = [proxy(v) for v in inputs]
        else:
            checked = proxy(inputs)
        arrays, env = bind_inputs(self._func, checked, self._dims)
        check_run(self._func, arrays, env, self._constraints)
        ordered = ([inputs[n] for n in self.signature.input_names] if isinstance(inputs, dict)
                   else _values(inputs))
        outputs = self._runner.run_torch(ordered)
        where = next(t.device for t in ordered if _is_torch(t))
        return [y.to(where) for y in outputs]


def open_artifact(data: ArtifactData, device: str | None = None, variant: str | None = None,
                  diagnostics: list[Diagnostic] | None = None) -> Model:
    """Choose a variant of ``data`` for this machine and load it (see ``neuralc.load``)."""
    loadable = load_variant_modules()
    compiled = _compiled_model(data)
    weights = _weights_from(data, compiled.module)
    manifest = data.manifest
    entries = [VariantEntry.from_json(v) for v in manifest["variants"]]
    selection = select_variant(
        entries, device=device, model_device=compiled.info.training.device, loadable=loadable,
        not_built=manifest.get("not_built") or {}, only=variant, model_name=compiled.info.name,
        origin=data.origin)
    for w in selection.warnings:
        warnings.warn(w, NeuralcWarning, stacklevel=3)
    entry = selection.entry
    raw = next(v for v in manifest["variants"] if v["name"] == entry.name)
    files = {name: data.member(name) for name in raw["files"]}
    gpu = int(selection.device.partition(":")[2]) if entry.device == "cuda" else None
    kind = get_variant(entry.kind)
    assert kind is not None  # selection only picks loadable kinds
    li = LoadInput(compiled, weights, data.member(WEIGHTS), entry, files, gpu)
    try:
        runner = kind.load(li)
    except (ArtifactError, InputError):
        raise
    except Exception as e:  # noqa: BLE001 - a runtime library refusing the variant's bytes
        raise ArtifactError(f"{data.origin}: variant '{entry.name}' cannot be loaded "
                            f"({type(e).__name__}: {' '.join(str(e).split())})") from None
    return Model(data, compiled, runner, selection, diagnostics)
