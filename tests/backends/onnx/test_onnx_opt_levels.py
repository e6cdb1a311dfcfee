"""``-O`` shapes the exported ONNX (issue 15): ``-O0`` is the literal translation; from
``-O1`` BatchNorm is folded into the conv/dense before it, layers that are the identity at
inference go and shape arithmetic known when exporting becomes constants. Every level gives
the reference interpreter's outputs (the oracle), through onnxruntime."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from neuralc.backends.base import BackendOptions
from neuralc.backends.registry import get_backend
from neuralc.driver import compile_file, compile_source
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.samples import random_inputs, symbol_sizes
from neuralc.runtime.weights import init_weights, module_weights

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def varied(model) -> dict[str, np.ndarray]:
    """Seeded weights with BatchNorm statistics away from their (identity) initial values."""
    rng = np.random.default_rng(5)
    w = init_weights(model.module, seed=5)
    for lw in module_weights(model.module):
        if lw.param in ("running_mean", "bias"):
            w[lw.name] = rng.uniform(-0.5, 0.5, lw.spec.shape).astype(np.float32)
        elif lw.param in ("running_var", "weight") and lw.kind == "BatchNormalization":
            w[lw.name] = rng.uniform(0.5, 1.5, lw.spec.shape).astype(np.float32)
    return w


def emit(model, weights, opt: int):
    backend = get_backend("onnx")
    artifact = backend.emit(model, weights, BackendOptions(opt=opt))
    return backend, artifact, onnx.load_model_from_string(artifact.data)


def ops(proto) -> Counter:
    return Counter(n.op_type for n in proto.graph.node)


def test_batchnorm_is_folded_from_O1_and_O0_is_literal():
    model = compile_file(EXAMPLES / "resnet_small.nr")
    w = varied(model)
    _, a0, p0 = emit(model, w, 0)
    _, a1, p1 = emit(model, w, 1)
    assert ops(p0)["BatchNormalization"] == 10 and ops(p1)["BatchNormalization"] == 0
    assert len(p1.graph.node) == len(p0.graph.node) - 10
    assert ops(p1)["Conv"] == ops(p0)["Conv"] == 10
    for opt in (2, 3):  # nothing more for ONNX at the higher levels
        assert emit(model, w, opt)[1].data == a1.data
    assert a0.data != a1.data


def test_shape_arithmetic_known_when_exporting_is_folded():
    text = ("network Maps {\n  input: (6, 5, 8)\n  layers:\n"
            "    TransformerEncoder(num_heads=2, ff_dim=16)\n    GlobalAveragePooling2D()\n}\n")
    model = compile_source(text, "maps.nr")
    w = init_weights(model.module)
    _, _, p0 = emit(model, w, 0)
    _, _, p1 = emit(model, w, 1)
    assert ops(p0)["Shape"] > 0 and ops(p1)["Shape"] == 0
    assert len(p1.graph.node) < len(p0.graph.node)


def test_dropout_and_friends_leave_no_node():
    text = ("network D {\n  input: (8,)\n  layers:\n    Dense(8)\n    Dropout(0.5)\n"
            "    GaussianNoise(0.1)\n    Output(2)\n}\n")
    model = compile_source(text, "d.nr")
    for opt in range(4):
        assert set(ops(emit(model, init_weights(model.module), opt)[2])) <= {
            "Gemm", "Softmax"}


@pytest.mark.parametrize("stem", ["resnet_small", "mobilenet_tiny", "unet_small", "vit_tiny",
                                  "macros", "transformer_classifier", "lstm_text_classifier"])
def test_every_level_matches_the_reference(stem):
    model = compile_file(EXAMPLES / f"{stem}.nr")
    w = varied(model)
    xs = random_inputs(model.module, symbol_sizes(model.module, 2, 6), np.random.default_rng(0))
    want = run_module(model.module, xs, w)
    for opt in range(4):
        backend, artifact, _ = emit(model, w, opt)
        got = backend.load(artifact, model)(xs)
        for g, r in zip(got, want):
            np.testing.assert_allclose(g, r, rtol=1e-4, atol=1e-4, err_msg=f"{stem} -O{opt}")
