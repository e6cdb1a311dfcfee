"""The generated script's commands beside train (issue 15): predict and evaluate, the search's
labelled score, and the losses the language gained, each against an independent oracle (the
reference interpreter; Keras's own losses, run in a subprocess so this process never imports
Keras)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_target_helpers import generate
from test_pytorch_hpo import MACRO_NET

from neuralc.driver import compile_file, compile_source
from neuralc.frontend.training_names import LOSSES
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import load_weights

CLASSIFIER = """network Tiny {
  input: (6,)
  layers:
    Dense(8, "relu")
    Output(3)
  loss: "sparse_categorical_crossentropy"
  metrics: ["accuracy"]
}
"""


def test_predict_and_evaluate_run_the_trained_weights(tmp_path: Path, capsys) -> None:
    model = compile_source(CLASSIFIER, "tiny.nr")
    module, _ = generate(model, tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((20, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x[:, :3].argmax(axis=1))
    trained = tmp_path / "t.safetensors"
    args = ["--x", str(tmp_path / "x.npy")]
    assert module.main(["train", *args, "--y", str(tmp_path / "y.npy"), "--epochs", "1",
                        "--seed", "0", "--device", "cpu", "--out", str(trained)]) == 0
    out = tmp_path / "p.npy"
    assert module.main(["predict", *args, "--weights", str(trained), "--out", str(out)]) == 0
    (want,) = run_module(model.module, [x], load_weights(trained, model.module))
    np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-5)
    capsys.readouterr()
    assert module.main(["evaluate", *args, "--y", str(tmp_path / "y.npy"),
                        "--weights", str(trained)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[0] == "loss" and printed[2] == "accuracy"
    accuracy = float(np.mean(want.argmax(axis=1) == x[:, :3].argmax(axis=1)))
    assert float(printed[3]) == pytest.approx(accuracy, abs=1e-6)


def test_the_search_says_what_its_score_is(tmp_path: Path, capsys) -> None:
    path = tmp_path / "searched.nr"
    path.write_text(MACRO_NET)
    module, _ = generate(compile_file(path), tmp_path, hpo=True)
    x = np.random.default_rng(0).standard_normal((16, 6)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", x[:, :3].argmax(axis=1))
    torch.manual_seed(0)
    assert module.main(["search", "--x", str(tmp_path / "x.npy"), "--y", str(tmp_path / "y.npy"),
                        "--trials", "1", "--epochs", "1", "--seed", "0", "--device", "cpu",
                        "--validation-split", "0.25", "--out", str(tmp_path / "b.safetensors")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert " val_loss " in out[0] and "score" not in out[0]
    assert "  val_loss (last epoch) " in out[1]


KERAS_LOSSES = """
import json, sys
import numpy as np
import keras
y, p = np.load(sys.argv[1]), np.load(sys.argv[2])
print(json.dumps({n: float(keras.ops.convert_to_numpy(keras.ops.mean(keras.losses.get(n)(y, p))))
                  for n in sys.argv[3:]}))
"""


def test_losses_match_keras(tmp_path: Path) -> None:
    """Every regression and margin loss of the language, as the generated loss_fn computes it,
    against keras.losses on the same arrays."""
    if importlib.util.find_spec("keras") is None:
        pytest.skip("keras is not installed (the keras extra)")
    names = [n for n in LOSSES if "crossentropy" not in n]
    rng = np.random.default_rng(0)
    y = rng.uniform(0.1, 1.0, (8, 3)).astype(np.float32)
    y[:, 0] = (y[:, 0] > 0.5)  # labels and targets mixed in one array, positive throughout
    p = rng.uniform(0.1, 1.0, (8, 3)).astype(np.float32)
    np.save(tmp_path / "y.npy", y)
    np.save(tmp_path / "p.npy", p)
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    proc = subprocess.run([sys.executable, "-c", KERAS_LOSSES, str(tmp_path / "y.npy"),
                           str(tmp_path / "p.npy"), *names], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    want = json.loads(proc.stdout.splitlines()[-1])
    for name in names:
        text = CLASSIFIER.replace("sparse_categorical_crossentropy", name)
        (tmp_path / name).mkdir()
        module, _ = generate(compile_source(text, "tiny.nr"), tmp_path / name)
        got = float(module.loss_fn(torch.from_numpy(p), torch.from_numpy(y)))
        assert got == pytest.approx(want[name], rel=1e-5, abs=1e-6), name
