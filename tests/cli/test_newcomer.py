"""What a new user trips on (issue 15): the version, what run runs, float64 inputs, and the
benchmark scripts taking a model path."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import numpy as np

from neuralc import __version__
from neuralc.cli import main

ROOT = Path(__file__).resolve().parents[2]
MLP = "network M {\n  input: (4,)\n  layers:\n    Dense(3)\n}\n"


def test_version(capsys) -> None:
    try:
        main(["--version"])
    except SystemExit as e:
        assert e.code == 0
    assert capsys.readouterr().out.startswith(f"neuralc {__version__}\n")


def test_run_help_says_which_targets_run(capsys) -> None:
    try:
        main(["run", "--help"])
    except SystemExit as e:
        assert e.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in ("reference (default", "onnx (onnxruntime)", "cpu (native code",
                  "pytorch and keras write source code"):
        assert words in text


def test_compile_help_says_what_each_level_does_per_target(capsys) -> None:
    with contextlib.suppress(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "onnx: -O0 is the literal translation" in text
    assert "fold BatchNorm into conv/dense weights" in text


def test_a_float64_input_runs_as_float32_with_a_note(tmp_path: Path, capsys) -> None:
    nr, x = tmp_path / "m.nr", tmp_path / "x.npy"
    nr.write_text(MLP)
    np.save(x, np.ones((2, 4)))  # numpy's default float64
    assert main(["run", str(nr), "--input", str(x)]) == 0
    captured = capsys.readouterr()
    assert "neuralc: note: input 'input' is float64; it runs as float32" in captured.err
    assert "float32" in captured.out
    np.save(x, np.ones((2, 4), np.float32))
    assert main(["run", str(nr), "--input", str(x)]) == 0
    assert "note" not in capsys.readouterr().err


def test_benchmarks_take_a_model_path(tmp_path: Path) -> None:
    nr = tmp_path / "mine.nr"
    nr.write_text(MLP)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compile_time.py"),
                           "--repeat", "1", str(nr), "mlp"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = [line.split(" | ")[0] for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert rows[-2:] == ["| mine", "| mlp"]
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "compile_time.py"),
                           "--repeat", "1", "no_such_model"], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode != 0 and "neither a .nr file nor an example" in proc.stderr
    assert "Traceback" not in proc.stderr
