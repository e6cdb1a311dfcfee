"""A network's weights: which tensors it has, seeded initial values, safetensors files.

Weights are named ``<layer name>.<param>`` with PyTorch's names and layouts (DSL.md section 8),
so a ``state_dict`` saved from the generated PyTorch model loads as it is. Files are read only
as safetensors: a pickle (``torch.save``) can run code when loaded, so it is refused with a
message that says how to convert it. Initial values are seeded per weight name, so adding a
layer leaves every other layer's weights unchanged.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralc.diagnostics import suggest
from neuralc.ir.core import Module, Op, func_body
from neuralc.ir.shapes import ShapeError
from neuralc.ir.types import shape_str
from neuralc.layers import catalog
from neuralc.layers.catalog import LayerSpec, WeightSpec
from neuralc.runtime.signature import numpy_dtype, select_func


class WeightsError(Exception):
    """Weights that do not fit the network; ``problems`` holds one line per problem."""

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = problems if problems is not None else [message]


@dataclass(frozen=True)
class LayerWeight:
    """One weight tensor of one layer op, as the runtime needs it for messages and lookups."""

    name: str  # full name: "dense.weight"
    param: str  # short name the reference function sees: "weight"
    layer: str  # layer name: "dense"
    kind: str  # layer kind for messages: "Dense"
    spec: WeightSpec


def layer_spec(op: Op) -> LayerSpec | None:
    """The catalog entry of a graph op; None for other ops."""
    return catalog.by_op(op.name) if op.dialect == "graph" else None


def op_weights(op: Op) -> list[LayerWeight]:
    """The weights one graph op needs (empty for ops without weights or outside the catalog)."""
    spec = layer_spec(op)
    if spec is None:
        return []
    layer = op.attributes.get("name")
    in_types = [v.type for v in op.operands]
    if any(t.shape is None for t in in_types):
        raise WeightsError(f"{spec.name} layer '{layer}' has inputs of unknown shape; "
                           "run shape inference before asking for its weights")
    try:
        specs = spec.weights(op.attributes, in_types)
    except ShapeError as e:
        raise WeightsError(f"{spec.name} layer '{layer}': {e.message}") from None
    if specs and not isinstance(layer, str):
        raise WeightsError(f"{op.name} at {op.location} has weights but no 'name' attribute")
    return [LayerWeight(f"{layer}.{p}", p, str(layer), spec.name, s) for p, s in specs.items()]


def module_weights(module: Module, func_name: str | None = None) -> list[LayerWeight]:
    """Every weight of one network in program order; two layers may not share a name."""
    out: list[LayerWeight] = []
    seen: set[str] = set()
    for op in func_body(select_func(module, func_name)).ops:
        for w in op_weights(op):
            if w.name in seen:
                raise WeightsError(f"two layers are named '{w.layer}'; their weight "
                                   f"'{w.name}' would be ambiguous")
            seen.add(w.name)
            out.append(w)
    return out


def weight_specs(module: Module, func_name: str | None = None) -> dict[str, WeightSpec]:
    """Full weight name -> its spec (shape, initialiser, dtype), in program order."""
    return {w.name: w.spec for w in module_weights(module, func_name)}


# -- initialisation -------------------------------------------------------------------------


def name_seed(name: str, seed: int) -> int:
    """A stable 64-bit seed for one weight: the same name and seed give the same values."""
    digest = hashlib.sha256(f"neuralc/{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def init_weight(name: str, spec: WeightSpec, seed: int = 0) -> np.ndarray:
    """One weight's initial value following its Init, from a generator seeded by its name."""
    rng = np.random.default_rng(name_seed(name, seed))
    init = spec.init
    if init.kind == "uniform":
        values = rng.uniform(-init.a, init.a, size=spec.shape)
    elif init.kind == "normal":
        values = rng.normal(0.0, init.a, size=spec.shape)
    elif init.kind == "const":
        values = np.full(spec.shape, init.a)
    else:
        raise WeightsError(f"weight '{name}' has an unknown initialiser {init.kind!r}")
    return np.asarray(values).astype(numpy_dtype(spec.dtype))


def init_weights(module: Module, seed: int = 0, func_name: str | None = None
                 ) -> dict[str, np.ndarray]:
    """Seeded initial weights for every layer, keyed by full name, in program order."""
    return {w.name: init_weight(w.name, w.spec, seed) for w in module_weights(module, func_name)}


# -- safetensors files ------------------------------------------------------------------------

_FLOAT_FILE_TYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_INT_FILE_TYPES = {"I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8",
                   "U64": "uint64", "U32": "uint32", "U16": "uint16", "U8": "uint8"}
_LIST_LIMIT = 10  # names listed per problem before "and N more"


def _file_dtype_name(code: str) -> str:
    return _FLOAT_FILE_TYPES.get(code) or _INT_FILE_TYPES.get(code) or code.lower()


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_LIST_LIMIT])
    more = len(names) - _LIST_LIMIT
    return shown + (f" and {more} more" if more > 0 else "")


def _not_safetensors_hint(path: Path) -> str:
    """Name what the file looks like, so the user knows how to convert it."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError:
        return ""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return ("; it looks like a PyTorch checkpoint (torch.save / pickle), which neuralc does "
                "not load because loading a pickle can run code: save the state_dict with "
                "safetensors.torch.save_file(model.state_dict(), 'model.safetensors')")
    if head.startswith(b"\x89HDF"):
        return "; it looks like a Keras HDF5 file: export the weights as safetensors"
    if head.startswith(b"\x93NUMPY"):
        return "; it looks like a numpy .npy file: save a dict of arrays with save_weights"
    return ""


def _read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (safetensors dtype code, shape), reading no tensor data."""
    from safetensors import safe_open

    if not path.exists():
        raise WeightsError(f"weights file '{path}' does not exist")
    if not path.is_file():
        raise WeightsError(f"weights path '{path}' is not a file")
    try:
        out: dict[str, tuple[str, tuple[int, ...]]] = {}
        with safe_open(str(path), framework="np") as f:
            names = f.keys()
            for key in names:
                view = f.get_slice(key)
                out[key] = (str(view.get_dtype()), tuple(int(s) for s in view.get_shape()))
        return out
    except Exception as e:  # noqa: BLE001 - the library raises several types; none may escape
        raise WeightsError(f"'{path}' is not a safetensors file ({e})"
                           f"{_not_safetensors_hint(path)}") from None


def _bf16_to_f32(data: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """bfloat16 is the top half of a float32; numpy has no bfloat16 of its own."""
    bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32).reshape(shape)


def _read_tensors(path: Path, header: dict[str, tuple[str, tuple[int, ...]]],
                  names: list[str]) -> dict[str, np.ndarray]:
    from safetensors import deserialize, safe_open

    try:
        out: dict[str, np.ndarray] = {}
        with safe_open(str(path), framework="np") as f:
            for n in names:
                if header[n][0] != "BF16":
                    out[n] = f.get_tensor(n)
        if any(header[n][0] == "BF16" for n in names):
            for n, info in deserialize(path.read_bytes()):
                if n in names and info["dtype"] == "BF16":
                    out[n] = _bf16_to_f32(bytes(info["data"]), header[n][1])
        return out
    except Exception as e:  # noqa: BLE001 - a file changed or damaged after its header was read
        raise WeightsError(f"cannot read the tensors of '{path}' ({e})") from None


def _dtype_problem(w: LayerWeight, code: str) -> str | None:
    """Float tensors load into float weights (cast) and integers into integer ones, never across."""
    want_float = np.dtype(numpy_dtype(w.spec.dtype)).kind == "f"
    if want_float and code in _FLOAT_FILE_TYPES:
        return None
    if not want_float and code in _INT_FILE_TYPES:
        return None
    want = "a floating-point" if want_float else "an integer"
    return (f"{w.name} has dtype {_file_dtype_name(code)}, expected {want} tensor "
            f"({numpy_dtype(w.spec.dtype)})")


def _shape_problem(w: LayerWeight, shape: tuple[int, ...]) -> str | None:
    if shape == tuple(w.spec.shape):
        return None
    msg = f"{w.name} has shape {shape_str(shape)}, expected {shape_str(tuple(w.spec.shape))}"
    if len(shape) == 2 and shape == tuple(reversed(w.spec.shape)):
        msg += " (it looks transposed: neuralc uses PyTorch's (out, in) layout, not Keras's)"
    return msg


def check_weights_header(expected: list[LayerWeight],
                         header: Mapping[str, tuple[str, tuple[int, ...]]]) -> list[str]:
    """Every mismatch between the expected weights and a file's names, shapes and dtypes."""
    problems: list[str] = []
    names = [w.name for w in expected]
    missing = [w for w in expected if w.name not in header]
    by_layer: dict[str, list[LayerWeight]] = {}
    for w in missing:
        by_layer.setdefault(w.layer, []).append(w)
    for layer, ws in by_layer.items():
        plural = "s" if len(ws) > 1 else ""
        problems.append(f"missing tensor{plural} for {ws[0].kind} layer '{layer}': "
                        f"{_listing([w.name for w in ws])}")
    extra = [k for k in header if k not in set(names)]
    missing_names = [w.name for w in missing]
    for k in extra[:_LIST_LIMIT]:
        close = suggest(k, missing_names) or suggest(k, names)
        hint = f"; did you mean '{close}'?" if close else ""
        problems.append(f"unexpected tensor '{k}'{hint}")
    if len(extra) > _LIST_LIMIT:
        problems.append(f"and {len(extra) - _LIST_LIMIT} more unexpected tensors: "
                        f"{_listing(extra[_LIST_LIMIT:])}")
    if expected and missing_names == names and header:
        problems.append("no tensor name matches this network; are these the weights of "
                        "another model?")
    for w in expected:
        if w.name not in header:
            continue
        code, shape = header[w.name]
        problem = _shape_problem(w, shape) or _dtype_problem(w, code)
        if problem:
            problems.append(problem)
    return problems


def load_weights(path: str | os.PathLike[str], module: Module, func_name: str | None = None
                 ) -> dict[str, np.ndarray]:
    """Read a safetensors file holding exactly the network's weights, checked and cast.

    Floating tensors of any width (f16, bf16, f64) are cast to the weight's dtype; an integer
    tensor for a float weight (or the reverse) is refused. The result is in program order.
    """
    p = Path(path)
    expected = module_weights(module, func_name)
    header = _read_header(p)
    problems = check_weights_header(expected, header)
    if problems:
        fname = select_func(module, func_name).attributes.get("sym_name")
        raise WeightsError(f"weights file '{p}' does not fit network '{fname}':\n  "
                           + "\n  ".join(problems), problems)
    raw = _read_tensors(p, header, [w.name for w in expected])
    return {w.name: np.array(raw[w.name], dtype=numpy_dtype(w.spec.dtype), copy=True)
            for w in expected}


def save_weights(path: str | os.PathLike[str], weights: Mapping[str, np.ndarray],
                 metadata: dict[str, str] | None = None) -> None:
    """Write weights as a safetensors file (the one format :func:`load_weights` reads)."""
    from safetensors.numpy import save_file

    tensors: dict[str, np.ndarray] = {}
    for name, value in weights.items():
        a = np.asarray(value)
        if not a.flags.c_contiguous:
            a = a.copy(order="C")  # not np.ascontiguousarray: it makes 0-d arrays 1-d
        if a.dtype.kind not in "fiub":
            raise WeightsError(f"weight '{name}' has dtype {a.dtype}, which safetensors "
                               "cannot store")
        tensors[name] = a
    try:
        save_file(tensors, str(path), metadata=metadata)
    except Exception as e:  # noqa: BLE001 - report any write failure without a traceback
        raise WeightsError(f"cannot write weights to '{path}' ({e})") from None
