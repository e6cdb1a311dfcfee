"""Checking a network's input arrays against its symbolic signature, and binding its dims.

Every way of running a network (the reference interpreter, each backend's executable) calls
:func:`bind_inputs` first, so a wrong array is refused with one message that names the input,
the dim and the rule, instead of failing later as a numpy broadcasting error inside some layer.
It also returns the sizes of the symbolic dims (``batch``, ``seq``), which runtimes need to
size buffers and which the interpreter uses to check every result against its type.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuralc.diagnostics import did_you_mean
from neuralc.ir.core import Module, Op, network_inputs
from neuralc.ir.dims import Dim, Expr, dim_facts, evaluate
from neuralc.ir.types import TensorType, shape_str


class InputError(Exception):
    """An input array does not fit the network's signature; the message says which and why."""


FLOAT_TYPES = frozenset({"f32", "f16", "bf16", "f64"})
INT_TYPES = frozenset({"i64", "i32", "i8"})


def numpy_dtype(element_type: str) -> np.dtype:
    """The numpy dtype that holds an IR element type (numpy has no bfloat16: float32 holds it)."""
    table = {"f32": np.float32, "f16": np.float16, "bf16": np.float32, "f64": np.float64,
             "i64": np.int64, "i32": np.int32, "i8": np.int8, "i1": np.bool_}
    return np.dtype(table[element_type])


def select_func(module: Module, func_name: str | None = None) -> Op:
    """The network to run: the named one, or the only one; a clear error otherwise."""
    funcs = module.networks
    names = [str(f.attributes.get("sym_name")) for f in funcs]
    if func_name is None:
        if len(funcs) == 1:
            return funcs[0]
        if not funcs:
            raise ValueError(f"module '{module.name}' has no network")
        raise ValueError(f"module '{module.name}' has several networks ({', '.join(names)}); "
                         "name the one to run")
    for f, n in zip(funcs, names):
        if n == func_name:
            return f
    raise ValueError(f"module '{module.name}' has no network '{func_name}'"
                     f"{did_you_mean(func_name, names)}; its networks: {', '.join(names)}")


def input_names(func: Op) -> list[str]:
    """Input names in block-argument order (``input<i>`` where the IR has no name)."""
    return [a.name_hint or f"input{i}" for i, a in enumerate(network_inputs(func))]


def _is_array_like(x: Any) -> bool:
    return isinstance(x, np.ndarray) or hasattr(x, "__array__") or hasattr(x, "detach")


def _to_numpy(name: str, x: Any) -> np.ndarray:
    """An ndarray from an array, a (CPU or CUDA) torch tensor, or nested lists of numbers."""
    a: np.ndarray | None = x if isinstance(x, np.ndarray) else None
    if a is None:
        try:
            if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch, without importing it
                t = x.detach().cpu()
                a = (t.float() if str(t.dtype) == "torch.bfloat16" else t).numpy()
            else:
                a = np.asarray(x)
        except Exception as e:  # noqa: BLE001 - any failure means "not an array of numbers"
            raise InputError(f"input '{name}' is not an array of numbers "
                             f"(got {type(x).__name__}: {e})") from None
    if a.dtype.kind not in "biuf":
        raise InputError(f"input '{name}' is not an array of numbers (dtype {a.dtype})")
    return a


def _convert_dtype(name: str, a: np.ndarray, t: TensorType) -> np.ndarray:
    """Cast to the input's element type where that loses nothing a user would miss."""
    want = numpy_dtype(t.dtype)
    kind = a.dtype.kind
    if t.dtype in FLOAT_TYPES:
        if kind != "f":
            raise InputError(f"input '{name}' has dtype {a.dtype}, expected {want}; "
                             f"convert it with .astype(np.{want})")
    elif t.dtype in INT_TYPES:
        if kind not in "iu":
            raise InputError(f"input '{name}' has dtype {a.dtype}, expected integer indices "
                             f"({want}); pass integer indices, e.g. .astype(np.{want})")
    elif t.dtype == "i1" and kind != "b":
        raise InputError(f"input '{name}' has dtype {a.dtype}, expected bool")
    return a if a.dtype == want else a.astype(want)


def _order(arrays: Any, names: list[str]) -> list[Any]:
    """The given inputs as a list in block-argument order."""
    listing = ", ".join(names)
    if isinstance(arrays, Mapping):
        for key in arrays:
            if key not in names:
                hint = did_you_mean(str(key), [n for n in names if n not in arrays])
                raise InputError(f"unknown input '{key}'{hint}; the inputs are: {listing}")
        missing = [n for n in names if n not in arrays]
        if missing:
            raise InputError(f"missing input{'s' if len(missing) > 1 else ''} "
                             f"{', '.join(repr(m) for m in missing)}; the inputs are: {listing}")
        return [arrays[n] for n in names]
    if _is_array_like(arrays) and not isinstance(arrays, (list, tuple)):
        if len(names) == 1:
            return [arrays]
        raise InputError(f"wrong number of inputs: expected {len(names)} ({listing}), "
                         "got one array")
    if isinstance(arrays, Sequence) and not isinstance(arrays, (str, bytes)):
        if len(arrays) != len(names):
            raise InputError(f"wrong number of inputs: expected {len(names)} ({listing}), "
                             f"got {len(arrays)}")
        return list(arrays)
    raise InputError("inputs must be a list of arrays in input order or a dict by input name, "
                     f"got {type(arrays).__name__}")


def _range_text(lo: int | None, hi: int | None) -> str:
    return f"{'' if lo is None else lo}..{'' if hi is None else hi}"


def size_problem(s: str, value: int, entry: object) -> str | None:
    """Why ``value`` is no size of symbol ``s`` under its ``dims`` entry; None if it is one."""
    lo, hi, step = dim_facts(entry)
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"outside the range of {s} ({_range_text(lo, hi)})"
    if value % step:
        return (f"but {s} must be a multiple of {step} "
                f"(dims {{ {s}: {_range_text(lo, hi)} step {step} }})")
    return None


@dataclass
class _Pending:
    """A compound dim (``2 * n``) checked once its symbols are known."""

    input: int
    axis: int
    dim: Expr
    size: int


class _Binder:
    """Binds symbols to sizes, remembering where each came from for the messages."""

    def __init__(self, names: list[str], shapes: list[tuple[int, ...]],
                 types: list[TensorType], ranges: Mapping[str, Any] | None):
        self.names, self.shapes, self.types = names, shapes, types
        self.ranges = dict(ranges or {})
        self.env: dict[str, int] = {}
        self.source: dict[str, tuple[int, int]] = {}

    def fail(self, i: int, why: str) -> InputError:
        assert self.types[i].shape is not None
        return InputError(f"input '{self.names[i]}' has shape {shape_str(self.shapes[i])}, "
                          f"expected {shape_str(self.types[i].shape)}: {why}")

    def bind(self, s: str, value: int, i: int, axis: int) -> None:
        """Bind ``s`` to ``value``, read from dim ``axis`` of input ``i``."""
        size = self.shapes[i][axis]
        said = f"dim {axis} is {size}" + ("" if size == value else f", so {s} is {value}")
        if s in self.env:
            if self.env[s] != value:
                si, saxis = self.source[s]
                src = f"dim {saxis}" if si == i else f"input '{self.names[si]}'"
                raise self.fail(i, f"{said} but {s} is {self.env[s]} from {src}")
            return
        problem = size_problem(s, value, self.ranges.get(s))
        if problem is not None:
            raise self.fail(i, f"{said}, {problem}")
        self.env[s] = value
        self.source[s] = (i, axis)

    def check_static(self, i: int, axis: int, d: int, size: int) -> None:
        if d != size:
            raise self.fail(i, f"dim {axis} is {size}, expected {d}")

    def resolve(self, pending: list[_Pending]) -> None:
        """Evaluate compound dims; solve ``c * s + known`` for a lone unknown symbol."""
        progress = True
        while pending and progress:
            progress = False
            for p in list(pending):
                unbound = sorted(p.dim.symbols() - self.env.keys())
                if not unbound:
                    value = p.dim.evaluate(self.env)
                    if value != p.size:
                        raise self.fail(p.input, f"dim {p.axis} is {p.size}, expected "
                                                 f"{p.dim} = {value}")
                elif len(unbound) == 1 and _linear_in(p.dim, unbound[0]):
                    self._solve(p, unbound[0])
                else:
                    continue
                pending.remove(p)
                progress = True
        if pending:
            p = pending[0]
            unknown = ", ".join(sorted(p.dim.symbols() - self.env.keys()))
            raise self.fail(p.input, f"cannot determine {unknown} from dim {p.axis} "
                                     f"({p.dim} = {p.size})")

    def _solve(self, p: _Pending, s: str) -> None:
        coeff = dict(p.dim.terms)[(s,)]
        rest_terms = {m: c for m, c in p.dim.terms if m != (s,)}
        rest = Expr(rest_terms).evaluate(self.env) if rest_terms else 0
        value, remainder = divmod(p.size - rest, coeff)
        if remainder or value < 0:
            raise self.fail(p.input, f"dim {p.axis} is {p.size}, expected {p.dim}, "
                                     f"which is never {p.size}")
        self.bind(s, value, p.input, p.axis)


def _linear_in(d: Expr, s: str) -> bool:
    """``d`` is ``c * s + terms without s``, so ``s`` can be solved from ``d``'s value."""
    found = False
    for m, _ in d.terms:
        if m == (s,):
            found = True
        elif s in Expr({m: 1}).symbols():
            return False
    return found


def bind_inputs(func: Op, arrays: Any, dims_ranges: Mapping[str, Any] | None = None
                ) -> tuple[list[np.ndarray], dict[str, int]]:
    """Check ``arrays`` against ``func``'s inputs; return them converted, and the dim sizes.

    ``arrays`` is a list in block-argument order, a dict by input name, or (for a network with
    one input) a single array. Float inputs take any float dtype (cast to the input's type);
    index inputs take any integer dtype. Static dims must match, a symbol must have one size
    across all inputs, lie in its ``dims`` range and be a multiple of its step, and compound
    dims must evaluate to the array's size.
    """
    args = network_inputs(func)
    names = input_names(func)
    given = _order(arrays, names)
    types = [a.type for a in args]
    converted = [_convert_dtype(n, _to_numpy(n, x), t) for n, x, t in zip(names, given, types)]
    shapes = [tuple(int(s) for s in a.shape) for a in converted]
    binder = _Binder(names, shapes, types, dims_ranges)
    pending: list[_Pending] = []
    for i, (t, shape) in enumerate(zip(types, shapes)):
        if t.shape is None:
            continue  # not inferred yet: nothing to check
        if len(shape) != len(t.shape):
            raise binder.fail(i, f"rank {len(shape)}, expected {len(t.shape)}")
        for axis, (d, size) in enumerate(zip(t.shape, shape)):
            if isinstance(d, int):
                binder.check_static(i, axis, d, size)
            elif d.is_atomic():
                s = next(iter(d.symbols()))
                binder.bind(s, size, i, axis)
            else:
                pending.append(_Pending(i, axis, d, size))
    binder.resolve(pending)
    return converted, binder.env


def concrete_shape(shape: tuple[Dim, ...], env: Mapping[str, int]) -> tuple[int, ...]:
    """A symbolic shape evaluated with bound symbols (KeyError names an unbound one)."""
    return tuple(evaluate(d, env) for d in shape)


__all__ = ["InputError", "bind_inputs", "concrete_shape", "input_names", "numpy_dtype",
           "select_func"]
