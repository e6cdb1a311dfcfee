"""Importing a PyTorch state_dict cannot silently go wrong (issue 15): the NCHW flatten order,
an optional num_batches_tracked, suggestions by structure, and a state_dict saved with
safetensors.torch. The oracle is the PyTorch model the weights come from."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from neuralc.cli import main
from neuralc.driver import compile_source
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import WeightsError, load_weights, save_weights
from neuralc.runtime.weights_import import WeightsWarning

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

CNN = """network Cnn {
  input: (8, 8, 1)
  layers:
    Conv2D(4, (3, 3), "relu", name="conv1")
    BatchNormalization(name="bn")
    MaxPooling2D((2, 2))
    Flatten()
    Dense(5, name="fc")
}
"""


class TorchCnn(torch.nn.Module):
    """The same network as PyTorch users write it: NCHW, torch.flatten before the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4, eps=1e-3)
        self.fc = torch.nn.Linear(4 * 3 * 3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(self.bn(torch.relu(self.conv1(x))), 2)
        return self.fc(torch.flatten(x, 1))


@pytest.fixture
def torch_cnn(tmp_path: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    """A trained-looking torch CNN saved with safetensors.torch.save_file (no
    num_batches_tracked, as a hand-written or Keras-side export has none), an input, its output."""
    torch.manual_seed(0)
    net = TorchCnn()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 2.0)
    net.eval()
    path = tmp_path / "cnn.safetensors"
    safetensors_torch.save_file({k: v for k, v in net.state_dict().items()
                                 if not k.endswith("num_batches_tracked")}, str(path))
    x = np.random.default_rng(1).standard_normal((3, 8, 8, 1)).astype(np.float32)
    with torch.no_grad():
        y = net(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    return path, x, y


def test_weights_layout_torch_loads_an_nchw_model_exactly(torch_cnn) -> None:
    path, x, want = torch_cnn
    model = compile_source(CNN, "cnn.nr")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning when the layout is said
        w = load_weights(path, model.module, layout="torch")
    (y,) = run_module(model.module, [x], w)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


def test_without_the_layout_a_dense_after_flatten_warns(torch_cnn) -> None:
    path, x, want = torch_cnn
    model = compile_source(CNN, "cnn.nr")
    with pytest.warns(WeightsWarning, match="Dense 'fc' follows a Flatten of a 3x3x4 map.*"
                                            "--weights-layout torch"):
        w = load_weights(path, model.module)
    (y,) = run_module(model.module, [x], w)
    assert np.abs(y - want).max() > 1e-2  # what the warning is about


def test_files_neuralc_writes_load_without_the_warning(tmp_path: Path, torch_cnn) -> None:
    path, _, _ = torch_cnn
    model = compile_source(CNN, "cnn.nr")
    w = load_weights(path, model.module, layout="torch")
    save_weights(tmp_path / "mine.safetensors", w)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = load_weights(tmp_path / "mine.safetensors", model.module)
    assert all(np.array_equal(again[k], w[k]) for k in w)


def test_num_batches_tracked_is_optional(torch_cnn, tmp_path: Path) -> None:
    """Present or absent, inference is the same (the counter is for training)."""
    path, x, _ = torch_cnn
    model = compile_source(CNN, "cnn.nr")
    without = load_weights(path, model.module, layout="torch")
    tensors = dict(safetensors_torch.load_file(str(path)))
    tensors["bn.num_batches_tracked"] = torch.tensor(7)
    safetensors_torch.save_file(tensors, str(tmp_path / "with.safetensors"))
    with_counter = load_weights(tmp_path / "with.safetensors", model.module, layout="torch")
    assert int(with_counter["bn.num_batches_tracked"]) == 7
    assert int(without["bn.num_batches_tracked"]) == 0
    a, b = (run_module(model.module, [x], w)[0] for w in (without, with_counter))
    np.testing.assert_array_equal(a, b)


def test_the_cli_flag_and_its_warning(torch_cnn, tmp_path: Path, capsys) -> None:
    path, x, want = torch_cnn
    nr, xs, out = tmp_path / "cnn.nr", tmp_path / "x.npy", tmp_path / "y.npy"
    nr.write_text(CNN)
    np.save(xs, x)
    assert main(["run", str(nr), "--weights", str(path), "--input", str(xs)]) == 0
    assert "--weights-layout torch" in capsys.readouterr().err
    assert main(["run", str(nr), "--weights", str(path), "--weights-layout", "torch",
                 "--input", str(xs), "-o", str(out)]) == 0
    assert "warning" not in capsys.readouterr().err
    np.testing.assert_allclose(np.load(out), want, rtol=1e-4, atol=1e-5)


def test_suggestions_go_by_structure_not_spelling(torch_cnn) -> None:
    """torch names conv1, bn, fc; the network's are conv2d, batch_normalization, dense. A
    suggestion by spelling would pair conv1 with conv2d_1 (another layer)."""
    path, _, _ = torch_cnn
    text = CNN.replace(', name="conv1"', "").replace('name="bn"', "").replace(', name="fc"', "")
    text = text.replace("    MaxPooling2D", '    Conv2D(4, (3, 3), padding="same")\n    MaxPooling2D')
    model = compile_source(text, "cnn.nr")
    with pytest.raises(WeightsError) as ei:
        load_weights(path, model.module)
    problems = ei.value.problems
    assert not any("did you mean 'conv2d_1" in p for p in problems)
    assert "unexpected tensor 'conv1.bias'; did you mean 'conv2d.bias'?" in problems
    # Not one to one (the network has a second conv): no mapping is offered.
    assert not any("match this network's" in p for p in problems)

    model = compile_source(CNN.replace(', name="conv1"', "").replace('name="bn"', "")
                           .replace(', name="fc"', ""), "cnn.nr")
    with pytest.raises(WeightsError) as ei:
        load_weights(path, model.module)
    problems = ei.value.problems
    assert "unexpected tensor 'conv1.weight'; did you mean 'conv2d.weight'?" in problems
    assert "unexpected tensor 'bn.running_var'; did you mean " \
           "'batch_normalization.running_var'?" in problems
    assert any(p.startswith("the file's layers match this network's in order and shape: "
                            "conv1 -> conv2d, bn -> batch_normalization, fc -> dense")
               for p in problems)


def test_the_api_takes_the_layout_for_a_state_dict(torch_cnn) -> None:
    from neuralc.api import weights_from_mapping
    from neuralc.driver import compile_source as compile_

    path, x, want = torch_cnn
    model = compile_(CNN, "cnn.nr")
    state = safetensors_torch.load_file(str(path))
    w = weights_from_mapping(state, model, layout="torch")
    (y,) = run_module(model.module, [x], w)
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)
