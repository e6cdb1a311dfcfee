"""One validation for every target (issue 15): ``neuralc check`` reports what any training
target would refuse, at its line, and the PyTorch and Keras targets accept the same losses,
optimizers and schedules."""

from __future__ import annotations

import textwrap

import pytest

from neuralc.backends.base import BackendOptions
from neuralc.backends.keras.codegen import generate as keras_generate
from neuralc.cli import main
from neuralc.driver import compile_source
from neuralc.frontend.training_names import LOSS_ALIASES, LOSSES, OPTIMIZERS, SCHEDULES

BAD = textwrap.dedent("""\
    network N {
      input: (seq, 4)
      dims { seq: 1..8, seq: 2..4 }
      layers:
        Dense(8, activation="rleu")
        Output(2)
      loss: "categorical_crossentropyy"
      optimizer: Adam(learning_rate=-0.1, momentum=0.9)
      train { batchsize: 32  epochs: 2 }
    }
    network M {
      input: (4,)
      layers:
        Output(2)
      optimizer: SGD(learning_rate=ExponentialDecay(0.1, 10))
    }
    """)


def test_check_reports_what_any_target_would_refuse(tmp_path, capsys):
    f = tmp_path / "bad.nr"
    f.write_text(BAD)
    assert main(["check", str(f)]) == 1
    err = capsys.readouterr().err
    for line in [
        f"{f}:3:21: error: dimension 'seq' is given a range twice",
        f"{f}:5:25: error: Dense: unknown activation \"rleu\" for 'activation'; did you mean "
        "'relu'?",
        f"{f}:7:9: error: unknown loss 'categorical_crossentropyy'; did you mean "
        "'categorical_crossentropy'?",
        f"{f}:8:39: error: Adam has no parameter 'momentum'; its parameters: learning_rate,",
        f"{f}:8:19: error: learning_rate must be a positive number, got -0.1",
        f"{f}:9:11: error: unknown train setting 'batchsize'; did you mean 'batch_size'?",
        f"{f}:15:32: error: ExponentialDecay needs decay_rate",
    ]:
        assert line in err, line
    assert "Traceback" not in err


def test_an_unknown_train_key_far_from_any_known_is_kept_with_a_warning():
    model = compile_source("network N {\n  input: (4,)\n  layers:\n    Dense(2)\n"
                           "  train { epochs: 2  patience: 3 }\n}\n", "m.nr")
    assert model.info.training.train == {"epochs": 2, "patience": 3}
    (w,) = model.warnings
    assert "train setting 'patience' is kept for other tools" in w.message


def with_training(loss: str, optimizer: str) -> str:
    return (f"network N {{\n  input: (6,)\n  layers:\n    Dense(4)\n    Output(3)\n"
            f"  loss: {loss}\n  optimizer: {optimizer}\n}}\n")


@pytest.mark.parametrize("loss", [*LOSSES, *LOSS_ALIASES, "CategoricalCrossentropy",
                                  "KLDivergence", "MeanSquaredError"])
def test_pytorch_and_keras_accept_every_loss_the_language_has(loss, tmp_path):
    """What check accepts, both training targets write (they used to disagree: a loss one
    mapped silently, the other refused)."""
    pytest.importorskip("torch")
    from neuralc.backends.pytorch.codegen import generate as torch_generate

    model = compile_source(with_training(f'"{loss}"', "Adam(0.01)"), "m.nr")
    assert "def loss_fn" in torch_generate(model, BackendOptions())[0]
    assert "def make_loss" in keras_generate(model, BackendOptions())


@pytest.mark.parametrize("optimizer", [
    *[f"{o}(learning_rate=0.01, clipnorm=1.0)" for o in OPTIMIZERS],
    "Adam(lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.01)",
    "SGD(0.1, momentum=0.9, nesterov=true)",
    *[f"SGD(learning_rate={s}(0.1, 100, 0.5))" for s in SCHEDULES],
    "SGD(learning_rate=StepDecay(0.1, step_size=10, gamma=0.5))",
])
def test_pytorch_and_keras_accept_every_optimizer_check_accepts(optimizer):
    pytest.importorskip("torch")
    from neuralc.backends.pytorch.codegen import generate as torch_generate

    model = compile_source(with_training('"mse"', optimizer), "m.nr")
    assert "def make_optimizer" in torch_generate(model, BackendOptions())[0]
    assert "def make_optimizer" in keras_generate(model, BackendOptions())
