"""Each cell in its own process with a timeout, so a crash or a hang loses one cell.

The cell's request goes to the worker as a JSON file and its result comes back as one; the
worker's own output is captured (the terminal shows only the progress and the tables). A
process that dies by a signal or exits without a result is ``crashed`` (with the signal's
name and the end of what it printed); one that outlives its timeout is killed with its whole
process group (torch.compile starts compiler subprocesses) and is ``timeout``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

WORKER = (sys.executable, "-m", "neuralc.bench.worker")


def _thread_env(threads: int) -> dict[str, str]:
    """Thread counts for the libraries a cell may use (numpy's BLAS, OpenMP in torch)."""
    n = str(threads)
    return {"OMP_NUM_THREADS": n, "OPENBLAS_NUM_THREADS": n, "MKL_NUM_THREADS": n}


def _tail(text: str, lines: int = 6) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_isolated(spec: dict[str, Any], folder: Path, timeout: float,
                 worker: Sequence[str] | None = None) -> dict[str, Any]:
    """Run one job in a fresh process; its result, or why there is none.

    ``worker`` is the command that runs a job (default: this interpreter running
    :mod:`neuralc.bench.worker`); it receives the request and result paths as arguments.
    """
    folder.mkdir(parents=True, exist_ok=True)
    request, result = folder / "request.json", folder / "result.json"
    request.write_text(json.dumps(spec))
    result.unlink(missing_ok=True)
    env = dict(os.environ) | _thread_env(int(spec.get("threads", 1)))
    env["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor-cache")
    env.pop("PYTHONSTARTUP", None)
    argv = [*(worker or WORKER), str(request), str(result)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.communicate()
        return {"status": "timeout", "wall_s": time.perf_counter() - start,
                "message": f"no result after {timeout:g} s (the process was killed)"}
    except BaseException:
        # Ctrl-C reaches only the terminal's process group, not the cell's own session:
        # take the cell down with the run.
        _kill_group(proc)
        proc.wait()
        raise
    wall = time.perf_counter() - start
    text = output.decode(errors="replace")
    if result.exists():
        try:
            data = json.loads(result.read_text())
        except (OSError, ValueError) as e:
            data = {"status": "crashed", "message": f"unreadable result ({e})"}
        data["wall_s"] = wall
        return data
    if proc.returncode < 0:
        why = f"killed by {_signal_name(proc.returncode)}"
    else:
        why = f"exited with status {proc.returncode} without a result"
    tail = _tail(text)
    return {"status": "crashed", "wall_s": wall,
            "message": why + (f": {tail.splitlines()[-1]}" if tail else ""),
            "detail": tail or None}


def _kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the cell's process group: the worker and anything it started."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
