"""The neuralc driver: subcommands, exit codes, and no traceback for any bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from neuralc.cli import main

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.nr"))
MNIST = ROOT / "examples" / "mnist_cnn.nr"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_check_prints_a_shape_table_for_every_example(capsys, path):
    code, out, err = run(capsys, "check", path)
    assert code == 0, err
    assert "output shape" in out and "FLOPs/sample" in out
    assert "total:" in out and "parameters" in out


def test_check_table_contents(capsys):
    code, out, _ = run(capsys, "check", MNIST)
    assert code == 0
    lines = out.splitlines()
    row = next(line for line in lines if line.startswith("conv2d "))
    assert "(batch, 26, 26, 32)" in row and " 320 " in row  # 3*3*1*32 + 32
    row = next(line for line in lines if line.startswith("dense "))
    assert "(batch, 128)" in row and "204,928" in row  # 1600*128 + 128
    assert "(batch, 10)" in next(line for line in lines if line.startswith("output "))


def test_emit_graph_ir_and_opt_round_trip(capsys, tmp_path):
    code, text, _ = run(capsys, MNIST, "--emit", "graph-ir")
    assert code == 0
    assert '"graph.conv2d"' in text and "tensor<batch x 26 x 26 x 32 x f32>" in text
    f = tmp_path / "m.nir"
    f.write_text(text)
    code, again, _ = run(capsys, "opt", f, "--passes=shape-infer")
    assert code == 0
    assert again == text


def test_run_with_input_file_and_output(capsys, tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 28, 28, 1)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code, out, err = run(capsys, "run", MNIST, "--input", tmp_path / "x.npy", "-o", tmp_path / "y.npy")
    assert code == 0, err
    y = np.load(tmp_path / "y.npy")
    assert y.shape == (3, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)  # softmax output


def test_run_named_inputs(capsys, tmp_path):
    rng = np.random.default_rng(0)
    np.save(tmp_path / "img.npy", rng.standard_normal((2, 32, 32, 3)).astype(np.float32))
    np.save(tmp_path / "meta.npy", rng.standard_normal((2, 10)).astype(np.float32))
    code, out, err = run(capsys, "run", ROOT / "examples" / "two_inputs.nr",
                         "--input", f"meta={tmp_path / 'meta.npy'}",
                         "--input", f"image={tmp_path / 'img.npy'}")
    assert code == 0, err
    assert "shape (2, 3)" in out


def test_run_refuses_wrong_shape_and_dtype(capsys, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 28, 28), np.float32))
    code, _, err = run(capsys, "run", MNIST, "--input", tmp_path / "bad.npy")
    assert code == 1
    assert "error:" in err and "(batch, 28, 28, 1)" in err and "Traceback" not in err
    np.save(tmp_path / "strs.npy", np.array(["a", "b"]))
    code, _, err = run(capsys, "run", MNIST, "--input", tmp_path / "strs.npy")
    assert code == 1 and "Traceback" not in err


def test_run_weights_round_trip(capsys, tmp_path):
    w = tmp_path / "w.safetensors"
    code, out1, _ = run(capsys, "run", MNIST, "--random", "--seed", "4", "--save-weights", w)
    assert code == 0
    code, out2, _ = run(capsys, "run", MNIST, "--random", "--seed", "4", "--weights", w)
    assert code == 0 and out1 == out2


def test_bad_weights_file_is_a_clear_error(capsys, tmp_path):
    bad = tmp_path / "w.safetensors"
    bad.write_bytes(b"not a safetensors file")
    code, _, err = run(capsys, "run", MNIST, "--random", "--weights", bad)
    assert code == 1 and "error:" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    ["check"],
    ["check", "no/such/file.nr"],
    ["run", str(MNIST)],
    [str(MNIST), "--target", "tensorrt"],  # TensorRT is not installed in the tests
    [str(MNIST), "-O", "7"],
    [str(MNIST), "--bogus-flag"],
    ["check", str(MNIST), "--hparam", "nothing"],
    ["opt", str(MNIST), "--passes=shape-infr"],
])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as ei:
        code = main(argv)
        raise SystemExit(code)
    assert ei.value.code == 2
    assert "Traceback" not in capsys.readouterr().err


def test_model_errors_exit_1(capsys, tmp_path):
    f = tmp_path / "bad.nr"
    f.write_text("network N {\n  input: (4,)\n  layers:\n    Dense(0)\n}\n")
    code, _, err = run(capsys, "check", f)
    assert code == 1
    assert f"{f}:4:11: error: Dense: 'units' must be a positive integer, got 0" in err


def test_several_networks_need_network_flag(capsys, tmp_path):
    """run and compile need --network; check checks every network (issue 15)."""
    f = tmp_path / "two.nr"
    f.write_text("network A { input: (2,) layers: Dense(1) }\nnetwork B { input: (3,) layers: Dense(2) }\n")
    code, _, err = run(capsys, "run", f, "--random")
    assert code == 2 and "A, B" in err
    code, out, _ = run(capsys, "check", f)
    assert code == 0 and "network A" in out and "network B" in out
    code, out, _ = run(capsys, "check", f, "--network", "B")
    assert code == 0 and "network B" in out and "network A" not in out


def test_console_script_runs_without_traceback(tmp_path):
    exe = Path(sys.executable).parent / "neuralc"
    f = tmp_path / "typo.nr"
    f.write_text("network N {\n  input: (4,)\n  layers:\n    Dens(3)\n}\n")
    p = subprocess.run([str(exe), "check", str(f)], capture_output=True, text=True)
    assert p.returncode == 1
    assert "4:5: error: unknown layer 'Dens'; did you mean 'Dense'?" in p.stderr
    assert "Traceback" not in p.stderr


def test_layers_markdown_lists_the_catalog(capsys):
    code, out, _ = run(capsys, "layers", "--markdown")
    assert code == 0
    for name in ("Conv2D", "BatchNormalization", "ResidualConnection", "Concatenate", "Embedding"):
        assert f"| {name}" in out


def test_inputs_that_are_not_numeric_npy_files_are_refused_plainly(capsys, tmp_path):
    not_npy = tmp_path / "x.onnx"
    not_npy.write_bytes(b"\x08\x07\x12\x00binary")
    code, _, err = run(capsys, "run", MNIST, "--input", not_npy)
    assert code == 1 and "is not a .npy file" in err
    objects = tmp_path / "obj.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    code, _, err = run(capsys, "run", MNIST, "--input", objects)
    assert code == 1 and "holds Python objects" in err and "allow_pickle" not in err


@pytest.mark.parametrize("argv,message", [
    (["--batch", "-1"], "expected a positive integer"),
    (["--seed", "-1"], "expected a non-negative integer"),
    (["--dim", "foo=3"], "the model has no symbolic dim 'foo'"),
])
def test_random_run_flags_are_checked(capsys, argv, message):
    with pytest.raises(SystemExit) as ei:
        raise SystemExit(main(["run", str(MNIST), "--random", *argv]))
    assert ei.value.code == 2 and message in capsys.readouterr().err


def test_output_path_is_reported_as_written(capsys, tmp_path):
    """-o writes exactly the path given (no .npy appended to a path the user chose)."""
    code, out, _ = run(capsys, "run", MNIST, "--random", "-o", tmp_path / "y")
    assert code == 0 and f"wrote {tmp_path / 'y'}" in out
    assert np.load(tmp_path / "y").shape == (2, 10) and not (tmp_path / "y.npy").exists()
