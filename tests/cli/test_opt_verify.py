"""neuralc opt verifies its input before any pass: invalid IR is a located error, never a crash."""

import pytest

from neuralc.cli import main

HEAD = "module @m {\n  func.func @f(%x: tensor<batch x 4 x f32>) -> (tensor<batch x 4 x f32>) {\n"
TAIL = '    "func.return"(%0) : (tensor<batch x 4 x f32>) -> ()\n  }\n}\n'


@pytest.mark.parametrize("body,message", [
    ('    %0 = "tensor.binary"(%x) {fn = "add"} : (tensor<batch x 4 x f32>) -> tensor<batch x 4 x f32>\n',
     "tensor.binary: expects 2 operand(s), got 1"),
    ('    %0 = "tensor.unary"(%x) : (tensor<batch x 4 x f32>) -> tensor<batch x 4 x f32>\n',
     "tensor.unary: is missing attribute 'fn'"),
])
def test_invalid_ops_are_reported_before_passes(tmp_path, capsys, body, message):
    f = tmp_path / "bad.nir"
    f.write_text(HEAD + body + TAIL)
    assert main(["opt", str(f), "--passes=shape-infer,canonicalize,fuse"]) == 1
    assert message in capsys.readouterr().err


def test_bad_dims_attribute_is_reported(tmp_path, capsys):
    f = tmp_path / "dims.nir"
    f.write_text('module @m attributes {dims = 3} {\n  func.func @f(%x: tensor<n x f32>) -> '
                 '(tensor<n x f32>) {\n    "func.return"(%x) : (tensor<n x f32>) -> ()\n  }\n}\n')
    assert main(["opt", str(f), "--passes=shape-infer"]) == 1
    assert "'dims' must map symbols to [lo, hi] ranges" in capsys.readouterr().err


def test_a_tensor_pass_on_graph_ir_is_refused(capsys):
    from pathlib import Path

    mnist = Path(__file__).resolve().parents[2] / "examples" / "mnist_cnn.nr"
    assert main([str(mnist), "--emit", "kernels", "--passes=fuse"]) == 1
    assert "pass 'fuse' runs on tensor IR" in capsys.readouterr().err
