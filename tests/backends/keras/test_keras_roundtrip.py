"""The Keras round trip (issue 15): the generated script trains and saves (.keras and
neuralc's safetensors), predict reads either, and neuralc runs the Keras-trained weights. Also
attention over a feature map as Keras computes it (its own attention_axes semantics).

Keras runs in subprocesses with KERAS_BACKEND=torch (this process never imports it)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuralc.cli import main

pytestmark = pytest.mark.skipif(importlib.util.find_spec("keras") is None,
                                reason="keras is not installed (the keras extra)")

MODEL = """network Small {
  input: (8, 8, 1)
  layers:
    Conv2D(4, (3, 3), "relu")
    BatchNormalization()
    MaxPooling2D((2, 2))
    Flatten()
    Dense(16, "relu")
    Dropout(0.2)
    Output(3, "softmax")
  loss: "sparse_categorical_crossentropy"
  optimizer: Adam(learning_rate=0.01)
  train { epochs: 2  batch_size: 8 }
}
"""


def keras(script: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True,
                          env={**os.environ, "KERAS_BACKEND": "torch"}, timeout=600,
                          cwd=script.parent)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_train_save_predict_then_neuralc_runs_the_trained_weights(tmp_path: Path) -> None:
    nr, script = tmp_path / "small.nr", tmp_path / "small.py"
    nr.write_text(MODEL)
    assert main([str(nr), "--target", "keras", "-o", str(script)]) == 0
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((32, 8, 8, 1)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 3, 32))
    keras(script, "train", "-x", "x.npy", "-y", "y.npy", "--save", "t.keras",
          "--out", "t.safetensors")
    keras(script, "predict", "-x", "x.npy", "-w", "t.keras", "-o", "from_keras_file.npy")
    keras(script, "predict", "-x", "x.npy", "-w", "t.safetensors", "-o", "from_weights.npy")
    assert main(["run", str(nr), "--weights", str(tmp_path / "t.safetensors"),
                 "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "neuralc.npy")]) == 0
    trained = np.load(tmp_path / "from_keras_file.npy")
    untrained = np.load(keras_predict_initial(script, tmp_path))
    assert np.abs(trained - untrained).max() > 1e-3  # the training changed the weights
    np.testing.assert_allclose(np.load(tmp_path / "from_weights.npy"), trained, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "neuralc.npy"), trained, rtol=1e-4, atol=1e-5)


def keras_predict_initial(script: Path, tmp_path: Path) -> Path:
    keras(script, "predict", "-x", "x.npy", "-o", "initial.npy")
    return tmp_path / "initial.npy"


RECURRENT = """network Tagger {
  input: (6,)
  layers:
    Embedding(20, 8)
    LSTM(5, return_sequences=true)
    GRU(4)
    Output(2)
}
"""


def test_weights_written_by_keras_read_back_exactly(tmp_path: Path) -> None:
    """save_weights_safetensors inverts every layout conversion of the loader (an LSTM's two
    biases, which Keras sums, included): neuralc's weights in, the same outputs out."""
    nr, script = tmp_path / "tagger.nr", tmp_path / "tagger.py"
    nr.write_text(RECURRENT)
    assert main([str(nr), "--target", "keras", "-o", str(script), "--seed", "3"]) == 0
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.integers(0, 20, (4, 6)))
    np.save(tmp_path / "y.npy", rng.standard_normal((4, 2)).astype(np.float32))
    keras(script, "train", "-x", "x.npy", "-y", "y.npy", "--epochs", "0", "--loss", "mse",
          "--out", "again.safetensors")
    keras(script, "predict", "-x", "x.npy", "-o", "keras.npy")
    assert main(["run", str(nr), "--weights", str(tmp_path / "again.safetensors"),
                 "--input", str(tmp_path / "x.npy"), "-o", str(tmp_path / "n.npy")]) == 0
    np.testing.assert_allclose(np.load(tmp_path / "n.npy"), np.load(tmp_path / "keras.npy"),
                               rtol=1e-4, atol=1e-5)


FEATURE_MAP = """network Maps {
  input: (6, 5, 8)
  layers:
    TransformerEncoder(num_heads=2, ff_dim=16)
    MultiHeadAttention(2, 4)
    GlobalAveragePooling2D()
}
"""


def test_attention_over_a_feature_map_matches_keras(tmp_path: Path) -> None:
    """Keras attends over every axis but batch and features itself (attention_axes=None):
    an oracle for neuralc's reading of (batch, h, w, c) as h * w positions."""
    nr, script = tmp_path / "maps.nr", tmp_path / "maps.py"
    nr.write_text(FEATURE_MAP)
    assert main([str(nr), "--target", "keras", "-o", str(script), "--seed", "2"]) == 0
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((2, 6, 5, 8))
            .astype(np.float32))
    keras(script, "predict", "-x", "x.npy", "-o", "keras.npy")
    for target in ("reference", "onnx"):
        out = tmp_path / f"{target}.npy"
        assert main(["run", str(nr), "--seed", "2", "--target", target,
                     "--input", str(tmp_path / "x.npy"), "-o", str(out)]) == 0
        np.testing.assert_allclose(np.load(out), np.load(tmp_path / "keras.npy"),
                                   rtol=1e-4, atol=1e-5)
