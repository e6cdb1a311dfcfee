"""The init function: work on weights alone is outlined, runs once per loaded model, and the
optimised tensor IR (init function included) prints, parses back and clones exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from neuralc.driver import compile_file, tensor_stage
from neuralc.ir.core import Op, func_body, init_args, network_inputs
from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.passes.pipelines import pipeline, tensor_pipeline
from neuralc.runtime import samples
from neuralc.runtime.interpreter import Interpreter, run_module
from neuralc.runtime.weights import init_weights

EXAMPLES = sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.nr"))
RESNET = Path(__file__).resolve().parents[2] / "examples" / "resnet_small.nr"


def optimised(path: Path, level: int = 2):
    model = compile_file(path)
    module, _ = tensor_stage(model, tensor_pipeline(level)[len(pipeline(level)):],
                             verify_each=True)
    return model, module


def test_folded_batchnorm_goes_to_the_init_function() -> None:
    _, m = optimised(RESNET)
    (net,) = m.networks
    init = m.init_func(net)
    assert init is not None and init.attributes["init_for"] == "ResNetSmall"
    ret = func_body(init).terminator
    assert ret is not None and len(ret.operands) == len(init_args(net)) > 0
    # The run function computes nothing on weights alone any more: only kernels read them.
    for op in func_body(net).ops:
        assert op.name in ("kernel.fused", "tensor.constant", "func.return"), op.name
    assert [a.name_hint for a in network_inputs(net)] == ["input"]
    assert verify(m) == []


def test_the_interpreter_runs_the_init_function_once_per_load() -> None:
    model, m = optimised(RESNET)
    weights = init_weights(model.module, seed=3)
    init_ops: list[Op] = []
    init = m.init_func(m.networks[0])
    assert init is not None
    inside_init = {id(op) for op in func_body(init).ops}
    interp = Interpreter(m, on_op=lambda op, _: init_ops.append(op)
                         if id(op) in inside_init else None)
    interp.load(weights)
    rng = np.random.default_rng(0)
    xs = [samples.random_inputs(model.module, {"batch": 2}, rng) for _ in range(3)]
    outs = [interp.run(x) for x in xs]
    assert interp.init_runs == 1
    assert len(init_ops) == len(func_body(init).ops) - 1  # one pass over it, return excluded
    for x, y in zip(xs, outs):
        np.testing.assert_allclose(y[0], run_module(model.module, x, weights)[0],
                                   rtol=1e-5, atol=1e-6)
    interp.run(xs[0], dict(weights))  # other weights: loaded (and the init run) again
    assert interp.init_runs == 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_optimised_tensor_ir_round_trips_and_clones(path: Path) -> None:
    _, m = optimised(path)
    text = print_module(m)
    assert print_module(parse_module(text, "rt.nir")) == text
    copy = m.clone()
    assert print_module(copy) == text
    ops = {id(op) for op in m.walk()}
    assert not any(id(op) in ops for op in copy.walk())
    copy.attributes["dims"] = {"changed": [1, 2]}
    assert print_module(m) == text
