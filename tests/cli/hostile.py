"""Helpers of the hostile-input tests: running the CLI, and what a clean refusal looks like.

A clean refusal is the promise of the README's "Errors" section: exit status 1 or 2, no
traceback, and an error message on one line (located where there is a place to point at).
Anything that could hang runs in a subprocess with a timeout, so a regression fails the test
instead of stalling the suite.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from neuralc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MNIST = ROOT / "examples" / "mnist_cnn.nr"
MLP = ROOT / "examples" / "mlp.nr"

# An error line: "file:line:col: error: ..." or "neuralc: error: ..." (or an unlocated one).
ERROR_LINE = re.compile(r"^(?:\S.*:\d+:\d+: |neuralc: )?error: \S.*$")


def net(layers: str, extra: str = "", inp: str = "(8,)") -> str:
    """A one-network model with these layer lines and extra sections."""
    return f"network N {{\n  input: {inp}\n  layers:\n{layers}\n{extra}}}\n"


def run(capsys, *argv: object) -> tuple[int, str, str]:
    """The CLI in this process (for inputs that cannot hang it)."""
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def run_subprocess(*argv: object, timeout: float = 60, env: dict[str, str] | None = None,
                   preexec: Callable[[], None] | None = None) -> tuple[int, str, str]:
    """The CLI in a fresh process, killed after ``timeout`` seconds (a hang fails the test)."""
    p = subprocess.run([sys.executable, "-m", "neuralc.cli", *map(str, argv)],
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, preexec_fn=preexec, cwd=ROOT)
    return p.returncode, p.stdout, p.stderr


def assert_refused(code: int, err: str, status: int, *words: str) -> str:
    """Exit ``status``, no traceback, the first line an error line holding ``words``."""
    assert code == status, err
    assert "Traceback" not in err, err
    first = err.splitlines()[0] if err else ""
    assert ERROR_LINE.match(first), err
    for w in words:
        assert w in err, err
    return first
