"""Macro expansion and ``* N`` unrolling on the AST.

After :func:`expand`, a network's layer lists hold only layer calls and named branches: every
reference to a ``define`` is replaced by a copy of its body, and every ``Layer(...) * N`` by N
copies. A node copied from a macro body gets the span ``in_macro(span_in_define, use_site)``,
so a later error (a bad value, a shape mismatch) points at the offending line of the
``define`` and, through the :class:`~neuralc.location.CallSiteLoc`, at each use site that led
there. A ``$param`` is replaced by the argument's AST (which keeps its own span: the text of
the argument at the use site).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from typing import Any

from neuralc.diagnostics import CompileError, Diagnostic, DiagnosticEngine, did_you_mean
from neuralc.frontend import ast
from neuralc.frontend.values import EvalError, evaluate
from neuralc.limits import LAYERS, NESTING
from neuralc.location import (
    CallSiteLoc,
    FileLoc,
    FusedLoc,
    Location,
    UnknownLoc,
    expansion_stack,
    in_macro,
)

__all__ = ["expand"]

_LOCATIONS = (FileLoc, CallSiteLoc, FusedLoc, UnknownLoc)


class _TooManyLayers(Exception):
    """The network's expansion passed ``LAYERS``: expansion stops, reported at the use site."""


def expand(file: ast.File) -> ast.File:
    """Expand macro references and unroll repeats in every network of ``file``.

    Raises :class:`CompileError` with every error found (bad definitions, bad references,
    bad repeat counts) after looking at the whole file.
    """
    ex = _Expander(file)
    networks = [ex.network(net) for net in file.networks]
    ex.finish()
    return ast.File(file.filename, networks, list(file.macros))


def _nodes(x: Any) -> Iterator[Any]:
    """Every AST node inside ``x`` (depth first, in textual order), spans excluded.

    A walk with an explicit stack: an AST is as deep as the text nests it."""
    stack = [x]
    while stack:
        x = stack.pop()
        if isinstance(x, _LOCATIONS):
            continue
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            yield x
            stack.extend(getattr(x, f.name) for f in reversed(dataclasses.fields(x)))
        elif isinstance(x, (list, tuple)):
            stack.extend(reversed(x))
        elif isinstance(x, dict):
            stack.extend(reversed(list(x.values())))


def _calls(items: list[ast.LayerItem]) -> Iterator[ast.LayerCall]:
    """Every layer call in a layer list, nested blocks included."""
    for n in _nodes(items):
        if isinstance(n, ast.LayerCall):
            yield n


def _instantiate(x: Any, binding: dict[str, ast.Value], site: Location) -> Any:
    """Copy macro text ``x`` for the use at ``site``: spans become call-site spans and
    ``$p`` becomes (a copy of) the bound argument."""
    if isinstance(x, _LOCATIONS):
        return in_macro(x, site)
    if isinstance(x, ast.ParamRef):
        if x.name in binding:
            # The argument, located at the `$p` it replaces inside the define, expanded at
            # the argument's own text: an error names both places (DSL.md section 6).
            arg = copy.deepcopy(binding[x.name])
            return dataclasses.replace(arg, span=in_macro(x.span, arg.span))
        return ast.ParamRef(x.name, in_macro(x.span, site))  # reported at the define
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return type(x)(**{
            f.name: _instantiate(getattr(x, f.name), binding, site) for f in dataclasses.fields(x)
        })
    if isinstance(x, list):
        return [_instantiate(i, binding, site) for i in x]
    if isinstance(x, tuple):
        return tuple(_instantiate(i, binding, site) for i in x)
    return x


def _show(x: Any) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, str):
        return f'"{x}"'
    return repr(x)


class _Expander:
    """Holds the macro table and the diagnostics of one :func:`expand` call."""

    def __init__(self, file: ast.File):
        self.diags = DiagnosticEngine()
        self.max_layers = LAYERS.value
        self.max_depth = NESTING.value
        self.produced = 0  # layers of the current network so far (see LAYERS)
        self.macros: dict[str, ast.MacroDef] = {}
        for m in file.macros:
            first = self.macros.get(m.name)
            if first is not None:
                self.diags.error(
                    f"macro '{m.name}' is defined twice", m.name_span
                ).with_note(f"the first definition of '{m.name}' is here", first.name_span)
                continue
            self.macros[m.name] = m
        for m in file.macros:
            self.check_params(m)
        self.recursive = self.check_cycles()

    # -- checks on definitions ----------------------------------------------------------

    def check_params(self, m: ast.MacroDef) -> None:
        """Every ``$p`` in a define names one of its parameters (defaults: an earlier one)."""
        names = [p.name for p in m.params]
        for i, p in enumerate(m.params):
            for n in _nodes(p.default):
                if isinstance(n, ast.ParamRef) and n.name not in names[:i]:
                    self.diags.error(
                        f"the default of '{p.name}' can only use parameters declared before it, "
                        f"not '${n.name}'",
                        n.span,
                    )
        for n in _nodes(m.body):
            if isinstance(n, ast.ParamRef) and n.name not in names:
                if names:
                    msg = (f"'${n.name}' is not a parameter of macro '{m.name}'"
                           + did_you_mean(n.name, names))
                else:
                    msg = f"'${n.name}' is used in macro '{m.name}', which has no parameters"
                self.diags.error(msg, n.span).with_note(
                    f"'{m.name}' is defined here", m.name_span
                )

    def check_cycles(self) -> set[str]:
        """Report each cycle of macros using each other once; return the macros on one.

        A depth-first search with an explicit stack: a chain of a thousand macros, each using
        the next, is a path a thousand deep."""
        on_cycle: set[str] = set()
        reported: set[frozenset[str]] = set()
        state: dict[str, int] = {}  # 1: on the DFS path, 2: done
        path: list[str] = []
        todo: list[Iterator[ast.LayerCall]] = []

        def enter(name: str) -> None:
            state[name] = 1
            path.append(name)
            todo.append(_calls(self.macros[name].body))

        for root in self.macros:
            if root in state:
                continue
            enter(root)
            while todo:
                call = next(todo[-1], None)
                if call is None:
                    todo.pop()
                    state[path.pop()] = 2
                    continue
                callee = call.name
                if callee not in self.macros:
                    continue
                if state.get(callee) == 1:
                    cycle = path[path.index(callee):] + [callee]
                    on_cycle.update(cycle)
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        self.diags.error(
                            "recursive macro: " + " -> ".join(cycle), call.span
                        ).with_note("a macro cannot use itself, directly or through another")
                elif callee not in state:
                    enter(callee)
        return on_cycle

    def check_no_params(self, net: ast.Network) -> None:
        """``$p`` outside a macro body has nothing to stand for."""
        for n in _nodes([net.layers, net.inputs, net.sections, net.dims]):
            if isinstance(n, ast.ParamRef):
                self.diags.error(f"'${n.name}' is used outside a macro", n.span)

    # -- expansion ----------------------------------------------------------------------

    def network(self, net: ast.Network) -> ast.Network:
        self.check_no_params(net)
        self.produced = 0
        layers: list[ast.LayerItem] = []
        for item in net.layers:
            try:
                layers += self.items([item], ())
            except _TooManyLayers:
                # Reported at the top-level use that crossed the limit, before any more work.
                where = item.repeat.span if isinstance(item, ast.LayerCall) and \
                    item.repeat is not None else item.span
                self.diags.error(f"this expands to more than {self.max_layers:,} layers in "
                                 f"all; {LAYERS.exceeded()}", where)
                break
        return dataclasses.replace(net, layers=layers)

    def count(self, n: int) -> None:
        """``n`` more layers in the network; stops expansion past the limit."""
        self.produced += n
        if self.produced > self.max_layers:
            raise _TooManyLayers

    def items(self, items: list[ast.LayerItem], stack: tuple[str, ...]) -> list[ast.LayerItem]:
        out: list[ast.LayerItem] = []
        for item in items:
            if isinstance(item, ast.NamedBranch):
                out.append(dataclasses.replace(item, body=self.items(item.body, stack)))
            else:
                out.extend(self.layer(item, stack))
        return out

    def layer(self, call: ast.LayerCall, stack: tuple[str, ...]) -> list[ast.LayerItem]:
        """One layer call, expanded (if a macro) and unrolled (if ``* N``)."""
        count = self.repeat_count(call)
        if count is None:
            return []
        before = self.produced
        if call.name in self.macros:
            one = self.use(call, stack)
        else:
            self.count(1)
            one = [dataclasses.replace(
                call,
                repeat=None,
                body=self.items(call.body, stack) if call.body is not None else None,
                branches=[self.items(b, stack) for b in call.branches]
                if call.branches is not None else None,
            )]
        if count > 1:
            # Counted before copying: nested repeats multiply (R * 10000 of a macro holding
            # Dense * 10000), and fan-out doubles at each level of macros.
            self.count((self.produced - before) * (count - 1))
        out = list(one)
        for _ in range(count - 1):
            out.extend(copy.deepcopy(one))
        return out

    def repeat_count(self, call: ast.LayerCall) -> int | None:
        if call.repeat is None:
            return 1
        try:
            n = evaluate(call.repeat)
        except EvalError as e:
            self.diags.error(e.message, e.span)
            return None
        if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
            self.diags.error(
                f"a repeat count must be a positive integer, got {_show(n)}", call.repeat.span
            )
            return None
        if n > self.max_layers:
            self.diags.error(f"a repeat count of {n} is more than the limit of "
                             f"{self.max_layers} ({LAYERS.hint()})", call.repeat.span)
            return None
        return n

    def use(self, call: ast.LayerCall, stack: tuple[str, ...]) -> list[ast.LayerItem]:
        """The layers a macro reference stands for (nested references expanded too)."""
        m = self.macros[call.name]
        if m.name in self.recursive:
            return []  # reported once at the define
        if m.name in stack:  # not reachable after check_cycles; kept as a guard against hangs
            cycle = list(stack[stack.index(m.name):]) + [m.name]
            self.diags.error("recursive macro: " + " -> ".join(cycle), call.span)
            return []
        if len(stack) >= self.max_depth:
            # Reported once, at the use outside any macro that starts the chain.
            chain = " -> ".join([*stack[:3], "...", *stack[-2:], m.name])
            sites = expansion_stack(call.span)
            self.diags.error(f"macros are used inside macros more than {self.max_depth} deep "
                             f"({chain}); {NESTING.exceeded()}", sites[-1] if sites else
                             call.span)
            return []
        if call.branches is not None:
            self.diags.error(
                f"'{m.name}' is a macro; it cannot take branch blocks", call.name_span
            ).with_note(f"'{m.name}' is defined here", m.name_span)
            return []
        binding = self.bind(m, call)
        if binding is None:
            return []
        body = _instantiate(m.body, binding, call.span)
        out = self.items(body, stack + (m.name,))
        if call.device is not None:
            for inner in _calls(out):
                if inner.device is None:
                    inner.device = copy.deepcopy(call.device)
        if call.body is not None:  # ``Macro() { ... }``: these layers follow the expansion
            out.extend(self.items(call.body, stack))
        return out

    def bind(self, m: ast.MacroDef, call: ast.LayerCall) -> dict[str, ast.Value] | None:
        """Arguments to parameters: positionally, then by keyword, then defaults."""
        names = [p.name for p in m.params]
        ok = True
        bound: dict[str, ast.Value] = {}
        if len(call.args) > len(names):
            extra = call.args[len(names)]
            takes = f"{len(names)} argument{'s' if len(names) != 1 else ''}"
            self.diags.error(
                f"macro '{m.name}' takes {takes} but {len(call.args)} were given", extra.span
            ).with_note(f"'{m.name}' is defined here", m.name_span)
            ok = False
        for p, a in zip(m.params, call.args):
            bound[p.name] = a
        for kw in call.kwargs:
            if kw.name not in names:
                hint = did_you_mean(kw.name, names)
                self.diags.error(
                    f"macro '{m.name}' has no parameter '{kw.name}'{hint}", kw.span
                ).with_note(f"'{m.name}' is defined here", m.name_span)
                ok = False
            elif kw.name in bound:
                self.diags.error(
                    f"macro '{m.name}' got two values for '{kw.name}'", kw.span
                )
                ok = False
            else:
                bound[kw.name] = kw.value
        for p in m.params:
            if p.name in bound:
                continue
            if p.default is None:
                self.diags.error(
                    f"macro '{m.name}' needs a value for '{p.name}'", call.span
                ).with_note(f"'{p.name}' is declared here", p.span)
                ok = False
            else:
                bound[p.name] = _instantiate(p.default, dict(bound), call.span)
        return bound if ok else None

    def finish(self) -> None:
        """Raise with every error, each reported once (a ``$p`` in a repeat count would
        otherwise be reported by the scan and again by the evaluation)."""
        seen: set[tuple[str, str]] = set()
        unique: list[Diagnostic] = []
        for d in self.diags.diagnostics:
            key = (d.message, repr(d.location))
            if key not in seen:
                seen.add(key)
                unique.append(d)
        if any(d.severity == "error" for d in unique):
            raise CompileError(unique)
