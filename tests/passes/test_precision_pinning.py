"""precision="fp32" on a layer pins it to full precision under --precision fp16/bf16/mixed, and
execution { precision } is the model's default precision."""

from __future__ import annotations

import numpy as np
import pytest

from neuralc.cli import main
from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import compile_source, tensor_stage
from neuralc.ir.core import Module
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

SRC = """network P {
  input: (16,)
  layers:
    Dense(32, "relu")
    Dense(8, precision="fp32", name="pinned")
    Output(4)
  execution { precision: "fp16" }
}
"""


def matmuls(module: Module) -> dict[str, tuple[str, str]]:
    out = {}
    for op in module.walk():
        if op.name == "tensor.matmul":
            line = str(op.location).split(":")[1]
            out[line] = (op.operands[0].type.dtype, op.operands[1].type.dtype)
    return out


@pytest.mark.parametrize("mode", ["fp16", "bf16", "mixed"])
def test_pinned_layer_stays_fp32(mode):
    m = compile_source(SRC, "p.nr")
    low, _ = tensor_stage(m, tensor_pipeline(2, mode)[len(pipeline(2)):], verify_each=True)
    kinds = matmuls(low)
    low_type = "bf16" if mode == "bf16" else "f16"
    assert kinds["4"] == (low_type, low_type)  # Dense(32): low precision
    assert kinds["5"] == ("f32", "f32")  # the pinned layer
    assert kinds["6"] == (low_type, low_type)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    w = init_weights(m.module)
    (ref,) = run_module(m.module, [x], w)
    (y,) = run_module(low, [x], w)
    assert np.abs(y - ref).max() <= 3e-2 * max(1.0, np.abs(ref).max())  # see test_differential


def test_only_fp32_can_be_pinned():
    with pytest.raises(CompileError) as ei:
        compile_source(SRC.replace('precision="fp32"', 'precision="fp16"'), "p.nr")
    out = render_all(ei.value.diagnostics)
    assert "p.nr:5:24: error: a layer's precision can only pin it to full precision" in out


def test_execution_precision_is_the_default_and_the_flag_overrides_it(tmp_path, capsys):
    f = tmp_path / "p.nr"
    f.write_text(SRC)
    assert main([str(f), "--emit", "tensor-ir"]) == 0
    assert "f16" in capsys.readouterr().out
    assert main([str(f), "--emit", "tensor-ir", "--precision", "fp32"]) == 0
    assert "f16" not in capsys.readouterr().out
