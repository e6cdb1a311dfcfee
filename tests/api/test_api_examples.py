"""Every example, on the reference and onnx targets: compile, call, save, load, call again; the
outputs equal the interpreter's and the CLI's (`neuralc run` on the artifact and on the .nr)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from api_helpers import EXAMPLES

import neuralc
from neuralc.cli import main
from neuralc.driver import compile_file, tensor_stage
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.runtime.interpreter import Interpreter
from neuralc.runtime.weights import init_weights


def _interpreter_outputs(path: Path, inputs: list[np.ndarray]) -> list[np.ndarray]:
    model = compile_file(path)
    module, _ = tensor_stage(model, tensor_pipeline(2)[len(pipeline(2)):])
    return Interpreter(module).load(init_weights(model.module)).run(inputs)


def _input_flags(tmp_path: Path, names: list[str], inputs: list[np.ndarray]) -> list[str]:
    flags = []
    for name, x in zip(names, inputs):
        p = tmp_path / f"{name}.npy"
        np.save(p, x)
        flags += ["--input", str(p) if len(names) == 1 else f"{name}={p}"]
    return flags


def _cli_output(capsys, tmp_path: Path, model: str, flags: list[str], *extra: str) -> np.ndarray:
    out = tmp_path / "y.npy"
    code = main(["run", model, *flags, "-o", str(out), *extra])
    err = capsys.readouterr().err
    assert code == 0, err
    return np.load(out)


@pytest.mark.parametrize("target", ["reference", "onnx"])
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_round_trip_equals_interpreter_and_cli(path, target, tmp_path, capsys, make_inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)  # hpo.nr's defaulted values
        model = neuralc.compile(path, target=target)
    assert (model.target, model.device, model.variants) == (target, "cpu", [target])
    xs = make_inputs(model)
    y = model(xs)
    assert isinstance(y, np.ndarray) and y.dtype == np.float32 and y.shape[0] == 2

    saved = model.save(tmp_path / "m.ncz")
    loaded = neuralc.load(saved)
    assert loaded.target == target and loaded.signature == model.signature
    np.testing.assert_array_equal(loaded(*xs), y)

    (reference,) = _interpreter_outputs(path, xs)
    if target == "reference":
        np.testing.assert_array_equal(y, reference)
    else:
        np.testing.assert_allclose(y, reference, rtol=1e-4, atol=1e-5)

    flags = _input_flags(tmp_path, model.signature.input_names, xs)
    np.testing.assert_array_equal(_cli_output(capsys, tmp_path, str(saved), flags), y)
    from_source = _cli_output(capsys, tmp_path, str(path), flags, "--target", target)
    np.testing.assert_array_equal(from_source, y)
