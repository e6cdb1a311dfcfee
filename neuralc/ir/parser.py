"""Reads the textual IR that :mod:`neuralc.ir.printer` writes, so tests and tools can start
from text (FileCheck tests, ``neuralc opt``) and dumps can be edited and fed back.

Grammar (``//`` comments run to the end of the line)::

    module    := 'module' symbol ('attributes' attr-dict)? '{' op* '}'
    op        := func | generic
    func      := 'func.func' symbol '(' (arg-decl (',' arg-decl)*)? ')' '->' '(' types ')'
                 ('attributes' attr-dict)? '{' op* '}' loc?
    generic   := (result-group (',' result-group)* '=')? STRING '(' value-refs ')' attr-dict?
                 ('(' region (',' region)* ')')? ':' '(' types ')' '->' result-types loc?
    region    := '{' (block-label? op*)* '}'      block-label := '^bb0' ('(' arg-decls ')')? ':'
    arg-decl  := VALUE ':' type loc?              result-group := VALUE (':' INT)?
    type      := 'tensor<' dims... ' x ' element-type '>'   (or 'tensor<* x f32>')
    loc       := 'loc(' location ')'

A value may be used before the op that defines it (the verifier, not the parser, reports a
use that does not follow its definition); a name never defined is a parse error.
Tensor types are split on the token ``x`` between spaces outside parentheses, so a dim
symbol named exactly ``x`` is not supported in the text.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from neuralc.diagnostics import SOURCES, CompileError, Diagnostic
from neuralc.ir.core import Block, Module, Op, Region, Value
from neuralc.ir.dims import Dim, DimParseError, parse_dim
from neuralc.ir.types import ELEMENT_TYPES, MemRefType, ScalarType, TensorType
from neuralc.limits import NESTING
from neuralc.location import UNKNOWN, CallSiteLoc, FileLoc, FusedLoc, Location


class IRParseError(Exception):
    """A syntax or naming error in IR text, at a 1-based line and column."""

    def __init__(self, message: str, line: int, col: int):
        super().__init__(f"{line}:{col}: {message}")
        self.message = message
        self.line = line
        self.col = col


# -- lexer ---------------------------------------------------------------------------------

_TYPE_CHAR = re.compile(r"[A-Za-z0-9_ \t()*+\-]")
_SKIP = re.compile(r"(?:\s+|//[^\n]*)*")
_TOKENS = re.compile(
    r"""
    (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<value>%[A-Za-z0-9_]+(?:\#[0-9]+)?)
  | (?P<symbol>@(?:[A-Za-z_][A-Za-z0-9_.$]*|"(?:[^"\\\n]|\\.)*"))
  | (?P<label>\^[A-Za-z0-9_]+)
  | (?P<number>-?[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.$]*)
  | (?P<punct>->|[(){}\[\]<>,:=*\-])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Token:
    kind: str  # string, value, symbol, label, number, ident, punct, eof
    text: str
    pos: int
    line: int
    col: int

    def show(self) -> str:
        return "end of input" if self.kind == "eof" else f"'{self.text}'"


class _Lexer:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self._peeked: Token | None = None
        self.depth = 0  # brackets open at the current token

    def where(self, pos: int) -> tuple[int, int]:
        i = bisect.bisect_right(self._line_starts, pos) - 1
        return i + 1, pos - self._line_starts[i] + 1

    def peek(self) -> Token:
        if self._peeked is None:
            self._peeked = self._scan()
        return self._peeked

    def next(self) -> Token:
        tok = self.peek()
        self._peeked = None
        return tok

    def _scan(self) -> Token:
        self.pos = _SKIP.match(self.text, self.pos).end()  # type: ignore[union-attr]
        line, col = self.where(self.pos)
        if self.pos >= len(self.text):
            return Token("eof", "", self.pos, line, col)
        m = _TOKENS.match(self.text, self.pos)
        if m is None:
            raise IRParseError(f"unexpected character {self.text[self.pos]!r}", line, col)
        self.pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind == "punct" and m.group() in "([{":
            # The parser descends once per bracket: bound it before it runs out of stack.
            self.depth += 1
            if self.depth > NESTING.value:
                raise IRParseError(f"brackets nest more than {NESTING.value} deep here; "
                                   f"{NESTING.exceeded()}", line, col)
        elif kind == "punct" and m.group() in ")]}":
            self.depth -= 1
        return Token(kind, m.group(), m.start(), line, col)

    def tensor_body(self) -> tuple[str, int]:
        """Text up to the ``>`` closing a tensor type (consumed), and where it starts.

        Dims are scanned raw (they have their own grammar); the scan stops at a character
        no dim or element type contains, so a missing ``>`` is reported where it is missing.
        """
        assert self._peeked is None, "raw scan after a peek"
        start = i = self.pos
        depth = 0
        text = self.text
        while i < len(text):
            ch = text[i]
            if ch == ">":
                self.pos = i + 1
                return text[start:i], start
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            if depth < 0 or (ch == "-" and text.startswith("->", i)) or not _TYPE_CHAR.match(ch):
                break
            i += 1
        line, col = self.where(i)
        got = repr(text[i]) if i < len(text) else "end of input"
        raise IRParseError(f"expected '>' to close the tensor type, got {got}", line, col)


# -- scopes ----------------------------------------------------------------------------------


@dataclass
class _Forward:
    """A use of a name not defined yet: a placeholder value replaced at the definition."""

    name: str
    index: int | None
    placeholder: Value
    tok: Token


@dataclass
class _Scope:
    defs: dict[str, list[Value]] = field(default_factory=dict)
    pending: list[_Forward] = field(default_factory=list)


@dataclass
class _OperandRef:
    name: str
    index: int | None
    tok: Token


# -- parser ----------------------------------------------------------------------------------

_SPLIT_X = re.compile(r"\s+x\s+")


class _Parser:
    def __init__(self, text: str, filename: str = "<ir>"):
        self.lex = _Lexer(text)
        self.filename = filename
        self.scopes: list[_Scope] = [_Scope()]

    def place(self, op: Op, tok: Token) -> None:
        """Record where ``op``'s text starts, for errors about it (the verifier's)."""
        op.source_loc = FileLoc(self.filename, tok.line, tok.col, tok.line, tok.col + 1)

    # tokens
    def error(self, message: str, tok: Token | None = None) -> IRParseError:
        tok = tok or self.lex.peek()
        return IRParseError(message, tok.line, tok.col)

    def at(self, text: str, kind: str | None = None) -> bool:
        tok = self.lex.peek()
        return tok.text == text and tok.kind in ((kind,) if kind else ("punct", "ident"))

    def accept(self, text: str) -> Token | None:
        if self.at(text):
            return self.lex.next()
        return None

    def expect(self, text: str, context: str) -> Token:
        tok = self.lex.peek()
        if not self.at(text):
            raise self.error(f"expected '{text}' {context}, got {tok.show()}", tok)
        return self.lex.next()

    def expect_kind(self, kind: str, what: str, context: str) -> Token:
        tok = self.lex.peek()
        if tok.kind != kind:
            raise self.error(f"expected {what} {context}, got {tok.show()}", tok)
        return self.lex.next()

    def comma_list(self, close: str, item: Any, context: str) -> list[Any]:
        """``item (',' item)* close`` or just ``close``; the opening token is already taken."""
        out: list[Any] = []
        if self.accept(close):
            return out
        while True:
            out.append(item())
            if self.accept(close):
                return out
            self.expect(",", f"or '{close}' {context}")

    # module
    def module(self) -> Module:
        tok = self.lex.peek()
        if not (tok.kind == "ident" and tok.text == "module"):
            raise self.error(f"expected 'module' at the start of the IR, got {tok.show()}", tok)
        self.lex.next()
        name = self.symbol("after 'module'")
        attrs: dict[str, Any] = {}
        if self.accept("attributes"):
            attrs = self.attr_dict()
        self.expect("{", "to open the module body")
        module = Module(name, attributes=attrs)
        self.op_list(module.body, stop=("}",))
        self.expect("}", "to close the module body")
        self.close_scope(self.scopes.pop(), to_parent=False)
        tok = self.lex.peek()
        if tok.kind != "eof":
            raise self.error(f"expected end of input after the module, got {tok.show()}", tok)
        return module

    def symbol(self, context: str) -> str:
        tok = self.expect_kind("symbol", "a symbol name such as @name", context)
        body = tok.text[1:]
        if body.startswith('"'):
            return self.string_value(Token(tok.kind, body, tok.pos + 1, tok.line, tok.col + 1))
        return body

    def op_list(self, block: Block, stop: tuple[str, ...]) -> None:
        while True:
            tok = self.lex.peek()
            if tok.kind in ("eof", "label") or (tok.kind == "punct" and tok.text in stop):
                return
            self.op(block)

    # ops
    def op(self, block: Block) -> None:
        tok = self.lex.peek()
        if tok.kind == "ident" and tok.text == "func.func":
            self.func(block)
            return
        groups: list[tuple[str, int, Token]] = []
        if tok.kind == "value":
            while True:
                gtok = self.expect_kind("value", "a result name", "before '='")
                if "#" in gtok.text:
                    raise self.error("a result name cannot carry '#'", gtok)
                count = 1
                if self.accept(":"):
                    ctok = self.expect_kind("number", "a result count", f"after '{gtok.text}:'")
                    if not ctok.text.isdigit() or int(ctok.text) < 1:
                        raise self.error("a result count must be a positive integer", ctok)
                    count = int(ctok.text)
                groups.append((gtok.text[1:], count, gtok))
                if self.accept("="):
                    break
                self.expect(",", "or '=' after the op's result names")
        name_tok = self.lex.peek()
        if name_tok.kind != "string":
            raise self.error(
                f"expected an op: \"dialect.name\"(...) or func.func, got {name_tok.show()}"
            )
        self.lex.next()
        name = self.string_value(name_tok)
        self.expect("(", "to open the operand list")
        refs: list[_OperandRef] = self.comma_list(")", self.operand_ref, "in the operand list")
        attrs: dict[str, Any] = {}
        if self.at("{"):
            attrs = self.attr_dict()
        regions: list[Region] = []
        if self.accept("("):
            regions = self.comma_list(")", self.region, "after a region")
        self.expect(":", "before the op's type signature")
        sig_tok = self.expect("(", "to open the operand types")
        in_types: list[TensorType] = self.comma_list(")", self.type, "in the operand types")
        self.expect("->", "between operand and result types")
        out_types = self.result_types()
        loc = self.opt_loc()
        if len(in_types) != len(refs):
            raise self.error(
                f"'{name}' has {len(refs)} operand(s) but its signature lists "
                f"{len(in_types)} operand type(s)",
                sig_tok,
            )
        n_named = sum(c for _, c, _ in groups)
        if groups and n_named != len(out_types):
            raise self.error(
                f"'{name}' names {n_named} result(s) but its signature lists "
                f"{len(out_types)} result type(s)",
                groups[0][2],
            )
        operands = [self.resolve(r, t) for r, t in zip(refs, in_types)]
        op = Op(name, operands, out_types, attrs, regions, loc)
        self.place(op, tok)
        block.append(op)
        i = 0
        for gname, count, gtok in groups:
            self.define(gname, list(op.results[i : i + count]), gtok)
            i += count

    def operand_ref(self) -> _OperandRef:
        tok = self.expect_kind("value", "a value such as %0", "in the operand list")
        name, _, idx = tok.text[1:].partition("#")
        return _OperandRef(name, int(idx) if idx else None, tok)

    def result_types(self) -> list[TensorType]:
        if self.accept("("):
            return self.comma_list(")", self.type, "in the result types")
        return [self.type()]

    def func(self, block: Block) -> None:
        start = self.lex.next()  # func.func
        name = self.symbol("after 'func.func'")
        outer, self.scopes = self.scopes, [_Scope()]
        body = Block()
        self.expect("(", "to open the function's arguments")
        self.comma_list(")", lambda: self.arg_decl(body), "in the function's arguments")
        arrow = self.expect("->", "after the function's arguments")
        self.expect("(", "to open the function's result types")
        results: list[TensorType] = self.comma_list(")", self.type, "in the result types")
        attrs: dict[str, Any] = {}
        if self.accept("attributes"):
            atok = self.lex.peek()
            attrs = self.attr_dict()
            if "sym_name" in attrs:
                raise self.error("'sym_name' is given by the function's @name", atok)
        self.expect("{", "to open the function body")
        self.op_list(body, stop=("}",))
        self.expect("}", "to close the function body")
        self.close_scope(self.scopes.pop(), to_parent=False)
        self.scopes = outer
        loc = self.opt_loc()
        term = body.terminator
        returned = [v.type for v in term.operands] if term and term.name == "func.return" else []
        if returned != results:
            raise self.error(
                f"function @{name} declares result types ({_types(results)}) but its "
                f"func.return returns ({_types(returned)})",
                arrow,
            )
        op = Op("func.func", attributes={"sym_name": name, **attrs}, regions=[Region([body])],
                location=loc)
        self.place(op, start)
        block.append(op)

    def arg_decl(self, block: Block) -> None:
        tok = self.expect_kind("value", "an argument such as %x", "in the argument list")
        if "#" in tok.text:
            raise self.error("an argument name cannot carry '#'", tok)
        self.expect(":", f"after argument {tok.text}")
        t = self.type()
        arg = block.add_arg(t, tok.text[1:])
        arg.location = self.opt_loc()
        self.define(tok.text[1:], [arg], tok)

    def region(self) -> Region:
        self.expect("{", "to open a region")
        self.scopes.append(_Scope())
        region = Region()
        labels: set[str] = set()
        if not self.at("}"):
            if self.lex.peek().kind != "label":
                region.add_block(Block())  # an entry block without a label has no arguments
                self.op_list(region.blocks[-1], stop=("}",))
            while self.lex.peek().kind == "label":
                ltok = self.lex.next()
                if ltok.text in labels:
                    raise self.error(f"redefinition of block {ltok.text}", ltok)
                labels.add(ltok.text)
                block = region.add_block(Block())
                if self.accept("("):
                    self.comma_list(")", lambda b=block: self.arg_decl(b), "in the block arguments")
                self.expect(":", f"after block label {ltok.text}")
                self.op_list(block, stop=("}",))
        self.expect("}", "to close the region")
        self.close_scope(self.scopes.pop(), to_parent=True)
        return region

    # names
    def define(self, name: str, values: list[Value], tok: Token) -> None:
        for scope in self.scopes:
            if name in scope.defs:
                raise self.error(f"redefinition of value '%{name}'", tok)
        scope = self.scopes[-1]
        scope.defs[name] = values
        still: list[_Forward] = []
        for fwd in scope.pending:
            if fwd.name != name:
                still.append(fwd)
                continue
            value = self.pick(values, fwd.name, fwd.index, fwd.tok)
            self.check_type(value, fwd.placeholder.type, fwd.tok)
            fwd.placeholder.replace_all_uses_with(value)
        scope.pending = still

    def resolve(self, ref: _OperandRef, t: TensorType) -> Value:
        for scope in reversed(self.scopes):
            if ref.name in scope.defs:
                value = self.pick(scope.defs[ref.name], ref.name, ref.index, ref.tok)
                self.check_type(value, t, ref.tok)
                return value
        placeholder = Value(t)
        self.scopes[-1].pending.append(_Forward(ref.name, ref.index, placeholder, ref.tok))
        return placeholder

    def pick(self, values: list[Value], name: str, index: int | None, tok: Token) -> Value:
        if index is None:
            if len(values) != 1:
                raise self.error(
                    f"'%{name}' has {len(values)} results; use '%{name}#0' .. "
                    f"'%{name}#{len(values) - 1}'",
                    tok,
                )
            return values[0]
        if index >= len(values):
            raise self.error(f"'%{name}' has only {len(values)} result(s), no #{index}", tok)
        return values[index]

    def check_type(self, value: Value, t: TensorType, tok: Token) -> None:
        if value.type != t:
            raise self.error(f"'{tok.text}' has type {value.type} but is used as {t}", tok)

    def close_scope(self, scope: _Scope, to_parent: bool) -> None:
        if to_parent and self.scopes:
            self.scopes[-1].pending.extend(scope.pending)
        elif scope.pending:
            fwd = scope.pending[0]
            raise self.error(f"use of undefined value '{fwd.tok.text}'", fwd.tok)

    # types
    def type(self) -> Any:
        tok = self.lex.peek()
        if tok.kind == "ident" and tok.text in ELEMENT_TYPES:
            self.lex.next()
            return ScalarType(tok.text)
        if not (tok.kind == "ident" and tok.text in ("tensor", "memref")):
            raise self.error(f"expected a type such as tensor<4 x f32>, got {tok.show()}", tok)
        self.lex.next()
        self.expect("<", f"after '{tok.text}'")
        body, start = self.lex.tensor_body()
        t = self.type_body(body, start)
        if tok.text == "memref":
            if t.shape is None:
                raise self.error("a memref has a ranked shape", tok)
            return MemRefType(t.shape, t.dtype)
        return t

    def type_body(self, body: str, start: int) -> TensorType:
        pieces: list[tuple[str, int]] = []  # (text, offset in the source)
        depth = 0
        begin = 0
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
            elif depth == 0 and ch.isspace():
                m = _SPLIT_X.match(body, i)
                if m:
                    pieces.append((body[begin:i], begin))
                    begin = i = m.end()
                    continue
            i += 1
        pieces.append((body[begin:], begin))

        def fail(message: str, offset: int) -> IRParseError:
            line, col = self.lex.where(start + offset)
            return IRParseError(message, line, col)

        dtype_text, dtype_off = pieces[-1]
        dtype = dtype_text.strip()
        if dtype not in ELEMENT_TYPES:
            lead = len(dtype_text) - len(dtype_text.lstrip())
            known = ", ".join(ELEMENT_TYPES)
            raise fail(f"expected an element type ({known}), got '{dtype}'", dtype_off + lead)
        dims_text = pieces[:-1]
        if len(dims_text) == 1 and dims_text[0][0].strip() == "*":
            return TensorType(None, dtype)
        dims: list[Dim] = []
        for text, off in dims_text:
            lead = len(text) - len(text.lstrip())
            if text.strip() == "*":
                raise fail("'*' (unranked) must be the only dimension", off + lead)
            try:
                dims.append(parse_dim(text))
            except DimParseError as e:
                raise fail(f"bad dimension: {e}", off + lead) from None
        return TensorType(tuple(dims), dtype)

    # attributes
    def attr_dict(self) -> dict[str, Any]:
        self.expect("{", "to open an attribute dictionary")
        out: dict[str, Any] = {}

        def entry() -> None:
            tok = self.lex.next()
            if tok.kind == "ident":
                key = tok.text
            elif tok.kind == "string":
                key = self.string_value(tok)
            else:
                raise self.error(f"expected an attribute name, got {tok.show()}", tok)
            if key in out:
                raise self.error(f"duplicate attribute '{key}'", tok)
            self.expect("=", f"after attribute name '{key}'")
            out[key] = self.attr_value()

        self.comma_list("}", entry, "in the attribute dictionary")
        return out

    def string_value(self, tok: Token) -> str:
        try:
            return json.loads(tok.text)
        except json.JSONDecodeError as e:
            raise self.error(f"bad string literal: {e.msg}", tok) from None

    def attr_value(self) -> Any:
        tok = self.lex.peek()
        if tok.kind == "string":
            self.lex.next()
            return self.string_value(tok)
        if tok.kind == "number":
            self.lex.next()
            if any(ch in tok.text for ch in ".eE"):
                return float(tok.text)
            return int(tok.text)
        if tok.kind == "ident":
            words = {"true": True, "false": False, "none": None,
                     "inf": float("inf"), "nan": float("nan")}
            if tok.text in words:
                self.lex.next()
                return words[tok.text]
            if tok.text == "tensor":
                return self.type()
        if tok.kind == "punct":
            if tok.text == "-":
                self.lex.next()
                nxt = self.lex.peek()
                if nxt.kind == "ident" and nxt.text in ("inf", "nan"):
                    self.lex.next()
                    return -float(nxt.text)
                raise self.error(f"expected a number after '-', got {nxt.show()}", nxt)
            if tok.text == "[":
                self.lex.next()
                return self.comma_list("]", self.attr_value, "in a list")
            if tok.text == "{":
                return self.attr_dict()
        raise self.error(f"expected an attribute value, got {tok.show()}", tok)

    # locations
    def opt_loc(self) -> Location:
        if not self.at("loc", "ident"):
            return UNKNOWN
        self.lex.next()
        self.expect("(", "after 'loc'")
        loc = self.location()
        self.expect(")", "to close the location")
        return loc

    def location(self) -> Location:
        tok = self.lex.next()
        if tok.kind == "ident" and tok.text == "unknown":
            return UNKNOWN
        if tok.kind == "ident" and tok.text == "callsite":
            self.expect("(", "after 'callsite'")
            callee = self.location()
            self.expect("at", "between the two locations of a callsite")
            caller = self.location()
            self.expect(")", "to close the callsite location")
            return CallSiteLoc(callee, caller)
        if tok.kind == "ident" and tok.text == "fused":
            self.expect("[", "after 'fused'")
            return FusedLoc(tuple(self.comma_list("]", self.location, "in a fused location")))
        if tok.kind == "string":
            file = self.string_value(tok)
            self.expect(":", "after the file name of a location")
            line = self.loc_int("a line number")
            self.expect(":", "between line and column")
            col = self.loc_int("a column number")
            if self.accept("to"):
                end_line = self.loc_int("an end line number")
                self.expect(":", "between end line and end column")
                return FileLoc(file, line, col, end_line, self.loc_int("an end column number"))
            return FileLoc(file, line, col)
        raise self.error(
            "expected a location (\"file\":line:col, callsite, fused or unknown), "
            f"got {tok.show()}",
            tok,
        )

    def loc_int(self, what: str) -> int:
        tok = self.expect_kind("number", what, "in a location")
        if not tok.text.isdigit():
            raise self.error(f"expected {what} in a location, got {tok.show()}", tok)
        return int(tok.text)


def _types(ts: list[TensorType]) -> str:
    return ", ".join(str(t) for t in ts)


# -- entry points --------------------------------------------------------------------------------


def parse_module(text: str, filename: str = "<ir>") -> Module:
    """Parse one module; raises :class:`IRParseError` at the first problem.

    ``filename`` names the text for the callers that report errors at a file location
    (:func:`parse_module_or_diagnose`); locations inside the IR come from its ``loc(...)``.
    """
    return _Parser(text, filename).module()


def parse_module_or_diagnose(text: str, filename: str = "<ir>") -> Module:
    """Parse, turning a parse error into a :class:`CompileError` the driver renders with a caret."""
    try:
        return parse_module(text, filename)
    except IRParseError as e:
        SOURCES.add(filename, text)
        loc = FileLoc(filename, e.line, e.col)
        raise CompileError([Diagnostic("error", e.message, loc)]) from None


def _parse_whole(text: str, what: str, fn: Any) -> Any:
    p = _Parser(text)
    value = fn(p)
    tok = p.lex.peek()
    if tok.kind != "eof":
        raise p.error(f"expected end of input after the {what}, got {tok.show()}", tok)
    return value


def parse_type(text: str) -> TensorType:
    """One type, e.g. ``tensor<batch x 10 x f32>``."""
    return _parse_whole(text, "type", lambda p: p.type())


def parse_attr(text: str) -> Any:
    """One attribute value, e.g. ``[1, 2]`` or ``{k = 1e-05}``."""
    return _parse_whole(text, "attribute", lambda p: p.attr_value())


def parse_location(text: str) -> Location:
    """The inside of ``loc(...)``, e.g. ``"m.nr":3:10 to 3:22``."""
    return _parse_whole(text, "location", lambda p: p.location())
