"""The progress display while cells run: a tqdm bar on standard error, only on a terminal.

Cells take from a second to minutes (torch.compile), so the bar names the cell running and
counts the ones done. When standard error is not a terminal (a pipe, a CI log, the tests)
nothing is drawn: the tables and the result file say everything.
"""

from __future__ import annotations

import sys
from types import TracebackType
from typing import Any


class Progress:
    """``with Progress(n) as p: p.start(label); ...; p.done(label, status)``."""

    def __init__(self, total: int, enabled: bool | None = None):
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._bar: Any = None
        self.failed: list[str] = []

    def __enter__(self) -> Progress:
        if self.enabled and self.total:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, file=sys.stderr, unit="cell", leave=False,
                             dynamic_ncols=True, bar_format="{desc} {bar} {n}/{total} "
                             "[{elapsed}<{remaining}]{postfix}")
        return self

    def start(self, label: str) -> None:
        if self._bar is not None:
            self._bar.set_description_str(f"bench: {label}")

    def done(self, label: str, status: str) -> None:
        if status not in ("ok", "skipped", "unsupported"):
            self.failed.append(f"{label}: {status}")
        if self._bar is not None:
            self._bar.update(1)
            if self.failed:
                self._bar.set_postfix_str(f"{len(self.failed)} failed")

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()
