"""The ``cuda`` variant of a ``.ncz`` artifact: entries per compute capability (source and
cubins), selection on a matching GPU, loading without executing anything from the file."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

import neuralc
from neuralc.backends import select
from neuralc.backends.select import CudaInfo, Gpu
from neuralc.cli import main
from neuralc.driver import compile_file
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

MLP = Path(__file__).resolve().parents[3] / "examples" / "mlp.nr"


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cuda") / "mlp.ncz"
    assert main([str(MLP), "--target", "cuda", "--arch", "sm_80,sm_90", "-o", str(out)]) == 0
    return out


def test_one_entry_per_architecture_best_first(artifact: Path) -> None:
    with zipfile.ZipFile(artifact) as z:
        manifest = json.loads(z.read("manifest.json"))
        variants = manifest["variants"]
        assert [v["name"] for v in variants] == ["cuda-sm90", "cuda-sm80"]
        v = variants[0]
        assert v["device"] == "cuda"
        assert v["requires"] == {"modules": ["torch", "triton"], "min_compute_capability": "9.0"}
        source = z.read("variants/cuda-sm90/model_cuda.py").decode()
        cubins = json.loads(z.read("variants/cuda-sm90/kernels.cubins"))
    assert "@triton.jit" in source and list(cubins["architectures"]) == ["sm_90"]
    assert v["meta"]["source_sha256"] == cubins["source_sha256"]


def test_without_a_gpu_nothing_in_it_runs_and_the_report_says_why(artifact: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.setattr(select, "probe_cuda", lambda: CudaInfo(problem="no driver found"))
    with pytest.raises(neuralc.ArtifactError, match="cuda-sm90: no driver found"):
        neuralc.load(artifact)


def test_an_older_gpu_takes_the_older_entry_and_it_runs(artifact: Path, monkeypatch) -> None:
    gpu = CudaInfo((Gpu(0, "NVIDIA A100", (8, 0)),))
    monkeypatch.setattr(select, "probe_cuda", lambda: gpu)
    model = neuralc.load(artifact)
    assert model.target == "cuda-sm80"
    assert "skipped cuda-sm90: GPU 0 (NVIDIA A100) is sm_80; this needs sm_90" in \
        model.selection_report
    # (here the kernels run in Triton's interpreter on the CPU)
    graph = compile_file(MLP)
    weights = init_weights(graph.module, seed=0)
    xs = samples.random_inputs(graph.module, {"batch": 3}, np.random.default_rng(0))
    np.testing.assert_allclose(model(xs[0]), run_module(graph.module, xs, weights)[0],
                               rtol=1e-4, atol=1e-5)


def test_auto_records_why_no_cuda_entry_was_built(tmp_path: Path, monkeypatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(select, "probe_cuda", lambda: CudaInfo(problem="no driver found"))
    out = tmp_path / "m.ncz"
    assert main([str(MLP), "--target", "auto", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "not built: cuda: no GPU here to compile for (no driver found); name the " \
           "architectures: --target cuda --arch sm_80,sm_90" in text
