"""Hyperparameters: ``HPO(...)`` values, their defaults and ``--hparam NAME=VALUE`` overrides.

Every HPO value is named by where it stands: ``<layer name>.<parameter>`` for layer arguments
(``dense.units``), ``optimizer.learning_rate``, ``train.batch_size``. Compiling takes each one's
default (the first choice, the lower bound of a range) unless an override names it; the
driver warns once, listing the defaults taken.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from neuralc.frontend import ast
from neuralc.frontend.values import EvalError, evaluate
from neuralc.location import Location


@dataclass
class HPOUse:
    path: str
    kind: str
    value: Any
    overridden: bool
    span: Location
    space: str  # the search space as written, for messages


def parse_override(text: str) -> Any:
    """``--hparam`` values: ints, floats, booleans, else the string itself."""
    t = text.strip()
    low = t.lower()
    if low in ("true", "false"):
        return low == "true"
    try:
        return int(t)
    except ValueError:
        pass
    try:
        return float(t)
    except ValueError:
        return t.strip("\"'")


@dataclass
class HParams:
    overrides: dict[str, Any] = field(default_factory=dict)
    uses: list[HPOUse] = field(default_factory=list)

    @classmethod
    def from_strings(cls, items: list[str]) -> HParams:
        """Parse ``NAME=VALUE`` strings; raises ValueError on a malformed one."""
        out: dict[str, Any] = {}
        for item in items:
            if "=" not in item:
                raise ValueError(f"--hparam expects NAME=VALUE, got '{item}'")
            k, v = item.split("=", 1)
            if not k.strip():
                raise ValueError(f"--hparam expects NAME=VALUE, got '{item}'")
            out[k.strip()] = parse_override(v)
        return cls(out)

    def resolver(self, path: str) -> Callable[[ast.HPO], Any]:
        def resolve(node: ast.HPO) -> Any:
            return self.resolve(path, node)

        return resolve

    def resolve(self, path: str, node: ast.HPO) -> Any:
        choices, lo, hi = _space(node, self.resolver(path))
        space = _describe(node.kind, choices, lo, hi)
        if path in self.overrides:
            v = self.overrides[path]
            if choices is not None:
                if v not in choices:
                    raise EvalError(
                        f"--hparam {path}={v} is not one of the choices {space}", node.span
                    )
            elif isinstance(v, bool) or not isinstance(v, (int, float)) or not (lo <= v <= hi):
                raise EvalError(f"--hparam {path}={v} is outside {space}", node.span)
            self.uses.append(HPOUse(path, node.kind, v, True, node.span, space))
            return v
        value = choices[0] if choices is not None else lo
        self.uses.append(HPOUse(path, node.kind, value, False, node.span, space))
        return value

    def unknown_overrides(self) -> list[str]:
        used = {u.path for u in self.uses}
        return [k for k in self.overrides if k not in used]

    def defaulted(self) -> list[HPOUse]:
        return [u for u in self.uses if not u.overridden]


def _space(node: ast.HPO, inner: Callable[[ast.HPO], Any]) -> tuple[list[Any] | None, float, float]:
    """Choices (for ``choice``) or the bounds (for ranges), checked."""
    args = [evaluate(a, inner) for a in node.args]
    kwargs = {k.name: evaluate(k.value, inner) for k in node.kwargs}
    if node.kind == "choice":
        if not args:
            raise EvalError("choice(...) needs at least one value", node.span)
        return args, 0.0, 0.0
    if len(args) < 2:
        raise EvalError(f"{node.kind}(low, high) needs two bounds", node.span)
    lo, hi = args[0], args[1]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
        raise EvalError(f"{node.kind} bounds must be numbers", node.span)
    if lo >= hi:
        raise EvalError(
            f"{node.kind}: the low bound {lo} must be below the high bound {hi}", node.span
        )
    if node.kind == "log_range" and lo <= 0:
        raise EvalError("log_range bounds must be positive", node.span)
    step = kwargs.get("step", args[2] if len(args) > 2 else None)
    if step is not None and (not isinstance(step, (int, float)) or step <= 0 or math.isnan(step)):
        raise EvalError("range step must be a positive number", node.span)
    return None, lo, hi


def _describe(kind: str, choices: list[Any] | None, lo: float, hi: float) -> str:
    if choices is not None:
        return "choice(" + ", ".join(repr(c) for c in choices) + ")"
    return f"{kind}({lo}, {hi})"
