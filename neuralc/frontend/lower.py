"""Lowering from the (macro-expanded) AST to the graph IR: one ``graph.*`` op per layer.

Here every layer call is checked against the layer catalog: its name (with a suggestion for
typos), its arguments (positional order, Keras names and PyTorch aliases, validation of every
value), and its place in the topology (residual containers, merge branches, named inputs and
branches). Layers are named as Keras names them. Result types are left unranked; the
``shape-infer`` pass fills them in. Errors are collected so that one run reports every
independent problem; a layer that fails is skipped and the layers after it still get checked.
"""

from __future__ import annotations

import math
from typing import Any

from neuralc.diagnostics import DiagnosticEngine, did_you_mean
from neuralc.frontend import ast
from neuralc.frontend.hparams import HParams
from neuralc.frontend.model import NetworkInfo
from neuralc.frontend.sections import check_sections
from neuralc.frontend.values import CallValue, EvalError, evaluate
from neuralc.ir.core import Block, Module, Op, Value, func_op
from neuralc.ir.dims import NOMINAL_SIZE, Dim, dim_facts, fit_size, sym, symbols
from neuralc.ir.types import TensorType, unranked
from neuralc.layers import catalog
from neuralc.layers.catalog import LayerArg, LayerSpec, Param, ParamError
from neuralc.location import Location

BATCH = "batch"
BATCH_NOMINAL = 1  # the implicit batch dim's nominal size: estimates are per sample
# The IR text separates dims with " x " and writes quotients with floordiv/ceildiv/mod and
# min(...)/max(...); anonymous dims are named _d0, _d1, ... So none of these may name a dimension.
RESERVED_DIM_NAMES = {"x", "floordiv", "ceildiv", "mod", "min", "max"}
ANONYMOUS_PREFIX = "_d"




class _Scope:
    """The value flowing through a layer list plus the named inputs and branches in reach."""

    def __init__(self, current: Value | None, named: dict[str, Value]):
        self.current = current
        self.named = dict(named)
        self.pending: list[str] = []  # named branches defined since the last merge

    def child(self, current: Value | None) -> _Scope:
        s = _Scope(current, self.named)
        return s


class Lowering:
    def __init__(self, file: ast.File, diags: DiagnosticEngine, hparams: HParams):
        self.file = file
        self.diags = diags
        self.hparams = hparams
        self.counters: dict[str, int] = {}
        self.used_names: dict[str, Location] = {}
        self.block: Block | None = None
        self.value_origin: dict[int, tuple[str, Location]] = {}
        # Values that a layer reads through a ValueRef parameter (an attention memory).
        self.consumed: set[int] = set()

    # -- entry -------------------------------------------------------------------------
    def lower_network(self, net: ast.Network) -> tuple[Module, NetworkInfo]:
        module = Module(net.name)
        dims = self._dims(net)
        if dims:
            module.attributes["dims"] = dims
        arg_types, arg_names, arg_locs = self._inputs(net)
        self._unused_dims(net, arg_types)
        nominal = self._nominal_sizes(arg_types, dims)
        if nominal:
            module.attributes["dim_nominal"] = nominal
        func = func_op(net.name, arg_types, arg_names, net.span)
        block = func.regions[0].block
        for a, loc in zip(block.args, arg_locs):
            a.location = loc
        module.body.append(func)
        self.block = block

        if not net.layers and net.inputs:
            # An input passed through untouched is no model (Neural refuses it too).
            if net.layers_span is None:
                self.diags.error(f"network '{net.name}' has no 'layers:' section",
                                 net.name_span).with_note("write 'layers:' followed by the layers")
            else:
                self.diags.error(f"network '{net.name}' has no layers after 'layers:'",
                                 net.layers_span)
        named = {a.name_hint: a for a in block.args if a.name_hint}
        current = block.args[0] if len(block.args) == 1 else None
        scope = _Scope(current, named)
        out = self._items(net.layers, scope)
        if out is None and not self.diags.has_errors():
            out = self._sole_branch(scope, block)
        if out is None and not self.diags.has_errors():
            if not net.layers:
                loc = net.layers_span or net.span
                self.diags.error(f"network '{net.name}' has no layers", loc)
            elif scope.pending:
                self.diags.error(
                    f"network '{net.name}' ends with unmerged named branches "
                    + ", ".join(f"'{n}'" for n in scope.pending),
                    net.layers_span or net.span,
                ).with_note("merge them with a merge layer, e.g. Concatenate()")
        outs = [out] if out is not None else []
        block.append(Op("func.return", outs, location=net.span))
        if not self.diags.has_errors():
            self._unused_layers(block)
        self._integer_inputs(block)
        training = check_sections(net, self.diags, self.hparams)
        info = NetworkInfo(
            net.name, [a.name_hint or "" for a in block.args], training, self.hparams
        )
        return module, info

    def _sole_branch(self, scope: _Scope, block: Block) -> Value | None:
        """The output of a several-input network that ends in named branches, none merged.

        A branch that a layer reads through a value parameter (``TransformerDecoder(memory=src)``)
        is merged into that layer. When that leaves exactly one branch, some value parameter
        read a branch or input, and every input is used, that branch is the network's output
        (an encoder-decoder: ``src: { ... }  tgt: { ... TransformerDecoder(memory=src) ... }``).
        """
        left = [n for n in scope.pending if id(scope.named[n]) not in self.consumed]
        if len(left) == 1 and self.consumed and all(a.users() for a in block.args):
            return scope.named[left[0]]
        return None

    # -- inputs and dims ---------------------------------------------------------------
    def _dims(self, net: ast.Network) -> dict[str, list[int | None]]:
        """The ``dims`` module attribute: per symbol ``[lo, hi]``, or ``[lo, hi, step]`` when
        its sizes are multiples of a step > 1 (several steps of one symbol combine: a size
        that is a multiple of 4 and of 6 is a multiple of 12)."""
        ranges: dict[str, ast.DimRange] = {}
        steps: dict[str, list[tuple[int, Location]]] = {}
        for fact in net.dims:
            if isinstance(fact, ast.DimStep):
                steps.setdefault(fact.name, []).append((fact.step, fact.span))
                continue
            r = fact
            if r.name in ranges:
                self.diags.error(f"dimension '{r.name}' is given a range twice", r.span)
                continue
            if r.lo is not None and r.lo < 1:
                self.diags.error(f"range of '{r.name}' must start at 1 or more, got {r.lo}", r.span)
                continue
            if r.lo is not None and r.hi is not None and r.hi < r.lo:
                self.diags.error(f"range of '{r.name}' is empty: {r.lo}..{r.hi}", r.span)
                continue
            ranges[r.name] = r
            if r.step is not None:
                steps.setdefault(r.name, []).append((r.step, r.step_span or r.span))
        out: dict[str, list[int | None]] = {}
        for name in dict.fromkeys([*ranges, *steps]):
            facts = self._dim_facts(name, ranges.get(name), steps.get(name, []))
            if facts is not None:
                out[name] = facts
        return out

    def _unused_dims(self, net: ast.Network, types: list[TensorType]) -> None:
        """A ``dims { }`` entry for a symbol no input has is most likely a misspelt one."""
        known = {BATCH} | {s for t in types for d in t.shape or () for s in symbols(d)}
        for fact in net.dims:
            if fact.name not in known:
                self.diags.warning(
                    f"dims: no input has a dimension '{fact.name}', so this says nothing"
                    + did_you_mean(fact.name, sorted(known)), fact.span)

    def _dim_facts(self, name: str, r: ast.DimRange | None,
                   steps: list[tuple[int, Location]]) -> list[int | None] | None:
        """One symbol's entry of ``dims``; None (reported) when its range ends off its step."""
        lo, hi = (r.lo, r.hi) if r is not None else (None, None)
        step = math.lcm(1, *(k for k, _ in steps))
        if r is not None and any(b is not None and b % step for b in (lo, hi)):
            d = self.diags.error(
                f"range of '{name}' must start and end on multiples of its step {step}, got "
                f"{'' if lo is None else lo}..{'' if hi is None else hi}", r.span)
            for k, loc in steps:
                if loc is not r.step_span:
                    d.with_note(f"'{name}' is declared a multiple of {k} here", loc)
            return None
        return [lo, hi, step] if step > 1 else [lo, hi]

    def _nominal_sizes(self, types: list[TensorType],
                       dims: dict[str, list[int | None]]) -> dict[str, int]:
        """The ``dim_nominal`` module attribute: each input symbol's size for single-number
        estimates (fusion scores, reports), in its range and on its step: the implicit batch
        dim 1 (one sample), every other symbol NOMINAL_SIZE."""
        out: dict[str, int] = {}
        for t in types:
            for axis, d in enumerate(t.shape or ()):
                for s in sorted(symbols(d)):
                    if s not in out:
                        size = BATCH_NOMINAL if axis == 0 and s == BATCH else NOMINAL_SIZE
                        out[s] = fit_size(size, *dim_facts(dims.get(s)))
        return out

    def _inputs(self, net: ast.Network) -> tuple[list[TensorType], list[str], list[Location]]:
        types: list[TensorType] = []
        names: list[str] = []
        locs: list[Location] = []
        if not net.inputs:
            self.diags.error(f"network '{net.name}' has no 'input:' section", net.name_span)
            return types, names, locs
        anon = 0
        named_dims: set[str] = set()
        for idx, inp in enumerate(net.inputs):
            dims: list[Dim] = [sym(BATCH)]
            items = list(inp.dims)
            if items and isinstance(items[0], ast.NoneValue):
                items = items[1:]  # an explicit batch slot
            for item in items:
                if isinstance(item, ast.NoneValue):
                    while f"_d{anon}" in named_dims:
                        anon += 1
                    dims.append(sym(f"_d{anon}"))
                    anon += 1
                elif isinstance(item, ast.Name):
                    if item.id in RESERVED_DIM_NAMES or (
                            item.id.startswith(ANONYMOUS_PREFIX) and item.id[2:].isdigit()):
                        self.diags.error(
                            f"'{item.id}' cannot name a dimension (reserved); choose another name",
                            item.span,
                        )
                        continue
                    named_dims.add(item.id)
                    dims.append(sym(item.id))
                elif (
                    isinstance(item, ast.Number) and isinstance(item.value, int) and item.value > 0
                ):
                    dims.append(item.value)
                else:
                    self.diags.error(
                        "an input dimension must be a positive integer, a name or None", item.span
                    )
            name = inp.name or ("input" if idx == 0 else f"input_{idx}")
            if not name.isidentifier() or not name.isascii():
                self.diags.error(f"input name '{name}' must be an identifier (letters, digits, "
                                 "'_', not starting with a digit)", inp.name_span or inp.span)
            if name in names:
                self.diags.error(f"input '{name}' is declared twice", inp.name_span or inp.span)
            types.append(TensorType(tuple(dims), "f32"))
            names.append(name)
            locs.append(inp.span)
        return types, names, locs

    def _unused_layers(self, block: Block) -> None:
        """A layer whose output reaches nothing was dropped by the topology: say so.

        This happens when a named branch is left unmerged inside a container or branch block
        (``ResidualConnection { a: { Dense(4) } }``), or when a value computed before a merge
        of named branches is not part of the merge.
        """
        for op in block.ops:
            if op.name == "func.return" or not op.results or any(r.uses for r in op.results):
                continue
            spec = catalog.by_op(op.name)
            kind = spec.name if spec else op.name
            self.diags.error(
                f"the output of {kind} '{op.attributes.get('name')}' is never used: nothing "
                "merges it and the network does not return it", op.location,
            ).with_note("a named branch must be merged (e.g. Concatenate()) in the block that "
                        "defines it; a merge of named branches merges only those branches")

    def _integer_inputs(self, block: Block) -> None:
        """An input consumed by Embedding carries integer indices (DSL.md section 3).

        A wrapper counts by what it wraps: ``TimeDistributed(Embedding(...))`` takes indices too.
        """
        embedding = catalog.lookup("Embedding")

        def takes_indices(op: Op) -> bool:
            spec = catalog.by_op(op.name)
            if spec is embedding:
                return True
            wrapped = [v for v in op.attributes.values()
                       if isinstance(v, dict) and set(v) == {"layer", "params"}]
            return any(catalog.lookup(w["layer"]) is embedding for w in wrapped)

        for a in block.args:
            if any(takes_indices(u) for u in a.users()):
                a.type = TensorType(a.type.shape, "i64")

    # -- layer lists -------------------------------------------------------------------
    def _items(self, items: list[ast.LayerItem], scope: _Scope) -> Value | None:
        for item in items:
            if isinstance(item, ast.NamedBranch):
                self._named_branch(item, scope)
            else:
                scope.current = self._layer(item, scope)
        return scope.current

    def _named_branch(self, nb: ast.NamedBranch, scope: _Scope) -> None:
        start = scope.named.get(nb.name, scope.current)
        if start is None:
            hint = did_you_mean(nb.name, list(scope.named))
            self.diags.error(
                f"branch '{nb.name}' has no input: no input or earlier branch has that name{hint}",
                nb.name_span,
            )
            return
        out = self._items(nb.body, scope.child(start))
        if out is not None:
            scope.named[nb.name] = out
            if nb.name not in scope.pending:
                scope.pending.append(nb.name)

    def _layer(self, call: ast.LayerCall, scope: _Scope) -> Value | None:
        spec = catalog.lookup(call.name)
        if spec is None:
            known = catalog.layer_names() + [m.name for m in self.file.macros]
            self.diags.error(
                f"unknown layer '{call.name}'{did_you_mean(call.name, known)}", call.name_span
            )
            return scope.current
        name = self._layer_name(call, spec)
        attrs, operand_names = self._bind(call, spec, name)

        if spec.kind == "residual":
            out = self._residual(call, spec, attrs, name, scope)
        elif spec.kind == "merge":
            out = self._merge(call, spec, attrs, name, scope, operand_names)
        else:
            if call.branches:
                self.diags.error(
                    f"{spec.name} takes no branch blocks; only merge layers do", call.span
                )
            x = self._require_current(call, spec, scope)
            extra = self._value_operands(call, spec, attrs, scope)
            operands = [x, *extra] if x is not None and extra is not None else None
            out = self._emit_stack(call, spec, attrs, name, operands, extra or [])
            if call.body is not None:
                # On an ordinary layer a nested block means "these layers follow it".
                child = scope.child(out if out is not None else scope.current)
                out = self._items(call.body, child)
        return out if out is not None else scope.current

    def _value_operands(
        self, call: ast.LayerCall, spec: LayerSpec, attrs: dict | None, scope: _Scope
    ) -> list[Value] | None:
        """Operands for parameters that name an input or branch (e.g. an attention memory)."""
        if attrs is None:
            return None
        out: list[Value] = []
        for p in spec.value_params():
            ref = attrs.get(p.name)
            if ref is None:
                continue
            if ref not in scope.named:
                hint = did_you_mean(ref, list(scope.named))
                self.diags.error(
                    f"{spec.name}: '{p.name}' names '{ref}', which is no input or "
                    f"named branch{hint}",
                    call.span,
                )
                return None
            out.append(scope.named[ref])
        self.consumed.update(id(v) for v in out)
        return out

    def _require_current(self, call: ast.LayerCall, spec: LayerSpec, scope: _Scope) -> Value | None:
        # No input at all: the missing 'input:' section is the one error to report.
        if scope.current is None and scope.named:
            names = ", ".join(f"'{n}'" for n in scope.named)
            self.diags.error(
                f"{spec.name} has no single input to apply to: "
                f"the network has several inputs ({names})",
                call.span,
            ).with_note(
                "run layers on one input with a named branch, e.g. image: { ... }, "
                "and merge them with Concatenate()"
            )
        return scope.current

    def _residual(
        self, call: ast.LayerCall, spec: LayerSpec, attrs: dict | None, name: str, scope: _Scope
    ) -> Value | None:
        x = self._require_current(call, spec, scope)
        if x is None:
            return None
        if call.branches:
            self.diags.error(f"{spec.name} takes one block of layers, not branch blocks", call.span)
            return x
        if not call.body:
            self.diags.error(f"{spec.name} needs a body: {spec.name} {{ layers }}", call.span)
            return x
        y = self._items(call.body, scope.child(x))
        if y is None or y is x:
            return x
        return self._emit(call, spec, attrs, name, [x, y])

    def _merge(
        self,
        call: ast.LayerCall,
        spec: LayerSpec,
        attrs: dict | None,
        name: str,
        scope: _Scope,
        operand_names: list[ast.Name],
    ) -> Value | None:
        operands: list[Value] = []
        if call.branches is not None or call.body is not None:
            branches = call.branches if call.branches is not None else [call.body or []]
            x = self._require_current(call, spec, scope)
            if x is None:
                return None
            for br in branches:
                out = self._items(br, scope.child(x)) if br else x
                if out is None:
                    return None
                operands.append(out)
        elif operand_names:
            for n in operand_names:
                if n.id not in scope.named:
                    hint = did_you_mean(n.id, list(scope.named))
                    self.diags.error(
                        f"{spec.name}: no input or branch named '{n.id}'{hint}", n.span
                    )
                    return None
                operands.append(scope.named[n.id])
        else:
            operands = [scope.named[n] for n in scope.pending]
            scope.pending = []
        if len(operands) < 2 or (spec.arity is not None and len(operands) != spec.arity):
            want = "two" if spec.arity in (None, 2) else str(spec.arity)
            more = "" if spec.arity is not None else " or more"
            self.diags.error(
                f"{spec.name} has {len(operands)} input{'s' if len(operands) != 1 else ''} "
                f"to merge, needs {want}{more}",
                call.span,
            ).with_note(
                f"write branches as {spec.name} {{ {{ ... }} {{ ... }} }} ({{ }} is the identity), "
                f"or name them (a: {{ ... }} b: {{ ... }}) and merge with {spec.name}()"
            )
            return None
        return self._emit(call, spec, attrs, name, operands)

    def _emit_stack(self, call: ast.LayerCall, spec: LayerSpec, attrs: dict | None, name: str,
                    operands: list[Value] | None, extra: list[Value]) -> Value | None:
        """One layer, or N of them for a stacking parameter (``num_layers=N``): each its own
        op with its own weights, named as ``* N`` names copies (an explicit name gets _1...)."""
        key = spec.extra.get("stack_param")
        count = attrs.get(key, 1) if key and attrs is not None else 1
        if key and attrs is not None:
            attrs = {**attrs, key: 1}
        out = self._emit(call, spec, attrs, name, operands)
        explicit = any(k.name == "name" for k in call.kwargs)
        for i in range(1, count):
            if out is None:
                break
            layer = f"{name}_{i}" if explicit else self._layer_name(
                ast.LayerCall(call.name, [], [], call.span, call.name_span), spec)
            out = self._emit(call, spec, attrs, layer, [out, *extra])
        return out

    def _emit(
        self,
        call: ast.LayerCall,
        spec: LayerSpec,
        attrs: dict | None,
        name: str,
        operands: list[Value] | None,
    ) -> Value | None:
        if attrs is None or operands is None or self.block is None:
            return None
        attrs = dict(attrs)
        attrs["name"] = name
        pinned = next((k for k in call.kwargs if k.name == "precision"), None)
        if pinned is not None:
            if isinstance(pinned.value, ast.String) and pinned.value.value == "fp32":
                attrs["precision"] = "fp32"
            else:
                self.diags.error(
                    'a layer\'s precision can only pin it to full precision: precision="fp32"; '
                    "the model's precision is set with --precision or execution { precision }",
                    pinned.value.span,
                )
        if call.device is not None:
            dev = _check_device(call.device.value)
            if dev is None:
                self.diags.error(
                    f'unknown device "{call.device.value}"; expected "cpu", "cuda", '
                    '"cuda:N" or "auto"',
                    call.device.span,
                )
            else:
                attrs["device"] = dev
        op = Op(
            spec.op_name, operands, [unranked()] * spec.results(attrs), attrs, location=call.span
        )
        self.block.append(op)
        # A layer with several results (return_state) passes its first one on.
        return op.results[0]

    # -- names and arguments -------------------------------------------------------------
    def _layer_name(self, call: ast.LayerCall, spec: LayerSpec) -> str:
        explicit = next((k for k in call.kwargs if k.name == "name"), None)
        if explicit is not None:
            if isinstance(explicit.value, ast.String) and explicit.value.value:
                n = explicit.value.value
                if not n.replace("_", "a").isalnum() or n[0].isdigit():
                    self.diags.error(
                        f"layer name \"{n}\" must be an identifier (letters, digits, '_')",
                        explicit.value.span,
                    )
                elif n in self.used_names:
                    self.diags.error(
                        f'layer name "{n}" is already used', explicit.value.span
                    ).with_note("first used here", self.used_names[n])
                self.used_names[n] = call.span
                return n
            self.diags.error("'name' must be a non-empty string", explicit.value.span)
        base = spec.keras_name
        while True:
            k = self.counters.get(base, 0)
            self.counters[base] = k + 1
            n = base if k == 0 else f"{base}_{k}"
            if n not in self.used_names:
                self.used_names[n] = call.span
                return n

    def _bind(
        self, call: ast.LayerCall, spec: LayerSpec, layer_name: str
    ) -> tuple[dict[str, Any] | None, list[ast.Name]]:
        """Arguments -> canonical attributes (defaults filled), or None after an error."""
        ok = True
        given: dict[str, tuple[ast.Value, Location]] = {}
        operand_names: list[ast.Name] = []
        args = list(call.args)
        if spec.kind == "merge":
            # Concatenate(image, meta): leading bare names are the branches to merge.
            while args and isinstance(args[0], ast.Name):
                operand_names.append(args.pop(0))  # type: ignore[arg-type]
        for i, v in enumerate(args):
            if i >= len(spec.positional):
                self.diags.error(
                    f"{spec.name} takes at most {len(spec.positional)} positional argument"
                    f"{'s' if len(spec.positional) != 1 else ''}"
                    + (f" ({', '.join(spec.positional)})" if spec.positional else "")
                    + f", got {len(args)}",
                    _span(v),
                )
                ok = False
                break
            given[spec.positional[i]] = (v, _span(v))
        for kw in call.kwargs:
            if kw.name in ("name", "precision"):  # every layer takes these two
                continue
            p = spec.param(kw.name)
            if p is None and kw.name in spec.unsupported:
                if not (isinstance(kw.value, ast.Bool) and not kw.value.value):
                    self.diags.error(f"{spec.name}: '{kw.name}' is not supported yet: "
                                     f"{spec.unsupported[kw.name]}", kw.span)
                    ok = False
                continue
            if p is None:
                hint = did_you_mean(kw.name, [q.name for q in spec.params] + ["name", "precision"])
                self.diags.error(f"{spec.name} has no parameter '{kw.name}'{hint}", kw.span)
                ok = False
                continue
            if p.name in given:
                self.diags.error(f"{spec.name}: parameter '{p.name}' is given twice", kw.span)
                ok = False
                continue
            given[p.name] = (kw.value, kw.span)
        attrs: dict[str, Any] = {}
        for p in spec.params:
            if p.name not in given:
                if p.required:
                    self.diags.error(
                        f"{spec.name} is missing the required parameter '{p.name}'", call.span
                    )
                    ok = False
                else:
                    attrs[p.name] = _canon(p.default)
                continue
            node, _ = given[p.name]
            if isinstance(p.type, LayerArg):
                inner = self._bind_inner(node, spec, p, layer_name)
                if inner is None:
                    ok = False
                else:
                    attrs[p.name] = inner
                continue
            try:
                raw = evaluate(node, self.hparams.resolver(f"{layer_name}.{p.name}"))
            except EvalError as e:
                self.diags.error(e.message, e.span)
                ok = False
                continue
            if isinstance(raw, CallValue):
                self.diags.error(
                    f"{spec.name}: '{p.name}' cannot be a call ({raw.name}(...))", _span(node)
                )
                ok = False
                continue
            try:
                attrs[p.name] = _canon(p.type.convert(raw, p.name))
            except ParamError as e:
                self.diags.error(f"{spec.name}: {e}", _span(node))
                ok = False
        if ok and spec.check is not None:
            try:
                spec.check(attrs)
            except ParamError as e:
                self.diags.error(f"{spec.name}: {e}", call.span)
                ok = False
        return (attrs if ok else None), operand_names

    def _bind_inner(
        self, node: ast.Value, outer: LayerSpec, p: Param, layer_name: str
    ) -> dict | None:
        """``TimeDistributed(Dense(64))``: bind the wrapped layer through the catalog."""
        if isinstance(node, ast.Name):
            node = ast.Call(node.id, [], [], node.span, node.span)
        if not isinstance(node, ast.Call):
            self.diags.error(
                f"{outer.name}: '{p.name}' must be a layer, such as Dense(64)", _span(node)
            )
            return None
        spec = catalog.lookup(node.name)
        if spec is None:
            known = catalog.layer_names()
            self.diags.error(
                f"unknown layer '{node.name}'{did_you_mean(node.name, known)}", node.name_span
            )
            return None
        if spec.kind != "layer" or spec.arity != 1 or spec.value_params():
            self.diags.error(
                f"{outer.name} cannot wrap {spec.name}: it takes one input", node.name_span
            )
            return None
        if any(k.name == "name" for k in node.kwargs):
            self.diags.error(f"name the {outer.name} layer, not the layer it wraps", node.span)
            return None
        pseudo = ast.LayerCall(node.name, node.args, node.kwargs, node.span, node.name_span)
        inner, _ = self._bind(pseudo, spec, layer_name)
        if inner is None:
            return None
        try:
            return p.type.convert({"layer": spec.name, "params": inner}, p.name)
        except ParamError as e:
            self.diags.error(f"{outer.name}: {e}", node.span)
            return None


def _canon(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_canon(x) for x in v]
    if isinstance(v, list):
        return [_canon(x) for x in v]
    return v


def _span(v: Any) -> Location:
    return v.span


def _check_device(dev: str) -> str | None:
    d = dev.strip().lower()
    if d in ("cpu", "cuda", "auto", "gpu"):
        return "cuda" if d == "gpu" else d
    if d.startswith("cuda:") and d[5:].isdigit():
        return d
    return None


def lower(
    file: ast.File, network: ast.Network, diags: DiagnosticEngine, hparams: HParams
) -> tuple[Module, NetworkInfo]:
    """Lower one network of ``file`` to a graph-IR module (unranked result types)."""
    return Lowering(file, diags, hparams).lower_network(network)
