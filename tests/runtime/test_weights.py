"""Weight specs, seeded initialisation, and safetensors loading with its error messages."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from neuralc.ir.core import Module, Op, func_body, func_op
from neuralc.ir.dims import sym
from neuralc.ir.types import TensorType, unranked
from neuralc.layers.catalog import Init, WeightSpec
from neuralc.runtime.weights import (
    LayerWeight,
    WeightsError,
    check_weights_header,
    init_weight,
    init_weights,
    load_weights,
    save_weights,
    weight_specs,
)

B = sym("batch")


def mlp(layers: list[tuple[str, int, bool]], features: int = 6, name: str = "net") -> Module:
    """A module with one func: Dense layers (name, units, use_bias) in a chain."""
    f = func_op(name, [TensorType((B, features))], ["x"])
    body = func_body(f)
    v = body.args[0]
    for lname, units, bias in layers:
        op = Op("graph.dense", [v], [TensorType((B, units))],
                {"units": units, "activation": "relu", "use_bias": bias, "name": lname})
        body.append(op)
        v = op.result
    body.append(Op("func.return", [v]))
    m = Module("m")
    m.body.append(f)
    return m


TWO = [("dense", 8, True), ("dense_1", 4, True)]


def test_weight_specs_in_program_order_with_pytorch_layouts() -> None:
    specs = weight_specs(mlp(TWO))
    assert list(specs) == ["dense.weight", "dense.bias", "dense_1.weight", "dense_1.bias"]
    assert specs["dense.weight"].shape == (8, 6)
    assert specs["dense.bias"].shape == (8,)
    assert specs["dense_1.weight"].shape == (4, 8)
    assert specs["dense_1.weight"].init == Init("uniform", 1 / math.sqrt(8))
    assert all(s.dtype == "f32" for s in specs.values())


def test_layer_without_bias_has_no_bias_weight() -> None:
    assert list(weight_specs(mlp([("fc", 3, False)]))) == ["fc.weight"]


def test_weight_specs_of_a_named_network() -> None:
    m = mlp(TWO)
    other = mlp([("head", 2, True)], name="other")
    m.body.append(other.funcs[0])
    assert list(weight_specs(m, "other")) == ["head.weight", "head.bias"]
    with pytest.raises(ValueError, match="several networks"):
        weight_specs(m)


def test_duplicate_layer_names_are_refused() -> None:
    with pytest.raises(WeightsError, match="two layers are named 'dense'"):
        weight_specs(mlp([("dense", 6, True), ("dense", 4, True)]))


def test_unranked_inputs_ask_for_shape_inference() -> None:
    f = func_op("net", [unranked()], ["x"])
    body = func_body(f)
    op = body.append(Op("graph.dense", [body.args[0]], [unranked()],
                        {"units": 3, "activation": "linear", "use_bias": True, "name": "d"}))
    body.append(Op("func.return", [op.result]))
    m = Module("m")
    m.body.append(f)
    with pytest.raises(WeightsError, match="Dense layer 'd' has inputs of unknown shape; "
                                           "run shape inference"):
        weight_specs(m)


def test_symbolic_fan_in_is_a_weights_error() -> None:
    f = func_op("net", [TensorType((B, sym("feat")))], ["x"])
    body = func_body(f)
    op = body.append(Op("graph.dense", [body.args[0]], [TensorType((B, 3))],
                        {"units": 3, "activation": "linear", "use_bias": True, "name": "d"}))
    body.append(Op("func.return", [op.result]))
    m = Module("m")
    m.body.append(f)
    with pytest.raises(WeightsError, match="Dense layer 'd': Dense needs a fixed number of "
                                           "input features"):
        weight_specs(m)


# -- initialisation -------------------------------------------------------------------------


def test_uniform_init_statistics() -> None:
    m = mlp([("big", 400, True)], features=300)
    w = init_weights(m)
    a = 1 / math.sqrt(300)
    weight = w["big.weight"]
    assert weight.dtype == np.float32 and weight.shape == (400, 300)
    assert np.abs(weight).max() <= a
    assert np.abs(weight).max() > 0.99 * a  # the whole interval is used
    assert abs(float(weight.mean())) < 0.01 * a
    assert float(weight.std()) == pytest.approx(a / math.sqrt(3), rel=0.01)
    assert np.abs(w["big.bias"]).max() <= a


def test_const_and_normal_init() -> None:
    ones = init_weight("bn.weight", WeightSpec((5,), Init("const", 1.0)))
    zeros = init_weight("bn.running_mean", WeightSpec((5,), Init("const", 0.0)))
    count = init_weight("bn.num_batches_tracked", WeightSpec((), Init("const", 0.0), "i64"))
    assert ones.dtype == np.float32 and ones.tolist() == [1.0] * 5
    assert zeros.tolist() == [0.0] * 5
    assert count.dtype == np.int64 and count.shape == () and int(count) == 0
    normal = init_weight("emb.weight", WeightSpec((300, 200), Init("normal", 2.0)))
    assert normal.dtype == np.float32
    assert float(normal.std()) == pytest.approx(2.0, rel=0.02)
    assert abs(float(normal.mean())) < 0.05


def test_init_is_deterministic_and_seeded() -> None:
    m = mlp(TWO)
    a, b = init_weights(m), init_weights(m)
    assert list(a) == list(b)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    c = init_weights(m, seed=1)
    assert not np.array_equal(a["dense.weight"], c["dense.weight"])


def test_init_is_stable_per_name() -> None:
    before = init_weights(mlp([("dense", 8, True), ("dense_1", 4, True)]))
    after = init_weights(mlp([("extra", 6, True), ("dense", 8, True), ("dense_1", 4, True)]))
    for k in before:
        assert np.array_equal(before[k], after[k]), k
    # Different names draw different streams, even with equal shapes and bounds.
    w = init_weight("a.bias", WeightSpec((10,), Init("uniform", 1.0)))
    v = init_weight("b.bias", WeightSpec((10,), Init("uniform", 1.0)))
    assert not np.array_equal(w, v)


# -- safetensors files ------------------------------------------------------------------------


def test_round_trip(tmp_path: Path) -> None:
    m = mlp(TWO)
    w = init_weights(m)
    path = tmp_path / "w.safetensors"
    save_weights(path, w)
    loaded = load_weights(path, m)
    assert list(loaded) == list(w)
    for k in w:
        assert loaded[k].dtype == np.float32
        assert np.array_equal(loaded[k], w[k])
    loaded["dense.bias"][0] = 1.0  # owned, writable arrays


def test_zero_dim_and_integer_weights_round_trip(tmp_path: Path) -> None:
    w = {"bn.num_batches_tracked": np.array(7, np.int64), "x": np.arange(3, dtype=np.float32)}
    save_weights(tmp_path / "w.safetensors", w)
    from safetensors.numpy import load_file

    back = load_file(str(tmp_path / "w.safetensors"))
    assert back["bn.num_batches_tracked"].shape == () and int(back["bn.num_batches_tracked"]) == 7
    assert back["bn.num_batches_tracked"].dtype == np.int64


def test_file_order_does_not_matter_and_result_is_program_order(tmp_path: Path) -> None:
    m = mlp(TWO)
    w = init_weights(m)
    save_weights(tmp_path / "w.safetensors", dict(reversed(list(w.items()))))
    assert list(load_weights(tmp_path / "w.safetensors", m)) == list(w)


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_float_widths_are_cast(tmp_path: Path, dtype: type) -> None:
    m = mlp([("fc", 2, True)], features=3)
    w = {k: v.astype(dtype) for k, v in init_weights(m).items()}
    save_weights(tmp_path / "w.safetensors", w)
    loaded = load_weights(tmp_path / "w.safetensors", m)
    for k, value in w.items():
        assert loaded[k].dtype == np.float32
        np.testing.assert_array_equal(loaded[k], value.astype(np.float32))


def test_bfloat16_is_cast(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    m = mlp([("fc", 2, True)], features=3)
    w = {"fc.weight": torch.tensor([[1.0, -2.5, 0.5], [3.0, 0.0, -0.125]], dtype=torch.bfloat16),
         "fc.bias": torch.tensor([1.5, -1.0], dtype=torch.bfloat16)}
    save_file(w, str(tmp_path / "w.safetensors"))
    loaded = load_weights(tmp_path / "w.safetensors", m)
    assert loaded["fc.weight"].dtype == np.float32
    assert loaded["fc.weight"].tolist() == [[1.0, -2.5, 0.5], [3.0, 0.0, -0.125]]
    assert loaded["fc.bias"].tolist() == [1.5, -1.0]


def test_torch_state_dict_loads_as_is(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    m = mlp([("dense", 4, True)], features=6)
    lin = torch.nn.Linear(6, 4)
    save_file({f"dense.{k}": v for k, v in lin.state_dict().items()}, str(tmp_path / "w.st"))
    loaded = load_weights(tmp_path / "w.st", m)
    np.testing.assert_array_equal(loaded["dense.weight"], lin.weight.detach().numpy())


def _save(tmp_path: Path, w: dict[str, np.ndarray]) -> Path:
    path = tmp_path / "w.safetensors"
    save_weights(path, w)
    return path


def _load_error(path: Path, m: Module) -> WeightsError:
    with pytest.raises(WeightsError) as e:
        load_weights(path, m)
    return e.value


def test_missing_tensors_name_their_layer(tmp_path: Path) -> None:
    m = mlp(TWO)
    w = init_weights(m)
    del w["dense_1.weight"], w["dense_1.bias"]
    err = _load_error(_save(tmp_path, w), m)
    expect = "missing tensors for Dense layer 'dense_1': dense_1.weight, dense_1.bias"
    assert err.problems == [expect]
    assert str(err).startswith(f"weights file '{tmp_path / 'w.safetensors'}' does not fit "
                               "network 'net':\n  missing tensors")


def test_unexpected_tensors_suggest_the_closest_key(tmp_path: Path) -> None:
    m = mlp(TWO)
    w = init_weights(m)
    w["dense.weights"] = w.pop("dense.weight")
    w["optimizer.step"] = np.zeros((1,), np.float32)
    err = _load_error(_save(tmp_path, w), m)
    assert "missing tensor for Dense layer 'dense': dense.weight" in err.problems
    assert "unexpected tensor 'dense.weights'; did you mean 'dense.weight'?" in err.problems
    assert "unexpected tensor 'optimizer.step'" in err.problems


def test_prefixed_keys_suggest_the_network_key(tmp_path: Path) -> None:
    m = mlp([("dense", 4, True)])
    w = {f"model.{k}": v for k, v in init_weights(m).items()}
    err = _load_error(_save(tmp_path, w), m)
    assert "unexpected tensor 'model.dense.weight'; did you mean 'dense.weight'?" in err.problems
    assert err.problems[-1] == ("no tensor name matches this network; are these the weights "
                                "of another model?")


def test_many_unexpected_tensors_are_capped(tmp_path: Path) -> None:
    m = mlp([("dense", 4, True)])
    w = init_weights(m)
    w.update({f"junk{i:02d}": np.zeros(1, np.float32) for i in range(25)})
    err = _load_error(_save(tmp_path, w), m)
    assert len(err.problems) == 11
    assert err.problems[-1].startswith("and 15 more unexpected tensors: junk10, junk11")
    assert err.problems[-1].endswith("and 5 more")


def test_wrong_shape(tmp_path: Path) -> None:
    m = mlp(TWO)
    w = init_weights(m)
    w["dense.bias"] = np.zeros((9,), np.float32)
    w["dense_1.weight"] = w["dense_1.weight"].T.copy()
    err = _load_error(_save(tmp_path, w), m)
    assert err.problems == [
        "dense.bias has shape (9,), expected (8,)",
        ("dense_1.weight has shape (8, 4), expected (4, 8) (it looks transposed: neuralc uses "
         "PyTorch's (out, in) layout, not Keras's)"),
    ]


def test_integer_tensor_for_float_weight_is_refused(tmp_path: Path) -> None:
    m = mlp([("fc", 2, True)], features=3)
    w = init_weights(m)
    w["fc.weight"] = np.ones((2, 3), np.int32)
    err = _load_error(_save(tmp_path, w), m)
    assert err.problems == ["fc.weight has dtype int32, expected a floating-point tensor (float32)"]


def test_float_tensor_for_integer_weight_is_refused() -> None:
    spec = WeightSpec((), Init("const", 0.0), "i64")
    counter = LayerWeight("bn.num_batches_tracked", "num_batches_tracked", "bn",
                          "BatchNormalization", spec)
    ok = check_weights_header([counter], {"bn.num_batches_tracked": ("I32", ())})
    assert ok == []
    bad = check_weights_header([counter], {"bn.num_batches_tracked": ("F32", ())})
    expect = "bn.num_batches_tracked has dtype float32, expected an integer tensor (int64)"
    assert bad == [expect]


def test_bool_tensor_is_refused_for_float_weight(tmp_path: Path) -> None:
    m = mlp([("fc", 2, True)], features=3)
    w = init_weights(m)
    w["fc.bias"] = np.array([True, False])
    assert _load_error(_save(tmp_path, w), m).problems == [
        "fc.bias has dtype bool, expected a floating-point tensor (float32)"]


def test_missing_file_and_directory(tmp_path: Path) -> None:
    m = mlp(TWO)
    err = _load_error(tmp_path / "nope.safetensors", m)
    assert str(err) == f"weights file '{tmp_path / 'nope.safetensors'}' does not exist"
    assert str(_load_error(tmp_path, m)) == f"weights path '{tmp_path}' is not a file"


@pytest.mark.parametrize("content", [b"", b"hello", b"\x08\x00\x00\x00\x00\x00\x00\x00{notjson",
                                     b"\xff" * 64])
def test_garbage_is_not_a_safetensors_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    err = _load_error(path, mlp(TWO))
    assert str(err).startswith(f"'{path}' is not a safetensors file (")


def test_truncated_file(tmp_path: Path) -> None:
    m = mlp(TWO)
    path = _save(tmp_path, init_weights(m))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 16])
    assert "is not a safetensors file" in str(_load_error(path, m))


def test_pickle_checkpoint_is_refused_with_a_hint(tmp_path: Path) -> None:
    import torch
    path = tmp_path / "model.pt"
    torch.save({"dense.weight": torch.zeros(8, 6)}, path)
    msg = str(_load_error(path, mlp(TWO)))
    assert msg.startswith(f"'{path}' is not a safetensors file")
    assert "looks like a PyTorch checkpoint" in msg
    assert "safetensors.torch.save_file(model.state_dict()" in msg


def test_save_refuses_what_safetensors_cannot_store(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="weight 'x' has dtype object"):
        save_weights(tmp_path / "w.safetensors", {"x": np.array([object()])})
    with pytest.raises(WeightsError, match="cannot write weights to"):
        save_weights(tmp_path / "no" / "such" / "dir.safetensors", {"x": np.zeros(2)})


def test_save_accepts_non_contiguous_arrays(tmp_path: Path) -> None:
    m = mlp([("fc", 2, True)], features=3)
    w = init_weights(m)
    w["fc.weight"] = np.asfortranarray(w["fc.weight"])
    loaded = load_weights(_save(tmp_path, w), m)
    np.testing.assert_array_equal(loaded["fc.weight"], w["fc.weight"])
