"""The TensorRT target. TensorRT cannot be installed where these tests run in CI, so the tests
marked ``tensorrt`` skip there; the rest check what neuralc computes itself: the guard's
message, the optimisation profile, and parser errors mapped back to ``.nr`` lines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neuralc
from neuralc.backends.base import BackendOptions
from neuralc.backends.registry import get_backend
from neuralc.backends.select import has_module, probe_cuda
from neuralc.backends.tensorrt.build import (
    ParserProblem,
    parser_diagnostics,
    profile_problem,
    profile_shapes,
)
from neuralc.cli import main
from neuralc.diagnostics import render_all
from neuralc.driver import compile_file
from neuralc.runtime.weights import init_weights

ROOT = Path(__file__).resolve().parents[3]
MNIST = ROOT / "examples" / "mnist_cnn.nr"
HAVE_TENSORRT = has_module("tensorrt")  # not this test folder, which is named tensorrt too

needs_tensorrt = pytest.mark.skipif(not (HAVE_TENSORRT and probe_cuda().gpus),
                                    reason="needs TensorRT and a CUDA GPU")


@pytest.mark.skipif(HAVE_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_is_a_clear_usage_error(capsys, tmp_path):
    for out in ("m.engine", "m.ncz"):
        code = main([str(MNIST), "--target", "tensorrt", "-o", str(tmp_path / out)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1
        assert "the tensorrt target needs TensorRT, which is not installed" in err
        assert "has not been run in this project's CI" in err
    with pytest.raises(neuralc.BackendUnavailable, match="TensorRT, which is not installed"):
        neuralc.compile(MNIST, target="tensorrt")
    assert not list(tmp_path.iterdir())


def test_profile_from_dims_ranges_and_nominal_sizes():
    seq = profile_shapes(compile_file(ROOT / "examples" / "sequence_dims.nr"))
    assert seq == {"input": {"min": [1, 8, 32], "opt": [1, 64, 32], "max": [64, 512, 32]}}
    unet = profile_shapes(compile_file(ROOT / "examples" / "unet_symbolic.nr"))
    assert unet["input"] == {"min": [1, 16, 16, 3], "opt": [1, 64, 64, 3],
                             "max": [64, 256, 256, 3]}
    tokens = profile_shapes(compile_file(ROOT / "examples" / "text_embedding.nr"))
    assert tokens["input"] == {"min": [1, 1], "opt": [1, 64], "max": [64, 256]}
    two = profile_shapes(compile_file(ROOT / "examples" / "two_inputs.nr"))
    assert list(two) == ["image", "meta"] and two["meta"]["max"] == [64, 10]
    assert profile_problem(seq, "input", (2, 600, 32)) == (
        "input 'input' dim 1 is 600, outside the 8..512 the TensorRT engine was built for; give "
        "the dim a range in the model's dims { } and rebuild")
    assert profile_problem(seq, "input", (2, 100, 32)) is None


def test_parser_errors_point_at_the_layer_line():
    model = compile_file(MNIST)
    weights = init_weights(model.module)
    onnx_bytes = get_backend("onnx").emit(model, weights, BackendOptions()).data
    import onnx

    nodes = [n.name for n in onnx.load_model_from_string(onnx_bytes).graph.node]
    conv = next(i for i, n in enumerate(nodes) if n.startswith("conv2d_1/"))
    problems = [ParserProblem(conv, "", "Conv", "kernel weights has count 0"),
                ParserProblem(-1, "dense/MatMul", "MatMul", "unsupported shape"),
                ParserProblem(-1, "", "", "network has no output")]
    diags = parser_diagnostics(problems, nodes, model)
    text = render_all(diags)
    assert text.splitlines()[0] == (
        f"{MNIST}:7:5: error: TensorRT cannot build Conv2D layer 'conv2d_1': kernel weights "
        f"has count 0 (ONNX node '{nodes[conv]}' (Conv))")
    assert f"{MNIST}:10:5: error: TensorRT cannot build Dense layer 'dense': unsupported shape" \
        in text
    assert "error: TensorRT cannot parse the ONNX model: network has no output" in text


@pytest.mark.tensorrt
@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_matches_the_reference(precision, tmp_path):
    model = neuralc.compile(MNIST, target="tensorrt", precision=precision)
    assert model.target.startswith("tensorrt-sm") and model.device == "cuda:0"
    reference = neuralc.compile(MNIST, target="reference")
    x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
    tol = 1e-4 if precision == "fp32" else 2e-3
    np.testing.assert_allclose(model(x), reference(x), atol=tol)
    import torch

    y = model(torch.from_numpy(x).cuda())
    assert y.is_cuda
    np.testing.assert_allclose(y.cpu().numpy(), reference(x), atol=tol)
    loaded = neuralc.load(model.save(tmp_path / "m.ncz"))
    assert loaded.target == model.target and loaded.variants[-1] == "onnx"
    with pytest.raises(neuralc.InputError, match="outside the 1..64"):
        loaded(np.zeros((65, 28, 28, 1), np.float32))
