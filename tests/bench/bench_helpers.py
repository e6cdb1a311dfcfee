"""Helpers of the bench tests (tests/ is not a package: conftest puts this folder on the path)."""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from neuralc.cli import main

# A conv with BatchNorm (folded into its weights at -O2), Dropout, Dense and a softmax: every
# path of the kernel table, on shapes small enough that LLVM compiles them in well under a
# second.
TINY = """network Tiny {
  input: (8, 8, 2)
  layers:
    Conv2D(4, (3, 3))
    BatchNormalization()
    Activation("relu")
    Flatten()
    Dropout(0.1)
    Dense(8, "relu")
    Output(3, "softmax")
}
"""


@dataclass
class BenchRun:
    code: int
    out: str
    err: str
    result: dict[str, Any]
    markdown: str
    model: Path


def run_cli(*argv: object) -> tuple[int, str, str]:
    """``neuralc ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage errors exit through the parser
            code = int(e.code or 0)
    return code, out.getvalue(), err.getvalue()
