"""The reference interpreter: runs a graph-IR or tensor-IR function op by op in numpy.

It is the oracle for every test (passes are checked by running a module before and after,
backends by comparing with it), so it stays small and does nothing clever: each op's meaning is
its catalog entry's ``reference`` function. Beyond running, it checks what it can cheaply: the
inputs against the signature, each layer's weights against their specs, and each result's
shape and dtype against the op's type, so that a shape-inference bug or a reference bug shows
up at the op that has it. Arrays handed to a reference are read-only views, so a reference
that writes into its inputs fails loudly instead of corrupting a value another op reads; a
result that aliases an input (an identity or a reshape) is copied, so results are writable.

A network with an init function (``outline-init``: the work on weights alone) has it run once
when weights are loaded (:meth:`Interpreter.load`); every run reuses its results.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from neuralc.ir.core import Module, Op, Value, func_body, init_args, network_inputs
from neuralc.ir.dims import evaluate
from neuralc.ir.opdef import DefinedOp, evaluate_op
from neuralc.ir.types import TensorType, shape_str
from neuralc.runtime.signature import bind_inputs, numpy_dtype, select_func
from neuralc.runtime.sizes import check_run
from neuralc.runtime.weights import layer_spec, op_weights

OpHook = Callable[[Op, list[np.ndarray]], None]


class InterpreterError(Exception):
    """The module cannot be run as given (missing weights, a reference that broke its type)."""


class NotExecutableError(InterpreterError):
    """An op has no reference implementation (yet)."""


def _readonly(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _describe(op: Op) -> str:
    name = op.attributes.get("name")
    return f"{op.name}" + (f" '{name}'" if name is not None else "") + f" at {op.location}"


class Interpreter:
    """Runs one network of a module; ``on_op(op, outputs)`` is called after every op.

    After :meth:`run`, ``values`` maps every SSA value of the function to its array, so tests
    can compare intermediate results.
    """

    def __init__(self, module: Module, func_name: str | None = None,
                 on_op: OpHook | None = None, check_types: bool = True):
        self.module = module
        self.func = select_func(module, func_name)
        self.on_op = on_op
        self.check_types = check_types
        self.values: dict[Value, np.ndarray] = {}
        self.init_runs = 0  # how often the init function ran (once per load)
        self._weights: Mapping[str, np.ndarray] | None = None
        self._init_values: list[np.ndarray] = []

    def load(self, weights: Mapping[str, np.ndarray]) -> Interpreter:
        """Bind ``weights`` and run the init function once with them."""
        self._weights = weights
        init = self.module.init_func(self.func)
        self._init_values = [] if init is None else self._run_body(init, {}, weights, {})
        if init is not None:
            self.init_runs += 1
        return self

    def run(self, inputs: Any, weights: Mapping[str, np.ndarray] | None = None
            ) -> list[np.ndarray]:
        """The function's results for ``inputs`` (list in order, or dict by name). Weights
        other than the loaded ones (by identity) are loaded first."""
        if weights is not None and weights is not self._weights:
            self.load(weights)
        if self._weights is None:
            raise InterpreterError("no weights loaded; call load(weights) or pass weights")
        args, env = bind_inputs(self.func, inputs, self.module.attributes.get("dims"))
        check_run(self.func, args, env, self.module.attributes.get("dim_constraints"))
        bound = dict(zip(network_inputs(self.func), args))
        bound.update(zip(init_args(self.func), self._init_values))
        return self._run_body(self.func, bound, self._weights, env)

    def _run_body(self, func: Op, bound: dict[Value, np.ndarray],
                  weights: Mapping[str, np.ndarray], env: dict[str, int]) -> list[np.ndarray]:
        self.values = dict(bound)
        for op in func_body(func).ops:
            if op.name == "func.return":
                return [self.values[v] for v in op.operands]
            outputs = self.run_op(op, [self.values[v] for v in op.operands], weights, env)
            self.values.update(zip(op.results, outputs))
            if self.on_op is not None:
                self.on_op(op, outputs)
        raise InterpreterError("the function does not end with func.return")

    def run_op(self, op: Op, inputs: list[np.ndarray], weights: Mapping[str, np.ndarray],
               env: dict[str, int]) -> list[np.ndarray]:
        """One op's outputs from its input arrays; binds result symbols new to ``env``."""
        spec = layer_spec(op)
        if spec is not None:
            layer_weights = self._weights_for(op, weights)
            outputs = spec.reference(op.attributes, [_readonly(a) for a in inputs], layer_weights)
        else:
            # Tensor-level ops carry their semantics on their op definition.
            if not isinstance(op, DefinedOp) or not op.has_semantics():
                raise NotExecutableError(f"{_describe(op)} cannot be run by the reference "
                                         "interpreter: no layer or op definition implements it")
            outputs = evaluate_op(op, [_readonly(a) for a in inputs],
                                  _EvalContext(env, weights))
        # A result that is (a view of) a read-only input is copied: results never alias.
        outputs = [o if o.flags.writeable else o.copy() for o in map(np.asarray, outputs)]
        if len(outputs) != len(op.results):
            raise InterpreterError(f"{_describe(op)}: the reference returned {len(outputs)} "
                                   f"arrays for {len(op.results)} results")
        if self.check_types:
            for i, (r, out) in enumerate(zip(op.results, outputs)):
                self._check_result(op, i, r.type, out, env)
        return outputs

    def _weights_for(self, op: Op, weights: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """This layer's weights by short name, checked for presence and shape, cast to dtype."""
        out: dict[str, np.ndarray] = {}
        for w in op_weights(op):
            if w.name not in weights:
                raise InterpreterError(f"no weight '{w.name}' for {w.kind} layer '{w.layer}'; "
                                       "pass init_weights(module) or load_weights(path, module)")
            a = np.asarray(weights[w.name])
            if a.shape != tuple(w.spec.shape):
                raise InterpreterError(f"weight '{w.name}' has shape {shape_str(a.shape)}, "
                                       f"expected {shape_str(tuple(w.spec.shape))}")
            out[w.param] = _readonly(a.astype(numpy_dtype(w.spec.dtype), copy=False))
        return out

    def _check_result(self, op: Op, index: int, t: TensorType, out: np.ndarray,
                      env: dict[str, int]) -> None:
        """The reference and shape inference must agree on every result's dtype and shape."""
        where = f"{_describe(op)}: result {index}"
        if t.shape is None:
            return
        if out.dtype != numpy_dtype(t.dtype):
            raise InterpreterError(f"{where} has dtype {out.dtype}, but its type {t} says "
                                   f"{numpy_dtype(t.dtype)}")
        if out.ndim != len(t.shape):
            raise InterpreterError(f"{where} has shape {shape_str(out.shape)}, but its type "
                                   f"says {shape_str(t.shape)}")
        for axis, (d, size) in enumerate(zip(t.shape, out.shape)):
            if not isinstance(d, int) and d.is_atomic() and next(iter(d.symbols())) not in env:
                env[next(iter(d.symbols()))] = int(size)  # a symbol first seen here
                continue
            try:
                want = evaluate(d, env)
            except KeyError:
                continue  # a compound dim over a symbol no input determines
            if want != size:
                raise InterpreterError(f"{where} has shape {shape_str(out.shape)}, but its type "
                                       f"says {shape_str(t.shape)} (dim {axis} = {want})")


@dataclass
class _EvalContext:
    """Symbol sizes bound so far and the weights, for tensor ops' reference semantics."""

    sizes: dict[str, int]
    weights: Mapping[str, np.ndarray]


def run_module(module: Module, inputs: Any, weights: Mapping[str, np.ndarray],
               func_name: str | None = None) -> list[np.ndarray]:
    """Run one network of ``module`` on ``inputs`` with ``weights``; return its outputs."""
    return Interpreter(module, func_name).run(inputs, weights)
