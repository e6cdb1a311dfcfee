"""The training half of generated modules: losses as Keras computes them (softmax applied
once), optimizers and schedules with Keras's defaults, a few steps that lower the loss, and the
command line whose saved weights load back into neuralc and give the torch model's outputs."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_target_helpers import ATOL, RTOL, generate, import_file, run_torch
from torch.utils.data import TensorDataset

from neuralc.backends.pytorch.training import output_activation
from neuralc.diagnostics import CompileError
from neuralc.driver import compile_source
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import load_weights


def classifier(sections: str, output: str = 'Output(3)') -> str:
    return ("network Tiny {\n  input: (6,)\n  layers:\n    Dense(8, \"relu\")\n"
            f"    Dropout(0.1)\n    {output}\n  {sections}\n}}\n")


def tiny(tmp_path: Path, sections: str, output: str = "Output(3)"):
    tmp_path.mkdir(parents=True, exist_ok=True)
    model = compile_source(classifier(sections, output), "tiny.nr")
    return generate(model, tmp_path)[0]


def test_crossentropy_on_softmax_is_not_applied_twice(tmp_path: Path) -> None:
    """Softmax output + crossentropy: the loss of the probabilities equals torch's
    cross_entropy of the logits, as if softmax had been applied once."""
    m = tiny(tmp_path, 'loss: "sparse_categorical_crossentropy"')
    logits = torch.randn(16, 3)
    labels = torch.randint(0, 3, (16,))
    got = m.loss_fn(torch.softmax(logits, dim=-1), labels)
    torch.testing.assert_close(got, F.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)
    got = m.loss_fn(torch.softmax(logits, dim=-1), labels[:, None])  # Keras takes (n, 1) too
    torch.testing.assert_close(got, F.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layers", ["Dense(3)\n    Softmax(axis=2)", "Dense(3)\n    Softmax()",
                                    "Dense(3)\n    Softmax(axis=-1)",
                                    "TimeDistributed(Dense(3))\n    TimeDistributed(Softmax("
                                    "axis=1))"])
def test_a_softmax_layer_over_the_last_axis_is_a_probability_output(layers: str,
                                                                    tmp_path: Path) -> None:
    """Softmax(axis=2) on a rank-3 output is the last axis as much as axis=-1: the loss takes
    probabilities (softmax applied once), never cross_entropy of them as if they were logits."""
    text = ("network Seq {\n  input: (5, 4)\n  layers:\n    " + layers
            + '\n  loss: "sparse_categorical_crossentropy"\n}\n')
    module, _ = generate(compile_source(text, "seq.nr"), tmp_path)
    logits = torch.randn(2, 5, 3)
    labels = torch.randint(0, 3, (2, 5))
    want = F.cross_entropy(logits.reshape(-1, 3), labels.reshape(-1))
    got = module.loss_fn(torch.softmax(logits, dim=-1), labels)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_softmax_over_another_axis_is_not_taken_for_probabilities(tmp_path: Path) -> None:
    text = ("network Seq {\n  input: (5, 4)\n  layers:\n    Dense(3)\n    Softmax(axis=1)\n"
            '  loss: "sparse_categorical_crossentropy"\n}\n')
    model = compile_source(text, "seq.nr")
    assert output_activation(model) is None


@pytest.mark.parametrize("output", ["Output(3)", 'Dense(3, "log_softmax")', "Dense(3)"])
def test_categorical_crossentropy_by_output_kind(output: str, tmp_path: Path) -> None:
    """Probabilities, log-probabilities and logits all give the same crossentropy."""
    m = tiny(tmp_path, 'loss: "categorical_crossentropy"', output)
    logits = torch.randn(8, 3)
    target = torch.softmax(torch.randn(8, 3), dim=-1)
    out = {"Output(3)": torch.softmax(logits, -1), "Dense(3)": logits}.get(
        output, F.log_softmax(logits, -1))
    want = -(target * F.log_softmax(logits, -1)).sum(-1).mean()
    torch.testing.assert_close(m.loss_fn(out, target), want, rtol=1e-5, atol=1e-6)


def test_keras_losses(tmp_path: Path) -> None:
    p = torch.tensor([[0.2], [0.9], [0.6]])
    y = torch.tensor([0.0, 1.0, 1.0])
    bce = tiny(tmp_path / "a", 'loss: "binary_crossentropy"', 'Dense(1, "sigmoid")')
    want = -(y * torch.log(p[:, 0]) + (1 - y) * torch.log(1 - p[:, 0])).mean()
    torch.testing.assert_close(bce.loss_fn(p, y), want)
    logits = bce_logits = tiny(tmp_path / "b", 'loss: BinaryCrossentropy(from_logits=true)',
                               "Dense(1)")
    z = torch.randn(3, 1)
    torch.testing.assert_close(logits.loss_fn(z, y), F.binary_cross_entropy_with_logits(z[:, 0], y))
    del bce_logits
    mse = tiny(tmp_path / "c", 'loss: "mse"', "Dense(2)")
    a, b = torch.randn(4, 2), torch.randn(4, 2)
    torch.testing.assert_close(mse.loss_fn(a, b), ((a - b) ** 2).mean())
    mae = tiny(tmp_path / "d", 'loss: "mean_absolute_error"', "Dense(2)")
    torch.testing.assert_close(mae.loss_fn(a, b), (a - b).abs().mean())
    huber = tiny(tmp_path / "e", "loss: Huber(delta=0.5)", "Dense(2)")
    torch.testing.assert_close(huber.loss_fn(a, b), F.huber_loss(a, b, delta=0.5))


def test_accuracy_follows_the_loss(tmp_path: Path) -> None:
    sparse = tiny(tmp_path / "a", 'loss: "sparse_categorical_crossentropy"\n  metrics: ["accuracy"]')
    out = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2]])
    assert float(sparse.METRICS["accuracy"](out, torch.tensor([1, 2]))) == 0.5
    onehot = tiny(tmp_path / "b", 'loss: "categorical_crossentropy"\n  metrics: ["acc", "mae"]')
    assert float(onehot.METRICS["acc"](out, torch.eye(3)[[1, 0]])) == 1.0
    binary = tiny(tmp_path / "c", 'loss: "binary_crossentropy"\n  metrics: ["accuracy"]',
                  'Dense(1, "sigmoid")')
    assert float(binary.METRICS["accuracy"](torch.tensor([[0.7], [0.2]]),
                                            torch.tensor([1.0, 1.0]))) == 0.5


def test_optimizer_with_keras_defaults(tmp_path: Path) -> None:
    m = tiny(tmp_path / "a", "optimizer: Adam")
    opt = m.make_optimizer(m.build_model().parameters())
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["eps"] == 1e-7 and opt.defaults["lr"] == 1e-3
    m = tiny(tmp_path / "b", 'optimizer: "sgd"')
    assert m.make_optimizer(m.build_model().parameters()).defaults["lr"] == 0.01
    m = tiny(tmp_path / "c", "optimizer: RMSprop(learning_rate=0.01, rho=0.8, clipnorm=1.0)")
    opt = m.make_optimizer(m.build_model().parameters())
    assert opt.defaults["alpha"] == 0.8 and m.CLIP == {"clipnorm": 1.0}
    m = tiny(tmp_path / "d", "optimizer: Adam(weight_decay=0.01)")
    opt = m.make_optimizer(m.build_model().parameters())
    assert opt.defaults["decoupled_weight_decay"] is True  # Keras's decay is AdamW's


@pytest.mark.parametrize("schedule,expected", [
    ("ExponentialDecay(0.1, 10, 0.5)", lambda s: 0.1 * 0.5 ** (s / 10)),
    ("ExponentialDecay(0.1, 10, 0.5, staircase=true)", lambda s: 0.1 * 0.5 ** (s // 10)),
    ("StepDecay(0.1, 4, 0.5)", lambda s: 0.1 * 0.5 ** (s // 4)),
    ("CosineDecay(0.1, 20, alpha=0.1)",
     lambda s: 0.1 * (0.9 * 0.5 * (1 + math.cos(math.pi * min(s, 20) / 20)) + 0.1)),
])
def test_schedules_follow_keras_per_step(schedule: str, expected, tmp_path: Path) -> None:
    m = tiny(tmp_path, f"optimizer: SGD(learning_rate={schedule}, momentum=0.9)")
    opt = m.make_optimizer(m.build_model().parameters())
    sched = m.make_scheduler(opt)
    for step in range(31):
        assert opt.param_groups[0]["lr"] == pytest.approx(expected(step), rel=1e-9), step
        opt.step()
        sched.step()


def test_unknown_loss_is_a_located_error(tmp_path: Path) -> None:
    """The frontend refuses it for every target, at the loss line (issue 15)."""
    with pytest.raises(CompileError) as info:
        compile_source(classifier('loss: "poisson_deviance"'), "bad.nr")
    (d,) = info.value.diagnostics
    assert d.message.startswith("unknown loss 'poisson_deviance'")
    assert str(d.location) == "bad.nr:7:9"


def test_a_few_steps_lower_the_loss(tmp_path: Path) -> None:
    """Fixed seed, 64 samples of a learnable rule, a handful of Adam steps: the loss falls."""
    m = tiny(tmp_path, 'loss: "sparse_categorical_crossentropy"\n  metrics: ["accuracy"]\n'
                       "  optimizer: Adam(learning_rate=0.01)")
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = x[:, :3].argmax(dim=1)
    model = m.build_model()
    lines: list[str] = []
    history = m.train(model, TensorDataset(x, y), epochs=6, batch_size=8, seed=0,
                      device="cpu", log=lines.append)
    assert history["loss"][-1] < 0.7 * history["loss"][0]
    assert len(lines) == 6 and lines[0].startswith("epoch 1/6  loss ")
    assert "accuracy" in history


def test_cli_training_saves_weights_that_neuralc_loads(tmp_path: Path) -> None:
    """``python model.py train`` on .npy files; the saved safetensors load into neuralc
    (load_weights) and the reference interpreter then gives the trained torch model's
    outputs (BatchNorm's running statistics and counter included)."""
    text = ("network Small {\n  input: (5, 5, 2)\n  layers:\n"
            "    Conv2D(4, 3, padding=\"same\")\n    BatchNormalization()\n"
            "    Activation(\"relu\")\n    Flatten()\n    Dropout(0.2)\n    Output(3)\n"
            "  loss: \"sparse_categorical_crossentropy\"\n  optimizer: Adam(learning_rate=0.01)\n"
            "  metrics: [\"accuracy\"]\n  train { epochs: 2  batch_size: 8  validation_split: 0.25 }\n"
            "}\n")
    model = compile_source(text, "small.nr")
    module, path = generate(model, tmp_path)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 5, 5, 2)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", (x[:, 0, 0, :].sum(axis=1) > 0).astype(np.int64))
    out = tmp_path / "trained.safetensors"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # tiny tensors: one thread is fastest
    done = subprocess.run([sys.executable, str(path), "train", "--x", str(tmp_path / "x.npy"),
                           "--y", str(tmp_path / "y.npy"), "--seed", "0", "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, check=False,
                          cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("epoch 1/2  loss ") and "val_accuracy" in lines[0]
    assert lines[-1] == f"saved the weights to {out}"
    weights = load_weights(out, model.module)
    assert int(weights["batch_normalization.num_batches_tracked"]) == 2 * 3  # 24 samples / 8
    net = module.build_model()
    module.load_weights(net, str(out))
    net.eval()
    xs = [rng.standard_normal((4, 5, 5, 2)).astype(np.float32)]
    np.testing.assert_allclose(run_torch(net, xs)[0], run_module(model.module, xs, weights)[0],
                               rtol=RTOL, atol=ATOL)


def test_import_does_not_run_training(tmp_path: Path) -> None:
    """The generated file is a module: importing it defines, the __main__ guard runs."""
    m = tiny(tmp_path, "")
    assert callable(m.main) and callable(m.train) and callable(m.build_model)
    again = import_file(Path(m.__file__))
    assert again.EPOCHS == 1


def test_mixed_precision_training_runs(tmp_path: Path) -> None:
    """execution { precision: "bf16" } trains under autocast (bfloat16 on the CPU); the loss
    is computed in float32 and stays finite."""
    m = tiny(tmp_path, 'loss: "sparse_categorical_crossentropy"\n  execution { precision: "bf16" }')
    assert m.PRECISION == "bf16"
    x = torch.randn(16, 6)
    history = m.train(m.build_model(), TensorDataset(x, x[:, :3].argmax(dim=1)), epochs=2,
                      batch_size=8, seed=0, device="cpu", log=None)
    assert all(math.isfinite(v) for v in history["loss"])


def test_named_inputs_from_the_command_line(tmp_path: Path, capsys) -> None:
    """Two named inputs given as --x NAME=FILE in any order (the CLI, in process)."""
    text = ("network Two {\n  input: { image: (4, 4, 1), meta: (3,) }\n  layers:\n"
            "    image: { Flatten() }\n    meta: { Dense(4) }\n    Concatenate(image, meta)\n"
            "    Output(2)\n  loss: \"sparse_categorical_crossentropy\"\n}\n")
    module, _ = generate(compile_source(text, "two.nr"), tmp_path)
    rng = np.random.default_rng(0)
    np.save(tmp_path / "img.npy", rng.standard_normal((8, 4, 4, 1)).astype(np.float32))
    np.save(tmp_path / "meta.npy", rng.standard_normal((8, 3)).astype(np.float32))
    np.save(tmp_path / "y.npy", rng.integers(0, 2, 8))
    out = tmp_path / "two.safetensors"
    assert module.main(["train", "--x", f"meta={tmp_path / 'meta.npy'}", "--x",
                        f"image={tmp_path / 'img.npy'}", "--y", str(tmp_path / "y.npy"),
                        "--device", "cpu", "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"saved the weights to {out}"
    with pytest.raises(SystemExit, match="input 'image' has shape"):
        module.main(["train", "--x", str(tmp_path / "meta.npy"), "--x",
                     str(tmp_path / "img.npy"), "--y", str(tmp_path / "y.npy")])
