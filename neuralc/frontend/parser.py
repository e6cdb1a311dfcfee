"""Parse ``.nr`` text into the typed AST of :mod:`neuralc.frontend.ast`.

The work is split in four steps so that every error is reported at its place, in words a
user understands, and several independent errors come out of one run:

1. A scanner turns the text into tokens with exact positions. It reports lexical errors
   (unterminated strings and comments, stray characters) and types section words
   contextually: ``train {`` is the keyword ``TRAIN`` but ``Concatenate(input, meta)`` holds
   the name ``input``.
2. A bracket pass checks ``()[]{}`` nesting, reports a missing or unmatched bracket once (with
   a note at the opening one), repairs the token list so parsing can go on, and splits the
   file into top-level items (each ``network`` and ``define``).
3. Each item is parsed on its own by a Lark LALR parser fed with those tokens. On a syntax
   error the offending statement (one layer line, one section, one entry) is dropped and the
   item is parsed again, so each independent bad statement gets its own error. Errors in a
   statement next to an already reported lexical or bracket error are not reported again.
4. The Lark tree is converted into AST nodes, with the checks that need more than the
   grammar (duplicate sections, input shapes, HPO forms, keyword arguments).

:func:`parse` raises :class:`~neuralc.diagnostics.CompileError` and nothing else.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import LarkError, UnexpectedToken
from lark.lexer import Lexer, LexerState
from lark.parsers.lalr_interactive_parser import InteractiveParser

from neuralc.diagnostics import (
    SOURCES,
    CompileError,
    Diagnostic,
    DiagnosticEngine,
    did_you_mean,
    suggest,
)
from neuralc.frontend import ast
from neuralc.location import FileLoc, primary

__all__ = ["parse", "parse_file", "SECTION_NAMES"]

# -- vocabulary -----------------------------------------------------------------------------

#: Section words (any case) and the keyword token each one becomes.
_SECTION_WORDS = {
    "input": "INPUT",
    "layers": "LAYERS",
    "dims": "DIMS",
    "loss": "LOSS",
    "optimizer": "OPTIMIZER",
    "metrics": "METRICS",
    "train": "TRAIN",
    "execute": "EXECUTE",
    "execution": "EXECUTE",
}
#: Section names offered as suggestions for an unknown section.
SECTION_NAMES = ("input", "layers", "dims", "loss", "optimizer", "metrics", "train", "execution")
_SECTION_KW = frozenset(_SECTION_WORDS.values())
_TOP_KW = {"network": "NETWORK", "define": "DEFINE"}

_PUNCT = {
    "(": "_LPAR", ")": "_RPAR", "[": "_LSQB", "]": "_RSQB", "{": "_LBRACE", "}": "_RBRACE",
    ",": "_COMMA", ";": "_SEMI", ":": "_COLON", "=": "_EQUAL", "@": "_AT", "*": "_STAR",
    "+": "_PLUS", "-": "_MINUS", "/": "_SLASH", "..": "_RANGE",
}
_PUNCT_TEXT = {v: k for k, v in _PUNCT.items()}
_OPEN = {"_LPAR": "_RPAR", "_LSQB": "_RSQB", "_LBRACE": "_RBRACE"}
_CLOSE = {v: k for k, v in _OPEN.items()}

# A name after one of these continues the statement instead of starting a new one.
_NO_SPLIT_AFTER = frozenset({
    "_COLON", "_EQUAL", "_AT", "_STAR", "_PLUS", "_MINUS", "_SLASH", "_RANGE", "NETWORK", "DEFINE",
})
# A line break after one of these does not end an argument list (to place a missing ')').
_CONTINUES = frozenset({
    "_COMMA", "_LPAR", "_LSQB", "_LBRACE", "_EQUAL", "_COLON", "_PLUS", "_MINUS", "_STAR",
    "_SLASH", "_AT", "_RANGE",
})
# After this many syntax errors in one network or define, the rest of it is not examined.
_MAX_ERRORS_PER_ITEM = 50

# -- scanner --------------------------------------------------------------------------------

_TOKEN_RE = re.compile(
    r"""
     (?P<ws>[ \t\r\n\f\v]+)
    |(?P<comment>\#[^\n]*|//[^\n]*)
    |(?P<bcomment>/\*.*?\*/)
    |(?P<bcomment_open>/\*)
    |(?P<string>"(?:[^"\\\n]|\\[^\n])*"|'(?:[^'\\\n]|\\[^\n])*')
    |(?P<string_open>["'])
    |(?P<range>\.\.)
    |(?P<number>(?:\d+\.(?!\.)\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
    |(?P<param>\$[A-Za-z_][A-Za-z0-9_]*)
    |(?P<dollar>\$)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<punct>[()\[\]{},;:=@*+\-/])
    """,
    re.VERBOSE | re.DOTALL,
)


class _Source:
    """One file's text and name: makes tokens and locations with 1-based positions."""

    def __init__(self, text: str, filename: str):
        self.text = text
        self.file = filename
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def linecol(self, pos: int) -> tuple[int, int]:
        i = bisect_right(self.line_starts, pos) - 1
        return i + 1, pos - self.line_starts[i] + 1

    def token(self, type_: str, value: str, start: int, end: int) -> Token:
        line, col = self.linecol(start)
        end_line, end_col = self.linecol(end)
        return Token(type_, value, start, line, col, end_line, end_col, end)

    def loc(self, start: int, end: int) -> FileLoc:
        line, col = self.linecol(start)
        end_line, end_col = self.linecol(end)
        return FileLoc(self.file, line, col, end_line, end_col)

    def tok(self, tok: Token) -> FileLoc:
        """The span of one token."""
        return FileLoc(self.file, tok.line, tok.column, tok.end_line, tok.end_column)

    def after(self, tok: Token) -> FileLoc:
        """The position just after ``tok``: where a missing token belongs."""
        return FileLoc(self.file, tok.end_line, tok.end_column, tok.end_line, tok.end_column + 1)

    def span(self, first: Tree | Token, last: Tree | Token | None = None) -> FileLoc:
        """The text of ``first`` through ``last`` (trees carry propagated positions)."""
        a = first.meta if isinstance(first, Tree) else first
        b = last if last is not None else first
        b = b.meta if isinstance(b, Tree) else b
        return FileLoc(self.file, a.line, a.column, b.end_line, b.end_column)


@dataclass
class _Scan:
    tokens: list[Token]
    # ids of tokens next to a reported lexical or bracket error: syntax errors in their
    # statement are cascades of that error and are not reported again.
    tainted: set[int] = field(default_factory=set)
    # ids of unterminated strings that swallowed a bracket: the brackets of the rest of
    # their item cannot be trusted, so its syntax is not examined further.
    swallowed: set[int] = field(default_factory=set)


def _scan(src: _Source, diags: DiagnosticEngine) -> _Scan:
    """Tokenize, reporting every lexical error and carrying on after it."""
    text = src.text
    scan = _Scan([])
    tokens = scan.tokens
    pos, n = 0, len(text)

    def taint_last() -> None:
        if tokens:
            scan.tainted.add(id(tokens[-1]))

    while pos < n:
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            shown = f"'{ch}'" if ch.isprintable() else f"U+{ord(ch):04X}"
            diags.error(f"unexpected character {shown}", src.loc(pos, pos + 1))
            taint_last()
            pos += 1
            continue
        kind, value, end = m.lastgroup, m.group(), m.end()
        if kind in ("ws", "comment", "bcomment"):
            pass
        elif kind == "bcomment_open":
            diags.error("unterminated comment: '/*' has no closing '*/'", src.loc(pos, pos + 2))
            taint_last()
            end = n
        elif kind == "string_open":
            eol = text.find("\n", pos)
            eol = n if eol < 0 else eol
            diags.error(
                f"unterminated string: missing closing {value} before the end of the line",
                src.loc(pos, max(eol, pos + 1)),
            )
            tok = src.token("STRING", text[pos:eol] + value, pos, eol)
            tokens.append(tok)
            scan.tainted.add(id(tok))
            if any(c in "()[]{}" for c in text[pos:eol]):
                scan.swallowed.add(id(tok))
            end = eol
        elif kind == "dollar":
            diags.error("expected a parameter name after '$'", src.loc(pos, pos + 1))
            taint_last()
        elif kind in ("punct", "range"):
            tokens.append(src.token(_PUNCT[value], value, pos, end))
        else:
            assert kind is not None
            tokens.append(src.token(kind.upper(), value, pos, end))
        pos = end
    _type_keywords(tokens)
    return scan


_KW_NEXT_SECTION = frozenset({"_COLON", "_LBRACE", "NAME", "STRING", "NUMBER", "_LSQB"})


def _type_keywords(tokens: list[Token]) -> None:
    """Turn section words and ``network``/``define`` into keywords where they start one.

    A word is a keyword only where the next token fits (``train {``, ``loss:``, ``network
    Name``; also ``loss "mse"``, so that a missing ':' is reported as such), so the same
    words stay usable as names elsewhere (``Concatenate(input, meta)``, ``units=...``).
    """
    for i, tok in enumerate(tokens):
        if tok.type != "NAME":
            continue
        low = tok.value.lower()
        nxt = tokens[i + 1].type if i + 1 < len(tokens) else "$END"
        if low in _TOP_KW and nxt in ("NAME", "_LBRACE"):
            tok.type = _TOP_KW[low]
        elif low in _SECTION_WORDS and nxt in _KW_NEXT_SECTION:
            tok.type = _SECTION_WORDS[low]


# -- brackets and top-level items -----------------------------------------------------------


def _synthetic(type_: str, after: Token) -> Token:
    """A zero-width closing bracket inserted after ``after`` to repair a missing one."""
    return Token(
        type_, _PUNCT_TEXT[type_], after.end_pos, after.end_line, after.end_column,
        after.end_line, after.end_column, after.end_pos,
    )


def _split_items(src: _Source, scan: _Scan, diags: DiagnosticEngine) -> list[list[Token]]:
    """Check brackets, repair them, and split the tokens into top-level items.

    A missing closing bracket is reported where it most likely belongs (for ``(``/``[``: the
    end of the line that opened it, when the next line starts something new) with a note at
    the opening bracket, and a synthetic one is inserted there; an unmatched closing bracket
    is reported and dropped. A ``network``/``define`` keyword closes every open bracket: a
    missing ``}`` does not swallow the next block. A missing bracket right after a lexical
    error is not reported (an unterminated string swallows the ``)`` after it).
    """
    items: list[list[Token]] = []
    out: list[Token] = []
    stack: list[int] = []  # indices into ``out`` of the open brackets

    def close_missing(down_to: int) -> None:
        while len(stack) > down_to:
            o = stack.pop()
            opener = out[o]
            closer = _OPEN[opener.type]
            at = len(out)
            if opener.type != "_LBRACE":
                for k in range(o, len(out) - 1):
                    if out[k + 1].line > out[k].end_line and out[k].type not in _CONTINUES:
                        at = k + 1
                        break
            prev = out[at - 1]
            if not any(id(t) in scan.tainted for t in out[o:at]):
                diags.error(
                    f"missing '{_PUNCT_TEXT[closer]}' to close '{opener.value}'", src.after(prev)
                ).with_note(f"'{opener.value}' opened here", src.tok(opener))
            synth = _synthetic(closer, prev)
            scan.tainted.add(id(synth))
            out.insert(at, synth)

    def end_item() -> None:
        nonlocal out
        if out:
            items.append(out)
        out = []

    for tok in scan.tokens:
        if tok.type in ("NETWORK", "DEFINE"):
            close_missing(0)
            end_item()
        if tok.type in _OPEN:
            stack.append(len(out))
            out.append(tok)
        elif tok.type in _CLOSE:
            want = _CLOSE[tok.type]
            depth = next((d for d in range(len(stack) - 1, -1, -1) if out[stack[d]].type == want),
                         None)
            if depth is None:
                diags.error(f"unmatched '{tok.value}'", src.tok(tok))
                if out:
                    scan.tainted.add(id(out[-1]))
                continue
            close_missing(depth + 1)
            stack.pop()
            out.append(tok)
            if not stack and tok.type == "_RBRACE":
                end_item()
        else:
            out.append(tok)
    close_missing(0)
    end_item()
    return items


# -- the Lark parser and statement-level recovery -------------------------------------------


class _NoLexer(Lexer):
    """Lark wants a lexer class; the scanner's tokens are fed to the parser directly."""

    def __init__(self, lexer_conf: object) -> None:
        pass

    def lex(self, lexer_state: LexerState, parser_state: object) -> Iterator[Token]:
        return iter(())


@lru_cache(maxsize=1)
def _lark() -> Lark:
    """The LALR parser, built once per process (table construction is the slow part)."""
    grammar = Path(__file__).with_name("grammar.lark").read_text(encoding="utf-8")
    return Lark(
        grammar, parser="lalr", lexer=_NoLexer, propagate_positions=True,
        maybe_placeholders=False,
    )


class _SyntaxError(Exception):
    def __init__(self, index: int):
        self.index = index  # the bad token's index; len(tokens) for the end of the item


def _clone(ip: InteractiveParser) -> InteractiveParser:
    """An independent copy of a parser, cheap enough to take every few tokens.

    Lark's tree builder appends to the children list of the tree on top of the value stack
    when it extends a left-recursive ``item*`` list, so the trees on the stack are copied one
    level deep; the trees below them are never touched again and stay shared.
    """
    c = ip.copy(deepcopy_values=False)
    c.parser_state.value_stack = [
        Tree(v.data, list(v.children), v.meta) if isinstance(v, Tree) else v
        for v in c.parser_state.value_stack
    ]
    return c


class _Feeder:
    """Feeds one item's tokens to the parser, skipping the statements dropped by recovery.

    It keeps a snapshot of the parser every few tokens, so that after a statement is dropped
    parsing resumes from just before it instead of from the start: recovery stays linear in
    the size of the file.
    """

    EVERY = 64

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.alive = [True] * len(tokens)
        self.snaps: dict[int, InteractiveParser] = {0: _lark().parse_interactive("")}

    def _restore(self, upto: int) -> tuple[int, InteractiveParser]:
        k = max(i for i in self.snaps if i <= upto)
        return k, _clone(self.snaps[k])

    def run(self, resume_at: int) -> Tree:
        """Parse to the end, resuming at the last snapshot before ``resume_at``."""
        k, ip = self._restore(resume_at)
        toks, alive = self.tokens, self.alive
        fed = 0
        for j in range(k, len(toks)):
            if not alive[j]:
                continue
            if fed and fed % self.EVERY == 0 and j not in self.snaps:
                self.snaps[j] = _clone(ip)
            try:
                ip.feed_token(toks[j])
            except UnexpectedToken:
                raise _SyntaxError(j) from None
            fed += 1
        last = next(toks[j] for j in range(len(toks) - 1, -1, -1) if alive[j])
        try:
            return ip.feed_eof(last)
        except UnexpectedToken:
            raise _SyntaxError(len(toks)) from None

    def accepts(self, i: int) -> set[str]:
        """Token types the parser accepts just before token ``i`` (for 'expected ...')."""
        k, ip = self._restore(i)
        for j in range(k, i):
            if self.alive[j]:
                ip.feed_token(self.tokens[j])
        return set(ip.accepts())

    def drop(self, lo: int, hi: int) -> None:
        for j in range(lo, hi):
            self.alive[j] = False
        for k in [k for k in self.snaps if k > lo]:
            del self.snaps[k]


class _Blocks:
    """Bracket structure of one item's tokens: matching pairs and statements per block."""

    def __init__(self, tokens: list[Token]):
        self.tokens = tokens
        self.match: dict[int, int] = {}
        self.parent: list[int | None] = []  # innermost open bracket around each token
        stack: list[int] = []
        for i, tok in enumerate(tokens):
            if tok.type in _CLOSE and stack:
                o = stack.pop()
                self.match[o] = i
                self.match[i] = o
            self.parent.append(stack[-1] if stack else None)
            if tok.type in _OPEN:
                stack.append(i)

    def braces_around(self, i: int) -> list[int]:
        """The ``{`` openers enclosing token ``i``, outermost first."""
        out: list[int] = []
        p = self.parent[i]
        while p is not None:
            if self.tokens[p].type == "_LBRACE":
                out.append(p)
            p = self.parent[p]
        return out[::-1]

    def statement(self, block: int, i: int) -> tuple[int, int]:
        """Token range ``[s, e)`` of the statement of ``block`` that holds token ``i``.

        A statement starts at the block's first token and at every name or keyword that
        does not continue the token before it: ``epochs: 8 batch_size: 64`` is two
        statements, ``optimizer: Adam`` one, ``layers: Dense(4)`` two. A bracketed group
        counts as one unit.
        """
        toks = self.tokens
        end = self.match.get(block, len(toks))
        starts: list[int] = []
        s = block + 1
        j = block + 1
        while j < end:
            if j == block + 1 or (
                (toks[j].type in ("NAME", "NETWORK", "DEFINE") or toks[j].type in _SECTION_KW)
                and (toks[j - 1].type not in _NO_SPLIT_AFTER
                     or toks[j - 1].type == "_COLON" and toks[j - 2].type == "LAYERS")
            ):
                starts.append(j)
            unit_end = self.match[j] + 1 if toks[j].type in _OPEN and j in self.match else j + 1
            if j <= i < unit_end:
                s = starts[-1]
            j = unit_end
        later = [st for st in starts if st > s]
        return s, (later[0] if later else end)

    def context(self, i: int) -> str:
        """What a name means at token ``i``, from the innermost bracket around it."""
        toks = self.tokens
        p = self.parent[i] if i < len(self.parent) else None
        if p is None:
            before = toks[i - 1].type if 0 < i <= len(toks) else None
            return {"NETWORK": "a network name", "DEFINE": "a macro name"}.get(before, "a name")
        if toks[p].type == "_LPAR":
            return "a parameter name" if p >= 2 and toks[p - 2].type == "DEFINE" else "a value"
        if toks[p].type == "_LSQB":
            return "a value"
        prev = toks[p - 1].type if p >= 1 else None
        prev2 = toks[p - 2].type if p >= 2 else None
        owner = prev2 if prev == "_COLON" else prev
        if owner in ("TRAIN", "EXECUTE"):
            return "a 'key: value' entry"
        if owner == "DIMS":
            return "a dimension range such as 'seq: 8..512'"
        if prev == "_COLON" and prev2 == "INPUT":
            return "an input such as 'image: (64, 64, 3)'"
        if prev in ("_EQUAL", "_COMMA", "_LPAR", "_LSQB"):
            return "a 'key: value' item"
        if prev == "_COLON" and prev2 == "NAME" and self.context(p) != "a layer":
            return "a 'key: value' item"
        return "a layer"


def _describe(tok: Token | None) -> str:
    if tok is None:
        return "end of file"
    if tok.type == "NAME":
        return f"name '{tok.value}'"
    if tok.type == "NUMBER":
        return f"number {tok.value}"
    if tok.type == "STRING":
        return f"string {tok.value}"
    return f"'{tok.value}'"


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]


# Punctuation worth naming in 'expected ...', in the order it is listed.
_LISTED = ("_COMMA", "_RPAR", "_RSQB", "_RBRACE", "_COLON", "_EQUAL", "_LBRACE", "_LPAR",
           "_SEMI", "_RANGE")


def _expected(acc: set[str], noun: str) -> str:
    """Say what the parser wanted, in the words of the language rather than token names.

    Tokens that would merely continue what came before (operators, separators, ``@``, ``*``
    or a block after a layer) are left out when something more telling is listed.
    """
    parts: list[str] = []
    if "NUMBER" in acc and "STRING" in acc:
        parts.append("a value")
    elif "NUMBER" in acc:
        parts.append("a repeat count" if "PARAM" in acc else "a number")
    elif "STRING" in acc:
        parts.append('a device such as "cuda"')
    elif "NAME" in acc:
        parts.append(noun)
    elif acc & {"NETWORK", "DEFINE"}:
        parts.append("'network' or 'define'")
    elif "_LBRACE" in acc and noun == "a layer":
        parts.append("another branch '{ ... }'")
    if "LAYERS" in acc and noun == "a layer":
        parts.append("a section")
    skip: set[str] = set()
    top_level = noun in ("a name", "a network name", "a macro name")
    if not top_level and acc & (set(_LISTED) - {"_LPAR"}):
        skip.add("_LPAR")  # '(' would only make a call of the name before it
    if parts:
        skip |= {"_SEMI", "_COMMA", "_RANGE"}
        if "NUMBER" in acc:
            skip |= {"_LPAR", "_LBRACE"}
        if noun == "a layer":
            skip |= {"_LBRACE", "_LPAR", "_COLON"}
    for t in _LISTED:
        if t in acc and t not in skip:
            parts.append(f"'{_PUNCT_TEXT[t]}'")
    return _join(parts) if parts else "something else"


def _section_like(blocks: _Blocks, s: int, e: int) -> bool:
    """Does statement ``[s, e)`` of a network body look like a section, not a layer?

    ``trian { epochs: 8 }`` and ``optimzer: Adam()`` do; ``Residual { Dense(8) }`` and a named
    branch ``image: { Conv2D(...) }`` do not.
    """
    toks = blocks.tokens
    if toks[s].type != "NAME" or s + 1 >= e:
        return False
    nxt = toks[s + 1].type
    if nxt in ("STRING", "NUMBER", "_LSQB"):  # ``lost "mse"``: a section missing its ':'
        return suggest(toks[s].value, SECTION_NAMES) is not None
    if nxt in ("_COLON", "_EQUAL") and (s + 2 >= e or toks[s + 2].type != "_LBRACE"):
        return True
    brace = s + 1 if nxt == "_LBRACE" else s + 2 if nxt == "_COLON" else None
    if brace is None or brace >= e or toks[brace].type != "_LBRACE":
        return False
    inner = toks[brace + 1: blocks.match.get(brace, e)]
    return len(inner) >= 3 and inner[1].type in ("_COLON", "_EQUAL") and inner[2].type != "_LBRACE"


def _parse_item(
    src: _Source, tokens: list[Token], tainted: set[int], diags: DiagnosticEngine
) -> tuple[Tree | None, bool]:
    """Parse one top-level item, dropping each bad statement to find the next error.

    Returns the tree (None if the item cannot be recovered: an error outside any block) and
    whether a statement was dropped.
    """
    feeder = _Feeder(tokens)
    blocks: _Blocks | None = None
    resume = 0
    for _ in range(_MAX_ERRORS_PER_ITEM):
        try:
            return feeder.run(resume), blocks is not None
        except _SyntaxError as err:
            i = err.index
        blocks = blocks or _Blocks(tokens)
        bad = tokens[i] if i < len(tokens) else None
        chain = blocks.braces_around(i) if bad is not None else []
        rng: tuple[int, int] | None = None
        message = ""
        where: FileLoc | None = None
        # A misspelt section is reported as one, and the whole statement is dropped.
        if chain and tokens[0].type == "NETWORK" and chain[0] == 2:
            s, e = blocks.statement(chain[0], i)
            if _section_like(blocks, s, e):
                name = tokens[s].value
                message = f"unknown section '{name}'" + did_you_mean(name, SECTION_NAMES)
                where = src.tok(tokens[s])
                rng = (s, e)
        if rng is None:
            if chain:
                rng = blocks.statement(chain[-1], i)
            expected = _expected(feeder.accepts(i), blocks.context(i))
            where = src.tok(bad) if bad is not None else src.after(tokens[-1])
            message = f"unexpected {_describe(bad)}; expected {expected}"
            if i == 0 and bad is not None and bad.type == "NAME":
                message += did_you_mean(bad.value, _TOP_KW)
        lo, hi = rng if rng is not None else (max(0, i - 1), i + 1)
        # Not reported: errors next to a lexical or bracket error, and errors in a block
        # whose '}' was missing (its extent is a guess, so its contents may be misread).
        repaired_block = any(id(tokens[blocks.match[b]]) in tainted for b in chain
                             if b in blocks.match)
        if not repaired_block and not any(id(t) in tainted for t in tokens[lo:hi]):
            diags.error(message, where)
        if rng is None:
            return None, True
        feeder.drop(lo, hi)
        resume = lo
    diags.error(
        f"too many syntax errors; the rest of this {tokens[0].value} is not checked",
        src.tok(tokens[0]),
    )
    return None, True


# -- tree to AST ----------------------------------------------------------------------------

_INT = re.compile(r"\d+\Z")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def _unquote(raw: str) -> str:
    if "\\" not in raw:
        return raw[1:-1]
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), "\\" + m.group(1)), raw[1:-1])


def _key(tok: Token) -> str:
    return _unquote(tok.value) if tok.type == "STRING" else tok.value


class _Builder:
    """Converts the Lark tree of one item into AST nodes, reporting semantic errors."""

    def __init__(self, src: _Source, diags: DiagnosticEngine, recovered: bool):
        self.src = src
        self.diags = diags
        self.recovered = recovered  # statements were dropped: skip checks they may affect

    # -- values ---------------------------------------------------------------------------

    def value(self, node: Tree | Token) -> ast.Value:
        if isinstance(node, Token):
            return self.token_value(node)
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
        kinds = ("choice", "range", "log_range")
        inner = call.args[0] if len(call.args) == 1 and not call.kwargs else None
        if not isinstance(inner, ast.Call) or inner.name.lower() not in kinds:
            hint = did_you_mean(inner.name, kinds) if isinstance(inner, ast.Call) else ""
            self.diags.error(
                "HPO(...) takes one of choice(a, b, ...), range(low, high, step=s) or "
                "log_range(low, high)" + hint,
                inner.span if inner is not None else call.span,
            )
            return call
        kind = inner.name.lower()
        n, names = len(inner.args), [k.name for k in inner.kwargs]
        if kind == "choice" and (n == 0 or names):
            self.diags.error("choice(...) takes one or more values and no keywords", inner.span)
        elif kind == "range" and not (n == 2 and names in ([], ["step"]) or n == 3 and not names):
            self.diags.error("range(...) takes (low, high) and an optional step=", inner.span)
        elif kind == "log_range" and (n != 2 or names):
            self.diags.error("log_range(...) takes (low, high)", inner.span)
        return ast.HPO(kind, inner.args, inner.kwargs, call.span)

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
            net.dims = [self.dim_range(d) for d in body.children]
        elif node.data == "value_section":
            net.sections[canon] = ast.Section(canon, span, self.src.tok(kw), value=self.value(body))
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

    def dim_range(self, node: Tree) -> ast.DimRange:
        """``seq: 8..512``, ``seq: 8..``, ``seq: ..512`` or ``seq: 128`` (fixed)."""
        key_tok, *nums = node.children
        values: list[int | None] = []
        for tok in nums:
            if _INT.match(tok.value):
                values.append(int(tok.value))
            else:
                self.diags.error(
                    f"a dimension bound must be a non-negative integer, got {tok.value}",
                    self.src.tok(tok),
                )
                values.append(None)
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
        return ast.DimRange(key_tok.value, lo, hi, span)

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


# -- entry points ---------------------------------------------------------------------------


def parse(text: str, filename: str) -> ast.File:
    """Parse one ``.nr`` file; raise :class:`CompileError` carrying every error found."""
    SOURCES.add(filename, text)
    src = _Source(text, filename)
    diags = DiagnosticEngine()
    networks: list[ast.Network] = []
    macros: list[ast.MacroDef] = []
    try:
        scan = _scan(src, diags)
        for item in _split_items(src, scan, diags):
            if any(id(t) in scan.swallowed for t in item):
                continue  # its errors would be cascades of the unterminated string
            tree, recovered = _parse_item(src, item, scan.tainted, diags)
            if tree is None:
                continue
            local = DiagnosticEngine()
            builder = _Builder(src, local, recovered)
            top = tree.children[0]
            if top.data == "network":
                networks.append(builder.network(top))
            else:
                macros.append(builder.macro(top))
            # On a line that already has a lexical or bracket error, a semantic complaint is
            # most likely about the repair (an inserted ')'), not about the text.
            repaired = {t.line for t in item if id(t) in scan.tainted}
            diags.extend(d for d in local.diagnostics if _line(d) not in repaired)
    except LarkError as e:  # recovery feeds Lark by hand; never let its wording through
        diags.error(f"cannot parse this file ({type(e).__name__})", FileLoc(filename, 1, 1, 1, 2))
    except RecursionError:
        diags.error("brackets are nested too deeply to parse", FileLoc(filename, 1, 1, 1, 2))
    if not networks and not macros and not diags.has_errors():
        diags.error(
            "the file holds no network; write 'network Name { ... }'",
            FileLoc(filename, 1, 1, 1, 2),
        )
    diags.diagnostics.sort(key=_position)
    diags.check()
    return ast.File(filename, networks, macros)


def _line(d: Diagnostic) -> int:
    loc = primary(d.location) if d.location is not None else None
    return loc.line if isinstance(loc, FileLoc) else 0


def _position(d: Diagnostic) -> tuple[int, int]:
    """Sort key: errors come out in the order of the text, whatever step found them."""
    loc = primary(d.location) if d.location is not None else None
    return (loc.line, loc.col) if isinstance(loc, FileLoc) else (0, 0)


def parse_file(path: str | Path) -> ast.File:
    """Read and parse a ``.nr`` file from disk; an unreadable file is a CompileError too."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        diags = DiagnosticEngine()
        diags.error(f"cannot read {p}: {e}")
        raise CompileError(diags.diagnostics) from e
    return parse(text, str(p))
