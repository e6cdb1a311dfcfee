"""The limits that keep every input bounded in time and memory, each with the way to raise it.

A model, IR or input file can ask for more than any machine has (a million layers, a
terabyte of weights, brackets nested without end). Each such request is refused with a
located one-line error naming the limit it passed, instead of a hang or a crash. This table is
the one place each limit is defined; the README's "Errors" section lists it for users. A
limit is raised with its environment variable (``NEURALC_MAX_MEMORY=32G``).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

__all__ = ["Limit", "LimitSettingError", "SOURCE_BYTES", "LAYERS", "NESTING", "ERRORS",
           "MEMORY", "ALL", "format_bytes"]


class LimitSettingError(Exception):
    """An environment variable that sets a limit holds no valid value (a usage error)."""


_SUFFIX = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class Limit:
    """One bound: its default, the environment variable that overrides it, and its unit."""

    env: str
    default: int
    what: str  # what is counted, for messages: "bytes in a model file"
    is_bytes: bool = False

    @property
    def value(self) -> int:
        """The limit in force: the environment variable's value if set, else the default."""
        raw = os.environ.get(self.env, "").strip()
        if not raw:
            return self.default
        m = re.fullmatch(r"(\d+)\s*([KMGT]?)(?:i?B)?", raw.upper()) if self.is_bytes else \
            re.fullmatch(r"(\d+)()", raw)
        if m is None or int(m.group(1)) < 1:
            unit = " (a number of bytes, or with K, M, G or T: 512M)" if self.is_bytes else ""
            raise LimitSettingError(f"{self.env}={raw!r}: expected a positive integer{unit}")
        return int(m.group(1)) * _SUFFIX[m.group(2)]

    def show(self, n: int | None = None) -> str:
        """``n`` (default: the limit) in this limit's unit: ``1 MiB``, ``10,000``."""
        n = self.value if n is None else n
        return format_bytes(n) if self.is_bytes else f"{n:,}"

    def exceeded(self) -> str:
        """The end of a message about passing this limit: which it is and how to raise it."""
        return f"the limit is {self.show()} {self.what} ({self.hint()})"

    def hint(self) -> str:
        return f"set {self.env} to raise it"


def format_bytes(n: int | float) -> str:
    """``1.5 GiB``, ``512 bytes``: a size as a person reads it."""
    if n < 1024:
        return f"{int(n):,} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:,.1f} {unit}".replace(".0 ", " ")
    raise AssertionError("unreachable")


#: A model (.nr) or IR (.nir) file: parsing time grows with it.
SOURCE_BYTES = Limit("NEURALC_MAX_SOURCE_BYTES", 512 << 10, "of model or IR text", is_bytes=True)
#: Layers of one network after macros and ``* N`` repeats are expanded (and one repeat count).
LAYERS = Limit("NEURALC_MAX_LAYERS", 10_000, "layers in one network after expansion")
#: Brackets nested in a file, and macros used inside macros.
NESTING = Limit("NEURALC_MAX_NESTING", 64, "levels of nesting")
#: Errors reported for one file: parsing stops after them, and no more are printed.
ERRORS = Limit("NEURALC_MAX_ERRORS", 100, "errors reported per file")
#: Memory one run may need: weights, inputs, outputs and the activations alive at once.
MEMORY = Limit("NEURALC_MAX_MEMORY", 4 << 30, "of memory for one run", is_bytes=True)

ALL = (SOURCE_BYTES, LAYERS, NESTING, ERRORS, MEMORY)
