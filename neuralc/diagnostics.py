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
from pathlib import Path
from typing import Literal

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
    """Holds the text of every file a diagnostic may quote."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}

    def add(self, filename: str, text: str) -> None:
        self._texts[filename] = text

    def line(self, filename: str, lineno: int) -> str | None:
        text = self._texts.get(filename)
        if text is None:
            try:
                text = Path(filename).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                return None
            self._texts[filename] = text
        lines = text.splitlines()
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


class DiagnosticEngine:
    """Collects diagnostics; :meth:`check` raises :class:`CompileError` if any is an error."""

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []

    def error(self, message: str, location: Location | None = None) -> Diagnostic:
        d = Diagnostic("error", message, location)
        self.diagnostics.append(d)
        return d

    def warning(self, message: str, location: Location | None = None) -> Diagnostic:
        d = Diagnostic("warning", message, location)
        self.diagnostics.append(d)
        return d

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(diags)

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
    """Closest known name for a typo, compared case-insensitively."""
    cands = list(candidates)
    lowered = {c.lower(): c for c in cands}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return lowered[hits[0]] if hits else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` or the empty string."""
    s = suggest(name, candidates)
    return f"; did you mean '{s}'?" if s else ""


def _snippet(loc: Location, sources: SourceManager) -> list[str]:
    p = primary(loc)
    if not isinstance(p, FileLoc):
        return []
    text = sources.line(p.file, p.line)
    if text is None:
        return []
    text = text.expandtabs(1).rstrip("\n")
    if p.end_line == p.line and p.end_col > p.col:
        width = p.end_col - p.col
    elif p.end_line > p.line:
        width = max(1, len(text) - p.col + 1)
    else:
        width = 1
    gutter = f"{p.line:>5}"
    caret = " " * (p.col - 1) + "^" + "~" * (width - 1)
    return [f"{gutter} | {text}", f"{' ' * len(gutter)} | {caret}"]


def render(d: Diagnostic, sources: SourceManager | None = None) -> str:
    sources = sources or SOURCES
    lines: list[str] = []
    where = primary(d.location) if d.location is not None else None
    prefix = f"{where}: " if isinstance(where, FileLoc) else ""
    lines.append(f"{prefix}{d.severity}: {d.message}")
    if d.location is not None:
        lines.extend(_snippet(d.location, sources))
        for site in expansion_stack(d.location):
            lines.append(f"{primary(site)}: note: in expansion of the macro used here")
            lines.extend(_snippet(site, sources))
    for n in d.notes:
        if n.location is not None and isinstance(primary(n.location), FileLoc):
            lines.append(f"{primary(n.location)}: note: {n.message}")
            lines.extend(_snippet(n.location, sources))
        else:
            lines.append(f"note: {n.message}")
    return "\n".join(lines)


def render_all(diags: Iterable[Diagnostic], sources: SourceManager | None = None) -> str:
    diags = list(diags)
    out = [render(d, sources) for d in diags]
    n_err = sum(1 for d in diags if d.severity == "error")
    if n_err:
        out.append(f"{n_err} error{'s' if n_err != 1 else ''} generated.")
    return "\n".join(out)
