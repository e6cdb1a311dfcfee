"""Source locations, shared by the AST, every IR level and the diagnostics.

A :class:`FileLoc` is a span of ``.nr`` text (1-based lines and columns, end exclusive). A
:class:`CallSiteLoc` records a macro expansion: the text inside the ``define`` (``callee``) and
the use site (``caller``), as MLIR's ``callsite(... at ...)``. A fused op later keeps several
locations in a :class:`FusedLoc`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Union


@dataclass(frozen=True)
class FileLoc:
    file: str
    line: int
    col: int
    end_line: int = 0
    end_col: int = 0

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"

    def to_ir(self) -> str:
        head = f"{json.dumps(self.file)}:{self.line}:{self.col}"
        if self.end_line:
            head += f" to {self.end_line}:{self.end_col}"
        return head


@dataclass(frozen=True)
class CallSiteLoc:
    callee: Location
    caller: Location

    def __str__(self) -> str:
        return str(self.callee)

    def to_ir(self) -> str:
        return f"callsite({self.callee.to_ir()} at {self.caller.to_ir()})"


@dataclass(frozen=True)
class FusedLoc:
    locs: tuple[Location, ...]

    def __str__(self) -> str:
        return str(self.locs[0]) if self.locs else "<unknown>"

    def to_ir(self) -> str:
        return "fused[" + ", ".join(loc.to_ir() for loc in self.locs) + "]"


@dataclass(frozen=True)
class UnknownLoc:
    def __str__(self) -> str:
        return "<unknown>"

    def to_ir(self) -> str:
        return "unknown"


Location = Union[FileLoc, CallSiteLoc, FusedLoc, UnknownLoc]

UNKNOWN = UnknownLoc()


def primary(loc: Location) -> Location:
    """The innermost text position: inside a macro, the line of the ``define``."""
    while isinstance(loc, (CallSiteLoc, FusedLoc)):
        if isinstance(loc, CallSiteLoc):
            loc = loc.callee
        elif loc.locs:
            loc = loc.locs[0]
        else:
            return UNKNOWN
    return loc


def expansion_stack(loc: Location) -> list[Location]:
    """Use sites of the macro expansions that produced ``loc``, innermost first.

    :func:`in_macro` nests outer use sites on the caller side:
    ``callsite(text at callsite(inner_use at outer_use))``.
    """
    out: list[Location] = []
    while isinstance(loc, CallSiteLoc):
        loc = loc.caller
        out.append(primary(loc))
    return out


def in_macro(callee: Location, caller: Location) -> Location:
    """Location of text from a macro body expanded at ``caller``."""
    if isinstance(callee, CallSiteLoc):
        return CallSiteLoc(callee.callee, in_macro(callee.caller, caller))
    return CallSiteLoc(callee, caller)


def source_lines(loc: object) -> list[str]:
    """``file:line`` of every .nr line a (fused, macro) location covers, in order: what a
    kernel's listing cites."""
    out: list[str] = []
    stack: list[object] = [loc]
    while stack:
        x = stack.pop(0)
        if isinstance(x, FusedLoc):
            stack = list(x.locs) + stack
        elif isinstance(x, CallSiteLoc):
            stack.insert(0, x.callee)
        elif isinstance(x, FileLoc):
            key = f"{x.file}:{x.line}"
            if key not in out:
                out.append(key)
    return out
