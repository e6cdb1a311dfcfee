"""Every bundled example through the ONNX target.

Each example is emitted at opset 17 (and a few at newer opsets, where other operators are
chosen: GELU and HardSwish natively, the opset-23 Attention and RMSNormalization operators),
checked with ``onnx.checker`` (full check), and run by onnxruntime against the reference
interpreter at two batch sizes and two values of every other symbolic dim, with weights varied
away from their initial constants. Tolerance: rtol 1e-4, atol 1e-5 (see onnx_test_helpers).
"""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest
from onnx_test_helpers import check_against_reference, emit, varied_weights

from neuralc.backends.onnx.emit import load_artifact_model
from neuralc.driver import compile_file

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.nr"))
SIZES = ((1, 16), (3, 24))
NEWER = ("mnist_cnn", "resnet_small", "lstm_text_classifier", "bigru_tagger",
         "transformer_classifier", "seq2seq_decoder", "vit_tiny", "se_resnet_block")


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 10


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_reference(path: Path) -> None:
    model = compile_file(path)
    weights = varied_weights(model)
    artifact = emit(model, weights)
    onnx.checker.check_model(load_artifact_model(artifact), full_check=True)
    check_against_reference(model, weights, artifact, SIZES)


@pytest.mark.parametrize("opset", [21, 23, 26])
@pytest.mark.parametrize("name", NEWER)
def test_example_at_newer_opsets(name: str, opset: int) -> None:
    model = compile_file(ROOT / "examples" / f"{name}.nr")
    weights = varied_weights(model)
    artifact = emit(model, weights, opset=opset)
    proto = load_artifact_model(artifact)
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", opset)]
    check_against_reference(model, weights, artifact, SIZES)
