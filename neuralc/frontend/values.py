"""Evaluate AST values into plain Python values.

The AST keeps values unevaluated (``$param`` arithmetic, HPO) so that errors can point at
their text; the lowering calls :func:`evaluate` when it needs the Python value, and turns an
:class:`EvalError` into a diagnostic at ``err.span``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from neuralc.frontend import ast
from neuralc.location import Location

__all__ = ["CallValue", "EvalError", "evaluate"]


class EvalError(Exception):
    """A value cannot be computed; ``span`` is the text to point at."""

    def __init__(self, message: str, span: Location):
        super().__init__(message)
        self.message = message
        self.span = span


@dataclass
class CallValue:
    """An evaluated call such as ``Adam(learning_rate=0.001)`` or ``Dense(64)`` in a wrapper.

    Kept as data (not resolved to an optimizer, schedule or layer) because what a call means
    depends on where it stands; the lowering decides.
    """

    name: str
    args: list
    kwargs: dict
    span: Location


HPOCallback = Callable[[ast.HPO], Any]


def evaluate(v: ast.Value, hpo: HPOCallback | None = None) -> Any:
    """The Python value of ``v``; HPO nodes go through ``hpo`` (an error without one)."""
    if isinstance(v, ast.Bool):
        return v.value
    if isinstance(v, ast.Number):
        return v.value
    if isinstance(v, ast.String):
        return v.value
    if isinstance(v, ast.NoneValue):
        return None
    if isinstance(v, ast.Name):
        return v.id
    if isinstance(v, ast.TupleValue):
        return tuple(evaluate(i, hpo) for i in v.items)
    if isinstance(v, ast.ListValue):
        return [evaluate(i, hpo) for i in v.items]
    if isinstance(v, ast.DictValue):
        return {k: evaluate(i, hpo) for k, i in v.items}
    if isinstance(v, ast.Call):
        return CallValue(
            v.name,
            [evaluate(a, hpo) for a in v.args],
            {k.name: evaluate(k.value, hpo) for k in v.kwargs},
            v.span,
        )
    if isinstance(v, ast.HPO):
        if hpo is None:
            raise EvalError(
                f"unresolved hyperparameter HPO({v.kind}(...)); give it a value", v.span
            )
        return hpo(v)
    if isinstance(v, ast.ParamRef):
        raise EvalError(f"'${v.name}' is used outside a macro", v.span)
    if isinstance(v, ast.Neg):
        x = evaluate(v.operand, hpo)
        if not _is_number(x):
            raise EvalError(f"cannot negate {_show(x)}: '-' needs a number", v.span)
        return -x
    if isinstance(v, ast.BinOp):
        return _binop(v, evaluate(v.left, hpo), evaluate(v.right, hpo))
    raise EvalError(f"cannot evaluate {type(v).__name__}", v.span)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _show(x: Any) -> str:
    if isinstance(x, str):
        return f'"{x}"'
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, CallValue):
        return f"{x.name}(...)"
    return repr(x)


def _binop(node: ast.BinOp, a: Any, b: Any) -> int | float:
    """``+ - * /`` on numbers. ``/`` keeps an int when it divides exactly, so ``$filters / 2``
    can still be a layer size."""
    op = node.op
    if not (_is_number(a) and _is_number(b)):
        bad = node.left if not _is_number(a) else node.right
        raise EvalError(
            f"cannot apply '{op}' to {_show(a if not _is_number(a) else b)}: "
            "arithmetic needs numbers",
            bad.span,
        )
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        if b == 0:
            raise EvalError("division by zero", node.span)
        if isinstance(a, int) and isinstance(b, int) and a % b == 0:
            return a // b
        return a / b
    raise EvalError(f"unknown operator '{op}'", node.span)
