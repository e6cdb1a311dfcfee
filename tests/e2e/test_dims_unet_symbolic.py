"""examples/unet_symbolic.nr: a U-Net on (h, w, 3) whose skip connections check symbolically
thanks to the steps in its dims { }, runs at several sizes, and computes what the static
examples/unet_small.nr computes at 64x64 with the same weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuralc.cli import main
from neuralc.driver import compile_file
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.signature import InputError
from neuralc.runtime.weights import init_weights

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SYMBOLIC = EXAMPLES / "unet_symbolic.nr"
STATIC = EXAMPLES / "unet_small.nr"


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_it_checks_with_natural_types(capsys) -> None:
    code, out, err = run(capsys, "check", SYMBOLIC)
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line[:1].isalpha()}
    assert "(batch, h floordiv 2, w floordiv 2, 8)" in rows["max_pooling2d"]
    assert "(batch, (h + 2) floordiv 4, (w + 2) floordiv 4, 32)" in rows["conv2d_2"]
    assert "(batch, h floordiv 2, w floordiv 2, 32)" in rows["concatenate_1"]
    assert "(batch, h, w, 16)" in rows["concatenate"]
    assert "(batch, h, w, 3)" in rows["conv2d_7"]


def test_module_carries_the_facts_and_round_trips() -> None:
    module = compile_file(SYMBOLIC).module
    assert module.attributes["dims"] == {"h": [16, 256, 8], "w": [16, 256, 8]}
    assert module.attributes["dim_nominal"] == {"batch": 1, "h": 64, "w": 64}
    text = print_module(module)
    assert print_module(parse_module(text, "u.nir")) == text
    assert "tensor<batch x (h floordiv 2) x (w floordiv 2) x 32 x f32>" in text


@pytest.mark.parametrize("h, w", [(32, 48), (64, 64), (16, 256)])
def test_it_runs_at_several_sizes(capsys, tmp_path: Path, h: int, w: int) -> None:
    y = tmp_path / "y.npy"
    code, out, err = run(capsys, "run", SYMBOLIC, "--random", "--batch", 1, "--dim", f"h={h}",
                         "--dim", f"w={w}", "-o", y)
    assert code == 0, err
    out_y = np.load(y)
    assert out_y.shape == (1, h, w, 3)
    np.testing.assert_allclose(out_y.sum(axis=-1), 1.0, rtol=1e-5)  # a softmax per pixel


def test_it_matches_the_static_unet_at_64x64(capsys, tmp_path: Path) -> None:
    weights, ys = tmp_path / "w.safetensors", tmp_path / "ys.npy"
    code, _, err = run(capsys, "run", SYMBOLIC, "--random", "--dim", "h=64", "--dim", "w=64",
                       "--save-weights", weights, "-o", ys)
    assert code == 0, err
    yt = tmp_path / "yt.npy"
    code, _, err = run(capsys, "run", STATIC, "--random", "--weights", weights, "-o", yt)
    assert code == 0, err
    np.testing.assert_allclose(np.load(ys), np.load(yt), rtol=1e-5, atol=1e-6)


def test_graph_ir_matches_the_static_unet_on_the_same_input() -> None:
    symbolic, static = compile_file(SYMBOLIC).module, compile_file(STATIC).module
    weights = init_weights(static, seed=4)
    assert sorted(init_weights(symbolic, seed=4)) == sorted(weights)
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3)).astype(np.float32)
    (a,) = run_module(symbolic, [x], weights)
    (b,) = run_module(static, [x], weights)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_a_size_off_the_step_is_refused(capsys) -> None:
    code, out, err = run(capsys, "run", SYMBOLIC, "--random", "--dim", "h=36", "--dim", "w=48")
    assert code == 2 and out == ""  # a size the model cannot take is a bad flag
    assert "--dim h=36: h must be a multiple of 8 (dims { h: 16..256 step 8 })" in err
    assert "Traceback" not in err


def test_the_interpreter_refuses_it_before_running_anything() -> None:
    module = compile_file(SYMBOLIC).module
    x = np.zeros((1, 64, 44, 3), np.float32)
    with pytest.raises(InputError, match="dim 2 is 44, but w must be a multiple of 8"):
        run_module(module, [x], init_weights(module))
