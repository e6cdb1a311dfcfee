"""The cuda target's runtime: input checks, sizes beyond 32-bit offsets, the generated module
run on its own, and what needs a GPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cpu_helpers import varied_weights

from neuralc.backends.base import BackendUnavailable
from neuralc.backends.cuda.compile import compile_for_cuda
from neuralc.backends.cuda.runtime import CudaExecutable, check_offsets, load_module
from neuralc.driver import compile_file
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.signature import InputError

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_inputs_are_checked_against_the_signature_first() -> None:
    model = compile_file(EXAMPLES / "mnist_cnn.nr")
    exe = CudaExecutable(compile_for_cuda(model), model, varied_weights(model))
    with pytest.raises(InputError, match="expected"):
        exe([np.zeros((2, 27, 28, 1), np.float32)])


def test_sizes_beyond_32_bit_offsets_are_refused() -> None:
    model = compile_file(EXAMPLES / "mlp.nr")
    comp = compile_for_cuda(model)
    check_offsets(comp.program, 1000, {"batch": 1000})
    with pytest.raises(InputError, match="32-bit offsets"):
        check_offsets(comp.program, 10, {"batch": 3_000_000})


def test_the_generated_module_runs_on_its_own() -> None:
    model = compile_file(EXAMPLES / "two_inputs.nr")
    comp = compile_for_cuda(model, 2, "fp32")
    mod = load_module(comp.program.text)
    weights = varied_weights(model)
    program = mod.Program(weights, device="cpu")
    sizes = samples.symbol_sizes(model.module, 3, 8)
    xs = samples.random_inputs(model.module, sizes, np.random.default_rng(1))
    import torch

    got = program(*[torch.from_numpy(np.ascontiguousarray(x)) for x in xs])
    for g, w in zip(got, run_module(model.module, xs, weights)):
        np.testing.assert_allclose(g.numpy(), w, rtol=1e-4, atol=1e-5)
    assert mod.arena_bytes(sizes) >= 0 and mod.SYMBOLS == ["batch"]


def test_autotune_and_cuda_graphs_need_a_gpu() -> None:
    model = compile_file(EXAMPLES / "mlp.nr")
    comp = compile_for_cuda(model)
    with pytest.raises(BackendUnavailable, match="GPU"):
        CudaExecutable(comp, model, varied_weights(model), autotune=True)
    with pytest.raises(BackendUnavailable, match="GPU"):
        CudaExecutable(comp, model, varied_weights(model), cuda_graphs=True)


def test_without_a_gpu_or_the_interpreter_run_says_so() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-m", "neuralc.cli", "run", str(EXAMPLES / "mlp.nr"),
                        "--random", "--target", "cuda"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 2
    assert "needs an NVIDIA GPU" in r.stderr and "TRITON_INTERPRET=1" in r.stderr
    assert "Traceback" not in r.stderr
