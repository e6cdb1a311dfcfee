"""Runs the lit-style FileCheck tests (``tests/filecheck/**/*.nir``) from pytest.

Each ``// RUN:`` line of a ``.nir`` file is a bash command run from the repository root with
this Python's ``bin`` directory first on ``PATH`` (so ``neuralc`` and ``filecheck`` are the
venv's) and ``pipefail`` set, as lit does. Substitutions: ``%s`` the file, ``%S`` its folder,
``%t`` a scratch path for this test, ``%%`` a literal ``%``. A RUN line ending in ``\\``
continues on the next RUN line. ``not CMD`` succeeds when CMD fails without crashing (lit's
``not``). ``// REQUIRES: gpu`` (comma-separated features; also ``tensorrt``) skips the file
where a feature is missing; unknown features count as missing. Every RUN line must exit 0.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FILES = sorted(HERE.rglob("*.nir"))
TIMEOUT_S = 300

_RUN = re.compile(r"^\s*//\s*RUN:(.*)$")
_REQUIRES = re.compile(r"^\s*//\s*REQUIRES:(.*)$")
_SUBST = re.compile(r"%[sSt%]")

# lit's `not`: succeed when the command fails, but not when it crashes (killed by a signal).
_PRELUDE = 'not() { "$@"; local rc=$?; [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; }\n'


@dataclass
class Script:
    runs: list[str] = field(default_factory=list)
    requires: list[str] = field(default_factory=list)


def parse_script(text: str) -> Script:
    """The RUN commands (continuations joined) and REQUIRES features of a test file."""
    script = Script()
    pending = ""
    for line in text.splitlines():
        m = _RUN.match(line)
        if m:
            part = m.group(1).strip()
            if part.endswith("\\"):
                pending += part[:-1].rstrip() + " "
                continue
            script.runs.append(pending + part)
            pending = ""
            continue
        m = _REQUIRES.match(line)
        if m:
            script.requires.extend(f.strip() for f in m.group(1).split(",") if f.strip())
    if pending:
        raise ValueError("the last RUN line ends in '\\' with nothing to continue it")
    return script


def substitute(command: str, path: Path, tmp: Path) -> str:
    table = {"%s": str(path), "%S": str(path.parent), "%t": str(tmp), "%%": "%"}
    return _SUBST.sub(lambda m: table[m.group()], command)


@functools.cache
def has_gpu() -> bool:
    """A CUDA device usable from Python (torch), or at least one that nvidia-smi lists."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def has_feature(name: str) -> bool:
    if name == "gpu":
        return has_gpu()
    if name == "tensorrt":
        from neuralc.backends.select import has_module

        return has_module("tensorrt")
    return False


def missing_features(script: Script) -> list[str]:
    return [f for f in script.requires if not has_feature(f)]


def shell_env() -> dict[str, str]:
    env = dict(os.environ)
    bindir = os.path.dirname(sys.executable)
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + old if old else "")
    return env


def run_line(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", _PRELUDE + command],
        cwd=REPO, env=shell_env(), capture_output=True, text=True, timeout=TIMEOUT_S,
    )


def _shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def _param(path: Path) -> object:
    marks = []
    try:
        requires = parse_script(path.read_text(encoding="utf-8")).requires
    except (OSError, ValueError):
        requires = []  # reported by the test itself
    if "gpu" in requires:
        marks.append(pytest.mark.gpu)
    if "tensorrt" in requires:
        marks.append(pytest.mark.tensorrt)
    return pytest.param(path, id=str(path.relative_to(HERE)), marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in FILES])
def test_filecheck(path: Path, tmp_path: Path) -> None:
    script = parse_script(path.read_text(encoding="utf-8"))
    missing = missing_features(script)
    if missing:
        pytest.skip(f"REQUIRES {', '.join(missing)}, which this machine lacks")
    assert script.runs, f"{path} has no '// RUN:' line"
    for i, run in enumerate(script.runs):
        command = substitute(run, path, tmp_path / f"{path.stem}.{i}.tmp")
        proc = run_line(command)
        if proc.returncode != 0:
            pytest.fail(
                f"RUN line {i + 1} of {_shown(path)} exited with {proc.returncode}\n"
                f"$ {command}\n--- stdout ---\n{proc.stdout}\n--- stderr ---\n{proc.stderr}",
                pytrace=False,
            )


# -- the harness itself ------------------------------------------------------------------------


def test_parse_script_joins_continuations_and_reads_requires() -> None:
    text = (
        "// RUN: echo a \\\n"
        "// RUN:   b | filecheck %s\n"
        "module @M {}\n"
        "  // RUN: true\n"
        "// REQUIRES: gpu, tensorrt\n"
        "// CHECK: a b\n"
    )
    script = parse_script(text)
    assert script.runs == ["echo a b | filecheck %s", "true"]
    assert script.requires == ["gpu", "tensorrt"]
    with pytest.raises(ValueError):
        parse_script("// RUN: echo \\\n")


def test_substitutions(tmp_path: Path) -> None:
    path = tmp_path / "dir" / "a.nir"
    got = substitute("x %s %S %t 100%% %%s %0", path, tmp_path / "t")
    assert got == f"x {path} {path.parent} {tmp_path / 't'} 100% %s %0"


def test_unknown_features_are_missing() -> None:
    assert missing_features(Script(requires=["no-such-feature"])) == ["no-such-feature"]
    assert missing_features(Script()) == []


def test_requires_gpu_skips_without_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "g.nir"
    f.write_text("// REQUIRES: gpu\n// RUN: false\n")
    monkeypatch.setattr(sys.modules[__name__], "has_gpu", lambda: False)
    with pytest.raises(pytest.skip.Exception, match="REQUIRES gpu"):
        test_filecheck(f, tmp_path)


def test_run_lines_use_pipefail_not_and_the_venv() -> None:
    assert run_line("false | true").returncode != 0
    assert run_line("not false").returncode == 0
    assert run_line("not true").returncode != 0
    assert run_line("not false | cat").returncode == 0
    assert run_line("not sh -c 'kill -SEGV $$'").returncode != 0
    proc = run_line("command -v filecheck; command -v python")
    bindir = os.path.dirname(sys.executable)
    assert proc.stdout.splitlines() == [f"{bindir}/filecheck", f"{bindir}/python"]


def test_failing_run_line_shows_its_output(tmp_path: Path) -> None:
    f = tmp_path / "bad.nir"
    f.write_text("// RUN: echo out-text; echo err-text >&2; exit 3\n")
    with pytest.raises(pytest.fail.Exception) as e:
        test_filecheck(f, tmp_path)
    msg = str(e.value)
    assert "exited with 3" in msg and "out-text" in msg and "err-text" in msg
