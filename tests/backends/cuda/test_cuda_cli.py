"""``neuralc MODEL.nr --target cuda``: the module it writes, what it shows, what it refuses."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from cpu_helpers import varied_weights

from neuralc.cli import main
from neuralc.driver import compile_file
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def test_writes_the_module_and_it_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mnist_cuda.py"
    assert main([str(EXAMPLES / "mnist_cnn.nr"), "--target", "cuda", "-o", str(out)]) == 0
    assert f"wrote {out} (7 kernels)" in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("mnist_cuda", out)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = compile_file(EXAMPLES / "mnist_cnn.nr")
    weights = varied_weights(model)
    xs = samples.random_inputs(model.module, {"batch": 2}, np.random.default_rng(0))
    (got,) = mod.Program(weights, device="cpu")(torch.from_numpy(xs[0]))
    np.testing.assert_allclose(got.numpy(), run_module(model.module, xs, weights)[0],
                               rtol=1e-4, atol=1e-5)


def test_without_o_the_module_goes_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "mlp.nr"), "--target", "cuda", "--allow-tf32"]) == 0
    text = capsys.readouterr().out
    assert text.startswith('"""MLP compiled by neuralc for CUDA through Triton (-O2, fp32, TF32')
    assert 'input_precision="tf32"' in text


@pytest.mark.parametrize("emit", ["loop-ir", "kernels", "tensor-ir"])
def test_emits_the_stages(emit: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "mlp.nr"), "--target", "cuda", "--emit", emit]) == 0
    text = capsys.readouterr().out
    assert {"loop-ir": '"loop.kernel"', "kernels": "fused_0", "tensor-ir": "kernel.fused"}[
        emit] in text


@pytest.mark.parametrize(("args", "message"), [
    (["--emit", "llvm"], "--emit llvm is for the cpu target"),
    (["--arch", "sm_80", "-o", "x.py"], "--arch compiles kernels ahead of time"),
    (["--cuda-graphs"], "--cuda-graphs applies to an artifact"),
    (["--arch", "volta", "-o", "x.cubins"], "--arch: 'volta' is not a CUDA architecture"),
])
def test_usage_errors(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(EXAMPLES / "mlp.nr"), "--target", "cuda", *args]) == 2
    assert message in capsys.readouterr().err
