"""Per-kernel timing of the native code (``nc_run_profiled``): every kernel the host program
calls is timed, the times are real (positive, and together no more than the inferences took),
and inputs are checked as for an ordinary call."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neuralc.backends.cpu.compile import compile_for_cpu
from neuralc.backends.cpu.profile import kernel_profile
from neuralc.backends.cpu.runtime import CpuExecutable
from neuralc.driver import compile_source
from neuralc.runtime import samples
from neuralc.runtime.signature import InputError
from neuralc.runtime.weights import init_weights

TEXT = """network P {
  input: (12, 12, 3)
  layers:
    Conv2D(16, (3, 3), padding="same", activation="relu")
    MaxPooling2D((2, 2))
    Conv2D(16, (3, 3), padding="same", activation="relu")
    Flatten()
    Dense(10)
}
"""


@pytest.fixture(scope="module")
def exe() -> CpuExecutable:
    model = compile_source(TEXT, "p.nr")
    return CpuExecutable(compile_for_cpu(model, 2), model, init_weights(model.module, seed=0))


def test_every_called_kernel_is_timed(exe: CpuExecutable) -> None:
    xs = samples.random_inputs(exe.model.module, {"batch": 2}, np.random.default_rng(0))
    start = time.perf_counter()
    prof = kernel_profile(exe, xs, repeat=5, warmup=1)
    wall = time.perf_counter() - start
    run = next(f for f in exe.compilation.loops.networks)
    called = {op.attributes["callee"] for op in run.walk() if op.name == "loop.call"}
    assert {p.name for p in prof} == called
    assert all(p.seconds > 0 and p.calls >= 1 for p in prof)
    assert [p.seconds for p in prof] == sorted((p.seconds for p in prof), reverse=True)
    assert sum(p.seconds for p in prof) * 5 < wall  # medians of 5 timed runs within the wall


def test_profiled_run_checks_its_inputs(exe: CpuExecutable) -> None:
    with pytest.raises(InputError):
        kernel_profile(exe, [np.zeros((2, 12, 12, 4), np.float32)], repeat=1)
    with pytest.raises(ValueError):
        kernel_profile(exe, [np.zeros((2, 12, 12, 3), np.float32)], repeat=0)
