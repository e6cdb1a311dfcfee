"""Every catalog layer through the ONNX target: onnxruntime against the reference interpreter.

Each case is a small model written in the DSL around one layer with parameters that reach its
less common paths (symbolic spatial dims for 'same' padding, layouts after a convolution,
Scan-based recurrences, opset-dependent operators). Each runs at two batch sizes and two values
of the other symbolic dims, on weights varied away from their initial constants (tolerance in
onnx_test_helpers: rtol 1e-4, atol 1e-5). A coverage test holds every catalog layer to having
an emitter and a case here, or a reason in CANNOT_EXPRESS.
"""

from __future__ import annotations

import numpy as np
import pytest
from layer_cases import CASES, MULTI, net  # noqa: E402,F401  (test_onnx_model imports them here)
from onnx_test_helpers import (
    ATOL,
    RTOL,
    backend,
    check_against_reference,
    compile_nr,
    emit,
    random_inputs,
    varied_weights,
)

from neuralc.backends.base import BackendOptions
from neuralc.backends.onnx.emit import build_model
from neuralc.backends.onnx.emitters import CANNOT_EXPRESS, load_emitters
from neuralc.layers import catalog
from neuralc.runtime.interpreter import run_module

SIZES = ((1, 6), (3, 9))


def _params() -> list:
    out = []
    for case in CASES:
        cid, inp, layers = case[:3]
        for opset in case[3] if len(case) > 3 else (17,):
            out.append(pytest.param(net(inp, layers), opset, id=f"{cid}-opset{opset}"))
    for cid, text, opsets in MULTI:
        for opset in opsets:
            out.append(pytest.param(text, opset, id=f"{cid}-opset{opset}"))
    return out


@pytest.mark.parametrize(("text", "opset"), _params())
def test_layer_matches_reference(text: str, opset: int) -> None:
    model = compile_nr(text)
    weights = varied_weights(model)
    check_against_reference(model, weights, emit(model, weights, opset=opset), SIZES)


def _kinds_in_cases() -> set[str]:
    kinds: set[str] = set()
    texts = [net(c[1], c[2]) for c in CASES] + [m[1] for m in MULTI]
    for text in texts:
        for op in compile_nr(text).module.walk():
            kinds.add(op.name)
            if "layer" in op.attributes and isinstance(op.attributes["layer"], dict):
                spec, _ = catalog.inner_layer(op.attributes["layer"])
                kinds.add(spec.op_name)
    return kinds


def test_every_catalog_layer_has_an_emitter_or_a_reason() -> None:
    emitters = load_emitters()
    missing = [s.name for s in catalog.all_specs()
               if s.op_name.removeprefix("graph.") not in emitters and s.name not in CANNOT_EXPRESS]
    assert missing == []
    assert CANNOT_EXPRESS == {}, "layers the onnx target cannot express: " + str(CANNOT_EXPRESS)
    assert set(emitters) <= {s.op_name.removeprefix("graph.") for s in catalog.all_specs()}


def test_every_emitter_has_a_case() -> None:
    untested = {f"graph.{k}" for k in load_emitters()} - _kinds_in_cases()
    assert untested == set()


# -- Keras 'same' padding with the stride over the window on a symbolic axis --------------------

# On a symbolic axis with a stride larger than the window, Keras's total 'same' padding
# max((ceil(n / s) - 1) * s + eff - n, 0) is 0 at some sizes where the formula is negative;
# ONNX's SAME_UPPER pads the negative amount (an error from pooling; windows shifted by one or
# more from a convolution once the total reaches -3). Each model runs at every height 1..12
# (negative, zero and positive totals, odd and even) against widths that differ from it.
STRIDE_OVER_WINDOW = [
    ("(h, w, 2)", 'Conv2D(2, 1, strides=4, padding="same", use_bias=false)'),
    ("(h, w, 2)", 'Conv2D(3, (2, 3), strides=(5, 6), padding="same", activation="relu")'),
    ("(h, w, 2)", 'Conv2D(2, (3, 1), strides=(2, 3), padding="same")'),  # SAME_UPPER-able h
    ("(h, 7, 2)", 'DepthwiseConv2D(2, strides=5, depth_multiplier=2, padding="same")'),
    ("(h, w, 2)", 'SeparableConv2D(3, 1, strides=(2, 4), padding="same")'),
    ("(h, w, 2)", 'MaxPooling2D(2, strides=3, padding="same")'),
    ("(h, w, 2)", 'AveragePooling2D((1, 2), strides=(2, 3), padding="same")'),
    ("(h, w, 2)", 'AveragePooling2D(3, strides=(4, 2), padding="same")'),  # SAME_UPPER-able w
    ("(h, 5, 2)", 'MaxPooling2D((1, 3), strides=(3, 2), padding="same")'),
    ("(h, 3)", 'Conv1D(2, 2, strides=5, padding="same")'),
    ("(h, 3)", 'AveragePooling1D(2, strides=3, padding="same")'),
    ("(t, h, w, 2)", 'ConvLSTM2D(2, 1, strides=(2, 4), padding="same", return_sequences=true)'),
]


def _stride_over_window_params() -> list:
    out = []
    for i, (inp, layers) in enumerate(STRIDE_OVER_WINDOW):
        lowest = 13 if layers.startswith("ConvLSTM2D") else 11  # Conv (and Split) forms
        for opset in (lowest, 17):
            out.append(pytest.param(inp, layers, opset,
                                    id=f"{layers.split('(')[0]}{i}-opset{opset}"))
    return out


@pytest.mark.parametrize(("inp", "layers", "opset"), _stride_over_window_params())
def test_same_padding_with_the_stride_over_the_window(inp: str, layers: str, opset: int) -> None:
    model = compile_nr(net(inp, layers))
    weights = varied_weights(model)
    exe = backend().load(emit(model, weights, opset=opset), model)
    rng = np.random.default_rng(0)
    for h in range(1, 13):
        sizes = {"batch": 2, "t": 2, "h": h, "w": (5 * h) % 11 + 1}
        xs = random_inputs(model, sizes, rng)
        (y,) = exe(xs)
        (ref,) = run_module(model.module, xs, weights)
        assert y.shape == ref.shape
        np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL, err_msg=f"at {sizes}")


def test_same_padding_stride_over_window_example() -> None:
    """The reviewer's case: a 1x1 window every 4 pixels reads pixels 0, 4, 8 of each axis
    (Keras pads nothing at 11 and 12); SAME_UPPER's negative padding read 1, 5, 9."""
    model = compile_nr(net("(h, w, 1)", 'Conv2D(1, 1, strides=4, padding="same", '
                                         "use_bias=false)"))
    weights = {k: np.ones_like(v) for k, v in varied_weights(model).items()}
    x = np.arange(132, dtype=np.float32).reshape(1, 11, 12, 1)
    (y,) = backend().load(emit(model, weights), model)([x])
    np.testing.assert_array_equal(y[0, :, :, 0], x[0, ::4, ::4, 0])


def test_same_upper_is_kept_where_the_window_covers_the_stride() -> None:
    def graph(layers: str):
        model = compile_nr(net("(h, w, 3)", layers))
        return build_model(model, varied_weights(model), BackendOptions()).graph

    def ops(g) -> set[str]:
        return {n.op_type for n in g.node}

    def auto_pad(g) -> list[str]:
        return [a.s.decode() for n in g.node for a in n.attribute if a.name == "auto_pad"]

    g = graph('Conv2D(4, 3, strides=2, padding="same", use_bias=false)')
    assert auto_pad(g) == ["SAME_UPPER"]
    assert not ops(g) & {"Concat", "ConstantOfShape", "Pad"}
    g = graph('Conv2D(4, 1, strides=2, padding="same", use_bias=false)')
    assert auto_pad(g) == []
    assert {"Concat", "ConstantOfShape"} <= ops(g)
