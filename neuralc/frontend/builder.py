"""The AST builder: a Lark tree of one item to the typed nodes of :mod:`neuralc.frontend.ast`.

It exists to do the checks that need more than the grammar (duplicate sections, keys and
keyword arguments, input shapes, dimension ranges, HPO forms, layers outside ``layers:``),
reporting each at its place, and to turn tokens into values (numbers, unquoted strings,
``$param`` references). It sees only trees that :func:`neuralc.frontend.recovery.parse_item`
accepted; when recovery dropped statements it skips the checks they may have misled.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from lark import Token, Tree

from neuralc.diagnostics import DiagnosticEngine, did_you_mean, suggest
from neuralc.frontend import ast
from neuralc.frontend.recovery import parse_item
from neuralc.frontend.scanner import SECTION_NAMES, Source, scan
from neuralc.limits import NESTING
from neuralc.location import FileLoc

__all__ = ["Builder"]

_INT = re.compile(r"\d+\Z")
# A string whose text is a call (``"Adam(learning_rate=1e-4)"``) is read as that call.
_QUOTED_CALL = re.compile(r"\s*[A-Za-z_][A-Za-z0-9_]*\s*\(.*\)\s*\Z", re.DOTALL)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def _unquote(raw: str) -> str:
    if "\\" not in raw:
        return raw[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1])


def _key(tok: Token) -> str:
    return _unquote(tok.value) if tok.type == "STRING" else tok.value


class Builder:
    """Converts the Lark tree of one item into AST nodes, reporting semantic errors."""

    def __init__(self, src: Source, diags: DiagnosticEngine, recovered: bool):
        self.src = src
        self.diags = diags
        self.recovered = recovered  # statements were dropped: skip checks they may affect
        self.value_depth = 0  # values being built inside each other (see value)

    # -- values ---------------------------------------------------------------------------

    def value(self, node: Tree | Token) -> ast.Value:
        if isinstance(node, Token):
            return self.token_value(node)
        # Brackets are bounded by the scanner; a chain of operators (1 + 1 + ... + 1) nests
        # as deep as it is long, and every later step walks values recursively.
        if self.value_depth >= NESTING.value:
            self.diags.error(f"this value nests operations more than {NESTING.value} deep; "
                             f"{NESTING.exceeded()}", self.src.span(node))
            return ast.Number(0, self.src.span(node))
        self.value_depth += 1
        try:
            return self._value(node)
        finally:
            self.value_depth -= 1

    def _value(self, node: Tree) -> ast.Value:
        span = self.src.span(node)
        kind = node.data
        if kind in ("add", "sub", "mul", "div"):
            op = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[kind]
            left, right = (self.value(c) for c in node.children)
            return ast.BinOp(op, left, right, span)
        if kind in ("neg", "pos"):
            inner = self.value(node.children[0])
            if isinstance(inner, ast.Number) and not isinstance(inner.value, bool):
                return ast.Number(-inner.value if kind == "neg" else inner.value, span)
            return ast.Neg(inner, span) if kind == "neg" else inner
        if kind == "tuple":
            return ast.TupleValue([self.value(c) for c in node.children], span)
        if kind == "list":
            return ast.ListValue([self.value(c) for c in node.children], span)
        if kind == "dict":
            items: list[tuple[str, ast.Value]] = []
            seen: dict[str, FileLoc] = {}
            for item in node.children:
                key_tok, val = item.children
                key = _key(key_tok)
                if key in seen:
                    self.diags.error(f"duplicate key '{key}'", self.src.tok(key_tok)).with_note(
                        "first given here", seen[key]
                    )
                seen.setdefault(key, self.src.tok(key_tok))
                items.append((key, self.value(val)))
            return ast.DictValue(items, span)
        if kind == "call":
            name_tok, args_node = node.children
            args, kwargs = self.arguments(args_node, name_tok.value)
            call = ast.Call(name_tok.value, args, kwargs, span, self.src.tok(name_tok))
            return self.hpo(call) if name_tok.value.lower() == "hpo" else call
        raise AssertionError(f"the grammar made a value node the builder does not know: {kind}")

    def token_value(self, tok: Token) -> ast.Value:
        loc = self.src.tok(tok)
        if tok.type == "NUMBER":
            if len(tok.value) > 100:  # no model needs this; Python refuses int() past 4300 digits
                self.diags.error(f"number too long ({len(tok.value)} characters)", loc)
                return ast.Number(0, loc)
            return ast.Number(int(tok.value) if _INT.match(tok.value) else float(tok.value), loc)
        if tok.type == "STRING":
            return ast.String(_unquote(tok.value), loc)
        if tok.type == "PARAM":
            return ast.ParamRef(tok.value[1:], loc)
        word = tok.value
        if word in ("true", "True"):
            return ast.Bool(True, loc)
        if word in ("false", "False"):
            return ast.Bool(False, loc)
        if word in ("None", "none"):
            return ast.NoneValue(loc)
        return ast.Name(word, loc)

    def arguments(self, args_node: Tree, owner: str) -> tuple[list[ast.Value], list[ast.Kwarg]]:
        """Positional and keyword arguments, with Python's rules (no positional after keyword,
        no keyword twice) so that a call means what a Keras user reads in it."""
        args: list[ast.Value] = []
        kwargs: list[ast.Kwarg] = []
        seen: dict[str, FileLoc] = {}
        for a in args_node.children:
            if isinstance(a, Tree) and a.data == "kwarg":
                name_tok, val = a.children
                if name_tok.value in seen:
                    self.diags.error(
                        f"'{name_tok.value}' is given more than once in {owner}(...)",
                        self.src.tok(name_tok),
                    ).with_note("first given here", seen[name_tok.value])
                seen.setdefault(name_tok.value, self.src.tok(name_tok))
                kwargs.append(ast.Kwarg(name_tok.value, self.value(val), self.src.span(a)))
            else:
                v = self.value(a)
                if kwargs:
                    self.diags.error(
                        "positional argument follows keyword argument", v.span
                    ).with_note(
                        f"give it by name, or move it before '{kwargs[0].name}='", kwargs[0].span
                    )
                args.append(v)
        return args, kwargs

    def hpo(self, call: ast.Call) -> ast.Value:
        """``HPO(choice(...))``, ``HPO(range(...))``, ``HPO(log_range(...))``; else an error."""
        kinds = ("choice", "range", "log_range", "categorical")
        inner = call.args[0] if len(call.args) == 1 and not call.kwargs else None
        if not isinstance(inner, ast.Call) or inner.name.lower() not in kinds:
            hint = did_you_mean(inner.name, kinds) if isinstance(inner, ast.Call) else ""
            self.diags.error(
                "HPO(...) takes one of choice(a, b, ...), range(low, high, step=s) or "
                "log_range(low, high)" + hint,
                inner.span if inner is not None else call.span,
            )
            return call
        # Neural writes categorical(...) for choice(...).
        kind = "choice" if inner.name.lower() == "categorical" else inner.name.lower()
        n, names = len(inner.args), [k.name for k in inner.kwargs]
        if kind == "choice" and (n == 0 or names):
            self.diags.error("choice(...) takes one or more values and no keywords", inner.span)
        elif kind == "range" and not (n == 2 and names in ([], ["step"]) or n == 3 and not names):
            self.diags.error("range(...) takes (low, high) and an optional step=", inner.span)
        elif kind == "log_range" and (n != 2 or names):
            self.diags.error("log_range(...) takes (low, high)", inner.span)
        return ast.HPO(kind, inner.args, inner.kwargs, call.span)

    def unquote_calls(self, v: ast.Value) -> ast.Value:
        """Neural's quoted forms: ``optimizer: "Adam(learning_rate=1e-4)"`` and
        ``SGD(learning_rate="ExponentialDecay(0.1, 1000, 0.96)")`` mean the call written inside
        the string. Its text is parsed as DSL where it stands, so locations (and HPO names)
        inside the string are those of the file."""
        if isinstance(v, ast.String) and _QUOTED_CALL.match(v.value):
            return self.embedded_value(v) or v
        if isinstance(v, ast.Call):
            for k in v.kwargs:
                k.value = self.unquote_calls(k.value)
            v.args = [self.unquote_calls(a) for a in v.args]
        return v

    def embedded_value(self, s: ast.String) -> ast.Value | None:
        """The value written inside the string ``s``; None (after reporting) if it does not
        parse. The text before the string is blanked, so positions stay the file's own."""
        assert isinstance(s.span, FileLoc)
        start = self.src.line_starts[s.span.line - 1] + s.span.col  # after the quote
        end = self.src.line_starts[s.span.end_line - 1] + s.span.end_col - 2  # before it
        blank = re.sub(r"[^\n]", " ", self.src.text[:start])
        sub = Source(blank + self.src.text[start:end], self.src.file)
        local = DiagnosticEngine()
        tokens = scan(sub, local).tokens
        if not tokens or local.has_errors():
            self.diags.extend(local.diagnostics)
            return None
        first = tokens[0]

        def synth(type_: str, text: str) -> Token:
            return Token(type_, text, first.start_pos, first.line, first.column, first.line,
                         first.column, first.start_pos)

        wrapped = [synth("NETWORK", "network"), synth("NAME", "_"), synth("_LBRACE", "{"),
                   synth("OPTIMIZER", "optimizer"), synth("_COLON", ":"), *tokens,
                   Token("_RBRACE", "}", tokens[-1].end_pos, tokens[-1].end_line,
                         tokens[-1].end_column, tokens[-1].end_line, tokens[-1].end_column,
                         tokens[-1].end_pos)]
        tree, _ = parse_item(sub, wrapped, set(), local)
        if tree is None or local.has_errors():
            self.diags.extend(local.diagnostics)
            return None
        net = Builder(sub, local, False).network(tree.children[0])
        self.diags.extend(local.diagnostics)
        section = net.sections.get("optimizer")
        return section.value if section is not None and not local.has_errors() else None

    # -- layers ---------------------------------------------------------------------------

    def layer_items(self, nodes: Iterable[Tree]) -> list[ast.LayerItem]:
        return [self.layer_item(n) for n in nodes]

    def layer_item(self, node: Tree) -> ast.LayerItem:
        inner = node.children[0]
        if inner.data == "named_branch":
            name_tok, *items = inner.children
            return ast.NamedBranch(
                name_tok.value, self.layer_items(items), self.src.span(inner),
                self.src.tok(name_tok),
            )
        name_tok, *rest = inner.children
        name_loc = self.src.tok(name_tok)
        call = ast.LayerCall(name_tok.value, [], [], name_loc, name_loc, parens=False)
        for part in rest:
            if part.data == "call_args":
                call.args, call.kwargs = self.arguments(part, name_tok.value)
                call.parens = True
                call.span = self.src.span(name_tok, part)
            elif part.data == "device":
                tok = part.children[0]
                call.device = ast.String(_key(tok), self.src.tok(tok))
            elif part.data == "body_block":
                call.body = self.layer_items(part.children)
            elif part.data == "branch_block":
                call.branches = [self.layer_items(b.children) for b in part.children]
            elif part.data == "repeat":
                call.repeat = self.value(part.children[0])
        return call

    # -- networks and sections ------------------------------------------------------------

    def network(self, node: Tree) -> ast.Network:
        _kw, name_tok, *items = node.children
        net = ast.Network(name_tok.value, self.src.span(node), self.src.tok(name_tok))
        first: dict[str, FileLoc] = {}
        current: str | None = None  # the section whose text we are in
        layers_kw: Token | None = None
        last_layer: Tree | None = None
        for item in items:
            if item.data == "layer_item":
                one = self.layer_item(item)
                if current == "layers" and not self.misspelt_section(one):
                    net.layers.append(one)
                    last_layer = item
                elif current != "layers":
                    self.stray_layer(one, current)
                continue
            kw: Token = item.children[0]
            canon = "execution" if kw.type == "EXECUTE" else kw.type.lower()
            current = canon
            if canon in first:
                self.diags.error(f"duplicate '{kw.value}' section", self.src.tok(kw)).with_note(
                    f"the first '{canon}' section is here", first[canon]
                )
                continue  # a second 'layers:' still collects the layers after it
            first[canon] = self.src.tok(kw)
            if canon == "layers":
                layers_kw = kw
            else:
                self.section(net, item, kw, canon)
        if layers_kw is not None:
            net.layers_span = self.src.span(layers_kw, last_layer or layers_kw)
        return net

    def misspelt_section(self, layer: ast.LayerItem) -> bool:
        """Report ``trian { }`` (an empty block after a bare name close to a section word)
        as an unknown section rather than leave it to be an unknown layer."""
        if not isinstance(layer, ast.LayerCall) or layer.parens or layer.body != []:
            return False
        hint = suggest(layer.name, SECTION_NAMES)
        if hint is None:
            return False
        self.diags.error(f"unknown section '{layer.name}'; did you mean '{hint}'?", layer.name_span)
        return True

    def stray_layer(self, layer: ast.LayerItem, current: str | None) -> None:
        """A layer item outside ``layers:``: a misspelt section, or a misplaced layer."""
        hint = suggest(layer.name, SECTION_NAMES)
        if self.misspelt_section(layer):
            return
        if isinstance(layer, ast.NamedBranch) and hint is not None:
            self.diags.error(
                f"unknown section '{layer.name}'; did you mean '{hint}'?", layer.name_span
            )
        elif self.recovered:
            return  # its 'layers:' may have been in a statement dropped after a syntax error
        elif current is None:
            self.diags.error(f"layer '{layer.name}' appears before 'layers:'", layer.span)
        else:
            self.diags.error(
                f"layer '{layer.name}' is inside the '{current}' section; layers belong after "
                "'layers:'",
                layer.span,
            )

    def section(self, net: ast.Network, node: Tree, kw: Token, canon: str) -> None:
        body = node.children[1]
        span = self.src.span(kw, body)
        if node.data == "input_section":
            net.inputs = self.inputs(body)
            net.inputs_span = span
        elif node.data == "dims_section":
            facts = (self.dim_entry(d) for d in body.children)
            net.dims = [f for f in facts if f is not None]
        elif node.data == "value_section":
            value = self.value(body)
            if canon in ("optimizer", "loss"):
                value = self.unquote_calls(value)
            net.sections[canon] = ast.Section(canon, span, self.src.tok(kw), value=value)
        elif node.data == "block_section":
            entries: list[ast.Kwarg] = []
            seen: dict[str, FileLoc] = {}
            for e in body.children:
                key_tok, val = e.children
                if key_tok.value in seen:
                    self.diags.error(
                        f"duplicate '{key_tok.value}' in the '{canon}' section",
                        self.src.tok(key_tok),
                    ).with_note("first given here", seen[key_tok.value])
                seen.setdefault(key_tok.value, self.src.tok(key_tok))
                entries.append(ast.Kwarg(key_tok.value, self.value(val), self.src.span(e)))
            net.sections[canon] = ast.Section(canon, span, self.src.tok(kw), entries=entries)

    def inputs(self, node: Tree) -> list[ast.InputShape]:
        """``(28, 28, 1)``, ``(28, 28, 1), (10,)`` or ``{ image: (64, 64, 3), meta: (10,) }``."""
        shapes: list[ast.InputShape] = []
        several = len(node.children) > 1
        bare_number_reported = False
        for v_node in node.children:
            if isinstance(v_node, Tree) and v_node.data == "dict":
                if len(node.children) > 1:
                    self.diags.error(
                        "named inputs go in one { name: shape, ... } block", self.src.span(v_node)
                    )
                seen: dict[str, FileLoc] = {}
                for item in v_node.children:
                    key_tok, shape_node = item.children
                    key = _key(key_tok)
                    if key in seen:
                        self.diags.error(
                            f"duplicate input '{key}'", self.src.tok(key_tok)
                        ).with_note("first given here", seen[key])
                        continue
                    seen[key] = self.src.tok(key_tok)
                    one = self.shape(self.value(shape_node))
                    if one is not None:
                        one.name, one.name_span = key, self.src.tok(key_tok)
                        shapes.append(one)
            else:
                v = self.value(v_node)
                if several and isinstance(v, ast.Number):
                    if not bare_number_reported:  # ``input: 28, 28`` is one mistake
                        self.diags.error(
                            "an input shape is a tuple of dimensions: write (28, 28) for one "
                            "input, (28,), (28,) for two",
                            self.src.span(node),
                        )
                    bare_number_reported = True
                    continue
                one = self.shape(v)
                if one is not None:
                    shapes.append(one)
        return shapes

    def shape(self, v: ast.Value) -> ast.InputShape | None:
        """One input's shape, as written: a leading ``None`` (the explicit batch slot) stays in
        ``dims``; the lowering reads it as the batch dimension."""
        if isinstance(v, ast.Number):
            items: list[ast.Value] = [v]  # ``input: (784)``: Keras reads shape=784 as (784,)
        elif isinstance(v, ast.TupleValue):
            items = list(v.items)
        else:
            self.diags.error(
                "an input shape is a tuple of dimensions, such as (28, 28, 1) or (seq, 128)",
                v.span,
            )
            return None
        ok = True
        for d in items:
            if isinstance(d, ast.Number):
                if isinstance(d.value, float) or d.value <= 0:
                    self.diags.error(
                        f"an input dimension must be a positive integer, got {d.value}", d.span
                    )
                    ok = False
            elif not isinstance(d, (ast.Name, ast.NoneValue)):
                self.diags.error(
                    "an input dimension is a positive integer, a name (a symbolic size) or None",
                    d.span,
                )
                ok = False
        if not ok:
            return None
        return ast.InputShape(items, v.span)

    def dim_entry(self, node: Tree) -> ast.DimFact | None:
        """One entry of ``dims { }``: a range (maybe with a step) or ``h % 8 == 0``; None for
        a fact that was reported as wrong and states nothing."""
        if node.data == "dim_divisible":
            return self.dim_divisible(node)
        return self.dim_range(node)

    def dim_number(self, tok: Token, what: str) -> int | None:
        """A non-negative integer token, or None after reporting what is wrong with it."""
        if _INT.match(tok.value):
            return int(tok.value)
        self.diags.error(f"{what} must be a non-negative integer, got {tok.value}",
                         self.src.tok(tok))
        return None

    def dim_step(self, tok: Token, loc: FileLoc) -> int | None:
        """The ``N`` of ``step N`` or ``% N``: a positive integer (else reported at ``loc``)."""
        step = self.dim_number(tok, "a dimension step")
        if step is not None and step < 1:
            self.diags.error(f"a dimension step must be 1 or more, got {step}", loc)
            return None
        return step

    def dim_range(self, node: Tree) -> ast.DimRange:
        """``seq: 8..512``, ``seq: 8..``, ``seq: ..512`` or ``seq: 128`` (fixed); the open and
        closed ranges may end in ``step N``."""
        key_tok, *rest = node.children
        nums = [c for c in rest if isinstance(c, Token)]
        step_node = next((c for c in rest if isinstance(c, Tree)), None)
        values = [self.dim_number(tok, "a dimension bound") for tok in nums]
        kind = node.data
        if kind == "dim_closed":
            lo, hi = values
        elif kind == "dim_lo":
            lo, hi = values[0], None
        elif kind == "dim_hi":
            lo, hi = None, values[0]
        else:
            lo = hi = values[0]
        span = self.src.span(node)
        if lo is not None and hi is not None and lo > hi:
            self.diags.error(f"empty range for '{key_tok.value}': {lo} is more than {hi}", span)
        if step_node is None:
            return ast.DimRange(key_tok.value, lo, hi, span)
        step_span = self.src.span(step_node)
        step = self.dim_step(step_node.children[-1], step_span)
        return ast.DimRange(key_tok.value, lo, hi, span, step, step_span)

    def dim_divisible(self, node: Tree) -> ast.DimStep | None:
        """``h % 8 == 0``; any other right-hand side is an error (only divisibility is a fact)."""
        key_tok, k_tok, rhs = node.children
        span = self.src.span(node)
        step = self.dim_step(k_tok, span)
        if rhs.value != "0":
            self.diags.error(
                f"a divisibility fact reads '{key_tok.value} % {k_tok.value} == 0'; only "
                "'== 0' can be stated", self.src.tok(rhs))
            return None
        return None if step is None else ast.DimStep(key_tok.value, step, span)

    # -- macros ---------------------------------------------------------------------------

    def macro(self, node: Tree) -> ast.MacroDef:
        _kw, name_tok, *rest = node.children
        params: list[ast.MacroParam] = []
        if rest and rest[0].data == "macro_params":
            seen: dict[str, FileLoc] = {}
            for p in rest[0].children:
                ptok = p.children[0]
                pname = ptok.value.lstrip("$")
                if pname in seen:
                    self.diags.error(
                        f"duplicate parameter '{pname}' in macro {name_tok.value}",
                        self.src.tok(ptok),
                    ).with_note("first declared here", seen[pname])
                seen.setdefault(pname, self.src.tok(ptok))
                default = self.value(p.children[1]) if len(p.children) > 1 else None
                params.append(ast.MacroParam(pname, default, self.src.span(p)))
            rest = rest[1:]
        return ast.MacroDef(
            name_tok.value, params, self.layer_items(rest), self.src.span(node),
            self.src.tok(name_tok),
        )
