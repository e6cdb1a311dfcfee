"""The Python API: calling conventions, torch tensors, the signature, weights, check, errors."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from api_helpers import EXAMPLES, MNIST, ROOT, SEQUENCE, TEXT, TWO_INPUTS

import neuralc
from neuralc.cli import main
from neuralc.diagnostics import render_all
from neuralc.runtime.weights import init_weights, save_weights


@pytest.fixture(scope="module")
def two_inputs():
    return neuralc.compile(TWO_INPUTS, target="reference")


def test_import_is_lazy_and_the_api_resolves():
    code = ("import sys, neuralc; assert 'neuralc.api' not in sys.modules; "
            "assert 'numpy' not in sys.modules; f = neuralc.compile; "
            "assert 'neuralc.api' in sys.modules and callable(f); print(neuralc.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == neuralc.__version__
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        neuralc.nope  # noqa: B018


def test_named_positional_list_and_dict_inputs_agree(two_inputs, make_inputs):
    image, meta = make_inputs(two_inputs)
    y = two_inputs(image=image, meta=meta)
    np.testing.assert_array_equal(two_inputs([image, meta]), y)
    np.testing.assert_array_equal(two_inputs(image, meta), y)
    np.testing.assert_array_equal(two_inputs({"meta": meta, "image": image}), y)
    assert y.shape == (2, 3)


@pytest.mark.parametrize("call, message", [
    (lambda m, a, b: m(image=a), "missing input 'meta'; the inputs are: image, meta"),
    (lambda m, a, b: m(image=a, meta=b, imag=a), "unknown input 'imag'"),
    (lambda m, a, b: m(a, meta=b), "by position or by name, not both"),
    (lambda m, a, b: m(), "no input given; the inputs are: image, meta"),
    (lambda m, a, b: m(a), "wrong number of inputs: expected 2 (image, meta), got one array"),
    (lambda m, a, b: m(a[:, :8], b), "input 'image' has shape (2, 8, 32, 3), expected "
                                     "(batch, 32, 32, 3): dim 1 is 8, expected 32"),
    (lambda m, a, b: m(a, b[:1]), "input 'meta' has shape (1, 10), expected (batch, 10): dim 0 "
                                  "is 1 but batch is 2 from input 'image'"),
])
def test_bad_inputs_are_input_errors(two_inputs, make_inputs, call, message):
    image, meta = make_inputs(two_inputs)
    with pytest.raises(neuralc.InputError) as e:
        call(two_inputs, image, meta)
    assert message in str(e.value)


@pytest.mark.parametrize("target", ["onnx", "reference"])
def test_torch_tensors_in_torch_tensors_out(target, make_inputs):
    torch = pytest.importorskip("torch")
    model = neuralc.compile(TWO_INPUTS, target=target)
    image, meta = make_inputs(model)
    want = model(image=image, meta=meta)
    t_image = torch.from_numpy(image).requires_grad_(True)
    y = model(image=t_image, meta=torch.from_numpy(meta))
    assert isinstance(y, torch.Tensor) and y.device == t_image.device and y.dtype == torch.float32
    np.testing.assert_array_equal(y.numpy(), want)
    # Mixed numpy and torch inputs: torch out.
    assert isinstance(model(image, torch.from_numpy(meta)), torch.Tensor)


def test_torch_integer_token_inputs(make_inputs):
    torch = pytest.importorskip("torch")
    model = neuralc.compile(TEXT, target="onnx")
    (tokens,) = make_inputs(model)
    y = model(torch.from_numpy(tokens))
    np.testing.assert_array_equal(y.numpy(), model(tokens))
    with pytest.raises(neuralc.InputError, match="expected integer indices"):
        model(torch.from_numpy(tokens).float())


def test_numpy_calls_do_not_import_torch():
    code = ("import sys, warnings, numpy as np, neuralc; "
            f"m = neuralc.compile({str(MNIST)!r}); "
            "y = m(np.zeros((1, 28, 28, 1), np.float32)); "
            "assert type(y) is np.ndarray and 'torch' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_signature_names_dims_ranges_and_dtypes():
    sig = neuralc.compile(SEQUENCE, target="reference").signature
    assert [str(t) for t in sig.inputs] == ["input: (batch, seq, 32) float32"]
    assert [str(t) for t in sig.outputs] == ["dense: (batch, 5) float32"]
    assert [str(d) for d in sig.dims] == ["batch: 1..64 (nominal 1)", "seq: 8..512 (nominal 64)"]
    text = neuralc.compile(TEXT, target="reference").signature
    assert text.inputs[0].dtype == "int64" and text.inputs[0].shape == ("batch", "seq")
    unet = neuralc.compile(ROOT / "examples" / "unet_symbolic.nr", target="reference").signature
    assert "h: 16..256 step 8 (nominal 64)" in str(unet)


def test_model_describes_what_runs(two_inputs):
    assert two_inputs.name == "ImageAndMeta"
    assert (two_inputs.target, two_inputs.device, two_inputs.precision) == ("reference", "cpu",
                                                                             "fp32")
    assert repr(two_inputs) == ("<neuralc.Model ImageAndMeta: reference on cpu; inputs "
                                "image: (batch, 32, 32, 3) float32, meta: (batch, 10) float32>")
    assert two_inputs.selection_report.startswith(
        "ImageAndMeta: running variant 'reference' on cpu")


def test_compile_from_source_text_and_hparams():
    source = (ROOT / "examples" / "hpo.nr").read_text()
    with pytest.warns(neuralc.NeuralcWarning, match="unresolved hyperparameters take"):
        defaulted = neuralc.compile(source, target="reference")
    hp = {"dense.units": 256}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)
        chosen = neuralc.compile(source, target="reference", hparams=hp)
    assert chosen.manifest["model"]["hparams"]["dense.units"] == 256
    assert defaulted.manifest["model"]["hparams"]["dense.units"] == 128
    assert chosen.manifest["model"]["source_file"] == "<string>"
    assert defaulted.manifest["model"]["hparams"] != chosen.manifest["model"]["hparams"]
    with pytest.raises(neuralc.UsageError, match="no such hyperparameter"):
        neuralc.compile(source, hparams={"nope.units": 3})


def test_weights_from_a_file_a_dict_and_a_state_dict(tmp_path, make_inputs):
    base = neuralc.compile(MNIST, target="reference")
    weights = init_weights(base.compiled_model.module, seed=7)
    save_weights(tmp_path / "w.safetensors", weights)
    from_file = neuralc.compile(MNIST, target="reference", weights=tmp_path / "w.safetensors")
    from_dict = neuralc.compile(MNIST, target="reference", weights=weights)
    seeded = neuralc.compile(MNIST, target="reference", seed=7)
    (x,) = make_inputs(base)
    y = from_file(x)
    np.testing.assert_array_equal(from_dict(x), y)
    np.testing.assert_array_equal(seeded(x), y)
    assert not np.array_equal(base(x), y)
    torch = pytest.importorskip("torch")
    state = {k: torch.from_numpy(v) for k, v in weights.items()}
    np.testing.assert_array_equal(neuralc.compile(MNIST, target="onnx", weights=state)(x),
                                  neuralc.compile(MNIST, target="onnx", weights=weights)(x))


def test_bad_weights_are_weights_errors():
    weights = init_weights(neuralc.compile(MNIST, target="reference").compiled_model.module)
    del weights["dense.bias"]
    weights["dense.weight"] = weights["dense.weight"].T
    with pytest.raises(neuralc.WeightsError) as e:
        neuralc.compile(MNIST, weights=weights)
    assert e.value.problems == [
        "missing tensor for Dense layer 'dense': dense.bias",
        "dense.weight has shape (1600, 128), expected (128, 1600) (it looks transposed: "
        "neuralc uses PyTorch's (out, in) layout, not Keras's)"]
    with pytest.raises(neuralc.WeightsError, match="does not exist"):
        neuralc.compile(MNIST, weights="no/such.safetensors")


BAD = "network N {\n  input: (4,)\n  layers:\n    Dense(0)\n    Conv2D(8, (3, 3))\n}\n"


def test_check_returns_the_cli_diagnostics(tmp_path, capsys):
    path = tmp_path / "bad.nr"
    path.write_text(BAD)
    diagnostics = neuralc.check(path)
    assert [d.severity for d in diagnostics] == ["error"]
    assert diagnostics[0].location is not None
    code = main(["check", str(path)])
    assert code == 1
    assert capsys.readouterr().err == render_all(diagnostics) + "\n"
    warned = neuralc.check(ROOT / "examples" / "hpo.nr")
    assert [d.severity for d in warned] == ["warning"]
    assert neuralc.check(MNIST) == []


def test_model_errors_raise_compile_error_with_diagnostics():
    with pytest.raises(neuralc.CompileError) as e:
        neuralc.compile(BAD)
    assert "Dense: 'units' must be a positive integer, got 0" in str(e.value)
    assert str(e.value.diagnostics[0].location).startswith("<string>:4:")


@pytest.mark.parametrize("kwargs, message", [
    ({"target": "pytorch"}, "writes source code"),
    ({"target": "tpu"}, "unknown target 'tpu'"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
    ({"opt": 7}, "opt must be 0, 1, 2 or 3"),
    ({"precision": "fp8"}, "unknown precision 'fp8'"),
    ({"network": "Nope"}, "has no network 'Nope'"),
])
def test_bad_arguments_are_usage_errors(kwargs, message):
    with pytest.raises(neuralc.UsageError, match=message):
        neuralc.compile(MNIST, **kwargs)


def test_missing_files():
    with pytest.raises(FileNotFoundError, match="no such model file"):
        neuralc.compile("no/such/model.nr")
    with pytest.raises(FileNotFoundError, match="no such artifact"):
        neuralc.load("no/such/model.ncz")


def test_fp16_keeps_float32_io_and_bf16_builds_no_onnx(make_inputs):
    fp32 = neuralc.compile(MNIST, target="reference")
    (x,) = make_inputs(fp32)
    for target in ("onnx", "reference"):
        half = neuralc.compile(MNIST, target=target, precision="fp16")
        y = half(x)
        assert y.dtype == np.float32 and half.precision == "fp16"
        np.testing.assert_allclose(y, fp32(x), atol=2e-3)
    bf16 = neuralc.compile(MNIST, precision="bf16")
    assert bf16.variants[-1] == "reference" and "onnx" not in bf16.variants
    assert bf16.manifest["not_built"]["onnx"].startswith("precision bf16:")
    with pytest.raises(neuralc.BackendUnavailable, match="target 'onnx': precision bf16"):
        neuralc.compile(MNIST, target="onnx", precision="bf16")


def test_auto_builds_native_cpu_code_and_says_why_cuda_is_absent():
    """auto builds the cpu code this machine runs, onnx and the reference; with no GPU here and
    no --arch, the report says why cuda is absent and how to ask for it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", neuralc.NeuralcWarning)
        model = neuralc.compile(EXAMPLES[0])
    assert [v for v in model.variants if v.startswith("cpu-")], model.variants
    assert model.variants[-2:] == ["onnx", "reference"]
    if "cuda" not in model.variants:
        assert "--arch" in model.manifest["not_built"]["cuda"]


