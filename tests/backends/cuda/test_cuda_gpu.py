"""On a real GPU (marked ``gpu``: skipped where torch sees none). Each runs in a fresh Python
process without ``TRITON_INTERPRET`` (this process imported triton in interpreter mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]

ON_GPU = r'''
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from cpu_helpers import varied_weights
from neuralc.backends.cuda.compile import compile_for_cuda
from neuralc.backends.cuda.runtime import CudaExecutable
from neuralc.driver import compile_file
from neuralc.runtime import samples
from neuralc.runtime.interpreter import Interpreter, run_module

for name in ("mnist_cnn", "vit_tiny", "lstm_text_classifier", "resnet_small"):
    model = compile_file(f"{sys.argv[2]}/examples/{name}.nr")
    w = varied_weights(model)
    for precision, (rtol, atol) in (("fp32", (1e-4, 1e-5)), ("fp16", (4e-3, 4e-3))):
        comp = compile_for_cuda(model, 2, precision)
        exe = CudaExecutable(comp, model, w, cuda_graphs=True)
        oracle = Interpreter(comp.tensor).load(w)
        for batch in (1, 3, 1):
            xs = samples.random_inputs(model.module, samples.symbol_sizes(model.module, batch, 8),
                                       np.random.default_rng(batch))
            want = run_module(model.module, xs, w) if precision == "fp32" else oracle.run(xs)
            first = exe(xs)
            assert exe.graph_report == "replayed a CUDA graph", exe.graph_report
            second = exe(xs)  # a replay must not overwrite what the first call returned
            for a, b, c in zip(first, second, want):
                np.testing.assert_allclose(a.astype(np.float64), c.astype(np.float64),
                                           rtol=rtol, atol=atol)
                np.testing.assert_array_equal(a, b)
        print(name, precision, "ok")
'''


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


@pytest.mark.gpu
def test_examples_on_the_gpu_with_cuda_graphs_match_the_reference() -> None:
    r = subprocess.run([sys.executable, "-c", ON_GPU, str(ROOT / "tests/backends/cpu"),
                        str(ROOT)], capture_output=True, text=True, env=_clean_env(),
                       timeout=1200)
    assert r.returncode == 0, r.stderr[-4000:]


@pytest.mark.gpu
def test_the_gpu_benchmark_runs(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu/bench_gpu.py"), "--models",
                        "mlp", "--batches", "1", "--repeat", "5", "--peers", "torch-eager",
                        "--budget", "300", "--out", str(out)], capture_output=True, text=True,
                       env=_clean_env(), timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    text = out.read_text()
    assert "| mlp | fp32 |" in text and "| mlp | 1 |" in text


def test_the_gpu_benchmark_plans_without_a_gpu() -> None:
    """Its CPU-safe parts: arguments, compiling every model for the cuda target, the plan."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu/bench_gpu.py"), "--dry-run",
                        "--models", "mlp,vit_tiny", "--peers", "torch-eager,onnxruntime-gpu"],
                       capture_output=True, text=True, env=_clean_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "vit_tiny: " in r.stdout and "attention (flash, online softmax)" in r.stdout
    assert "plan: card peaks; check 2 models" in r.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks/gpu/bench_gpu.py"), "--dry-run",
                          "--peers", "tensorrt"], capture_output=True, text=True,
                         env=_clean_env(), timeout=300)
    assert bad.returncode == 2 and "unknown peers" in bad.stderr
