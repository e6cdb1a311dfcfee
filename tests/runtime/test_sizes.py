"""Sizes known only when inputs arrive are checked before any target runs (runtime/sizes.py)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from neuralc.driver import compile_source
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.signature import InputError
from neuralc.runtime.weights import init_weights


def model(src: str):
    return compile_source(textwrap.dedent(src), "s.nr").module


def run(module, *xs):
    return run_module(module, list(xs), init_weights(module))


def test_window_larger_than_the_sequence_names_the_layer():
    m = model("network C {\n  input: (seq, 3)\n  layers:\n    Conv1D(4, 5)\n}\n")
    run(m, np.zeros((2, 5, 3), np.float32))  # seq = 5 fits exactly
    with pytest.raises(InputError, match=r"Conv1D 'conv1d' at s.nr:4:5: with these inputs "
                                         r"\(seq=3\) its output would have -1 elements"):
        run(m, np.zeros((2, 3, 3), np.float32))


def test_pooling_to_nothing_is_refused():
    m = model("network P {\n  input: (seq, 3)\n  layers:\n    MaxPooling1D(4)\n}\n")
    with pytest.raises(InputError, match="MaxPooling1D 'max_pooling1d'.*0 elements"):
        run(m, np.zeros((1, 2, 3), np.float32))


def test_sequence_longer_than_the_positional_table():
    m = model("network P {\n  input: (seq, 6)\n  layers:\n    PositionalEncoding(8)\n}\n")
    run(m, np.zeros((1, 8, 6), np.float32))
    with pytest.raises(InputError, match="the sequence has 9 positions, more than max_len=8"):
        run(m, np.zeros((1, 9, 6), np.float32))


@pytest.mark.parametrize("bad", [10, -1])
def test_token_index_outside_the_vocabulary(bad):
    m = model("network E {\n  input: (seq,)\n  layers:\n    Embedding(10, 4)\n}\n")
    run(m, np.array([[0, 9]]))
    with pytest.raises(InputError, match=f"holds the token index {bad}, but Embedding "
                                         r"'embedding' at s.nr:4:5 has 10 rows"):
        run(m, np.array([[0, bad]]))


def test_wrapped_embedding_indices_are_checked_too():
    m = model("network E {\n  input: (steps, 3)\n  layers:\n    TimeDistributed(Embedding(5, 2))\n}\n")
    with pytest.raises(InputError, match="token index 7"):
        run(m, np.array([[[0, 1, 7]]]))


def test_a_range_survives_when_its_symbol_becomes_an_expression():
    m = model("""
        network R {
          input: { a: (seq, 4), b: (t, 4) }
          dims { seq: 8..16 }
          layers:
            b: { Concatenate(axis=1) { { } { } } }
            Add(a, b)
        }
    """)
    assert m.attributes["dim_constraints"] == [["t * 2", 8, 16]]
    run(m, np.zeros((1, 10, 4), np.float32), np.zeros((1, 5, 4), np.float32))
    with pytest.raises(InputError, match=r"t \* 2 is 200, outside the range 8..16"):
        run(m, np.zeros((1, 200, 4), np.float32), np.zeros((1, 100, 4), np.float32))
