"""What ``--hpo`` searches: the model's HPO values as Optuna parameters, and the sizes they move.

Every ``HPO(...)`` text span becomes one search parameter (a macro's HPO, used by several
layers, is one parameter given to all of them, since the best ``.nr`` can hold only one value
there). Its space is read again from the ``.nr`` text (``range``'s step is not kept by the
compiler). Integer layer parameters (``dense.units``) become symbols, and the layers' shape
rules run again over them, so every constructor size that depends on them is written as an
expression (``nn.Linear(hp["dense.units"], 10)``) and the model is rebuilt per trial. What the
generated code cannot vary (a kernel size, a padding mode, a value merged with a fixed size) is
a located error naming the hyperparameter and saying to fix it with ``--hparam``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from neuralc.diagnostics import SOURCES, Diagnostic
from neuralc.frontend import ast
from neuralc.frontend.hparams import HParams, HPOUse
from neuralc.frontend.model import CompiledModel
from neuralc.frontend.training_names import SCHEDULES
from neuralc.frontend.values import EvalError, evaluate
from neuralc.ir.core import Op, Value, func_body
from neuralc.ir.dims import Expr, sym, symbols
from neuralc.ir.shapes import Unifier
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.layers.catalog import Int, Optional_, ParamType
from neuralc.location import CallSiteLoc, FileLoc, FusedLoc, Location, primary

SYMBOL_PREFIX = "hp__"
SAMPLERS = {"bayesian": "tpe", "tpe": "tpe", "random": "random", "grid": "grid"}
# Positional arguments of the learning-rate schedules, by their Keras names.
SCHEDULE_ARGS = {name: order for name, (order, _) in SCHEDULES.items()}


@dataclass
class SearchParam:
    """One Optuna parameter: one HPO(...) of the text, standing for one or more names."""

    name: str
    paths: list[str]
    kind: str  # "choice" | "int" | "float"
    choices: list[Any] | None = None
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    spans: list[tuple[int, int]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "paths": self.paths, "kind": self.kind}
        if self.kind == "choice":
            d["choices"] = self.choices
        else:
            d.update(low=self.low, high=self.high, step=self.step, log=self.log)
        return d


@dataclass
class OptimizerRef:
    """Where an optimizer hyperparameter stands: a keyword of the optimizer call, and inside a
    schedule call (``ExponentialDecay(HPO(...), ...)``) its argument index or keyword."""

    path: str
    param: str
    inner: int | str | None = None


@dataclass
class HPOPlan:
    params: list[SearchParam]
    defaults: dict[str, Any]  # every path -> its compiled value
    layer_attrs: dict[str, dict[str, str]]  # layer name -> attribute -> path
    inner_attrs: dict[str, dict[str, str]]  # wrapper name -> wrapped layer's parameter -> path
    train: dict[str, str]  # train key -> path
    optimizer: list[OptimizerRef]
    symbols: dict[str, str]  # dim symbol -> path
    types: dict[Value, TensorType]
    source: str
    sampler: str


class PlanError(Exception):
    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("\n".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def source_text(filename: str) -> str | None:
    """The text of a compiled ``.nr`` file, as the parser registered it."""
    lines: list[str] = []
    n = 1
    while True:
        line = SOURCES.line(filename, n)
        if line is None:
            break
        lines.append(line)
        n += 1
    return "\n".join(lines) + "\n" if lines else None


def offsets(text: str, loc: FileLoc) -> tuple[int, int]:
    """Character offsets of a (1-based line/column, end-exclusive) span in ``text``."""
    starts = [0]
    for line in text.split("\n"):
        starts.append(starts[-1] + len(line) + 1)
    return starts[loc.line - 1] + loc.col - 1, starts[loc.end_line - 1] + loc.end_col - 1


def _key(loc: Location) -> tuple[str, int, int] | None:
    p = primary(loc)
    return (p.file, p.line, p.col) if isinstance(p, FileLoc) else None


def _walk(node: Any):
    """Every AST node under ``node`` (dataclasses, lists, tuples)."""
    if isinstance(node, list | tuple):
        for item in node:
            yield from _walk(item)
        return
    if not hasattr(node, "__dataclass_fields__"):
        return
    yield node
    for name in node.__dataclass_fields__:
        if name != "span":
            yield from _walk(getattr(node, name))
    if isinstance(node, ast.Network):
        for sec in node.sections.values():
            yield from _walk(sec)


def _file_locs(loc: Location):
    """Every text span in a location: a macro argument's HPO is the caller of its $param."""
    if isinstance(loc, FileLoc):
        yield loc
    elif isinstance(loc, CallSiteLoc):
        yield from _file_locs(loc.callee)
        yield from _file_locs(loc.caller)
    elif isinstance(loc, FusedLoc):
        for inner in loc.locs:
            yield from _file_locs(inner)


def _within(outer: Location, inner: Location) -> bool:
    o, i = primary(outer), primary(inner)
    if not (isinstance(o, FileLoc) and isinstance(i, FileLoc)) or o.file != i.file:
        return False
    return (o.line, o.col) <= (i.line, i.col) and (i.end_line, i.end_col) <= (o.end_line,
                                                                               o.end_col)


def _space(node: ast.HPO, path: str) -> tuple[list[Any] | None, Any, Any, Any]:
    """(choices, low, high, step) of an HPO node, evaluated as the compiler evaluates it."""
    resolver = HParams().resolver(path)
    args = [evaluate(a, resolver) for a in node.args]
    kwargs = {k.name: evaluate(k.value, resolver) for k in node.kwargs}
    if node.kind == "choice":
        return args, None, None, None
    step = kwargs.get("step", args[2] if len(args) > 2 else None)
    return None, args[0], args[1], step


def _integer_param(ptype: ParamType) -> bool:
    inner = ptype.inner if isinstance(ptype, Optional_) else ptype
    return isinstance(inner, Int)


class Planner:
    def __init__(self, model: CompiledModel, network: ast.Network | None, text: str):
        self.model = model
        self.network = network
        self.text = text
        self.errors: list[Diagnostic] = []
        self.text_of: dict[int, Location] = {}
        self.names: dict[int, str] = {}
        self.func = model.module.funcs[0]
        self.ops = {op.attributes.get("name"): op for op in func_body(self.func).ops}

    def error(self, message: str, loc: Location | None) -> None:
        self.errors.append(Diagnostic("error", message, loc))

    def plan(self, file: ast.File) -> HPOPlan:
        uses: list[HPOUse] = list(self.model.info.hparams.uses)
        nodes: dict[Any, ast.HPO] = {}
        for n in _walk(file):
            if isinstance(n, ast.ListValue):  # batch_size: [16, 32] is a choice
                nodes.setdefault(_key(n.span), ast.HPO("choice", list(n.items), [], n.span))
            elif isinstance(n, ast.HPO):
                nodes[_key(n.span)] = n
        # The text of each use: its own span, or (through a macro's $param) the argument's.
        self.text_of = {id(u): next((f for f in _file_locs(u.span) if _key(f) in nodes),
                                 primary(u.span)) for u in uses}
        # Keep the outermost HPOs: an HPO inside a choice is replaced with its parent.
        outer = [u for u in uses if not any(
            v is not u and _within(self.at(v), self.at(u)) and _key(self.at(v)) != _key(self.at(u))
            for v in uses)]
        layer_attrs: dict[str, dict[str, str]] = {}
        inner_attrs: dict[str, dict[str, str]] = {}
        train: dict[str, str] = {}
        optimizer: list[OptimizerRef] = []
        for u in outer:
            self._place(u, layer_attrs, inner_attrs, train, optimizer)
        params: dict[tuple, SearchParam] = {}
        defaults: dict[str, Any] = {}
        for u in outer:
            key, name = _key(self.at(u)), self.name(u)
            defaults[name] = u.value
            if key in params:
                if name not in params[key].paths:
                    params[key].paths.append(name)
                continue
            node = nodes.get(key)
            if node is None:
                self.error(f"cannot find the text of the hyperparameter '{u.path}'", u.span)
                continue
            try:
                param = self._param(u, node)
            except (EvalError, TypeError, ValueError) as e:
                self.error(f"cannot read the search space of '{u.path}' ({e})", u.span)
                continue
            params[key] = param
        sampler = self._sampler(list(params.values()))
        symbols_, types = self._symbolic(layer_attrs, inner_attrs)
        if self.errors:
            raise PlanError(self.errors)
        return HPOPlan(list(params.values()), defaults, layer_attrs, inner_attrs, train,
                       optimizer, symbols_, types, self.text, sampler)

    def name(self, u: HPOUse) -> str:
        """The hyperparameter's name in the generated module: the compiler's, except that each
        optimizer value is named by its own parameter (``optimizer.momentum``), where the
        compiler names every optimizer value ``optimizer.learning_rate``."""
        return self.names.get(id(u), u.path)

    def at(self, u: HPOUse) -> Location:
        """Where the text of ``u``'s HPO(...) stands."""
        return self.text_of[id(u)]

    # -- spaces --------------------------------------------------------------------------------
    def _param(self, u: HPOUse, node: ast.HPO) -> SearchParam:
        choices, low, high, step = _space(node, u.path)
        loc = self.at(u)
        assert isinstance(loc, FileLoc)
        spans = [offsets(self.text, loc)]
        if choices is not None:
            if not all(isinstance(c, (bool, int, float, str)) or c is None for c in choices):
                raise ValueError("Optuna chooses only among numbers, strings and booleans")
            return SearchParam(self.name(u), [self.name(u)], "choice", choices=list(choices),
                               spans=spans)
        integer = self._integer(u.path) and all(
            isinstance(v, int) and not isinstance(v, bool) for v in (low, high, step or 1))
        if node.kind == "log_range" and step is not None:
            raise ValueError("log_range takes no step")
        return SearchParam(self.name(u), [self.name(u)], "int" if integer else "float",
                           low=low, high=high,
                           step=step, log=node.kind == "log_range", spans=spans)

    def _integer(self, path: str) -> bool:
        """Whether the value stands where an integer is expected (units, batch_size)."""
        head, _, rest = path.partition(".")
        if head == "train":
            return rest in ("batch_size", "epochs")
        op = self.ops.get(head)
        if op is None:
            return False
        spec = catalog.by_op(op.name)
        p = spec.param(rest) if spec else None
        if p is None and spec is not None and "layer" in op.attributes:
            inner, _ = catalog.inner_layer(op.attributes["layer"])
            p = inner.param(rest)
        return p is not None and _integer_param(p.type)

    def _sampler(self, params: list[SearchParam]) -> str:
        method = self.model.info.training.train.get("search_method")
        if method is None:
            return "tpe"
        name = SAMPLERS.get(str(method).lower())
        if name is None:
            self.error(f"unknown search_method {method!r}; the pytorch target knows "
                       + ", ".join(repr(k) for k in SAMPLERS), self._section_span("train"))
            return "tpe"
        if name == "grid":
            ranges = [p.name for p in params if p.kind != "choice"]
            if ranges:
                verb = "is a range" if len(ranges) == 1 else "are ranges"
                self.error(f"search_method \"grid\" needs choice(...) values; "
                           f"{', '.join(ranges)} {verb}", self._section_span("train"))
        return name

    def _section_span(self, name: str) -> Location | None:
        if self.network is None or name not in self.network.sections:
            return self.func.location
        return self.network.sections[name].span

    # -- where each value stands ----------------------------------------------------------------
    def _place(self, u: HPOUse, layer_attrs: dict, inner_attrs: dict, train: dict,
               optimizer: list[OptimizerRef]) -> None:
        head, _, rest = u.path.partition(".")
        if head == "train" and rest in ("batch_size", "epochs", "validation_split"):
            train[rest] = u.path
            return
        if head == "optimizer":
            ref = self._optimizer_ref(u)
            if ref is not None:
                self.names[id(u)] = ref.path
                optimizer.append(ref)
            return
        op = self.ops.get(head)
        if op is None or not rest:
            self.error(f"the generated search cannot vary '{u.path}': the pytorch target "
                       "searches layer parameters, the optimizer, batch_size and epochs; fix it "
                       f"with --hparam {u.path}=VALUE", u.span)
            return
        if rest in op.attributes:
            target, value = layer_attrs, op.attributes[rest]
        elif "layer" in op.attributes and rest in op.attributes["layer"]["params"]:
            target, value = inner_attrs, op.attributes["layer"]["params"][rest]
        else:
            self.error(f"cannot find the parameter of '{u.path}' in layer '{head}'", u.span)
            return
        if value != u.value and not (isinstance(value, list) and value == [u.value] * len(value)):
            self.error(f"the generated search cannot vary '{u.path}': the layer's value "
                       f"{value!r} is computed from it (macro arithmetic); fix it with "
                       f"--hparam {u.path}=VALUE", u.span)
            return
        target.setdefault(head, {})[rest] = u.path

    def _optimizer_ref(self, u: HPOUse) -> OptimizerRef | None:
        sec = self.network.sections.get("optimizer") if self.network else None
        call = sec.value if sec is not None else None
        if not isinstance(call, ast.Call):
            self.error(f"cannot find where '{u.path}' stands in the optimizer", u.span)
            return None
        items: list[tuple[str, ast.Value]] = [(k.name, k.value) for k in call.kwargs]
        items += [("learning_rate" if i == 0 else f"_{i}", a) for i, a in enumerate(call.args)]
        for name, value in items:
            if not _within(value.span, self.at(u)):
                continue
            param = {"lr": "learning_rate", "eps": "epsilon"}.get(name, name)
            if _key(value.span) == _key(self.at(u)) and isinstance(value, ast.HPO):
                return OptimizerRef(f"optimizer.{param}", param)
            if isinstance(value, ast.Call):
                inner: list[tuple[int | str, ast.Value]] = list(enumerate(value.args))
                inner += [(k.name, k.value) for k in value.kwargs]
                for idx, v in inner:
                    if isinstance(v, ast.HPO) and _key(v.span) == _key(self.at(u)):
                        first = idx in (0, "initial_learning_rate")
                        names = SCHEDULE_ARGS.get(value.name, ())
                        arg = names[idx] if isinstance(idx, int) and idx < len(names) else idx
                        name = f"optimizer.{param}" + ("" if first else f".{arg}")
                        return OptimizerRef(name, param, idx)
        self.error(f"the generated search cannot vary '{u.path}' where it stands in the "
                   f"optimizer; fix it with --hparam {u.path}=VALUE", u.span)
        return None

    # -- symbolic sizes ---------------------------------------------------------------------------
    def _symbolic(self, layer_attrs: dict, inner_attrs: dict
                  ) -> tuple[dict[str, str], dict[Value, TensorType]]:
        """Run the shape rules again with each searched integer parameter as a symbol."""
        syms: dict[str, str] = {}
        sym_of: dict[str, Expr] = {}
        module = self.model.module
        body = func_body(self.func)
        unifier = Unifier(module.attributes.get("dims"))
        types: dict[Value, TensorType] = {a: a.type for a in body.args}

        def symbol(path: str) -> Expr:
            if path not in sym_of:
                name = f"{SYMBOL_PREFIX}{len(sym_of)}"
                sym_of[path], syms[name] = sym(name), path
            return sym_of[path]

        for op in body.ops:
            if op.name == "func.return":
                continue
            spec = catalog.by_op(op.name)
            assert spec is not None
            name = op.attributes.get("name")
            attrs = dict(op.attributes)
            for key, path in layer_attrs.get(name, {}).items():
                p = spec.param(key)
                if p is not None and _integer_param(p.type) and isinstance(attrs[key], int):
                    attrs[key] = symbol(path)
            if name in inner_attrs:
                inner_spec, params = catalog.inner_layer(attrs["layer"])
                params = dict(params)
                for key, path in inner_attrs[name].items():
                    p = inner_spec.param(key)
                    if p is not None and _integer_param(p.type) and isinstance(params[key], int):
                        params[key] = symbol(path)
                attrs["layer"] = {"layer": attrs["layer"]["layer"], "params": params}
            ins = [types[v] for v in op.operands]
            try:
                outs = spec.shape(attrs, ins, unifier)
            except Exception as e:  # noqa: BLE001 - a rule that cannot take a symbol
                moved = self._moved(op, attrs, ins, syms)
                if moved:
                    self.error(
                        f"the generated search cannot vary {', '.join(repr(m) for m in moved)}: "
                        f"{spec.name} '{name}' needs a fixed number there "
                        f"({getattr(e, 'message', e)}); fix it with --hparam NAME=VALUE",
                        op.location)
                    return syms, types
                raise
            types.update(zip(op.results, outs))
        bound = sorted(syms[s] for s in unifier.bindings if s in syms)
        if bound:
            self.error(f"the generated search cannot vary {', '.join(repr(b) for b in bound)}: "
                       "a merge or a residual needs it equal to a fixed size",
                       self.func.location)
        for v, t in types.items():
            types[v] = unifier.resolve_type(t)
        return syms, types

    @staticmethod
    def _moved(op: Op, attrs: dict, ins: list[TensorType], syms: dict[str, str]) -> list[str]:
        found: set[str] = set()
        for t in ins:
            for d in t.shape or ():
                found |= symbols(d)
        for v in attrs.values():
            if isinstance(v, Expr):
                found |= v.symbols()
        if isinstance(attrs.get("layer"), dict):
            for v in attrs["layer"]["params"].values():
                if isinstance(v, Expr):
                    found |= v.symbols()
        return sorted(syms[s] for s in found if s in syms)


def plan_hpo(model: CompiledModel) -> HPOPlan:
    """The search plan of a model compiled with HPO values (raises PlanError)."""
    from neuralc.frontend.parser import parse

    loc = model.module.funcs[0].location
    if not model.info.hparams.uses:
        raise PlanError([Diagnostic(
            "error", "--hpo: the model has no HPO(...) values to search over", loc)])
    text = source_text(model.filename)
    if text is None:
        raise PlanError([Diagnostic(
            "error", f"--hpo needs the text of {model.filename} to read the search spaces",
            loc)])
    file = parse(text, model.filename)  # HPO nodes keep their own text spans, macros included
    networks = [n for n in file.networks if n.name == model.info.name]
    return Planner(model, networks[0] if networks else None, text).plan(file)
