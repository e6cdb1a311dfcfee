"""Shared pieces of the bench tests: a tiny model, and one real ``neuralc bench`` run on it.

The run is the smoke test of the issue: the reference, onnx and cpu targets and the torch
peer, ``--repeat 3``, with ``--kernels`` (cpu kernels at -O2 and -O0, and the ceilings), the
JSON result and the Markdown tables. It is made once per session; the tests read its files.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from bench_helpers import TINY, BenchRun, run_cli  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench-model") / "tiny.nr"
    path.write_text(TINY)
    return path


def _run_smoke(model: Path, folder: Path) -> None:
    code, out, err = run_cli("bench", model, "--targets", "reference,onnx,cpu",
                             "--peers", "torch", "--repeat", "3", "--warmup", "1",
                             "--kernels", "--kernel-repeat", "3", "--threads", "1",
                             "--json", folder / "r.json", "--markdown", folder / "r.md")
    (folder / "cli.json").write_text(json.dumps({"code": code, "out": out, "err": err}))


@pytest.fixture(scope="session")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """One bench run of the tiny model (see the module docstring). Under pytest-xdist the
    workers share it: the first to get the lock runs it, the others read its files."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = tmp_path_factory.getbasetemp().parent / "bench-smoke"  # this run's, shared
    else:
        folder = tmp_path_factory.mktemp("bench-smoke")
    folder.mkdir(exist_ok=True)
    with open(folder / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "cli.json").exists():
            model = folder / "tiny.nr"
            model.write_text(TINY)
            _run_smoke(model, folder)
    cli = json.loads((folder / "cli.json").read_text())
    result = json.loads((folder / "r.json").read_text()) if (folder / "r.json").exists() else {}
    markdown = (folder / "r.md").read_text() if (folder / "r.md").exists() else ""
    return BenchRun(cli["code"], cli["out"], cli["err"], result, markdown, folder / "tiny.nr")
