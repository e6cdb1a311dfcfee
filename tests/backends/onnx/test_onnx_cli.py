"""``neuralc MODEL.nr --target onnx`` and ``neuralc run MODEL.nr --target onnx``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from neuralc.cli import main
from neuralc.runtime.weights import init_weights, save_weights

ROOT = Path(__file__).resolve().parents[3]
MNIST = ROOT / "examples" / "mnist_cnn.nr"
SEQ = ROOT / "examples" / "sequence_dims.nr"
LSTM = ROOT / "examples" / "lstm_text_classifier.nr"


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compile_writes_a_checked_onnx_file(capsys, tmp_path: Path) -> None:
    out = tmp_path / "digits.onnx"
    code, stdout, err = run(capsys, MNIST, "--target", "onnx", "-o", out)
    assert code == 0, err
    assert stdout == f"wrote {out}\n"
    onnx.checker.check_model(str(out), full_check=True)
    m = onnx.load(str(out))
    assert [(o.domain, o.version) for o in m.opset_import] == [("", 17)]
    assert m.ir_version == 8


def test_compile_names_the_file_after_the_model(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(capsys, MNIST, "--target", "onnx")
    assert code == 0, err
    assert stdout == "wrote mnist_cnn.onnx\n"
    assert (tmp_path / "mnist_cnn.onnx").exists()


def test_compile_opset_and_fp16(capsys, tmp_path: Path) -> None:
    out = tmp_path / "seq.onnx"
    code, _, err = run(capsys, SEQ, "--target", "onnx", "--opset", "21", "--precision", "fp16",
                       "--keep-io-fp32", "-o", out)
    assert code == 0, err
    m = onnx.load(str(out))
    assert m.opset_import[0].version == 21 and m.ir_version == 10
    assert m.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in m.graph.initializer}


def test_compile_with_weights_file(capsys, tmp_path: Path) -> None:
    from neuralc.driver import compile_file

    weights = init_weights(compile_file(MNIST).module, seed=7)
    save_weights(tmp_path / "w.safetensors", weights)
    out = tmp_path / "m.onnx"
    code, _, err = run(capsys, MNIST, "--target", "onnx", "--weights", tmp_path / "w.safetensors",
                       "-o", out)
    assert code == 0, err
    inits = {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(out)).graph.initializer}
    np.testing.assert_array_equal(inits["conv2d.weight"], weights["conv2d.weight"])


@pytest.mark.parametrize(("path", "extra"), [(MNIST, ["--batch", "3"]),
                                             (SEQ, ["--batch", "2", "--dim", "seq=40"]),
                                             (LSTM, ["--dim", "seq=7"])])
def test_run_matches_the_reference(capsys, tmp_path: Path, path: Path, extra: list[str]) -> None:
    code, out, err = run(capsys, "run", path, "--target", "onnx", "--random", *extra,
                         "-o", tmp_path / "onnx.npy")
    assert code == 0, err
    assert out.startswith("output: shape (")
    code, _, err = run(capsys, "run", path, "--random", *extra, "-o", tmp_path / "ref.npy")
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "ref.npy"),
                               rtol=1e-4, atol=1e-5)


def test_run_fp16_returns_float16(capsys) -> None:
    code, out, err = run(capsys, "run", MNIST, "--target", "onnx", "--random", "--precision",
                         "fp16")
    assert code == 0, err
    assert "float16" in out
    code, out, err = run(capsys, "run", MNIST, "--target", "onnx", "--random", "--precision",
                         "fp16", "--keep-io-fp32")
    assert code == 0, err
    assert "float32" in out


def test_run_checks_the_input(capsys, tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 28, 28, 3), np.float32))
    code, _, err = run(capsys, "run", MNIST, "--target", "onnx", "--input", tmp_path / "x.npy")
    assert code == 1
    assert err == ("neuralc: error: input 'input' has shape (2, 28, 28, 3), expected "
                   "(batch, 28, 28, 1): dim 3 is 3, expected 1\n")


def test_old_opset_is_a_located_error(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, MNIST, "--target", "onnx", "--opset", "11", "-o",
                       tmp_path / "m.onnx")
    assert code == 1
    assert "mnist_cnn.nr:12:5: error: onnx cannot express Output 'output'" in err
    assert "use --opset 13 or newer" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("flags", [["--precision", "bf16"], ["--opset", "27"]])
def test_bad_options_are_usage_errors(capsys, tmp_path: Path, flags: list[str]) -> None:
    code, _, err = run(capsys, MNIST, "--target", "onnx", *flags, "-o", tmp_path / "m.onnx")
    assert code == 2
    assert err.startswith("neuralc: error: ")
