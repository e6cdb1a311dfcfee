"""Emitters of the feed-forward layers: dense, convolutions (plain, transposed, depthwise,
separable), pooling (windowed, global, adaptive), reshaping and resampling, regularisation,
normalisation, embedding, activations, merges, residuals and squeeze-and-excitation.

Each maps one catalog layer onto the Keras layer with the same semantics (the catalog follows
Keras's parameters and defaults, so most are one-to-one) and says how the PyTorch-layout
weights convert: Dense ``(out, in)`` -> ``(in, out)``, Conv ``(out, in/g, *k)`` ->
``(*k, in/g, out)``, transposed ``(in, out/g, *k)`` -> ``(*k, out/g, in)``, depthwise
``(in * m, 1, *k)`` -> ``(*k, in, m)``, BatchNorm ``weight/bias/running_mean/running_var`` ->
``gamma/beta/moving_mean/moving_variance`` (``num_batches_tracked`` has no Keras counterpart).

Where Keras's own layer would compute something else on some backend, a small custom layer of
the generated file computes Keras's definition instead (AveragePoolingSame,
LayerNormalizationAxes, RMSNormalizationAxes), and where Keras lacks a parameter it is composed
from Keras layers (GroupedConvTranspose for ``groups``; SqueezeExcitation); snippets.py holds
their source. Where Keras needs a size the model leaves symbolic, the emitter refuses
(``LayerOp.dim``, and ``pycode.literal`` for any dim written as a literal).
"""

from __future__ import annotations

from neuralc.backends.keras.pycode import Code, call, literal
from neuralc.backends.keras.registry import Gen, KerasLayer, LayerOp, Unsupported, emitter
from neuralc.ir.activations import canonical_activation
from neuralc.ir.windows import same_pads

# neuralc activation -> the name keras.activations.get() knows with the same definition.
KERAS_ACTIVATIONS = {
    "linear": "linear", "relu": "relu", "leaky_relu": "leaky_relu", "elu": "elu",
    "selu": "selu", "gelu": "gelu", "swish": "silu", "sigmoid": "sigmoid", "tanh": "tanh",
    "softmax": "softmax", "softplus": "softplus", "softsign": "softsign", "relu6": "relu6",
    "hard_sigmoid": "hard_sigmoid", "exponential": "exponential", "hard_swish": "hard_silu",
    "mish": "mish", "log_softmax": "log_softmax",
}


def activation(name: str) -> str:
    """The Keras name of a neuralc activation (Keras 3 definitions match neuralc's)."""
    canon = canonical_activation(name) or name
    if canon not in KERAS_ACTIVATIONS:
        raise Unsupported(f"Keras has no activation '{name}'")
    return KERAS_ACTIVATIONS[canon]


def _kw(op: LayerOp, keras_defaults: dict, **values) -> dict:
    """Keyword arguments that differ from Keras's defaults, then ``name``."""
    out = {k: v for k, v in values.items() if k not in keras_defaults or keras_defaults[k] != v}
    out["name"] = op.name
    return out


def _bias(op: LayerOp) -> str:
    return f", {op.w('bias')}" if op.has("bias") else ""


# -- dense and convolution -------------------------------------------------------------------------


@emitter("Dense", "Output")
def dense(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    kw = _kw(op, {"activation": "linear", "use_bias": True},
             activation=activation(a["activation"]), use_bias=a["use_bias"])
    return KerasLayer(call("layers.Dense", a["units"], **kw),
                      [("", f"[{op.w('weight')}.T{_bias(op)}]")])


@emitter("Conv1D", "Conv2D", "Conv3D")
def conv(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    n = len(a["kernel_size"])
    ones = [1] * n
    kw = _kw(op, {"strides": ones, "padding": "valid", "dilation_rate": ones, "groups": 1,
                  "activation": "linear", "use_bias": True},
             strides=a["strides"], padding=a["padding"], dilation_rate=a["dilation_rate"],
             groups=a["groups"], activation=activation(a["activation"]), use_bias=a["use_bias"])
    gen.use("_conv_kernel")
    return KerasLayer(call(f"layers.Conv{n}D", a["filters"], a["kernel_size"], **kw),
                      [("", f"[_conv_kernel({op.w('weight')}){_bias(op)}]")])


@emitter("Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose")
def conv_transpose(op: LayerOp, gen: Gen) -> KerasLayer:
    """torch ConvTranspose (in, out, *k) -> Keras (*k, out, in): the same axis reversal."""
    a = op.attrs
    if a["groups"] != 1:
        gen.use("GroupedConvTranspose")
    n = len(a["kernel_size"])
    ones = [1] * n
    kw = _kw(op, {"strides": ones, "padding": "valid", "output_padding": None,
                  "dilation_rate": ones, "activation": "linear", "use_bias": True},
             strides=a["strides"], padding=a["padding"], output_padding=a["output_padding"],
             dilation_rate=a["dilation_rate"], activation=activation(a["activation"]),
             use_bias=a["use_bias"])
    gen.use("_conv_kernel")
    if a["groups"] == 1:
        return KerasLayer(call(f"layers.Conv{n}DTranspose", a["filters"], a["kernel_size"], **kw),
                          [("", f"[_conv_kernel({op.w('weight')}){_bias(op)}]")])
    ctor = call("GroupedConvTranspose", a["filters"], a["kernel_size"], a["groups"], **kw)
    gen.use("_transpose_group")
    return KerasLayer(ctor, [(f".convs[{g}]", f"_transpose_group({op.w('weight')}, "
                                              f"{op.opt('bias')}, {a['groups']}, {g})")
                             for g in range(a["groups"])])


@emitter("DepthwiseConv1D", "DepthwiseConv2D")
def depthwise_conv(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    n = len(a["kernel_size"])
    ones = [1] * n
    kw = _kw(op, {"strides": ones, "padding": "valid", "depth_multiplier": 1,
                  "dilation_rate": ones, "activation": "linear", "use_bias": True},
             strides=a["strides"], padding=a["padding"], depth_multiplier=a["depth_multiplier"],
             dilation_rate=a["dilation_rate"], activation=activation(a["activation"]),
             use_bias=a["use_bias"])
    gen.use("_depthwise_kernel")
    return KerasLayer(call(f"layers.DepthwiseConv{n}D", a["kernel_size"], **kw),
                      [("", f"[_depthwise_kernel({op.w('weight')}, {a['depth_multiplier']})"
                            f"{_bias(op)}]")])


@emitter("SeparableConv1D", "SeparableConv2D")
def separable_conv(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    n = len(a["kernel_size"])
    ones = [1] * n
    kw = _kw(op, {"strides": ones, "padding": "valid", "depth_multiplier": 1,
                  "dilation_rate": ones, "activation": "linear", "use_bias": True},
             strides=a["strides"], padding=a["padding"], depth_multiplier=a["depth_multiplier"],
             dilation_rate=a["dilation_rate"], activation=activation(a["activation"]),
             use_bias=a["use_bias"])
    gen.use("_depthwise_kernel", "_conv_kernel")
    bias = f", {op.w('pointwise.bias')}" if op.has("pointwise.bias") else ""
    arrays = (f"[_depthwise_kernel({op.w('depthwise.weight')}, {a['depth_multiplier']}), "
              f"_conv_kernel({op.w('pointwise.weight')}){bias}]")
    return KerasLayer(call(f"layers.SeparableConv{n}D", a["filters"], a["kernel_size"], **kw),
                      [("", arrays)])


# -- pooling ---------------------------------------------------------------------------------------


def _odd_same_padding(op: LayerOp) -> bool:
    """Whether Keras 'same' padding may put more on one side of some axis (a symbolic axis
    may, depending on its size)."""
    a = op.attrs
    strides = a["strides"] if a["strides"] is not None else a["pool_size"]
    for size, k, s in zip(op.in_shape[1:-1], a["pool_size"], strides):
        if not isinstance(size, int):
            return True
        before, after = same_pads(size, k, s)
        if before != after:
            return True
    return False


@emitter(*[f"{b}{n}D" for b in ("MaxPooling", "AveragePooling") for n in (1, 2, 3)])
def pooling(op: LayerOp, gen: Gen) -> KerasLayer:
    """Average pooling with uneven 'same' padding is AveragePoolingSame: Keras's torch backend
    pads such windows by repeating the edge and counts the copies, where Keras's definition
    (TensorFlow's, JAX's, neuralc's) averages the real elements only."""
    a = op.attrs
    kw = _kw(op, {"strides": None, "padding": "valid"}, strides=a["strides"],
             padding=a["padding"])
    if op.spec.name.startswith("Average") and a["padding"] == "same" and _odd_same_padding(op):
        gen.use("AveragePoolingSame")
        kw.pop("padding")
        return KerasLayer(call("AveragePoolingSame", a["pool_size"], **kw))
    return KerasLayer(call(f"layers.{op.spec.name}", a["pool_size"], **kw))


@emitter(*[f"Global{b}{n}D" for b in ("MaxPooling", "AveragePooling") for n in (1, 2, 3)])
def global_pooling(op: LayerOp, gen: Gen) -> KerasLayer:
    kw = _kw(op, {"keepdims": False}, keepdims=op.attrs["keepdims"])
    return KerasLayer(call(f"layers.{op.spec.name}", **kw))


@emitter(*[f"Adaptive{b}Pooling{n}D" for b in ("Max", "Average") for n in (1, 2, 3)])
def adaptive_pooling(op: LayerOp, gen: Gen) -> KerasLayer:
    """Keras 3's adaptive pooling uses PyTorch's windows, as neuralc's does."""
    return KerasLayer(call(f"layers.{op.spec.name}", op.attrs["output_size"], name=op.name))


# -- resampling ------------------------------------------------------------------------------------


@emitter("ZeroPadding1D", "ZeroPadding2D", "ZeroPadding3D")
def zero_padding(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call(f"layers.{op.spec.name}", op.attrs["padding"], name=op.name))


@emitter("Cropping1D", "Cropping2D", "Cropping3D")
def cropping(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call(f"layers.{op.spec.name}", op.attrs["cropping"], name=op.name))


@emitter("UpSampling1D", "UpSampling2D", "UpSampling3D")
def up_sampling(op: LayerOp, gen: Gen) -> KerasLayer:
    kw = {}
    if op.attrs.get("interpolation", "nearest") != "nearest":
        kw["interpolation"] = op.attrs["interpolation"]
    return KerasLayer(call(f"layers.{op.spec.name}", op.attrs["size"], **kw, name=op.name))


# -- reshaping and regularisation ------------------------------------------------------------------


@emitter("Flatten")
def flatten(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.Flatten", name=op.name))


@emitter("Reshape")
def reshape(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.Reshape", op.attrs["target_shape"], name=op.name))


@emitter("Permute")
def permute(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.Permute", op.attrs["dims"], name=op.name))


@emitter("RepeatVector")
def repeat_vector(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.RepeatVector", op.attrs["n"], name=op.name))


@emitter("Dropout", "AlphaDropout")
def dropout(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    kw = _kw(op, {"noise_shape": None, "seed": None}, noise_shape=a["noise_shape"],
             seed=a["seed"])
    return KerasLayer(call(f"layers.{op.spec.name}", a["rate"], **kw))


@emitter("SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianDropout")
def spatial_dropout(op: LayerOp, gen: Gen) -> KerasLayer:
    kw = _kw(op, {"seed": None}, seed=op.attrs["seed"])
    return KerasLayer(call(f"layers.{op.spec.name}", op.attrs["rate"], **kw))


@emitter("GaussianNoise")
def gaussian_noise(op: LayerOp, gen: Gen) -> KerasLayer:
    kw = _kw(op, {"seed": None}, seed=op.attrs["seed"])
    return KerasLayer(call("layers.GaussianNoise", op.attrs["stddev"], **kw))


@emitter("ActivityRegularization")
def activity_regularization(op: LayerOp, gen: Gen) -> KerasLayer:
    kw = _kw(op, {"l1": 0.0, "l2": 0.0}, l1=op.attrs["l1"], l2=op.attrs["l2"])
    return KerasLayer(call("layers.ActivityRegularization", **kw))


# -- normalisation ---------------------------------------------------------------------------------


def _axis(op: LayerOp, axis: int) -> int:
    """A non-negative axis: Keras sorts a list of axes as given, so -1 and 1 would misorder."""
    return axis + op.rank if axis < 0 else axis


def _affine(op: LayerOp) -> str:
    """``[gamma, beta]`` as far as the layer has them (torch's weight and bias)."""
    return ", ".join(op.w(p) for p in ("weight", "bias") if op.has(p))


@emitter("BatchNormalization")
def batch_norm(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    kw = _kw(op, {"axis": -1, "momentum": 0.99, "epsilon": 1e-3, "center": True, "scale": True},
             axis=a["axis"], momentum=a["momentum"], epsilon=a["epsilon"], center=a["center"],
             scale=a["scale"])
    arrays = [op.w(p) for p in ("weight", "bias", "running_mean", "running_var") if op.has(p)]
    # num_batches_tracked counts training steps for torch's momentum=None mode; Keras has none.
    return KerasLayer(call("layers.BatchNormalization", **kw),
                      [("", "[" + ", ".join(arrays) + "]")])


def _trailing(op: LayerOp, axes: list[int]) -> bool:
    """Whether ``axes`` (non-negative, sorted) are the last axes of the input."""
    return axes == list(range(op.rank - len(axes), op.rank))


def _axes_code(axes: list[int]) -> Code:
    return Code(literal(axes[0]) if len(axes) == 1 else repr(axes))


@emitter("LayerNormalization")
def layer_norm(op: LayerOp, gen: Gen) -> KerasLayer:
    """Over axes that are not the last ones it is LayerNormalizationAxes: Keras's torch backend
    hands any contiguous axes to torch's layer_norm, which normalises the trailing axes only."""
    a = op.attrs
    axes = sorted(_axis(op, x) for x in a["axis"])
    kw = _kw(op, {"epsilon": 1e-3, "center": True, "scale": True}, epsilon=a["epsilon"],
             center=a["center"], scale=a["scale"])
    weights = [("", f"[{_affine(op)}]")] if op.weight_specs() else []
    if not _trailing(op, axes):
        gen.use("LayerNormalizationAxes")
        return KerasLayer(call("LayerNormalizationAxes", axes, **kw), weights)
    return KerasLayer(call("layers.LayerNormalization", _axes_code(axes), **kw), weights)


@emitter("GroupNormalization", "InstanceNormalization")
def group_norm(op: LayerOp, gen: Gen) -> KerasLayer:
    """InstanceNormalization is GroupNormalization with one group per channel (groups=-1);
    Keras's GroupNormalization needs the number of channels even without an affine."""
    a = op.attrs
    groups = a.get("groups", -1)
    op.dim(a["axis"], f"number of channels (axis {_axis(op, a['axis'])}) for its "
                      "GroupNormalization")
    kw = _kw(op, {"axis": -1, "epsilon": 1e-3, "center": True, "scale": True}, axis=a["axis"],
             epsilon=a["epsilon"], center=a["center"], scale=a["scale"])
    return KerasLayer(call("layers.GroupNormalization", groups, **kw),
                      [("", f"[{_affine(op)}]")] if op.weight_specs() else [])


@emitter("RMSNormalization")
def rms_norm(op: LayerOp, gen: Gen) -> KerasLayer:
    """Keras's RMSNormalization always has a scale; without one it is frozen at ones. Over
    axes that are not the last ones, or without a scale over axes the model leaves symbolic
    (Keras would size its scale from them), it is RMSNormalizationAxes: Keras's torch backend
    hands such axes to torch.rms_norm, which normalises the trailing axes only."""
    a = op.attrs
    axes = sorted(_axis(op, x) for x in a["axis"])
    kw = _kw(op, {"epsilon": 1e-6}, epsilon=a["epsilon"])
    symbolic = any(not isinstance(op.in_shape[x], int) for x in axes)
    if not _trailing(op, axes) or (symbolic and not a["scale"]):
        gen.use("RMSNormalizationAxes")
        ctor = call("RMSNormalizationAxes", axes, **kw, scale=a["scale"])
        return KerasLayer(ctor, [("", f"[{op.w('weight')}]")] if a["scale"] else [])
    if not a["scale"]:
        kw = {**kw, "trainable": False}
    ctor = call("layers.RMSNormalization", _axes_code(axes), **kw)
    if a["scale"]:
        return KerasLayer(ctor, [("", f"[{op.w('weight')}]")])
    shape = [op.dim(x, f"size of axis {x}") for x in axes]
    return KerasLayer(ctor, [("", f"[np.ones({literal(shape)}, np.float32)]")])


# -- embedding -------------------------------------------------------------------------------------


@emitter("Embedding")
def embedding(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    return KerasLayer(call("layers.Embedding", a["input_dim"], a["output_dim"], name=op.name),
                      [("", f"[{op.w('weight')}]")])


# -- activations -----------------------------------------------------------------------------------


@emitter("Activation")
def activation_layer(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    name = canonical_activation(a["activation"])
    if a["alpha"] is not None and name == "leaky_relu":
        return KerasLayer(call("layers.LeakyReLU", negative_slope=a["alpha"], name=op.name))
    if a["alpha"] is not None and name == "elu":
        return KerasLayer(call("layers.ELU", alpha=a["alpha"], name=op.name))
    return KerasLayer(call("layers.Activation", activation(a["activation"]), name=op.name))


@emitter("ReLU")
def relu(op: LayerOp, gen: Gen) -> KerasLayer:
    a = op.attrs
    kw = _kw(op, {"max_value": None, "negative_slope": 0.0, "threshold": 0.0},
             max_value=a["max_value"], negative_slope=a["negative_slope"],
             threshold=a["threshold"])
    return KerasLayer(call("layers.ReLU", **kw))


@emitter("LeakyReLU")
def leaky_relu(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.LeakyReLU", negative_slope=op.attrs["negative_slope"],
                           name=op.name))


@emitter("ELU")
def elu(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.ELU", alpha=op.attrs["alpha"], name=op.name))


@emitter("Softmax")
def softmax(op: LayerOp, gen: Gen) -> KerasLayer:
    axes = sorted(_axis(op, x) for x in op.attrs["axis"])
    axis = axes[0] if len(axes) == 1 else axes
    return KerasLayer(call("layers.Softmax", axis=axis, name=op.name))


@emitter("PReLU")
def prelu(op: LayerOp, gen: Gen) -> KerasLayer:
    """torch's per-channel (or single) slope is Keras's alpha shared over the other axes."""
    rank = op.rank
    shared = op.attrs["num_parameters"] == 1
    axes = list(range(1, rank)) if shared else list(range(1, rank - 1))
    init = Code(call("keras.initializers.Constant", op.attrs["init"]))
    kw: dict = {"alpha_initializer": init}
    if axes:
        kw["shared_axes"] = axes
    shape = [1] * (rank - 1) if shared else [1] * (rank - 2) + [op.dim(-1, "number of channels")]
    return KerasLayer(call("layers.PReLU", **kw, name=op.name),
                      [("", f"[{op.w('weight')}.reshape({literal(shape)})]")])


# -- merges and residuals --------------------------------------------------------------------------


@emitter("Add", "Subtract", "Multiply", "Average", "Maximum")
def merge(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call(f"layers.{op.spec.name}", name=op.name), call="list")


@emitter("Concatenate")
def concatenate(op: LayerOp, gen: Gen) -> KerasLayer:
    return KerasLayer(call("layers.Concatenate", axis=op.attrs["axis"], name=op.name),
                      call="list")


@emitter("ResidualConnection")
def residual(op: LayerOp, gen: Gen) -> KerasLayer:
    """``x + body(x)`` is an Add; its activation a following Activation layer, which takes the
    residual's name so that the layer called like the neuralc op gives its result."""
    act = op.attrs["activation"]
    if act == "linear":
        return KerasLayer(call("layers.Add", name=op.name), call="list")
    return KerasLayer(call("layers.Add", name=op.name + "_add"), call="list",
                      then=[call("layers.Activation", activation(act), name=op.name)])


# -- blocks ----------------------------------------------------------------------------------------


@emitter("SqueezeExcitation")
def squeeze_excitation(op: LayerOp, gen: Gen) -> KerasLayer:
    """GlobalAveragePooling(keepdims) -> Dense(relu) -> Dense(sigmoid) -> Multiply, one layer."""
    gen.use("SqueezeExcitation")
    c = op.dim(-1, "number of channels")
    hidden = c // op.attrs["ratio"]
    ctor = call("SqueezeExcitation", c, hidden, op.rank - 2, name=op.name)
    return KerasLayer(ctor, [
        (".fc1", f"[{op.w('fc1.weight')}.T, {op.w('fc1.bias')}]"),
        (".fc2", f"[{op.w('fc2.weight')}.T, {op.w('fc2.bias')}]"),
    ])
