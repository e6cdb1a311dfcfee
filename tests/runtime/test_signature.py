"""bind_inputs: dtype conversion, rank/static/symbolic/compound dims, ranges, input naming."""

from __future__ import annotations

import numpy as np
import pytest

from neuralc.ir.core import Module, Op, func_body, func_op
from neuralc.ir.dims import Dim, floordiv, sym
from neuralc.ir.types import TensorType, unranked
from neuralc.runtime.signature import InputError, bind_inputs, input_names, select_func

B = sym("batch")


def make_func(*inputs: tuple[str, tuple[Dim, ...] | None, str]) -> Op:
    """A func whose inputs are (name, shape, dtype); the body only returns the first input."""
    types = [TensorType(s, d) if s is not None else unranked(d) for _, s, d in inputs]
    f = func_op("net", types, [n for n, _, _ in inputs])
    body = func_body(f)
    body.append(Op("func.return", [body.args[0]]))
    return f


IMAGE = ("image", (B, 28, 28, 1), "f32")


def test_matching_float32_input_is_passed_through_and_binds_batch() -> None:
    f = make_func(IMAGE)
    x = np.zeros((2, 28, 28, 1), np.float32)
    arrays, env = bind_inputs(f, [x], None)
    assert arrays[0] is x
    assert env == {"batch": 2}


@pytest.mark.parametrize("dtype", [np.float64, np.float16])
def test_other_float_widths_are_cast_to_float32(dtype: type) -> None:
    f = make_func(IMAGE)
    x = np.full((1, 28, 28, 1), 0.5, dtype)
    arrays, _ = bind_inputs(f, [x])
    assert arrays[0].dtype == np.float32
    assert np.all(arrays[0] == 0.5)


@pytest.mark.parametrize("dtype", [np.int64, np.uint8, np.bool_])
def test_float_input_refuses_non_float(dtype: type) -> None:
    f = make_func(IMAGE)
    with pytest.raises(InputError) as e:
        bind_inputs(f, [np.zeros((1, 28, 28, 1), dtype)])
    assert str(e.value) == (f"input 'image' has dtype {np.dtype(dtype)}, expected float32; "
                            "convert it with .astype(np.float32)")


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint8, np.int16])
def test_index_input_accepts_any_integer_dtype(dtype: type) -> None:
    f = make_func(("tokens", (B, sym("seq")), "i64"))
    arrays, env = bind_inputs(f, {"tokens": np.arange(6, dtype=dtype).reshape(2, 3)})
    assert arrays[0].dtype == np.int64
    assert arrays[0].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert env == {"batch": 2, "seq": 3}


def test_index_input_refuses_floats_even_when_integral() -> None:
    f = make_func(("tokens", (B, 5), "i32"))
    with pytest.raises(InputError, match=r"input 'tokens' has dtype float32, expected integer "
                                         r"indices \(int32\); pass integer indices"):
        bind_inputs(f, [np.ones((2, 5), np.float32)])


def test_rank_mismatch_message() -> None:
    f = make_func(IMAGE)
    with pytest.raises(InputError) as e:
        bind_inputs(f, [np.zeros((2, 28, 28), np.float32)])
    assert str(e.value) == ("input 'image' has shape (2, 28, 28), expected (batch, 28, 28, 1): "
                            "rank 3, expected 4")


def test_static_dim_mismatch_message() -> None:
    f = make_func(IMAGE)
    with pytest.raises(InputError) as e:
        bind_inputs(f, [np.zeros((2, 28, 27, 1), np.float32)])
    assert str(e.value) == ("input 'image' has shape (2, 28, 27, 1), expected (batch, 28, 28, 1): "
                            "dim 2 is 27, expected 28")


def test_symbol_must_have_one_size_across_inputs() -> None:
    f = make_func(IMAGE, ("meta", (B, 10), "f32"))
    x = np.zeros((2, 28, 28, 1), np.float32)
    _, env = bind_inputs(f, [x, np.zeros((2, 10), np.float32)])
    assert env == {"batch": 2}
    with pytest.raises(InputError) as e:
        bind_inputs(f, [x, np.zeros((3, 10), np.float32)])
    assert str(e.value) == ("input 'meta' has shape (3, 10), expected (batch, 10): "
                            "dim 0 is 3 but batch is 2 from input 'image'")


def test_symbol_repeated_within_one_input() -> None:
    n = sym("n")
    f = make_func(("adj", (B, n, n), "f32"))
    _, env = bind_inputs(f, [np.zeros((1, 4, 4), np.float32)])
    assert env == {"batch": 1, "n": 4}
    with pytest.raises(InputError, match=r"dim 2 is 5 but n is 4 from dim 1$"):
        bind_inputs(f, [np.zeros((1, 4, 5), np.float32)])


def test_dims_ranges_are_respected() -> None:
    f = make_func(IMAGE)
    ranges = {"batch": [1, 64]}
    bind_inputs(f, [np.zeros((64, 28, 28, 1), np.float32)], ranges)
    with pytest.raises(InputError) as e:
        bind_inputs(f, [np.zeros((100, 28, 28, 1), np.float32)], ranges)
    assert str(e.value).endswith("dim 0 is 100, outside the range of batch (1..64)")
    with pytest.raises(InputError, match=r"dim 0 is 0, outside the range of batch \(1\.\.\)"):
        bind_inputs(f, [np.zeros((0, 28, 28, 1), np.float32)], {"batch": [1, None]})
    bind_inputs(f, [np.zeros((1000, 28, 28, 1), np.float32)], {"batch": [1, None]})


def test_compound_dim_is_checked_after_its_symbols_are_bound() -> None:
    n = sym("n")
    # 'pair' comes first, so 2 * n is checked only once 'x' has bound n.
    f = make_func(("pair", (B, 2 * n), "f32"), ("x", (B, n), "f32"))
    _, env = bind_inputs(f, [np.zeros((1, 6), np.float32), np.zeros((1, 3), np.float32)])
    assert env == {"batch": 1, "n": 3}
    with pytest.raises(InputError) as e:
        bind_inputs(f, [np.zeros((1, 7), np.float32), np.zeros((1, 3), np.float32)])
    assert str(e.value) == ("input 'pair' has shape (1, 7), expected (batch, n * 2): "
                            "dim 1 is 7, expected n * 2 = 6")


def test_compound_dim_with_one_unknown_symbol_is_solved() -> None:
    n = sym("n")
    f = make_func(("x", (B, n + 1), "f32"), ("y", (B, 2 * n), "f32"))
    _, env = bind_inputs(f, [np.zeros((2, 5), np.float32), np.zeros((2, 8), np.float32)])
    assert env == {"batch": 2, "n": 4}
    with pytest.raises(InputError, match=r"dim 1 is 9, expected n \* 2 = 8"):
        bind_inputs(f, [np.zeros((2, 5), np.float32), np.zeros((2, 9), np.float32)])


def test_compound_dim_that_no_size_fits() -> None:
    f = make_func(("x", (B, 2 * sym("n")), "f32"))
    with pytest.raises(InputError, match=r"dim 1 is 7, expected n \* 2, which is never 7"):
        bind_inputs(f, [np.zeros((1, 7), np.float32)])


def test_solved_symbol_respects_its_range() -> None:
    f = make_func(("x", (B, 2 * sym("n")), "f32"))
    with pytest.raises(InputError, match=r"dim 1 is 10, so n is 5, outside the range of n "
                                         r"\(1\.\.4\)"):
        bind_inputs(f, [np.zeros((1, 10), np.float32)], {"n": [1, 4]})


def test_compound_dim_that_determines_nothing() -> None:
    f = make_func(("x", (B, floordiv(sym("h"), 2)), "f32"))
    with pytest.raises(InputError, match=r"cannot determine h from dim 1 \(h floordiv 2 = 3\)"):
        bind_inputs(f, [np.zeros((1, 3), np.float32)])


def test_wrong_number_of_inputs() -> None:
    f = make_func(IMAGE, ("meta", (B, 10), "f32"))
    with pytest.raises(InputError) as e:
        bind_inputs(f, [np.zeros((1, 28, 28, 1), np.float32)])
    assert str(e.value) == "wrong number of inputs: expected 2 (image, meta), got 1"
    with pytest.raises(InputError, match="expected 2 \\(image, meta\\), got one array"):
        bind_inputs(f, np.zeros((1, 28, 28, 1), np.float32))


def test_single_array_for_single_input() -> None:
    f = make_func(IMAGE)
    arrays, _ = bind_inputs(f, np.zeros((3, 28, 28, 1), np.float32))
    assert arrays[0].shape == (3, 28, 28, 1)


def test_dict_inputs_are_ordered_by_block_arguments() -> None:
    f = make_func(IMAGE, ("meta", (B, 10), "f32"))
    img, meta = np.zeros((2, 28, 28, 1), np.float32), np.ones((2, 10), np.float32)
    arrays, _ = bind_inputs(f, {"meta": meta, "image": img})
    assert arrays[0] is img and arrays[1] is meta


def test_unknown_input_name_suggests_the_closest() -> None:
    f = make_func(IMAGE, ("meta", (B, 10), "f32"))
    with pytest.raises(InputError) as e:
        bind_inputs(f, {"imgae": np.zeros((2, 28, 28, 1), np.float32),
                        "meta": np.zeros((2, 10), np.float32)})
    assert str(e.value) == ("unknown input 'imgae'; did you mean 'image'?; "
                            "the inputs are: image, meta")


def test_missing_input_name() -> None:
    f = make_func(IMAGE, ("meta", (B, 10), "f32"))
    with pytest.raises(InputError) as e:
        bind_inputs(f, {"image": np.zeros((2, 28, 28, 1), np.float32)})
    assert str(e.value) == "missing input 'meta'; the inputs are: image, meta"


def test_not_an_array() -> None:
    f = make_func(IMAGE)
    with pytest.raises(InputError, match="input 'image' is not an array of numbers"):
        bind_inputs(f, [[object()]])
    with pytest.raises(InputError, match="inputs must be a list of arrays"):
        bind_inputs(f, 3)


def test_nested_lists_are_arrays() -> None:
    f = make_func(("x", (B, 2), "f32"))
    arrays, env = bind_inputs(f, [[[1.0, 2.0]]])
    assert arrays[0].dtype == np.float32 and env == {"batch": 1}


def test_torch_tensors_are_accepted() -> None:
    import torch
    f = make_func(("x", (B, 3), "f32"))
    arrays, env = bind_inputs(f, [torch.ones(2, 3, dtype=torch.bfloat16)])
    assert arrays[0].dtype == np.float32 and np.all(arrays[0] == 1.0)
    assert env == {"batch": 2}


def test_unranked_input_checks_dtype_only() -> None:
    f = make_func(("x", None, "f32"))
    arrays, env = bind_inputs(f, [np.zeros((4, 5, 6), np.float64)])
    assert arrays[0].dtype == np.float32 and env == {}


def test_unnamed_inputs_get_positional_names() -> None:
    f = func_op("net", [], [])
    body = func_body(f)
    body.add_arg(TensorType((B, 2)))
    body.add_arg(TensorType((B, 3)))
    assert input_names(f) == ["input0", "input1"]


def test_select_func() -> None:
    m = Module("m")
    for name in ("encoder", "decoder"):
        f = make_func(IMAGE)
        f.attributes["sym_name"] = name
        m.body.append(f)
    assert select_func(m, "decoder").attributes["sym_name"] == "decoder"
    with pytest.raises(ValueError, match=r"several networks \(encoder, decoder\)"):
        select_func(m)
    with pytest.raises(ValueError, match="no network 'decodr'; did you mean 'decoder'"):
        select_func(m, "decodr")
