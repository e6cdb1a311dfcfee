"""The reference interpreter against numpy formulas, torch.nn.Linear, and its own checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from neuralc.ir.core import Module, Op, Value, func_body, func_op
from neuralc.ir.dims import sym
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.runtime.interpreter import (
    Interpreter,
    InterpreterError,
    NotExecutableError,
    run_module,
)
from neuralc.runtime.signature import InputError
from neuralc.runtime.weights import init_weights

B = sym("batch")


def dense(v: Value, name: str, units: int, activation: str = "relu", bias: bool = True,
          op_name: str = "graph.dense", result: TensorType | None = None) -> Op:
    """A Dense-like op on ``v``, appended to ``v``'s block."""
    assert v.type.shape is not None
    out = result or TensorType(v.type.shape[:-1] + (units,))
    op = Op(op_name, [v], [out],
            {"units": units, "activation": activation, "use_bias": bias, "name": name})
    block = func_body(FUNC[-1])
    block.append(op)
    return op


FUNC: list[Op] = []  # the func the helpers are building (tests build one at a time)


def start(inputs: list[tuple[str, TensorType]], name: str = "net") -> list[Value]:
    f = func_op(name, [t for _, t in inputs], [n for n, _ in inputs])
    FUNC.append(f)
    return list(func_body(f).args)


def finish(*outputs: Value, module: Module | None = None) -> Module:
    f = FUNC.pop()
    func_body(f).append(Op("func.return", list(outputs)))
    m = module or Module("m")
    m.body.append(f)
    return m


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def mlp() -> Module:
    (x,) = start([("x", TensorType((B, 6)))])
    h = dense(x, "dense", 8, "relu")
    y = dense(h.result, "output", 3, "softmax", op_name="graph.output")
    return finish(y.result)


def test_mlp_matches_numpy_formula() -> None:
    m = mlp()
    w = init_weights(m)
    x = np.random.default_rng(0).standard_normal((5, 6)).astype(np.float32)
    (y,) = run_module(m, [x], w)
    h = relu(x @ w["dense.weight"].T + w["dense.bias"])
    expect = softmax(h @ w["output.weight"].T + w["output.bias"])
    assert y.dtype == np.float32 and y.shape == (5, 3)
    np.testing.assert_allclose(y, expect, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=1e-5)


def test_dense_matches_torch_linear() -> None:
    import torch
    (x,) = start([("x", TensorType((B, 7, 16)))])
    y = dense(x, "fc", 5, "linear")
    m = finish(y.result)
    lin = torch.nn.Linear(16, 5)
    w = {f"fc.{k}": v.detach().numpy() for k, v in lin.state_dict().items()}
    xs = np.random.default_rng(1).standard_normal((2, 7, 16)).astype(np.float32)
    (out,) = run_module(m, {"x": xs}, w)
    expect = lin(torch.from_numpy(xs)).detach().numpy()
    assert out.shape == (2, 7, 5)
    np.testing.assert_allclose(out, expect, rtol=1e-5, atol=1e-5)


def test_dense_without_bias() -> None:
    (x,) = start([("x", TensorType((B, 4)))])
    y = dense(x, "fc", 2, "linear", bias=False)
    m = finish(y.result)
    w = {"fc.weight": np.array([[1.0, 0.0, -1.0, 2.0], [0.5, 0.5, 0.5, 0.5]], np.float32)}
    (out,) = run_module(m, [np.array([[1.0, 2.0, 3.0, 4.0]], np.float32)], w)
    assert out.tolist() == [[6.0, 5.0]]


def test_several_inputs_and_outputs() -> None:
    a, b = start([("a", TensorType((B, 3))), ("b", TensorType((B, 4)))])
    ya = dense(a, "da", 2, "linear")
    yb = dense(b, "db", 2, "tanh")
    m = finish(ya.result, yb.result, a)
    w = init_weights(m)
    xa = np.ones((2, 3), np.float32)
    xb = np.full((2, 4), -1.0, np.float32)
    oa, ob, passthrough = run_module(m, {"b": xb, "a": xa}, w)
    np.testing.assert_allclose(oa, xa @ w["da.weight"].T + w["da.bias"], rtol=1e-6)
    np.testing.assert_allclose(ob, np.tanh(xb @ w["db.weight"].T + w["db.bias"]), rtol=1e-6)
    np.testing.assert_array_equal(passthrough, xa)


def test_float64_inputs_and_weights_are_cast() -> None:
    m = mlp()
    w = {k: v.astype(np.float64) for k, v in init_weights(m).items()}
    (y,) = run_module(m, [np.zeros((2, 6), np.float64)], w)
    assert y.dtype == np.float32


def test_hook_sees_every_op_and_values_are_kept() -> None:
    m = mlp()
    w = init_weights(m)
    seen: list[tuple[str, tuple[int, ...]]] = []

    def hook(op: Op, outputs: list[np.ndarray]) -> None:
        seen.append((op.attributes["name"], outputs[0].shape))

    interp = Interpreter(m, on_op=hook)
    x = np.random.default_rng(2).standard_normal((3, 6)).astype(np.float32)
    (y,) = interp.run([x], w)
    assert seen == [("dense", (3, 8)), ("output", (3, 3))]
    ops = func_body(m.func()).ops
    hidden = interp.values[ops[0].result]
    np.testing.assert_allclose(hidden, relu(x @ w["dense.weight"].T + w["dense.bias"]),
                               rtol=1e-6)
    assert interp.values[ops[1].result] is y


def test_named_network() -> None:
    m = mlp()
    (x,) = start([("z", TensorType((B, 2)))], name="other")
    finish(dense(x, "o", 1, "linear").result, module=m)
    w = {"o.weight": np.array([[2.0, 3.0]], np.float32), "o.bias": np.array([1.0], np.float32)}
    (y,) = run_module(m, [np.array([[1.0, 1.0]], np.float32)], w, func_name="other")
    assert y.tolist() == [[6.0]]


def test_inputs_are_checked_first() -> None:
    m = mlp()
    with pytest.raises(InputError, match=r"input 'x' has shape \(2, 5\), expected \(batch, 6\)"):
        run_module(m, [np.zeros((2, 5), np.float32)], init_weights(m))


def test_dims_ranges_of_the_module_apply() -> None:
    m = mlp()
    m.attributes["dims"] = {"batch": [1, 4]}
    with pytest.raises(InputError, match=r"outside the range of batch \(1\.\.4\)"):
        run_module(m, [np.zeros((5, 6), np.float32)], init_weights(m))


def test_op_without_catalog_entry_is_not_executable() -> None:
    (x,) = start([("x", TensorType((B, 6)))])
    op = Op("test.mystery", [x, x], [TensorType((B, B))])
    func_body(FUNC[-1]).append(op)
    m = finish(op.result)
    with pytest.raises(NotExecutableError, match="test.mystery at <unknown> cannot be run by "
                                                 "the reference interpreter"):
        run_module(m, [np.zeros((1, 6), np.float32)], {})


def test_unknown_graph_op_is_not_executable() -> None:
    (x,) = start([("x", TensorType((B, 6)))])
    y = dense(x, "mystery", 2, op_name="graph.mystery_layer")
    m = finish(y.result)
    with pytest.raises(NotExecutableError, match="graph.mystery_layer 'mystery'"):
        run_module(m, [np.zeros((1, 6), np.float32)], {})


def test_missing_weight_names_the_layer() -> None:
    m = mlp()
    w = init_weights(m)
    del w["output.bias"]
    with pytest.raises(InterpreterError, match="no weight 'output.bias' for Output layer "
                                               "'output'; pass init_weights"):
        run_module(m, [np.zeros((1, 6), np.float32)], w)


def test_weight_of_wrong_shape() -> None:
    m = mlp()
    w = init_weights(m)
    w["dense.weight"] = w["dense.weight"].T
    with pytest.raises(InterpreterError, match=r"weight 'dense.weight' has shape \(6, 8\), "
                                               r"expected \(8, 6\)"):
        run_module(m, [np.zeros((1, 6), np.float32)], w)


def test_result_shape_disagreeing_with_its_type_is_caught() -> None:
    (x,) = start([("x", TensorType((B, 6)))])
    y = dense(x, "fc", 4, result=TensorType((B, 5)))
    m = finish(y.result)
    with pytest.raises(InterpreterError, match=r"graph.dense 'fc' at <unknown>: result 0 has "
                                               r"shape \(2, 4\), but its type says \(batch, 5\)"):
        run_module(m, [np.zeros((2, 6), np.float32)], init_weights(m))
    # check_types=False runs it anyway (e.g. to debug the type).
    (out,) = Interpreter(m, check_types=False).run([np.zeros((2, 6), np.float32)], init_weights(m))
    assert out.shape == (2, 4)


def test_result_dtype_disagreeing_with_its_type_is_caught() -> None:
    (x,) = start([("x", TensorType((B, 6)))])
    y = dense(x, "fc", 4, result=TensorType((B, 4), "f16"))
    m = finish(y.result)
    with pytest.raises(InterpreterError, match=r"result 0 has dtype float32, but its type "
                                               r"tensor<batch x 4 x f16> says float16"):
        run_module(m, [np.zeros((2, 6), np.float32)], init_weights(m))


def test_symbol_first_seen_in_a_result_is_bound_then_checked() -> None:
    k = sym("k")
    (x,) = start([("x", TensorType((B, 6)))])
    a = dense(x, "a", 4, result=TensorType((B, k)))
    b = dense(x, "b", 3, "linear", result=TensorType((B, k)))
    m = finish(a.result, b.result)
    with pytest.raises(InterpreterError, match=r"'b' at <unknown>: result 0 has shape \(2, 3\), "
                                               r"but its type says \(batch, k\) \(dim 1 = 4\)"):
        Interpreter(m).run([np.zeros((2, 6), np.float32)], init_weights(m))


def test_reference_may_not_write_into_its_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = catalog.by_op("graph.dense")
    assert spec is not None

    def in_place(attrs: dict, xs: list[np.ndarray], w: dict[str, np.ndarray]) -> Any:
        xs[0] += 1
        return [xs[0]]

    monkeypatch.setattr(spec, "reference", in_place)
    (x,) = start([("x", TensorType((B, 6)))])
    m = finish(dense(x, "fc", 6).result)
    data = np.zeros((1, 6), np.float32)
    with pytest.raises(ValueError, match="read-only"):
        run_module(m, [data], init_weights(m))
    assert not data.any()


def test_results_never_alias_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = catalog.by_op("graph.dense")
    assert spec is not None
    monkeypatch.setattr(spec, "reference", lambda attrs, xs, w: [xs[0].reshape(xs[0].shape)])
    (x,) = start([("x", TensorType((B, 6)))])
    m = finish(dense(x, "fc", 6).result)
    data = np.zeros((1, 6), np.float32)
    (out,) = run_module(m, [data], init_weights(m))
    out += 1  # writable, and a copy
    assert not data.any()


def test_wrong_number_of_reference_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = catalog.by_op("graph.dense")
    assert spec is not None
    monkeypatch.setattr(spec, "reference", lambda attrs, xs, w: [xs[0], xs[0]])
    (x,) = start([("x", TensorType((B, 6)))])
    m = finish(dense(x, "fc", 6).result)
    with pytest.raises(InterpreterError, match="the reference returned 2 arrays for 1 results"):
        run_module(m, [np.zeros((1, 6), np.float32)], init_weights(m))


def test_function_without_return() -> None:
    (x,) = start([("x", TensorType((B, 6)))])
    dense(x, "fc", 2)
    f = FUNC.pop()
    m = Module("m")
    m.body.append(f)
    with pytest.raises(InterpreterError, match="does not end with func.return"):
        run_module(m, [np.zeros((1, 6), np.float32)], init_weights(m))
