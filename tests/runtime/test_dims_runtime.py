"""Divisibility facts at run time (binding, constraints, sample sizes) and the nominal sizes
that estimates are taken at, with no symbol special by its name."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from neuralc.driver import compile_source
from neuralc.ir.core import Module, Op, func_body, func_op
from neuralc.ir.dims import Dim, sym
from neuralc.ir.parser import parse_module
from neuralc.ir.types import TensorType
from neuralc.passes import analysis
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.signature import InputError, bind_inputs
from neuralc.runtime.sizes import check_constraints
from neuralc.runtime.weights import init_weights

B, H, N = sym("batch"), sym("h"), sym("n")


def make_func(*shapes: tuple[Dim, ...]) -> Op:
    f = func_op("net", [TensorType(s, "f32") for s in shapes], [f"x{i}" for i in range(len(shapes))])
    body = func_body(f)
    body.append(Op("func.return", [body.args[0]]))
    return f


def model(src: str) -> Module:
    return compile_source(textwrap.dedent(src), "s.nr").module


# -- binding inputs --------------------------------------------------------------------------


def test_a_size_off_the_step_is_refused_naming_the_dim() -> None:
    f = make_func((B, H, 3))
    facts = {"h": [16, 256, 8]}
    _, env = bind_inputs(f, [np.zeros((2, 24, 3), np.float32)], facts)
    assert env == {"batch": 2, "h": 24}
    with pytest.raises(InputError) as ei:
        bind_inputs(f, [np.zeros((2, 36, 3), np.float32)], facts)
    assert str(ei.value) == ("input 'x0' has shape (2, 36, 3), expected (batch, h, 3): dim 1 is "
                             "36, but h must be a multiple of 8 (dims { h: 16..256 step 8 })")


def test_the_range_is_checked_before_the_step() -> None:
    f = make_func((B, H, 3))
    with pytest.raises(InputError, match=r"dim 1 is 8, outside the range of h \(16..256\)"):
        bind_inputs(f, [np.zeros((1, 8, 3), np.float32)], {"h": [16, 256, 8]})


def test_a_solved_symbol_is_checked_against_its_step() -> None:
    f = make_func((B, N * 2 + 1))
    with pytest.raises(InputError, match=r"dim 1 is 7, so n is 3, but n must be a multiple of 2 "
                                         r"\(dims \{ n: .. step 2 \}\)"):
        bind_inputs(f, [np.zeros((1, 7), np.float32)], {"n": [None, None, 2]})


def test_a_step_on_a_symbol_bound_to_an_expression_is_checked_at_run_time() -> None:
    m = model("""
        network R {
          input: { a: (seq, 4), b: (t, 4) }
          dims { seq: 8..16 step 4 }
          layers:
            b: { Concatenate(axis=1) { { } { } } }
            Add(a, b)
        }
    """)
    assert m.attributes["dim_constraints"] == [["t * 2", 8, 16], ["(t mod 2) * 2", 0, 0]]
    w = init_weights(m)
    run_module(m, [np.zeros((1, 12, 4), np.float32), np.zeros((1, 6, 4), np.float32)], w)
    with pytest.raises(InputError, match=r"with these inputs \(t mod 2\) \* 2 is 2, not 0: the "
                                         r"dimension it stands for must be a multiple of the step"):
        run_module(m, [np.zeros((1, 10, 4), np.float32), np.zeros((1, 5, 4), np.float32)], w)


def test_check_constraints_reads_both_kinds() -> None:
    check_constraints([["t * 2", 8, 16], ["(t * 3) mod 4", 0, 0]], {"t": 4})
    with pytest.raises(InputError, match="outside the range 8..16"):
        check_constraints([["t * 2", 8, 16]], {"t": 9})
    with pytest.raises(InputError, match=r"\(t \* 3\) mod 4 is 1, not 0"):
        check_constraints([["(t * 3) mod 4", 0, 0]], {"t": 3})


# -- sample sizes ---------------------------------------------------------------------------


def test_sample_sizes_satisfy_ranges_and_steps() -> None:
    m = model("""
        network S {
          input: (h, w, 3)
          dims { h: 16..256 step 8, w: 20..40, w % 10 == 0, batch: 2..8 step 2 }
          layers: Flatten()
        }
    """)
    assert samples.symbol_sizes(m, 3, 25) == {"batch": 4, "h": 32, "w": 30}
    assert samples.symbol_sizes(m, 1, 1000) == {"batch": 2, "h": 256, "w": 40}
    xs = samples.random_inputs(m, samples.symbol_sizes(m, 1, 8), np.random.default_rng(0))
    assert xs[0].shape == (2, 16, 20, 3)


def test_the_batch_dim_is_found_by_position_not_by_name() -> None:
    text = ('module @M {\n  func.func @f(%x: tensor<n x k x f32>) -> (tensor<n x k x f32>) {\n'
            '    "func.return"(%x) : (tensor<n x k x f32>) -> ()\n  }\n}')
    m = parse_module(text, "t.nir")
    assert samples.batch_symbol(m) == "n"
    assert samples.symbol_sizes(m, 2, 5) == {"n": 2, "k": 5}


# -- nominal sizes -------------------------------------------------------------------------


def _module(shape: str, attrs: str = "") -> Module:
    head = f"module @M attributes {{{attrs}}} {{" if attrs else "module @M {"
    return parse_module(
        f'{head}\n  func.func @f(%x: tensor<{shape} x f32>) -> (tensor<{shape} x f32>) {{\n'
        f'    "func.return"(%x) : (tensor<{shape} x f32>) -> ()\n  }}\n}}', "t.nir")


def test_nominal_sizes_come_from_the_frontend() -> None:
    m = model("network S {\n  input: (seq, 8)\n  dims { seq: 8..32 }\n  layers: Flatten()\n}\n")
    assert m.attributes["dim_nominal"] == {"batch": 1, "seq": 32}
    assert analysis.nominal_sizes(m) == {"batch": 1, "seq": 32}


def test_ir_without_the_attribute_takes_64_for_every_symbol() -> None:
    m = _module("batch x h", "dims = {h = [none, 40, 16]}")
    assert analysis.nominal_sizes(m) == {"batch": 64, "h": 32}


def test_recorded_nominal_sizes_are_kept_in_the_facts() -> None:
    m = _module("batch x h", "dim_nominal = {batch = 1, h = 64}, dims = {h = [8, 48, 8]}")
    assert analysis.nominal_sizes(m) == {"batch": 1, "h": 48}


def test_eval_dim_defaults_and_lower_bounds_use_the_step() -> None:
    assert analysis.eval_dim(B * H + 1, {"h": 2}) == 129
    m = _module("batch x h x w", "dims = {h = [none, none, 8], w = [3, 9]}")
    assert analysis.symbol_lower_bounds(m) == {"batch": 1, "h": 8, "w": 3}
