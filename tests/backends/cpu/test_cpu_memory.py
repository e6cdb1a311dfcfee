"""Memory: the arena the generated code is given is the one ``check --report`` reports, and the
bounds-checking mode (which every cpu parity test runs under) catches a write outside a buffer.
"""

from __future__ import annotations

import ctypes
import re
from pathlib import Path

import numpy as np
import pytest

from neuralc.backends.cpu.compile import compile_for_cpu
from neuralc.backends.cpu.runtime import BoundsError, CpuExecutable
from neuralc.cli import main
from neuralc.driver import compile_file, compile_source
from neuralc.ir.dims import evaluate
from neuralc.passes.analysis import nominal_sizes
from neuralc.runtime.weights import init_weights

EXAMPLES = sorted(Path(__file__).resolve().parents[3].joinpath("examples").glob("*.nr"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_reported_arena_is_what_the_code_gets(path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["check", str(path), "--report", "--target", "cpu"]) == 0
    report = capsys.readouterr().out
    reported = int(re.search(r"arena:\s+([\d,]+) bytes", report).group(1).replace(",", ""))
    comp = compile_for_cpu(compile_file(path), 2)
    sizes = nominal_sizes(comp.tensor)
    assert int(evaluate(comp.program.arena_bytes, sizes)) == reported


def test_a_write_outside_a_buffer_is_caught() -> None:
    """Corrupt one byte after the output through the executable's own pointers: the guard
    after the output buffer must report it."""
    model = compile_source("network N {\n  input: (4,)\n  layers:\n    Dense(3)\n}\n", "n.nr")
    exe = CpuExecutable(compile_for_cpu(model, 2), model, init_weights(model.module),
                        check_bounds=True)
    real = exe._run

    def overrun(ins, outs, init, w, arena, sizes):  # noqa: ANN001
        real(ins, outs, init, w, arena, sizes)
        out0 = ctypes.cast(outs, ctypes.POINTER(ctypes.c_void_p))[0]
        ctypes.c_uint8.from_address(out0 + 2 * 3 * 4).value = 0  # one byte past (2, 3) float32

    exe._run = overrun
    with pytest.raises(BoundsError, match="after output 0"):
        exe([np.ones((2, 4), np.float32)])
