"""Bidirectional and TimeDistributed: layers that take a layer (``LayerArg``) and run it again.

Bidirectional runs a SimpleRNN/LSTM/GRU forwards and backwards over the sequence, as Keras: the
backward copy runs with ``go_backwards=true`` (so the wrapped layer may not set it, which Keras
refuses too), its sequence output is reversed back into time order (so step t of both
directions sees the same input step), and without ``return_sequences`` its output is its last
processed step (the state after reading step 0), as torch's ``h_n`` for that direction.
The two outputs are merged by ``merge_mode`` (concat: forward first, as torch's bidirectional
modules). Weights are the wrapped layer's own names for the forward direction and the same
names with ``_reverse`` appended for the backward one, as ``torch.nn.LSTM(bidirectional=True)``
names them, so a bidirectional torch module named like the layer loads as it is. With
``return_state`` the results are the output, then the forward states, then the backward
states (Keras's order).

TimeDistributed applies any single-input, single-result layer to every step of axis 1: the
reference folds (batch, time, ...) into (batch * time, ...), runs the wrapped layer and unfolds
the result. Its weights are the wrapped layer's own names under the wrapper's name
(``time_distributed.weight``), one set shared by every step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from neuralc.ir.dims import Dim, product
from neuralc.ir.shapes import ShapeContext, ShapeError
from neuralc.ir.types import TensorType, shape_str
from neuralc.layers.catalog import (
    Choice,
    LayerArg,
    LayerSpec,
    Param,
    ParamError,
    WeightSpec,
    inner_layer,
    lookup,
    register,
)
from neuralc.layers.recurrent import RECURRENT_KINDS, lower_recurrent

if TYPE_CHECKING:
    from neuralc.ir.builder import TensorBuilder
    from neuralc.ir.core import Value

REVERSE = "_reverse"


def validated_inner(attr: Any, wrapper: str) -> tuple[LayerSpec, dict]:
    """The wrapped layer's spec and attributes, checked as the graph verifier checks an op's.

    The lowering binds the inner call through the catalog already; this catches attributes
    that come from textual IR instead, before a reference trips over them.
    """
    if not isinstance(attr, dict) or lookup(str(attr.get("layer"))) is None:
        raise ParamError(f"'layer' must be a layer, got {attr!r}")
    spec, params = inner_layer(attr)
    if spec.kind != "layer" or spec.arity != 1 or spec.value_params():
        raise ParamError(f"'layer': {wrapper} cannot wrap {spec.name}: it takes one input")
    known = {p.name for p in spec.params}
    for key in params:
        if key not in known:
            raise ParamError(f"'layer': {spec.name} has no parameter '{key}'")
    for p in spec.params:
        if p.name not in params:
            raise ParamError(f"'layer': {spec.name} is missing the parameter '{p.name}'")
        value = params[p.name]
        if value is None and not p.required and p.default is None:
            continue
        if p.type.convert(value, p.name) != value:
            raise ParamError(f"'layer': {spec.name} parameter '{p.name}' is not in canonical form")
    if spec.check is not None:
        spec.check(params)
    return spec, params


# -- Bidirectional ------------------------------------------------------------------------------


def _bidi_check(attrs: dict) -> None:
    spec, a = validated_inner(attrs["layer"], "Bidirectional")
    if a["go_backwards"]:
        raise ParamError(f"'layer' must not set go_backwards: Bidirectional runs the {spec.name} "
                         "both ways itself (Keras refuses it too)")


def _bidi_results(attrs: dict) -> int:
    spec, a = inner_layer(attrs["layer"])
    return 1 + 2 * (spec.results(a) - 1)


def _bidi_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    spec, a = inner_layer(attrs["layer"])
    y, *states = spec.shape(a, ins, ctx)
    assert y.shape is not None
    if attrs["merge_mode"] == "concat":
        y = y.with_shape((*y.shape[:-1], 2 * y.shape[-1]))
    return [y, *states, *states]


def _bidi_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    spec, a = inner_layer(attrs["layer"])
    fwd = spec.weights(a, ins)
    return {**fwd, **{k + REVERSE: v for k, v in fwd.items()}}


def _bidi_reference(attrs: dict, xs: list[np.ndarray],
                    w: dict[str, np.ndarray]) -> list[np.ndarray]:
    spec, a = inner_layer(attrs["layer"])
    fwd_w = {k: v for k, v in w.items() if not k.endswith(REVERSE)}
    bwd_w = {k[:-len(REVERSE)]: v for k, v in w.items() if k.endswith(REVERSE)}
    y_f, *s_f = spec.reference(a, xs, fwd_w)
    y_b, *s_b = spec.reference(dict(a, go_backwards=True), xs, bwd_w)
    if a["return_sequences"]:
        y_b = y_b[:, ::-1]  # back into time order
    mode = attrs["merge_mode"]
    if mode == "concat":
        y = np.concatenate([y_f, y_b], axis=-1)
    elif mode == "sum":
        y = y_f + y_b
    elif mode == "mul":
        y = y_f * y_b
    else:
        y = (y_f.astype(np.float64) + y_b) / 2.0
    return [y.astype(np.float32), *s_f, *s_b]


def _bidi_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Per sample: both directions, plus one flop per merged element (two for 'ave')."""
    spec, a = inner_layer(attrs["layer"])
    y = outs[0].shape
    assert y is not None
    if attrs["merge_mode"] == "concat":
        y = (*y[:-1], y[-1] // 2) if isinstance(y[-1], int) else y
    inner_outs = [TensorType(y, "f32"), *outs[1:1 + spec.results(a) - 1]]
    merge = {"concat": 0, "sum": 1, "mul": 1, "ave": 2}[attrs["merge_mode"]]
    return 2 * spec.flops(a, ins, inner_outs) + merge * product(list(y[1:]))


def _bidi_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Both directions as scans (the backward one with ``reverse``, its sequence output kept in
    time order, so no flip is needed), merged with tensor.concat or an elementwise op."""
    spec, a = inner_layer(attrs["layer"])
    y_f, *s_f = lower_recurrent(spec.name, b, a, xs[0])
    y_b, *s_b = lower_recurrent(spec.name, b, dict(a, go_backwards=True), xs[0],
                                weight=lambda p: b.weight(p + REVERSE), time_order=True)
    mode = attrs["merge_mode"]
    if mode == "concat":
        assert y_f.type.shape is not None
        y = b.op("tensor.concat", [y_f, y_b], {"axis": len(y_f.type.shape) - 1})
    elif mode == "ave":
        y = b.binary("mul", b.binary("add", y_f, y_b), b.scalar(0.5))  # exact: halving
    else:
        y = b.binary({"sum": "add", "mul": "mul"}[mode], y_f, y_b)
    return [y, *s_f, *s_b]


BIDIRECTIONAL = register(LayerSpec(
    name="Bidirectional",
    params=(
        Param("layer", LayerArg(allowed=RECURRENT_KINDS),
              doc="the recurrent layer to run both ways: SimpleRNN, LSTM or GRU"),
        Param("merge_mode", Choice(("concat", "sum", "mul", "ave")), "concat",
              doc="how the forward and backward outputs combine (concat: forward first)"),
    ),
    positional=("layer", "merge_mode"),
    shape=_bidi_shape, reference=_bidi_reference, weights=_bidi_weights, flops=_bidi_flops,
    check=_bidi_check, num_results=_bidi_results, lower=_bidi_lower,
    doc="Runs a recurrent layer forwards and backwards and merges the outputs; backward "
        "weights end in _reverse as torch's bidirectional modules.",
    example="Bidirectional(LSTM(64, return_sequences=true))",
))


# -- TimeDistributed ---------------------------------------------------------------------------


def _td_check(attrs: dict) -> None:
    spec, a = validated_inner(attrs["layer"], "TimeDistributed")
    if spec.results(a) != 1:
        raise ParamError(f"'layer' must be a layer with one result, but this {spec.name} has "
                         f"{spec.results(a)}; set return_state=false")


def _step_type(t: TensorType, spec: LayerSpec) -> TensorType:
    """One time step of a TimeDistributed input: (batch, time, ...) -> (batch, ...)."""
    assert t.shape is not None
    if len(t.shape) < 3:
        raise ShapeError(
            f"TimeDistributed expects input (batch, time, ...), got {shape_str(t.shape)}",
            f"it applies {spec.name} to every step of axis 1; without a time axis use "
            f"{spec.name} on its own",
        )
    return t.with_shape((t.shape[0], *t.shape[2:]))


def _td_shape(attrs: dict, ins: list[TensorType], ctx: ShapeContext) -> list[TensorType]:
    spec, a = inner_layer(attrs["layer"])
    step = _step_type(ins[0], spec)
    assert ins[0].shape is not None and step.shape is not None
    try:
        (out,) = spec.shape(a, [step], ctx)
    except ShapeError as e:
        raise ShapeError(
            f"TimeDistributed({spec.name}) runs {spec.name} on each step "
            f"{shape_str(step.shape)}: {e.message}", e.hint) from None
    assert out.shape is not None and out.shape
    return [out.with_shape((out.shape[0], ins[0].shape[1], *out.shape[1:]))]


def _td_weights(attrs: dict, ins: list[TensorType]) -> dict[str, WeightSpec]:
    spec, a = inner_layer(attrs["layer"])
    return spec.weights(a, [_step_type(ins[0], spec)])


def _td_reference(attrs: dict, xs: list[np.ndarray],
                  w: dict[str, np.ndarray]) -> list[np.ndarray]:
    spec, a = inner_layer(attrs["layer"])
    x = xs[0]
    n, t = x.shape[0], x.shape[1]
    (y,) = spec.reference(a, [x.reshape(n * t, *x.shape[2:])], w)
    return [np.asarray(y).reshape(n, t, *y.shape[1:])]


def _td_flops(attrs: dict, ins: list[TensorType], outs: list[TensorType]) -> Dim:
    """Per sample: the wrapped layer's per-sample count once per time step."""
    spec, a = inner_layer(attrs["layer"])
    step_in = _step_type(ins[0], spec)
    assert ins[0].shape is not None and outs[0].shape is not None
    step_out = outs[0].with_shape((outs[0].shape[0], *outs[0].shape[2:]))
    return ins[0].shape[1] * spec.flops(a, [step_in], [step_out])


def _td_lower(b: TensorBuilder, attrs: dict, xs: list[Value]) -> list[Value]:
    """Fold (batch, time, ...) into (batch * time, ...), run the wrapped layer's own lowering
    rule with this builder (so its weights are this layer's ``<name>.<param>``), unfold."""
    spec, a = inner_layer(attrs["layer"])
    if spec.lower is None:
        raise NotImplementedError(
            f"TimeDistributed cannot lower {spec.name}: {spec.name} has no tensor lowering rule")
    x = xs[0]
    assert x.type.shape is not None
    n, t, *rest = x.type.shape
    (y,) = spec.lower(b, a, [b.reshape(x, (n * t, *rest))])
    assert y.type.shape is not None
    return [b.reshape(y, (n, t, *y.type.shape[1:]))]


TIME_DISTRIBUTED = register(LayerSpec(
    name="TimeDistributed",
    params=(
        Param("layer", LayerArg(),
              doc="the single-input layer applied to every step, with one set of weights"),
    ),
    positional=("layer",),
    shape=_td_shape, reference=_td_reference, weights=_td_weights, flops=_td_flops,
    check=_td_check, lower=_td_lower,
    doc="Applies a layer to every step of axis 1: (batch, time, ...) -> (batch, time, ...'), "
        "one set of weights.",
    example='TimeDistributed(Dense(64, "relu"))',
))
