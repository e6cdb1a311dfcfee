"""Parse ``.nr`` text into the typed AST of :mod:`neuralc.frontend.ast`.

This module is the frontend's entry point; the work is done in three modules, one step
each, so that every error is reported at its place, in words a user understands, and several
independent errors come out of one run:

1. :mod:`neuralc.frontend.scanner` tokenizes with exact positions, reports lexical and
   bracket errors, repairs brackets, and splits the file into top-level items (each
   ``network`` and ``define``).
2. :mod:`neuralc.frontend.recovery` parses each item with Lark, dropping each bad statement
   to find the next syntax error.
3. :mod:`neuralc.frontend.builder` converts the Lark tree into AST nodes, with the checks
   that need more than the grammar.

Here the steps are run in order, their diagnostics are filtered (no complaint about a
bracket the scanner inserted) and sorted into the order of the text.
:func:`parse` raises :class:`~neuralc.diagnostics.CompileError` and nothing else.
"""

from __future__ import annotations

from pathlib import Path

from lark.exceptions import LarkError

from neuralc.diagnostics import SOURCES, CompileError, Diagnostic, DiagnosticEngine, TooManyErrors
from neuralc.frontend import ast
from neuralc.frontend.builder import Builder
from neuralc.frontend.recovery import parse_item
from neuralc.frontend.scanner import SECTION_NAMES, Source, scan, split_items
from neuralc.limits import ERRORS, SOURCE_BYTES
from neuralc.location import FileLoc, primary

__all__ = ["parse", "parse_file", "SECTION_NAMES"]


def parse(text: str, filename: str) -> ast.File:
    """Parse one ``.nr`` file; raise :class:`CompileError` carrying every error found."""
    SOURCES.add(filename, text)
    start = FileLoc(filename, 1, 1, 1, 2)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > SOURCE_BYTES.value:
        raise CompileError([Diagnostic("error", f"the model text holds {size:,} bytes; "
                                       f"{SOURCE_BYTES.exceeded()}", start)])
    src = Source(text, filename)
    diags = DiagnosticEngine(max_errors=ERRORS.value)
    networks: list[ast.Network] = []
    macros: list[ast.MacroDef] = []
    try:
        scanned = scan(src, diags)
        for item in split_items(src, scanned, diags):
            if any(id(t) in scanned.swallowed for t in item):
                continue  # its errors would be cascades of the unterminated string
            tree, recovered = parse_item(src, item, scanned.tainted, diags)
            if tree is None:
                continue
            local = DiagnosticEngine()
            builder = Builder(src, local, recovered)
            top = tree.children[0]
            if top.data == "network":
                networks.append(builder.network(top))
            else:
                macros.append(builder.macro(top))
            # On a line that already has a lexical or bracket error, a semantic complaint is
            # most likely about the repair (an inserted ')'), not about the text.
            repaired = {t.line for t in item if id(t) in scanned.tainted}
            diags.extend(d for d in local.diagnostics if _line(d) not in repaired)
    except LarkError as e:  # recovery feeds Lark by hand; never let its wording through
        diags.error(f"cannot parse this file ({type(e).__name__})", start)
    except TooManyErrors:
        diags.diagnostics.sort(key=_position)
        diags.diagnostics.append(Diagnostic(
            "note", f"too many errors: stopped after the first {diags.max_errors:,} "
            f"({ERRORS.hint()})"))
        diags.check()
    if not networks and not macros and not diags.has_errors():
        diags.error("the file holds no network; write 'network Name { ... }'", start)
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
