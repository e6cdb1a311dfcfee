"""The graph stage keeps the model as written; inference simplification is a tensor-stage pass."""

from pathlib import Path

from neuralc.driver import compile_file
from neuralc.passes.pipelines import pipeline, tensor_pipeline

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp.nr"


def test_graph_stage_keeps_dropout_for_training_backends():
    for level in range(4):
        assert "simplify-inference" not in pipeline(level)
        ops = [op.name for op in compile_file(MLP, opt_level=level).module.walk()]
        assert "graph.dropout" in ops


def test_tensor_stage_drops_inference_identities_from_o1():
    assert "simplify-inference" not in tensor_pipeline(0)
    for level in (1, 2, 3):
        assert "simplify-inference" in tensor_pipeline(level)
