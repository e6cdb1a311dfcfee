"""Parsing one top-level item with Lark, recovering from syntax errors statement by statement.

It exists so that one run reports every independent syntax error, each at its place and in
the words of the language, instead of Lark's first error in Lark's terms. Each item from
:func:`neuralc.frontend.scanner.split_items` is parsed on its own by a Lark LALR parser fed
with the scanner's tokens (Lark does no lexing). On a syntax error the offending statement
(one layer line, one section, one entry) is dropped and parsing resumes from a parser
snapshot taken before it, so each bad statement gets its own error and recovery stays
linear in the size of the file. Errors in a statement next to an already reported lexical
or bracket error are not reported again.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from lark import Lark, Token, Tree
from lark.exceptions import UnexpectedToken
from lark.lexer import Lexer, LexerState
from lark.parsers.lalr_interactive_parser import InteractiveParser

from neuralc.diagnostics import DiagnosticEngine, did_you_mean, suggest
from neuralc.frontend.scanner import (
    CLOSE,
    OPEN,
    PUNCT_TEXT,
    SECTION_KW,
    SECTION_NAMES,
    TOP_KW,
    Source,
)
from neuralc.location import FileLoc

__all__ = ["parse_item"]

# A name after one of these continues the statement instead of starting a new one.
_NO_SPLIT_AFTER = frozenset({
    "_COLON", "_EQUAL", "_AT", "_STAR", "_PLUS", "_MINUS", "_SLASH", "_RANGE", "NETWORK", "DEFINE",
})
# After this many syntax errors in one network or define, the rest of it is not examined.
_MAX_ERRORS_PER_ITEM = 50


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


@dataclass
class _Snapshot:
    """A parser as it was before some token, cheap enough to take every few tokens.

    Lark's tree builder extends a left-recursive ``item*`` list by appending to the children
    of the tree on top of its value stack, and never touches the trees below. So a snapshot
    shares the trees of the live parser and records how many children each had; the copy cut
    back to those lengths is made only when parsing resumes from it (after an error, a few
    dozen times per item at most). Copying at every snapshot instead would copy the network's
    growing list of statements each time: quadratic in the size of the file.
    """

    parser: InteractiveParser
    lengths: list[int]  # children of each value on the stack; -1 for a token

    @classmethod
    def take(cls, ip: InteractiveParser) -> _Snapshot:
        c = ip.copy(deepcopy_values=False)
        return cls(c, [len(v.children) if isinstance(v, Tree) else -1
                       for v in c.parser_state.value_stack])

    def resume(self) -> InteractiveParser:
        """An independent parser in the state of the snapshot."""
        c = self.parser.copy(deepcopy_values=False)
        c.parser_state.value_stack = [
            Tree(v.data, v.children[:n], v.meta) if n >= 0 else v
            for v, n in zip(c.parser_state.value_stack, self.lengths)
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
        self.snaps: dict[int, _Snapshot] = {0: _Snapshot.take(_lark().parse_interactive(""))}

    def _restore(self, upto: int) -> tuple[int, InteractiveParser]:
        k = max(i for i in self.snaps if i <= upto)
        return k, self.snaps[k].resume()

    def run(self, resume_at: int) -> Tree:
        """Parse to the end, resuming at the last snapshot before ``resume_at``."""
        k, ip = self._restore(resume_at)
        toks, alive = self.tokens, self.alive
        fed = 0
        for j in range(k, len(toks)):
            if not alive[j]:
                continue
            if fed and fed % self.EVERY == 0 and j not in self.snaps:
                self.snaps[j] = _Snapshot.take(ip)
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
            if tok.type in CLOSE and stack:
                o = stack.pop()
                self.match[o] = i
                self.match[i] = o
            self.parent.append(stack[-1] if stack else None)
            if tok.type in OPEN:
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
                (toks[j].type in ("NAME", "NETWORK", "DEFINE") or toks[j].type in SECTION_KW)
                and (toks[j - 1].type not in _NO_SPLIT_AFTER
                     or toks[j - 1].type == "_COLON" and toks[j - 2].type == "LAYERS")
            ):
                starts.append(j)
            unit_end = self.match[j] + 1 if toks[j].type in OPEN and j in self.match else j + 1
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
            parts.append(f"'{PUNCT_TEXT[t]}'")
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


def parse_item(
    src: Source, tokens: list[Token], tainted: set[int], diags: DiagnosticEngine
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
                message += did_you_mean(bad.value, TOP_KW)
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
