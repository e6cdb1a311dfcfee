"""Generated Keras models against the reference interpreter, with the same weights.

Every example and one small model per layer configuration (keras_cases.py) is written by the
keras target, loaded with its safetensors weights (PyTorch layouts converted by the generated
loader) and run by Keras (KERAS_BACKEND=torch, in one subprocess for the whole session) on
fresh random inputs at batch 1 and 3 and two sizes of every other symbolic dim.

Tolerance: float32, rtol=1e-4 and atol=1e-5, as the whole-model reference tests: the
reference computes in float64, Keras in float32, and the models chain up to ~20 layers.
"""

from __future__ import annotations

import numpy as np
import pytest
from keras_cases import (
    EXAMPLES,
    FIT_EXAMPLES,
    FIT_TEXTS,
    LAYER_CASES,
    RELOAD_EXAMPLES,
    RELOAD_LAYERS,
)
from keras_session import KerasSession

from neuralc.ir.core import func_body

RTOL, ATOL = 1e-4, 1e-5


def check_outputs(session: KerasSession, case: str) -> None:
    p = session.prepared[case]
    r = session.result(case)
    for run, (path, expected) in enumerate(zip(r["outputs"], p.expected)):
        with np.load(path, allow_pickle=False) as z:
            got = [z[f"y{i}"] for i in range(len(z.files))]
        assert len(got) == len(expected)
        for y, want in zip(got, expected):
            assert y.dtype == np.float32
            assert y.shape == want.shape, f"run {run}"
            np.testing.assert_allclose(y, want, rtol=RTOL, atol=ATOL, err_msg=f"run {run}")


@pytest.mark.parametrize("keras_case", [f"example/{p.stem}" for p in EXAMPLES])
def test_example_matches_reference(keras_run: KerasSession, keras_case: str) -> None:
    check_outputs(keras_run, keras_case)
    # Keras layers carry neuralc's names (every graph op's name is a layer of the model).
    model = keras_run.prepared[keras_case].model
    names = {op.attributes["name"] for op in func_body(model.module.funcs[0]).ops
             if "name" in op.attributes}
    assert names <= set(keras_run.result(keras_case)["layers"])


@pytest.mark.parametrize("keras_case", [f"layer/{cid}" for cid, _, _ in LAYER_CASES])
def test_layer_matches_reference(keras_run: KerasSession, keras_case: str) -> None:
    check_outputs(keras_run, keras_case)


@pytest.mark.parametrize("keras_case", [f"fit/{n}" for n in (*FIT_EXAMPLES, *FIT_TEXTS)])
def test_fit_runs_one_epoch(keras_run: KerasSession, keras_case: str) -> None:
    r = keras_run.result(keras_case)
    assert len(r["loss"]) == 1 and np.isfinite(r["loss"][0])
    assert r["changed"], "training changed no weight"


@pytest.mark.parametrize("keras_case", [f"reload/{n}" for n in (*RELOAD_EXAMPLES, *RELOAD_LAYERS)])
def test_saved_model_reloads(keras_run: KerasSession, keras_case: str) -> None:
    """The custom layers serialise: a .keras file loads back and predicts the same."""
    r = keras_run.result(keras_case)
    assert r["max_diff"] <= 1e-6
    model = keras_run.prepared[keras_case].model
    names = {op.attributes["name"] for op in func_body(model.module.funcs[0]).ops
             if "name" in op.attributes}
    assert names <= set(r["names"])


@pytest.mark.parametrize("keras_case", ["cli/mnist_cnn", "cli/two_inputs"])
def test_cli_file_predicts_and_trains(keras_run: KerasSession, keras_case: str) -> None:
    """`neuralc M.nr --target keras -o model.py` writes model.py and model.safetensors; the
    file's own command line predicts with those weights (the reference's outputs) and trains."""
    cli = keras_run.cli[keras_case]
    assert "wrote" in cli.compile_stdout and "model.safetensors" in cli.compile_stdout
    assert keras_run.result(keras_case + ":predict")["exit"] == 0
    y = np.load(cli.outputs, allow_pickle=False)
    np.testing.assert_allclose(y, cli.expected[0], rtol=RTOL, atol=ATOL)
    assert keras_run.result(keras_case + ":train")["exit"] == 0
    assert cli.saved.stat().st_size > 0


@pytest.mark.parametrize("keras_case", ["mixed/mlp", "mixed/mnist_cnn",
                                        "mixed/layernorm-axis1-rank4"])
def test_mixed_precision_policy(keras_run: KerasSession, keras_case: str) -> None:
    """--precision mixed builds under Keras's mixed_float16 policy: float16 activations, so
    the outputs agree with the float32 reference to float16's precision (about 1e-3)."""
    p = keras_run.prepared[keras_case]
    r = keras_run.result(keras_case)
    for path, expected in zip(r["outputs"], p.expected):
        with np.load(path, allow_pickle=False) as z:
            y = z["y0"]
        assert y.dtype == np.float16
        np.testing.assert_allclose(y.astype(np.float32), expected[0], rtol=2e-2, atol=5e-3)


@pytest.mark.parametrize("keras_case", ["bad-weights/mnist_cnn"])
def test_loader_reports_every_mismatch(keras_run: KerasSession, keras_case: str) -> None:
    """A weights file that does not fit: every problem listed, none loaded half-way."""
    message = keras_run.result(keras_case)["message"]
    assert message.startswith("weights file ")
    assert "does not fit network DigitNet:" in message
    assert "missing tensor conv2d.bias" in message
    assert "conv2d.weight has shape (3, 3, 1, 32), expected (32, 1, 3, 3)" in message
    assert "unexpected tensor stray.weight" in message
