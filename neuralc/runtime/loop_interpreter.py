"""The loop-level interpreter: runs a loop module (after ``lower-to-loops``) in numpy.

It is the oracle of the loop level: the code generators must agree with it, and it must agree
with the tensor-level interpreter (differential tests). It executes each loop nest as array
operations over the whole iteration space rather than element by element: a parallel
``loop.for`` adds an axis on which its variable is ``arange(lower, upper)``, every scalar op
becomes the numpy op over the axes of the loops it sits in (broadcasting over the others),
``loop.reduce`` evaluates its body with one more axis per reduction variable and reduces them,
``loop.load``/``loop.store`` are fancy indexing. A serial ``loop.for`` (a recurrence) runs its
iterations one after another. Parallel iterations are independent by definition, so running
them as one array operation is their meaning, not an approximation. Schedule attributes
(``vectorize``, ``jam``) do not change meaning and are ignored.

Buffers are numpy arrays: inputs and outputs as given, weights by name, intermediate buffers
as views of one byte arena at the offsets the memory plan chose, so a plan that overlaps live
buffers gives wrong results here too. Every index is checked against its buffer: an
out-of-bounds read or write raises instead of wrapping around.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from neuralc.ir.core import Block, Module, Op, Value, func_body
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dialects.tensor import BINARY_FNS, unary_fn
from neuralc.ir.dialects.tensor_attention import COMPARE_FNS
from neuralc.ir.dims import Dim, Expr, FloorDiv, MinMax, Mod
from neuralc.ir.numeric import np_dtype, round_bf16
from neuralc.ir.types import MemRefType, ScalarType

_REDUCE = {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}
_IDENTITY = {"add": 0.0, "mul": 1.0, "max": -np.inf, "min": np.inf}


class LoopInterpreterError(Exception):
    """The loop module cannot be run (an index out of bounds, a missing kernel)."""


def eval_index(d: Dim, env: Mapping[str, Any]) -> Any:
    """A dims expression at numpy-array (or int) variable values, with floor semantics."""
    if isinstance(d, int):
        return d
    total: Any = 0
    for mono, coeff in d.terms:
        term: Any = coeff
        for atom in mono:
            term = term * _eval_atom(atom, env)
        total = total + term
    return total


def _eval_atom(a: Any, env: Mapping[str, Any]) -> Any:
    if isinstance(a, str):
        if a not in env:
            raise LoopInterpreterError(f"unbound index variable '{a}'")
        return env[a]
    if isinstance(a, MinMax):
        vals = [eval_index(e, env) for e in a.args]
        fn = np.minimum if a.kind == "min" else np.maximum
        out = vals[0]
        for v in vals[1:]:
            out = fn(out, v)
        return out
    num = eval_index(a.num, env)
    den = eval_index(a.den, env) if isinstance(a.den, Expr) else a.den
    if isinstance(a, FloorDiv):
        return np.floor_divide(num, den)
    assert isinstance(a, Mod)
    return np.mod(num, den)


def _cast(x: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "bf16":
        return round_bf16(np.asarray(x, dtype=np.float32))
    return np.asarray(x).astype(np_dtype(dtype))


class _Frame:
    """The state of one kernel run: buffers, variable values and SSA values (with depth)."""

    def __init__(self, sizes: Mapping[str, int]):
        self.env: dict[str, Any] = dict(sizes)
        self.values: dict[int, np.ndarray] = {}
        self.depth = 0  # number of vectorised axes open

    def widen(self, x: Any) -> np.ndarray:
        """``x`` with trailing unit axes up to the current depth (outer values broadcast)."""
        a = np.asarray(x)
        if a.ndim < self.depth:
            a = a.reshape(a.shape + (1,) * (self.depth - a.ndim))
        return a

    def get(self, v: Value) -> np.ndarray:
        return self.widen(self.values[id(v)])

    def vars(self) -> dict[str, Any]:
        """Variable values, each widened to the current depth so that variables of different
        loops combine on their own axes."""
        return {k: self.widen(v) if isinstance(v, np.ndarray) else v
                for k, v in self.env.items()}


class LoopInterpreter:
    """Runs a loop module's network: ``load(weights)`` runs its init program once, ``run``
    runs the network on input arrays at the given symbol sizes."""

    def __init__(self, module: Module, func_name: str | None = None):
        self.module = module
        self.kernels = {str(op.attributes["sym_name"]): op for op in module.body.ops
                        if op.name == "loop.kernel"}
        nets = module.networks
        if func_name is not None:
            nets = [f for f in nets if f.attributes.get("sym_name") == func_name]
        if len(nets) != 1:
            raise LoopInterpreterError("name the network to run")
        self.func = nets[0]
        self.weights: Mapping[str, np.ndarray] = {}
        self.init_values: list[np.ndarray] = []

    def load(self, weights: Mapping[str, np.ndarray]) -> LoopInterpreter:
        self.weights = weights
        init = self.module.init_func(self.func)
        self.init_values = []
        if init is not None:
            args = func_body(init).args
            n = int(init.attributes["num_outputs"])
            outs = [np.zeros(self._shape(a.type, {}), np_dtype(a.type.dtype)) for a in args[:n]]
            self._host(init, outs, {})
            self.init_values = outs
        return self

    def run(self, inputs: list[np.ndarray], sizes: Mapping[str, int]) -> list[np.ndarray]:
        args = func_body(self.func).args
        n_in = int(self.func.attributes["num_inputs"])
        n_out = int(self.func.attributes["num_outputs"])
        outs = [np.zeros(self._shape(a.type, sizes), np_dtype(a.type.dtype))
                for a in args[n_in:n_in + n_out]]
        self._host(self.func, [*inputs, *outs, *self.init_values], sizes)
        return outs

    @staticmethod
    def _shape(t: MemRefType, sizes: Mapping[str, int]) -> tuple[int, ...]:
        return tuple(int(eval_index(d, sizes)) for d in t.shape)

    # -- the host program ------------------------------------------------------------------
    def _host(self, func: Op, buffers: list[np.ndarray], sizes: Mapping[str, int]) -> None:
        body = func_body(func)
        arena_t = body.args[-1].type
        arena = np.zeros(self._shape(arena_t, sizes), np.uint8)
        vals: dict[int, np.ndarray] = {id(a): b for a, b in zip(body.args, [*buffers, arena])}
        for op in body.ops:
            if op.name == "loop.weight":
                t = op.results[0].type
                w = np.asarray(self.weights[op.attributes["weight"]]).astype(np_dtype(t.dtype))
                vals[id(op.results[0])] = w.reshape(self._shape(t, sizes))
            elif op.name == "loop.view":
                t = op.results[0].type
                shape = self._shape(t, sizes)
                start = int(eval_index(dim(op.attributes["offset"]), sizes))
                item = np.dtype(np_dtype(t.dtype)).itemsize
                nbytes = int(np.prod(shape)) * item
                base = vals[id(op.operands[0])]
                if start < 0 or start + nbytes > base.size:
                    raise LoopInterpreterError(f"view [{start}, {start + nbytes}) outside the "
                                               f"arena of {base.size} bytes")
                vals[id(op.results[0])] = base[start:start + nbytes].view(
                    np_dtype(t.dtype)).reshape(shape)
            elif op.name == "loop.call":
                kernel = self.kernels.get(str(op.attributes["callee"]))
                if kernel is None:
                    raise LoopInterpreterError(f"no kernel @{op.attributes['callee']}")
                self.call(kernel, [vals[id(v)] for v in op.operands], sizes)
            elif op.name == "func.return":
                return

    # -- kernels -----------------------------------------------------------------------------
    def call(self, kernel: Op, buffers: list[np.ndarray], sizes: Mapping[str, int]) -> None:
        block = kernel.regions[0].blocks[0]
        frame = _Frame(sizes)
        for a, b in zip(block.args, buffers):
            want = self._shape(a.type, sizes)
            if tuple(b.shape) != want:
                raise LoopInterpreterError(f"kernel @{kernel.attributes['sym_name']}: buffer "
                                           f"{a.name_hint} has shape {b.shape}, expected {want}")
            frame.values[id(a)] = b
        self.block(block, frame)

    def block(self, block: Block, frame: _Frame) -> None:
        for op in block.ops:
            self.op(op, frame)

    def op(self, op: Op, f: _Frame) -> None:
        name = op.name
        if name == "loop.for":
            self._for(op, f)
            return
        if name == "loop.store":
            buf = f.values[id(op.operands[0])]
            idx = self._index(buf, op.attributes["index"], f, op)
            value = f.get(op.operands[1])
            shape = np.broadcast_shapes(*(np.shape(i) for i in idx), value.shape)
            buf[tuple(np.broadcast_to(i, shape) for i in idx)] = np.broadcast_to(value, shape)
            return
        if name == "loop.bind":
            lo = int(eval_index(dim(op.attributes["lower"]), f.env))
            hi = int(eval_index(dim(op.attributes["upper"]), f.env))
            f.env[op.attributes["var"]] = np.clip(f.get(op.operands[0]).astype(np.int64), lo,
                                                  hi - 1)
            return
        if name == "loop.yield":
            return
        f.values[id(op.results[0])] = self.scalar(op, f)

    def scalar(self, op: Op, f: _Frame) -> np.ndarray:
        t = op.results[0].type
        assert isinstance(t, ScalarType)
        name, a = op.name, op.attributes
        if name == "loop.load":
            buf = f.values[id(op.operands[0])]
            if a.get("guard"):
                ok = self._guard(a["guard"], f)
                idx = self._index(buf, a["index"], f, op, where=ok)
                got = buf[tuple(idx)]
                return np.where(ok, got, np.asarray(a.get("other", 0.0)).astype(got.dtype))
            return buf[tuple(self._index(buf, a["index"], f, op))]
        if name == "loop.const":
            return np.asarray(a["value"]).astype(np_dtype(t.dtype))
        if name == "loop.index":
            return _cast(f.widen(eval_index(dim(a["expr"]), f.vars())), t.dtype)
        if name == "loop.guard":
            return self._guard(a["conds"], f)
        args = [f.get(v) for v in op.operands]
        if name == "loop.unary":
            return unary_fn(a["fn"], args[0], a.get("alpha"))
        if name == "loop.binary":
            with np.errstate(all="ignore"):
                return np.asarray(BINARY_FNS[a["fn"]](args[0], args[1])).astype(args[0].dtype)
        if name == "loop.compare":
            return np.asarray(COMPARE_FNS[a["fn"]](args[0], args[1]), dtype=np.bool_)
        if name == "loop.select":
            return np.where(args[0], args[1], args[2]).astype(args[1].dtype)
        if name == "loop.cast":
            return _cast(args[0], t.dtype)
        if name == "loop.reduce":
            return self._reduce(op, f)
        raise LoopInterpreterError(f"{name} cannot be run by the loop interpreter")

    # -- helpers -------------------------------------------------------------------------------
    def _index(self, buf: np.ndarray, texts: list[str], f: _Frame, op: Op,
               where: np.ndarray | None = None) -> list[np.ndarray]:
        out = []
        env = f.vars()
        for axis, text in enumerate(texts):
            i = f.widen(eval_index(dim(text), env))
            size = buf.shape[axis]
            if where is not None:
                i = np.where(where, i, 0)  # masked lanes read element 0, then are discarded
            if np.size(i) and (np.min(i) < 0 or np.max(i) >= size):
                raise LoopInterpreterError(
                    f"{op.name} at {op.location}: index {text} reaches "
                    f"[{np.min(i)}, {np.max(i)}] on an axis of size {size}")
            out.append(np.asarray(i, dtype=np.int64))
        return out

    def _guard(self, conds: list[list[str]], f: _Frame) -> np.ndarray:
        ok: Any = True
        env = f.vars()
        for e, lo, hi in conds:
            x = eval_index(dim(e), env)
            ok = ok & (x >= eval_index(dim(lo), env)) & (x < eval_index(dim(hi), env))
        return f.widen(np.asarray(ok, dtype=np.bool_))

    def _for(self, op: Op, f: _Frame) -> None:
        var = op.attributes["var"]
        lo = int(eval_index(dim(op.attributes["lower"]), f.env))
        hi = int(eval_index(dim(op.attributes["upper"]), f.env))
        body = op.regions[0].blocks[0]
        if op.attributes.get("kind", "parallel") == "serial":
            for t in range(lo, hi):
                f.env[var] = t
                self.block(body, f)
            f.env.pop(var, None)
            return
        f.depth += 1
        f.env[var] = np.arange(lo, hi).reshape((1,) * (f.depth - 1) + (-1,))
        if hi > lo:
            self.block(body, f)
        f.env.pop(var, None)
        f.depth -= 1

    def _reduce(self, op: Op, f: _Frame) -> np.ndarray:
        a = op.attributes
        names = list(a["vars"])
        outer = f.depth
        for k, n in enumerate(names):
            lo = int(eval_index(dim(a["lower"][k]), f.env))
            hi = int(eval_index(dim(a["upper"][k]), f.env))
            f.depth += 1
            f.env[n] = np.arange(lo, hi).reshape((1,) * (f.depth - 1) + (-1,))
        body = op.regions[0].blocks[0]
        self.block(body, f)
        term = body.terminator
        assert term is not None
        value = f.get(term.operands[0])
        dtype = np_dtype(op.results[0].type.dtype)
        sizes = [f.env[n].size for n in names]
        value = np.broadcast_to(value, value.shape[:outer] + tuple(
            max(s, 1) if v == 1 else v for s, v in zip(sizes, value.shape[outer:])))
        axes = tuple(range(outer, outer + len(names)))
        if any(s == 0 for s in sizes):
            shape = value.shape[:outer]
            out = np.full(shape, _IDENTITY[a["kind"]], dtype)
        else:
            out = _REDUCE[a["kind"]].reduce(value.astype(dtype), axis=axes)
        for n in names:
            f.env.pop(n, None)
        f.depth = outer
        return np.asarray(out, dtype=dtype)


def run_loop_module(module: Module, inputs: list[np.ndarray], weights: Mapping[str, np.ndarray],
                    sizes: Mapping[str, int]) -> list[np.ndarray]:
    return LoopInterpreter(module).load(weights).run(inputs, sizes)
