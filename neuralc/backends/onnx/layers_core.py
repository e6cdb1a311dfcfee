"""Dense, reshaping, embedding, regularisation, activation and merge layers as ONNX nodes."""

from __future__ import annotations

from neuralc.backends.onnx.activations import activation, activation_val
from neuralc.backends.onnx.builder import Builder, Layer, Val
from neuralc.backends.onnx.emitters import emits
from neuralc.layers.common import normalize_axis

# -- dense ----------------------------------------------------------------------------------


@emits("dense", "output")
def dense(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Gemm (transB, the PyTorch layout as it is) on a matrix; MatMul + Add on more axes."""
    x = xs[0]
    y = b.linear(b.get(x), layer, "weight", "bias" if layer.attrs["use_bias"] else None, x.rank)
    out = layer.out_types[0]
    return [b.val(out, activation(b, layer.attrs["activation"], y, axis=x.rank - 1))]


# -- reshaping ----------------------------------------------------------------------------------


@emits("flatten")
def flatten(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Row-major over the channels-last axes, so the canonical form."""
    x = xs[0]
    return [b.val(layer.out_types[0], b.op("Flatten", [b.get(x)], axis=1))]


@emits("reshape")
def reshape(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """``0`` keeps the batch dim as it is at run time; ``-1`` as the model says."""
    target = [0, *layer.attrs["target_shape"]]
    return [b.val(layer.out_types[0], b.op("Reshape", [b.get(xs[0]), b.ints(target)]))]


@emits("permute")
def permute(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """No node: the input tensor already is the output, under a relabelled layout."""
    x = xs[0]
    order = [0, *layer.attrs["dims"]]  # output IR axis i is input IR axis order[i]
    inverse = {a: i for i, a in enumerate(order)}
    out = Val(layer.out_types[0])
    for perm, name in x.forms.items():
        out.forms[tuple(inverse[a] for a in perm)] = name
    return [out]


@emits("repeat_vector")
def repeat_vector(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    x = b.unsqueeze(b.get(xs[0]), [1])  # (batch, 1, features), broadcast along axis 1
    return [b.val(layer.out_types[0], b.op("Expand", [x, b.ints([1, layer.attrs["n"], 1])]))]


# -- embedding ----------------------------------------------------------------------------------


@emits("embedding")
def embedding(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Gather rows of the table (the executable range-checks the indices first)."""
    table = b.param(layer, "weight")
    return [b.val(layer.out_types[0], b.op("Gather", [table, b.get(xs[0])], axis=0))]


# -- regularisation: the identity at inference ------------------------------------------------


@emits("dropout", "spatial_dropout1d", "spatial_dropout2d", "spatial_dropout3d",
       "gaussian_noise", "gaussian_dropout", "alpha_dropout", "activity_regularization")
def inference_identity(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """No node: the output is the input (the same tensors: a layout made for one is the
    other's too)."""
    return [Val(layer.out_types[0], xs[0].forms)]


# -- activation layers ----------------------------------------------------------------------------


@emits("activation")
def activation_layer(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    return [activation_val(b, layer.attrs["activation"], xs[0], layer.attrs["alpha"])]


@emits("leaky_re_lu")
def leaky_relu(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    perm, x = b.any(xs[0])
    y = b.op("LeakyRelu", [x], alpha=float(layer.attrs["negative_slope"]))
    return [b.val(layer.out_types[0], y, perm)]


@emits("elu")
def elu(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    perm, x = b.any(xs[0])
    return [b.val(layer.out_types[0], b.op("Elu", [x], alpha=float(layer.attrs["alpha"])), perm)]


@emits("re_lu")
def relu(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Keras's ReLU: x above the threshold (capped), else negative_slope * (x - threshold)."""
    perm, x = b.any(xs[0])
    cap, slope, thr = (layer.attrs["max_value"], layer.attrs["negative_slope"],
                       layer.attrs["threshold"])
    if thr == 0.0 and slope == 0.0:
        y = b.op("Relu", [x]) if cap is None else b.op("Clip", [x, b.scalar(0.0), b.scalar(cap)])
    elif thr == 0.0 and cap is None:
        y = b.op("LeakyRelu", [x], alpha=float(slope))
    else:
        high = x if cap is None else b.op("Min", [x, b.scalar(cap)])
        low = b.op("Mul", [b.op("Sub", [x, b.scalar(thr)]), b.scalar(slope)])
        y = b.op("Where", [b.op("Greater", [x, b.scalar(thr)]), high, low], hint="relu")
    return [b.val(layer.out_types[0], y, perm)]


@emits("softmax")
def softmax(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """One axis: Softmax. Several axes jointly: max-shifted exp over their sum."""
    v = xs[0]
    perm, x = b.any(v)
    axes = sorted(perm.index(normalize_axis(a, v.rank, "Softmax")) for a in layer.attrs["axis"])
    if len(axes) == 1:
        return [b.val(layer.out_types[0], b.op("Softmax", [x], axis=axes[0]), perm)]
    shifted = b.op("Sub", [x, b.reduce("ReduceMax", x, axes, True)])
    e = b.op("Exp", [shifted])
    y = b.op("Div", [e, b.reduce("ReduceSum", e, axes, True)], hint="softmax")
    return [b.val(layer.out_types[0], y, perm)]


@emits("p_re_lu")
def prelu(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """PRelu with the slopes shaped to broadcast along the channel axis of the layout."""
    v = xs[0]
    perm, x = b.any(v)
    slope = b.weight(layer, "weight")
    if slope.size > 1:
        shape = [1] * (v.rank - 1)
        shape[perm.index(v.rank - 1) - 1] = slope.size
        slope = slope.reshape(shape)
    y = b.op("PRelu", [x, b.init(f"{layer.name}.weight", slope)])
    return [b.val(layer.out_types[0], y, perm)]


# -- merges ------------------------------------------------------------------------------------


def _same_form(b: Builder, xs: list[Val]) -> tuple[tuple[int, ...], list[str]]:
    perm = b.common_form(xs)
    return perm, [b.get(x, perm) for x in xs]


def _fold(b: Builder, op: str, names: list[str], hint: str) -> str:
    y = names[0]
    for n in names[1:]:
        y = b.op(op, [y, n], hint=hint)
    return y


@emits("add", "subtract", "multiply", "average", "maximum")
def elementwise_merge(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    """Keras merges broadcast size-1 axes; so do ONNX's (inputs share their rank and layout)."""
    perm, names = _same_form(b, xs)
    kind = layer.kind
    if kind == "subtract":
        y = b.op("Sub", names)
    elif kind == "add":
        y = _fold(b, "Add", names, "add")
    elif kind == "multiply":
        y = _fold(b, "Mul", names, "multiply")
    elif kind == "maximum":
        y = b.op("Max", names)
    else:
        y = b.op("Mul", [_fold(b, "Add", names, "sum"), b.scalar(1.0 / len(names))],
                 hint="average")
    return [b.val(layer.out_types[0], y, perm)]


@emits("concatenate")
def concatenate(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    perm, names = _same_form(b, xs)
    axis = perm.index(normalize_axis(layer.attrs["axis"], xs[0].rank, "Concatenate"))
    return [b.val(layer.out_types[0], b.op("Concat", names, axis=axis), perm)]


@emits("residual_connection")
def residual(b: Builder, layer: Layer, xs: list[Val]) -> list[Val]:
    perm, names = _same_form(b, xs)
    s = b.val(layer.out_types[0], b.op("Add", names, hint="residual"), perm)
    return [activation_val(b, layer.attrs["activation"], s)]
