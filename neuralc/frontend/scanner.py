"""The scanner: ``.nr`` text to positioned tokens, with brackets checked and repaired.

It exists so that the parser never sees raw text: Lark is fed tokens that carry exact
positions, and everything a token-level view can find is reported here, once, before any
grammar rule runs. Two passes:

1. :func:`scan` tokenizes. It reports lexical errors (unterminated strings and comments,
   stray characters) and carries on after each one, and types section words contextually:
   ``train {`` is the keyword ``TRAIN`` but ``Concatenate(input, meta)`` holds the name
   ``input``.
2. :func:`split_items` checks ``()[]{}`` nesting, reports a missing or unmatched bracket once
   (with a note at the opening one), repairs the token list so parsing can go on, and splits
   the file into top-level items (each ``network`` and ``define``).

Tokens next to a reported error are marked in :attr:`Scan.tainted` so that the later steps
do not report cascades of the same mistake. The language's vocabulary (section words,
punctuation token types) is defined here, since the scanner is what produces those tokens.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from dataclasses import dataclass, field

from lark import Token, Tree

from neuralc.diagnostics import DiagnosticEngine
from neuralc.limits import NESTING
from neuralc.location import FileLoc

__all__ = [
    "CLOSE", "OPEN", "PUNCT_TEXT", "SECTION_KW", "SECTION_NAMES", "TOP_KW",
    "Scan", "Source", "scan", "split_items",
]

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
SECTION_KW = frozenset(_SECTION_WORDS.values())
TOP_KW = {"network": "NETWORK", "define": "DEFINE"}

_PUNCT = {
    "(": "_LPAR", ")": "_RPAR", "[": "_LSQB", "]": "_RSQB", "{": "_LBRACE", "}": "_RBRACE",
    ",": "_COMMA", ";": "_SEMI", ":": "_COLON", "=": "_EQUAL", "@": "_AT", "*": "_STAR",
    "+": "_PLUS", "-": "_MINUS", "/": "_SLASH", "..": "_RANGE", "%": "_PERCENT", "==": "_EQEQ",
}
PUNCT_TEXT = {v: k for k, v in _PUNCT.items()}
OPEN = {"_LPAR": "_RPAR", "_LSQB": "_RSQB", "_LBRACE": "_RBRACE"}
CLOSE = {v: k for k, v in OPEN.items()}

# A line break after one of these does not end an argument list (to place a missing ')').
_CONTINUES = frozenset({
    "_COMMA", "_LPAR", "_LSQB", "_LBRACE", "_EQUAL", "_COLON", "_PLUS", "_MINUS", "_STAR",
    "_SLASH", "_AT", "_RANGE",
})

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
    |(?P<punct>==|[()\[\]{},;:=@*+\-/%])
    """,
    re.VERBOSE | re.DOTALL,
)


class Source:
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
class Scan:
    """What :func:`scan` found: the tokens, and marks on them for the later steps."""

    tokens: list[Token]
    # ids of tokens next to a reported lexical or bracket error: syntax errors in their
    # statement are cascades of that error and are not reported again.
    tainted: set[int] = field(default_factory=set)
    # ids of unterminated strings that swallowed a bracket: the brackets of the rest of
    # their item cannot be trusted, so its syntax is not examined further.
    swallowed: set[int] = field(default_factory=set)


def scan(src: Source, diags: DiagnosticEngine) -> Scan:
    """Tokenize, reporting every lexical error and carrying on after it."""
    text = src.text
    scan = Scan([])
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
# ``step`` is a keyword only between a range and a number: ``h: 32..512 step 32``.
_STEP_AFTER = frozenset({"NUMBER", "_RANGE"})


def _type_keywords(tokens: list[Token]) -> None:
    """Turn section words and ``network``/``define`` into keywords where they start one.

    A word is a keyword only where the next token fits (``train {``, ``loss:``, ``network
    Name``; also ``loss "mse"``, so that a missing ':' is reported as such), so the same
    words stay usable as names elsewhere (``Concatenate(input, meta)``, ``units=...``).
    ``step`` is one only between a number or ``..`` and a number (``8..512 step 8``).
    """
    for i, tok in enumerate(tokens):
        if tok.type != "NAME":
            continue
        low = tok.value.lower()
        nxt = tokens[i + 1].type if i + 1 < len(tokens) else "$END"
        if low in TOP_KW and nxt in ("NAME", "_LBRACE"):
            tok.type = TOP_KW[low]
        elif low == "step" and nxt == "NUMBER" and i > 0 and tokens[i - 1].type in _STEP_AFTER:
            tok.type = "STEP"
        elif low in _SECTION_WORDS and nxt in _KW_NEXT_SECTION:
            tok.type = _SECTION_WORDS[low]


# -- brackets and top-level items -----------------------------------------------------------


def _synthetic(type_: str, after: Token) -> Token:
    """A zero-width closing bracket inserted after ``after`` to repair a missing one."""
    return Token(
        type_, PUNCT_TEXT[type_], after.end_pos, after.end_line, after.end_column,
        after.end_line, after.end_column, after.end_pos,
    )


def split_items(src: Source, scan: Scan, diags: DiagnosticEngine) -> list[list[Token]]:
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
    # Braces whose '}' starts a line indented unlike the line of their '{': (opener, the
    # token before the closer, the closer). Where a '}' is missing, the one left open is
    # most likely such an opener, its '}' taken by the enclosing block.
    misindented: list[tuple[Token, Token, Token]] = []

    def indent(line: int) -> int:
        start = src.line_starts[line - 1]
        end = src.line_starts[line] if line < len(src.line_starts) else len(src.text)
        text = src.text[start:end]
        return len(text) - len(text.lstrip(" \t"))

    def left_open(opener: Token) -> tuple[Token, Token] | None:
        """The brace inside ``opener``'s block that was probably never closed, with the token
        its missing '}' belongs after."""
        want = indent(opener.line)
        for inner, before, closer in reversed(misindented):
            if inner.start_pos <= opener.start_pos:
                break
            if indent(closer.line) == want:
                return inner, before
        return None

    def close_missing(down_to: int) -> None:
        while len(stack) > down_to:
            o = stack.pop()
            opener = out[o]
            closer = OPEN[opener.type]
            at = len(out)
            if opener.type != "_LBRACE":
                for k in range(o, len(out) - 1):
                    if out[k + 1].line > out[k].end_line and out[k].type not in _CONTINUES:
                        at = k + 1
                        break
            prev = out[at - 1]
            if not any(id(t) in scan.tainted for t in out[o:at]):
                shown, where = opener, prev
                guess = left_open(opener) if opener.type == "_LBRACE" else None
                if guess is not None:
                    shown, where = guess
                diags.error(
                    f"missing '{PUNCT_TEXT[closer]}' to close '{opener.value}'", src.after(where)
                ).with_note(f"'{opener.value}' opened here", src.tok(shown))
            synth = _synthetic(closer, prev)
            scan.tainted.add(id(synth))
            out.insert(at, synth)

    def end_item() -> None:
        nonlocal out
        if out:
            items.append(out)
        out = []

    max_depth = NESTING.value
    for tok in scan.tokens:
        if tok.type in ("NETWORK", "DEFINE"):
            close_missing(0)
            end_item()
        if tok.type in OPEN:
            if len(stack) >= max_depth:
                # Every later step walks the nesting; past the limit the file is not parsed.
                diags.error(f"brackets nest more than {max_depth} deep here; "
                            f"{NESTING.exceeded()}", src.tok(tok))
                return []
            stack.append(len(out))
            out.append(tok)
        elif tok.type in CLOSE:
            want = CLOSE[tok.type]
            depth = next((d for d in range(len(stack) - 1, -1, -1) if out[stack[d]].type == want),
                         None)
            if depth is None:
                diags.error(f"unmatched '{tok.value}'", src.tok(tok))
                if out:
                    scan.tainted.add(id(out[-1]))
                continue
            close_missing(depth + 1)
            o = stack.pop()
            if (tok.type == "_RBRACE" and out and tok.column == indent(tok.line) + 1
                    and indent(tok.line) != indent(out[o].line)):
                misindented.append((out[o], out[-1], tok))
            out.append(tok)
            if not stack and tok.type == "_RBRACE":
                end_item()
        else:
            out.append(tok)
    close_missing(0)
    end_item()
    return items
