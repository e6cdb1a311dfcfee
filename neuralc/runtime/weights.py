"""A network's weights: which tensors it has, seeded initial values, safetensors files.

Weights are named ``<layer name>.<param>`` with PyTorch's names and layouts (DSL.md section 8),
so a ``state_dict`` saved from the generated PyTorch model loads as it is. Files are read only
as safetensors: a pickle (``torch.save``) can run code when loaded, so it is refused with a
message that says how to convert it. Initial values are seeded per weight name, so adding a
layer leaves every other layer's weights unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralc.diagnostics import suggest
from neuralc.files import FileProblem, open_regular, write_bytes
from neuralc.ir.core import Module, Op, func_body
from neuralc.ir.shapes import ShapeError
from neuralc.ir.types import shape_str
from neuralc.layers import catalog
from neuralc.layers.catalog import LayerSpec, WeightSpec
from neuralc.limits import MEMORY, format_bytes
from neuralc.passes.run_memory import run_memory
from neuralc.passes.run_memory import where as run_where
from neuralc.runtime.signature import numpy_dtype, select_func
from neuralc.runtime.weights_import import (
    LAYOUT_KEY,
    NEURALC_LAYOUT,
    WeightsWarning,
    apply_layout,
    structural_mapping,
    suggest_by_structure,
)


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
    expected = module_weights(module, func_name)
    check_weights_fit(module, func_name)
    return {w.name: init_weight(w.name, w.spec, seed) for w in expected}


def check_weights_fit(module: Module, func_name: str | None = None) -> None:
    """Refuse, before allocating any, weights that alone pass the memory limit of a run."""
    mem = run_memory(select_func(module, func_name), {})
    if mem.weights > MEMORY.value:
        where = f", {format_bytes(mem.heaviest_bytes)} of them in {run_where(mem.heaviest)}" \
            if mem.heaviest is not None else ""
        raise WeightsError(f"the weights of this network need {format_bytes(mem.weights)}"
                           f"{where}; {MEMORY.exceeded()}")


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


_MAX_HEADER = 100_000_000  # safetensors' own bound on the JSON header


def _repeated_names(path: Path) -> list[str]:
    """Tensor names the file's JSON header gives twice. The safetensors library keeps one of
    them silently, so which tensor loads would depend on the library; neuralc refuses."""
    try:
        with open_regular(path) as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 <= n <= min(size - 8, _MAX_HEADER):
                return []  # not a safetensors file: safe_open says so
            raw = f.read(n)
    except FileProblem:
        return []
    repeated: list[str] = []

    def pairs(items: list[tuple[str, object]]) -> dict[str, object]:
        seen: set[str] = set()
        for k, _ in items:
            if k in seen and k not in repeated:
                repeated.append(k)
            seen.add(k)
        return dict(items)

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except (ValueError, RecursionError):
        return []  # not JSON: safe_open says so
    return repeated


def _read_header(path: Path) -> dict[str, tuple[str, tuple[int, ...]]]:
    """Tensor name -> (safetensors dtype code, shape), reading no tensor data."""
    from safetensors import safe_open

    if not path.exists():
        raise WeightsError(f"weights file '{path}' does not exist")
    if not path.is_file():
        raise WeightsError(f"weights path '{path}' is not a file")
    repeated = _repeated_names(path)
    if repeated:
        plural = "s" if len(repeated) > 1 else ""
        raise WeightsError(f"weights file '{path}' names the tensor{plural} "
                           f"{_listing(repeated)} twice in its header; a safetensors file names "
                           "each tensor once")
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
    missing = [w for w in expected if w.name not in header and not w.spec.optional]
    by_layer: dict[str, list[LayerWeight]] = {}
    for w in missing:
        by_layer.setdefault(w.layer, []).append(w)
    for layer, ws in by_layer.items():
        plural = "s" if len(ws) > 1 else ""
        problems.append(f"missing tensor{plural} for {ws[0].kind} layer '{layer}': "
                        f"{_listing([w.name for w in ws])}")
    extra = [k for k in header if k not in set(names)]
    missing_names = [w.name for w in missing]
    shapes = {w.name: tuple(w.spec.shape) for w in expected}
    mapping = structural_mapping(expected, header) if extra else None
    for k in extra[:_LIST_LIMIT]:
        if mapping is not None:
            prefix = next(p for p in sorted(mapping, key=len, reverse=True)
                          if k.startswith(p + "."))
            close: str | None = mapping[prefix] + k[len(prefix):]
        else:  # a layer of the same structure, never just a similar spelling (conv1: conv2d_1)
            close = suggest_by_structure(k, expected, header)
            if close is None:  # a misspelt parameter (dense.weights): by spelling, same shape
                close = suggest(k, missing_names)
                if close is not None and shapes[close] != tuple(header[k][1]):
                    close = None
        hint = f"; did you mean '{close}'?" if close else ""
        problems.append(f"unexpected tensor '{k}'{hint}")
    if mapping is not None:
        problems.append("the file's layers match this network's in order and shape: "
                        + ", ".join(f"{a} -> {b}" for a, b in mapping.items())
                        + "; rename its tensors so, or name the layers after them "
                        "(Conv2D(..., name=\"conv1\"))")
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


def load_weights(path: str | os.PathLike[str], module: Module, func_name: str | None = None,
                 layout: str = "neuralc") -> dict[str, np.ndarray]:
    """Read a safetensors file holding exactly the network's weights, checked and cast.

    Floating tensors of any width (f16, bf16, f64) are cast to the weight's dtype; an integer
    tensor for a float weight (or the reverse) is refused; an optional weight (BatchNorm's
    ``num_batches_tracked``) may be absent. ``layout="torch"`` reads the Dense after a Flatten
    of a spatial map in PyTorch's NCHW flatten order (weights_import.py). The result is in
    program order.
    """
    p = Path(path)
    expected = module_weights(module, func_name)
    check_weights_fit(module, func_name)
    header = _read_header(p)
    problems = check_weights_header(expected, header)
    if problems:
        fname = select_func(module, func_name).attributes.get("sym_name")
        raise WeightsError(f"weights file '{p}' does not fit network '{fname}':\n  "
                           + "\n  ".join(problems), problems)
    raw = _read_tensors(p, header, [w.name for w in expected if w.name in header])
    out = finish_weights(expected, raw)
    apply_layout(out, module, layout, _file_layout(p), str(p), func_name)
    return out


def finish_weights(expected: list[LayerWeight], arrays: Mapping[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """Checked arrays as the network's weights: its dtypes, program order, and the initial
    value of an optional weight the source left out.

    NaN or infinite values load (a checkpoint taken as training diverged is still worth
    inspecting) with a WeightsWarning: every output they reach will be NaN or infinite."""
    out = {w.name: np.array(arrays[w.name], dtype=numpy_dtype(w.spec.dtype), copy=True)
           if w.name in arrays else init_weight(w.name, w.spec) for w in expected}
    bad = [n for n, a in out.items() if a.dtype.kind == "f" and not np.isfinite(a).all()]
    if bad:
        warnings.warn(f"the weights hold NaN or infinite values in {_listing(bad)}; the outputs "
                      "they reach will be NaN or infinite", WeightsWarning, stacklevel=3)
    return out


def _file_layout(path: Path) -> str | None:
    """The layout a file says its tensors are in (neuralc writes it), else None."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return (f.metadata() or {}).get(LAYOUT_KEY)
    except Exception:  # noqa: BLE001 - the header was read already; no metadata is no layout
        return None


def encode_weights(weights: Mapping[str, np.ndarray],
                   metadata: dict[str, str] | None = None) -> bytes:
    """The weights as the bytes of a safetensors file, marked as neuralc's own layout (so
    loading them back never asks whether they came from PyTorch)."""
    from safetensors.numpy import save

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
        return save(tensors, metadata={LAYOUT_KEY: NEURALC_LAYOUT, **(metadata or {})})
    except Exception as e:  # noqa: BLE001 - the library raises several types; none may escape
        raise WeightsError(f"cannot encode the weights ({e})") from None


def save_weights(path: str | os.PathLike[str], weights: Mapping[str, np.ndarray],
                 metadata: dict[str, str] | None = None) -> None:
    """Write weights as a safetensors file (the one format :func:`load_weights` reads).

    Written whole or not at all through neuralc.files: a symlink is written through, a
    destination that is no regular file (``/dev/full``, a FIFO) is refused, and a failed
    write (a full disk) is a WeightsError."""
    data = encode_weights(weights, metadata)
    try:
        write_bytes(path, data)
    except FileProblem as e:
        raise WeightsError(f"cannot write weights to '{path}': {e.reason}") from None
