"""Property (issue 16): every mutant of the examples, structural bombs included, ends in
success or located one-line errors with exit 1 or 2, within 30 s and 4 GB, never a traceback.

fuzz_runner.py makes the mutants (a fixed seed, so a failure reproduces) and runs each through
the CLI in one child process under a 4 GB address-space limit. The suite runs a small, fast
sample; a bigger campaign that also optimises and runs each mutant:

    NEURALC_FUZZ_MUTANTS=2000 NEURALC_FUZZ_SEED=7 NEURALC_FUZZ_DEEP=1 \\
        .venv/bin/python -m pytest -p no:xdist tests/cli/test_bomb_fuzz.py
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
COUNT = int(os.environ.get("NEURALC_FUZZ_MUTANTS", "40"))
SEED = int(os.environ.get("NEURALC_FUZZ_SEED", "16"))
DEEP = os.environ.get("NEURALC_FUZZ_DEEP") == "1"
MEMORY = 4 << 30

# Every line neuralc writes to stderr for a bad model: a diagnostic or note (one line each),
# a quoted source line with its caret, the error count, or a one-line "neuralc:" message.
_LINE = re.compile(
    r"^(?:(?:\S.*:\d+:\d+: )?(?:error|warning|note): .+"
    r"|neuralc: .+"
    r"|note: .+"
    r"|\s*\d* \| .*"
    r"|[\d,]+ more errors? not shown \(.*\)"
    r"|\d+ errors? generated\.)$")


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def _judge(r: dict) -> str | None:
    """Why one command's outcome breaks the promise; None when it keeps it."""
    err = r["stderr"]
    if r["code"] not in (0, 1, 2):
        return f"exit {r['code']}"
    if "Traceback" in err:
        return "a traceback"
    if r["seconds"] > 30:
        return f"{r['seconds']} s"
    bad = [ln for ln in err.splitlines() if not _LINE.match(ln)]
    if bad:
        return f"a line that is no one-line message: {bad[0][:200]!r}"
    if r["code"] != 0 and not any(re.match(r"^(?:\S.*:\d+:\d+: |neuralc: )?error: ", ln)
                                  for ln in err.splitlines()):
        return "a failure without an error line"
    return None


def test_mutants_and_bombs_end_in_success_or_located_errors(tmp_path):
    budget = 60 + COUNT * (90 if DEEP else 30)
    p = subprocess.run(
        [sys.executable, str(HERE / "fuzz_runner.py"), str(SEED), str(COUNT), str(tmp_path),
         *(["--deep"] if DEEP else [])],
        capture_output=True, text=True, timeout=budget, preexec_fn=_limit_memory,
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr[-3000:]
    results = [json.loads(line) for line in p.stdout.splitlines()]
    assert len({r["mutant"] for r in results}) == COUNT
    problems = []
    for r in results:
        why = _judge(r)
        if why is not None:
            problems.append(f"mutant {r['mutant']} ({r['example']}, {r['kind']}, seed {SEED}) "
                            f"{' '.join(r['argv'][:1])}: {why}\n{r['stderr'][-1500:]}")
    assert not problems, "\n\n".join(problems[:5])
    # The sample must reach the bombs and both outcomes, or it proves little.
    kinds = {k for r in results for k in r["kind"].split("+")}
    assert len(kinds) >= 6, kinds
    assert {0, 1} <= {r["code"] for r in results}
