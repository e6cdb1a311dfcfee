"""Diagnostics: every problem with a model file, reported at its place in the text.

Errors are collected in a :class:`DiagnosticEngine` so one run reports every independent
problem; :class:`CompileError` carries them out of the compiler to the driver, which renders
them in the form of DSL.md section 9::

    model.nr:12:5: error: Conv2D expects input (batch, height, width, channels), got (batch, 128)
       12 |     Conv2D(64, (3, 3), "relu")
          |     ^~~~~~~~~~~~~~~~~~~~~~~~~~
    note: the input comes from Dense at model.nr:11:5; use Reshape((h, w, c)) to make it an image
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from neuralc.files import FileProblem, read_text
from neuralc.limits import ERRORS, SOURCE_BYTES
from neuralc.location import FileLoc, Location, expansion_stack, primary

Severity = Literal["error", "warning", "note"]


@dataclass
class Note:
    message: str
    location: Location | None = None


@dataclass
class Diagnostic:
    severity: Severity
    message: str
    location: Location | None = None
    notes: list[Note] = field(default_factory=list)

    def with_note(self, message: str, location: Location | None = None) -> Diagnostic:
        self.notes.append(Note(message, location))
        return self


class SourceManager:
    """Holds the text of every file a diagnostic may quote.

    Lines are split at ``\n`` alone, as the scanner and the IR parser count them: a form
    feed or a lone ``\r`` inside a line is not a line break (``str.splitlines`` would make
    it one and quote the wrong line).
    """

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._lines: dict[str, list[str]] = {}

    def add(self, filename: str, text: str) -> None:
        self._texts[filename] = text
        self._lines.pop(filename, None)

    def text(self, filename: str) -> str | None:
        """The file's text: as added, else read from disk (bounded; None if unreadable)."""
        text = self._texts.get(filename)
        if text is None:
            try:
                text = read_text(filename, SOURCE_BYTES.value)
            except FileProblem:
                return None
            self._texts[filename] = text
        return text

    def line(self, filename: str, lineno: int) -> str | None:
        lines = self._lines.get(filename)
        if lines is None:
            text = self.text(filename)
            if text is None:
                return None
            lines = self._lines[filename] = [ln.removesuffix("\r") for ln in text.split("\n")]
        if 1 <= lineno <= len(lines):
            return lines[lineno - 1]
        return None


SOURCES = SourceManager()


class CompileError(Exception):
    """Raised with the diagnostics of a failed compile; the driver renders them."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = diagnostics
        super().__init__("\n".join(d.message for d in diagnostics))

    def render(self, sources: SourceManager | None = None) -> str:
        return render_all(self.diagnostics, sources or SOURCES)


class TooManyErrors(Exception):
    """A :class:`DiagnosticEngine` reached its ``max_errors``: the caller stops looking."""


class DiagnosticEngine:
    """Collects diagnostics; :meth:`check` raises :class:`CompileError` if any is an error.

    With ``max_errors``, the error after that many raises :class:`TooManyErrors` (it is not
    kept), so that a file of garbage costs a bounded amount of work and output.
    """

    def __init__(self, max_errors: int | None = None) -> None:
        self.diagnostics: list[Diagnostic] = []
        self.max_errors = max_errors
        self.error_count = 0

    def error(self, message: str, location: Location | None = None) -> Diagnostic:
        if self.max_errors is not None and self.error_count >= self.max_errors:
            raise TooManyErrors
        self.error_count += 1
        d = Diagnostic("error", message, location)
        self.diagnostics.append(d)
        return d

    def warning(self, message: str, location: Location | None = None) -> Diagnostic:
        d = Diagnostic("warning", message, location)
        self.diagnostics.append(d)
        return d

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        for d in diags:
            if d.severity == "error":
                if self.max_errors is not None and self.error_count >= self.max_errors:
                    raise TooManyErrors
                self.error_count += 1
            self.diagnostics.append(d)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "warning"]

    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.diagnostics)

    def check(self) -> None:
        if self.has_errors():
            raise CompileError(list(self.diagnostics))


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """Closest known name for a typo, compared case-insensitively.

    A name one or two edits away (a swap of two neighbours counts as one: ``Adma`` is one
    from ``Adam``, two from ``Adamax``) wins; otherwise difflib's closest match.
    """
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    low = name.lower()
    near = [(d, -difflib.SequenceMatcher(None, low, c).ratio(), c) for c in lowered
            for d in [_edit_distance(low, c)] if d <= min(2, max(1, len(low) // 3))]
    if near:
        return lowered[min(near)[2]]
    hits = difflib.get_close_matches(low, list(lowered), n=1, cutoff=0.6)
    return lowered[hits[0]] if hits else None


def _edit_distance(a: str, b: str) -> int:
    """Edits (insert, delete, replace, swap of neighbours) from ``a`` to ``b``."""
    if abs(len(a) - len(b)) > 2:
        return 3  # more than suggest() considers, without the table
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[-1]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` or the empty string."""
    s = suggest(name, candidates)
    return f"; did you mean '{s}'?" if s else ""


def one_line(text: str) -> str:
    """``text`` with every character a terminal would not show as itself escaped (``\\n``,
    ``\\x1b``): a name or file name holding a newline or an escape sequence can neither split
    a one-line message nor drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


_SNIPPET_WIDTH = 160  # characters of a source line quoted under a diagnostic


def _snippet(loc: Location, sources: SourceManager) -> list[str]:
    p = primary(loc)
    if not isinstance(p, FileLoc):
        return []
    text = sources.line(p.file, p.line)
    if text is None:
        return []
    # One character for one column, so that the caret stays under the text it marks.
    text = "".join(c if c.isprintable() else "?" for c in text.expandtabs(1).rstrip("\n"))
    if p.end_line == p.line and p.end_col > p.col:
        width = p.end_col - p.col
    elif p.end_line > p.line:
        width = max(1, len(text) - p.col + 1)
    else:
        width = 1
    col = p.col
    if len(text) > _SNIPPET_WIDTH:
        # A long line is quoted around the column, not whole (a line may be a megabyte).
        start = max(0, min(col - 1 - _SNIPPET_WIDTH // 3, len(text) - _SNIPPET_WIDTH))
        head, tail = ("..." if start else ""), ("..." if start + _SNIPPET_WIDTH < len(text) else "")
        text = head + text[start:start + _SNIPPET_WIDTH] + tail
        col = col - start + len(head)
        width = max(1, min(width, _SNIPPET_WIDTH - (col - 1 - len(head))))
    gutter = f"{p.line:>5}"
    caret = " " * (col - 1) + "^" + "~" * (width - 1)
    return [f"{gutter} | {text}", f"{' ' * len(gutter)} | {caret}"]


def render(d: Diagnostic, sources: SourceManager | None = None) -> str:
    sources = sources or SOURCES
    lines: list[str] = []
    where = primary(d.location) if d.location is not None else None
    prefix = f"{where}: " if isinstance(where, FileLoc) else ""
    lines.append(one_line(f"{prefix}{d.severity}: {d.message}"))
    if d.location is not None:
        lines.extend(_snippet(d.location, sources))
        for site in expansion_stack(d.location):
            lines.append(one_line(f"{primary(site)}: note: in expansion of the macro used here"))
            lines.extend(_snippet(site, sources))
    for n in d.notes:
        if n.location is not None and isinstance(primary(n.location), FileLoc):
            lines.append(one_line(f"{primary(n.location)}: note: {n.message}"))
            lines.extend(_snippet(n.location, sources))
        else:
            lines.append(one_line(f"note: {n.message}"))
    return "\n".join(lines)


def render_all(diags: Iterable[Diagnostic], sources: SourceManager | None = None) -> str:
    """The diagnostics as the CLI prints them; past the ERRORS limit, errors are counted, not
    printed (ten thousand layers can each have one)."""
    diags = list(diags)
    limit = ERRORS.value
    out: list[str] = []
    n_err = shown = 0
    for d in diags:
        if d.severity == "error":
            n_err += 1
            if n_err > limit:
                continue
        elif n_err > limit:
            continue
        out.append(render(d, sources))
        shown += d.severity == "error"
    if n_err > shown:
        out.append(f"{n_err - shown:,} more error{'s' if n_err - shown != 1 else ''} not shown "
                   f"({ERRORS.hint()})")
    if n_err:
        out.append(f"{n_err} error{'s' if n_err != 1 else ''} generated.")
    return "\n".join(out)
