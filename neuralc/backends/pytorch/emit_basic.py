"""Emitters of the foundation layers: dense, convolution, pooling, reshaping, regularisation,
normalisation, embedding, activations and merges.

Each one writes the torch module whose parameter names are neuralc's weight names (nn.Linear,
nn.ConvNd, nn.BatchNormNd, ...) and a forward expression that keeps the DSL's channels-last
layout at the layer boundary. Keras semantics that torch lacks are spelled out where they
arise: 'same' padding with the odd pixel at the end (F.pad), Keras's epsilon and momentum
(PyTorch's momentum is 1 - Keras's), center/scale switched off one at a time.
"""

from __future__ import annotations

from neuralc.backends.pytorch.core import (
    Emitted,
    LayerCtx,
    activation_code,
    emitter,
    int_or_tuple,
    lit,
    tup,
)
from neuralc.ir.windows import effective_window

# -- dense and convolution -----------------------------------------------------------------------


@emitter("graph.dense", "graph.output")
def dense(c: LayerCtx) -> Emitted:
    bias = "" if c.static("use_bias") else ", bias=False"
    module = f"nn.Linear({c.size(c.in_shape()[-1])}, {c.init('units')}{bias})"
    return Emitted(c.act(f"{c.mod}({c.x})"), module)


def conv_padding(c: LayerCtx, x: str, kernel: list[int], strides: list[int],
                 dilation: list[int], padding: str) -> tuple[str, list[str]]:
    """The channels-first input expression and the torch module's padding keyword for a Keras
    convolution window: 'same' at stride 1 with odd windows is torch's own "same"; strided or
    even 'same' pads as Keras (the odd element at the end); 'causal' pads the start."""
    if padding == "same":
        if all(s == 1 for s in strides) and all(
                effective_window(k, d) % 2 for k, d in zip(kernel, dilation)):
            return x, ['padding="same"']
        x, sym = c.keras_same(x, kernel, strides, dilation, c.in_shape()[1:-1])
        if sym is not None and any(sym):
            return x, [f"padding={int_or_tuple(sym)}"]
        return x, []
    if padding == "causal":
        return f"F.pad({x}, ({effective_window(kernel[0], dilation[0]) - 1}, 0))", []
    return x, []


def conv_keywords(c: LayerCtx, strides: list[int], dilation: list[int], groups: int = 1,
                  bias: bool = True) -> list[str]:
    kw = []
    if any(s != 1 for s in strides):
        kw.append(f"stride={int_or_tuple(strides)}")
    if any(d != 1 for d in dilation):
        kw.append(f"dilation={int_or_tuple(dilation)}")
    if groups != 1:
        kw.append(f"groups={groups}")
    if not bias:
        kw.append("bias=False")
    return kw


@emitter("graph.conv1d", "graph.conv2d", "graph.conv3d")
def conv(c: LayerCtx) -> Emitted:
    k, s, d = c.static("kernel_size"), c.static("strides"), c.static("dilation_rate")
    c.need("channels_first", "channels_last")
    x, pad_kw = conv_padding(c, f"channels_first({c.x})", k, s, d, c.static("padding"))
    args = [c.size(c.in_shape()[-1]), c.init("filters"), int_or_tuple(k), *pad_kw,
            *conv_keywords(c, s, d, c.static("groups"), c.static("use_bias"))]
    module = f"nn.Conv{len(k)}d({', '.join(args)})"
    return Emitted(c.act(f"channels_last({c.mod}({x}))"), module)


# -- pooling --------------------------------------------------------------------------------------


@emitter(*(f"graph.{kind}_pooling{n}d" for kind in ("max", "average") for n in (1, 2, 3)))
def pool(c: LayerCtx) -> Emitted:
    k = c.static("pool_size")
    s = c.static("strides") or k
    n = len(k)
    is_max = c.spec.name.startswith("Max")
    c.need("channels_first", "channels_last")
    x = f"channels_first({c.x})"
    args = [int_or_tuple(k)]
    if s != k:
        args.append(f"stride={int_or_tuple(s)}")
    if c.static("padding") == "same":
        ones = [1] * n
        if is_max:  # torch's own padding of max pooling is -inf, as Keras's
            x, sym = c.keras_same(x, k, s, ones, c.in_shape()[1:-1], value="-math.inf")
            if sym is not None and any(sym):
                args.append(f"padding={int_or_tuple(sym)}")
        else:
            _, sym = c.keras_same(x, k, s, ones, c.in_shape()[1:-1])
            if sym is None:  # asymmetric: the mean of each window's real elements
                c.need("avg_pool_same")
                return Emitted(f"channels_last(avg_pool_same({x}, {tup(k)}, {tup(s)}))")
            if any(sym):
                args += [f"padding={int_or_tuple(sym)}", "count_include_pad=False"]
    module = f"nn.{'Max' if is_max else 'Avg'}Pool{n}d({', '.join(args)})"
    return Emitted(f"channels_last({c.mod}({x}))", module)


@emitter(*(f"graph.global_{kind}_pooling{n}d" for kind in ("max", "average") for n in (1, 2, 3)))
def global_pool(c: LayerCtx) -> Emitted:
    rank = len(c.in_shape())
    dims = list(range(1, rank - 1))
    dim = str(dims[0]) if len(dims) == 1 else tup(dims)
    keep = ", keepdim=True" if c.static("keepdims") else ""
    fn = "amax" if "max" in c.spec.name.lower() else "mean"
    return Emitted(f"{c.x}.{fn}(dim={dim}{keep})")


@emitter(*(f"graph.adaptive_{kind}_pooling{n}d" for kind in ("max", "average") for n in (1, 2, 3)))
def adaptive_pool(c: LayerCtx) -> Emitted:
    out = c.static("output_size")
    kind = "Max" if "Max" in c.spec.name else "Avg"
    c.need("channels_first", "channels_last")
    module = f"nn.Adaptive{kind}Pool{len(out)}d({int_or_tuple(out)})"
    return Emitted(f"channels_last({c.mod}(channels_first({c.x})))", module)


# -- reshaping ------------------------------------------------------------------------------------


@emitter("graph.flatten")
def flatten(c: LayerCtx) -> Emitted:
    if len(c.in_shape()) == 1:  # Keras: (batch,) flattens to (batch, 1)
        return Emitted(f"{c.x}.reshape(-1, 1)")
    return Emitted(f"{c.x}.flatten(1)")


@emitter("graph.reshape")
def reshape(c: LayerCtx) -> Emitted:
    target = ", ".join(str(d) for d in c.static("target_shape"))
    return Emitted(f"{c.x}.reshape({c.x}.shape[0], {target})")


@emitter("graph.permute")
def permute(c: LayerCtx) -> Emitted:
    return Emitted(f"{c.x}.permute(0, {', '.join(str(d) for d in c.static('dims'))})")


@emitter("graph.repeat_vector")
def repeat_vector(c: LayerCtx) -> Emitted:
    return Emitted(f"{c.x}.unsqueeze(1).repeat(1, {c.fwd('n')}, 1)")


# -- regularisation (identity at inference, Keras's noise while training) ----------------------


@emitter("graph.dropout")
def dropout(c: LayerCtx) -> Emitted:
    noise = c.static("noise_shape")
    if noise is None:
        return Emitted(f"{c.mod}({c.x})", f"nn.Dropout({c.init('rate')})")
    c.need("SharedDropout")
    return Emitted(f"{c.mod}({c.x})", f"SharedDropout({c.init('rate')}, {lit(noise)})")


@emitter("graph.spatial_dropout1d", "graph.spatial_dropout2d", "graph.spatial_dropout3d")
def spatial_dropout(c: LayerCtx) -> Emitted:
    n = len(c.in_shape()) - 2
    c.need("channels_first", "channels_last")
    return Emitted(f"channels_last({c.mod}(channels_first({c.x})))",
                   f"nn.Dropout{n}d({c.init('rate')})")


@emitter("graph.gaussian_noise")
def gaussian_noise(c: LayerCtx) -> Emitted:
    c.need("GaussianNoise")
    return Emitted(f"{c.mod}({c.x})", f"GaussianNoise({c.init('stddev')})")


@emitter("graph.gaussian_dropout")
def gaussian_dropout(c: LayerCtx) -> Emitted:
    c.need("GaussianDropout")
    return Emitted(f"{c.mod}({c.x})", f"GaussianDropout({c.init('rate')})")


@emitter("graph.alpha_dropout")
def alpha_dropout(c: LayerCtx) -> Emitted:
    noise = c.static("noise_shape")
    if noise is None:
        return Emitted(f"{c.mod}({c.x})", f"nn.AlphaDropout({c.init('rate')})")
    c.need("SharedAlphaDropout")
    return Emitted(f"{c.mod}({c.x})", f"SharedAlphaDropout({c.init('rate')}, {lit(noise)})")


@emitter("graph.activity_regularization")
def activity_regularization(c: LayerCtx) -> Emitted:
    c.need("ActivityRegularization")
    return Emitted(f"{c.mod}({c.x})",
                   f"ActivityRegularization({c.init('l1')}, {c.init('l2')})")


# -- normalisation --------------------------------------------------------------------------------


def _axis(c: LayerCtx, key: str = "axis") -> int:
    rank = len(c.in_shape())
    a = c.static(key)
    return a + rank if a < 0 else a


def _channels_moved(c: LayerCtx, axis: int, inner: str) -> str:
    """``inner`` (a format with {x}) applied with ``axis`` moved to dim 1 and back."""
    rank = len(c.in_shape())
    if axis == 1:
        return inner.format(x=c.x)
    if axis == rank - 1:
        c.need("channels_first", "channels_last")
        return f"channels_last({inner.format(x=f'channels_first({c.x})')})"
    return f"{inner.format(x=f'{c.x}.movedim({axis}, 1)')}.movedim(1, {axis})"


def _drop_affine(c: LayerCtx, module: str, center: bool, scale: bool) -> str:
    """Keras switches the offset and the scale off separately; torch only both together."""
    missing = [name for name, on in (("weight", scale), ("bias", center)) if not on]
    if missing and (center or scale):
        c.need("without")
        return f"without({module}, {', '.join(repr(m) for m in missing)})"
    return module


def _eps(c: LayerCtx, key: str = "epsilon") -> str:
    return c.init(key)


@emitter("graph.batch_normalization")
def batch_norm(c: LayerCtx) -> Emitted:
    shape = c.in_shape()
    rank, axis = len(shape), _axis(c)
    center, scale = c.static("center"), c.static("scale")
    if "momentum" in c.hp_attrs:
        momentum = f"1.0 - {c.init('momentum')}"
    else:
        momentum = repr(round(1.0 - c.attrs["momentum"], 12))  # torch's is 1 - Keras's
    kw = [f"eps={_eps(c)}", f"momentum={momentum}"]
    if not (center or scale):
        kw.append("affine=False")
    dims = {2: 1, 3: 1, 4: 2, 5: 3}.get(rank, 1)
    module = _drop_affine(c, f"nn.BatchNorm{dims}d({c.size(shape[axis])}, {', '.join(kw)})",
                          center, scale)
    if rank > 5:  # BatchNorm1d over the flattened positions
        moved = f"{c.x}.movedim({axis}, 1)"
        return Emitted(f"{c.mod}({moved}.flatten(2)).reshape({moved}.shape).movedim(1, {axis})",
                       module)
    return Emitted(_channels_moved(c, axis, f"{c.mod}({{x}})"), module)


def _norm_axes(c: LayerCtx) -> tuple[list[int], bool]:
    """The normalised axes (ascending) and whether they are the trailing ones."""
    rank = len(c.in_shape())
    axes = sorted(a + rank if a < 0 else a for a in c.static("axis"))
    return axes, axes == list(range(rank - len(axes), rank))


def _trailing(c: LayerCtx, axes: list[int], trailing: bool) -> str:
    if trailing:
        return f"{c.mod}({c.x})"
    rank = len(c.in_shape())
    dst = list(range(rank - len(axes), rank))
    return f"{c.mod}({c.x}.movedim({tup(axes)}, {tup(dst)})).movedim({tup(dst)}, {tup(axes)})"


def _norm_shape(c: LayerCtx, axes: list[int]) -> str:
    sizes = [c.size(c.in_shape()[a]) for a in axes]
    return sizes[0] if len(sizes) == 1 else "(" + ", ".join(sizes) + ")"


@emitter("graph.layer_normalization")
def layer_norm(c: LayerCtx) -> Emitted:
    axes, trailing = _norm_axes(c)
    center, scale = c.static("center"), c.static("scale")
    kw = [f"eps={_eps(c)}"]
    if not (center or scale):
        kw.append("elementwise_affine=False")
    elif not center:
        kw.append("bias=False")
    module = f"nn.LayerNorm({_norm_shape(c, axes)}, {', '.join(kw)})"
    if center and not scale:
        module = _drop_affine(c, module, center, scale)
    return Emitted(_trailing(c, axes, trailing), module)


@emitter("graph.rms_normalization")
def rms_norm(c: LayerCtx) -> Emitted:
    axes, trailing = _norm_axes(c)
    kw = [f"eps={_eps(c)}"]
    if not c.static("scale"):
        kw.append("elementwise_affine=False")
    return Emitted(_trailing(c, axes, trailing),
                   f"nn.RMSNorm({_norm_shape(c, axes)}, {', '.join(kw)})")


@emitter("graph.group_normalization")
def group_norm(c: LayerCtx) -> Emitted:
    axis = _axis(c)
    channels = c.in_shape()[axis]
    groups = c.static("groups")
    center, scale = c.static("center"), c.static("scale")
    size = c.size(channels)
    kw = [f"eps={_eps(c)}"]
    if not (center or scale):
        kw.append("affine=False")
    module = _drop_affine(
        c, f"nn.GroupNorm({size if groups == -1 else groups}, {size}, {', '.join(kw)})",
        center, scale)
    return Emitted(_channels_moved(c, axis, f"{c.mod}({{x}})"), module)


@emitter("graph.instance_normalization")
def instance_norm(c: LayerCtx) -> Emitted:
    rank, axis = len(c.in_shape()), _axis(c)
    center, scale = c.static("center"), c.static("scale")
    size = c.size(c.in_shape()[axis])
    affine = ", affine=True" if center or scale else ""
    if 3 <= rank <= 5:
        module = f"nn.InstanceNorm{rank - 2}d({size}, eps={_eps(c)}{affine})"
    else:  # one group per channel is instance normalisation at any rank
        off = "" if center or scale else ", affine=False"
        module = f"nn.GroupNorm({size}, {size}, eps={_eps(c)}{off})"
    return Emitted(_channels_moved(c, axis, f"{c.mod}({{x}})"),
                   _drop_affine(c, module, center, scale))


# -- embedding ------------------------------------------------------------------------------------


@emitter("graph.embedding")
def embedding(c: LayerCtx) -> Emitted:
    x = f"{c.x}.long()" if c.input_is_arg[0] else c.x  # any integer dtype, read as int64
    return Emitted(f"{c.mod}({x})", f"nn.Embedding({c.init('input_dim')}, {c.init('output_dim')})")


# -- activation layers ----------------------------------------------------------------------------


@emitter("graph.activation")
def activation_layer(c: LayerCtx) -> Emitted:
    alpha = c.static("alpha")
    if "activation" in c.hp_attrs:
        c.need("apply_activation")
        extra = "" if alpha is None else f", {alpha!r}"
        return Emitted(f"apply_activation({c.fwd('activation')}, {c.x}{extra})")
    return Emitted(activation_code(c.attrs["activation"], c.x, alpha))


@emitter("graph.re_lu")
def relu_layer(c: LayerCtx) -> Emitted:
    top, slope, thr = c.static("max_value"), c.static("negative_slope"), c.static("threshold")
    if thr == 0.0 and slope == 0.0:
        if top is None:
            return Emitted(f"F.relu({c.x})")
        if top == 6.0:
            return Emitted(f"F.relu6({c.x})")
        return Emitted(f"F.relu({c.x}).clamp(max={top!r})")
    if thr == 0.0 and top is None:
        return Emitted(f"F.leaky_relu({c.x}, {slope!r})")
    c.need("keras_relu")
    return Emitted(f"keras_relu({c.x}, {top!r}, {slope!r}, {thr!r})")


@emitter("graph.leaky_re_lu")
def leaky_relu_layer(c: LayerCtx) -> Emitted:
    return Emitted(f"F.leaky_relu({c.x}, {c.fwd('negative_slope')})")


@emitter("graph.elu")
def elu_layer(c: LayerCtx) -> Emitted:
    return Emitted(f"F.elu({c.x}, {c.fwd('alpha')})")


@emitter("graph.softmax")
def softmax_layer(c: LayerCtx) -> Emitted:
    rank = len(c.in_shape())
    axes = sorted({a + rank if a < 0 else a for a in c.static("axis")})
    if len(axes) == 1:
        dim = -1 if axes[0] == rank - 1 else axes[0]
        return Emitted(f"torch.softmax({c.x}, dim={dim})")
    c.need("softmax_over")
    return Emitted(f"softmax_over({c.x}, {tup(axes)})")


@emitter("graph.p_re_lu")
def prelu_layer(c: LayerCtx) -> Emitted:
    shape = c.in_shape()
    shared = c.static("num_parameters") == 1
    count = "1" if shared else c.size(shape[-1])
    module = f"nn.PReLU({count}, init={c.init('init')})"
    if shared or len(shape) == 2:
        return Emitted(f"{c.mod}({c.x})", module)
    c.need("channels_first", "channels_last")  # torch's slopes run along dim 1
    return Emitted(f"channels_last({c.mod}(channels_first({c.x})))", module)


# -- merges ---------------------------------------------------------------------------------------


@emitter("graph.add")
def add(c: LayerCtx) -> Emitted:
    return Emitted(" + ".join(c.inputs))


@emitter("graph.subtract")
def subtract(c: LayerCtx) -> Emitted:
    return Emitted(f"{c.inputs[0]} - {c.inputs[1]}")


@emitter("graph.multiply")
def multiply(c: LayerCtx) -> Emitted:
    return Emitted(" * ".join(c.inputs))


@emitter("graph.average")
def average(c: LayerCtx) -> Emitted:
    return Emitted(f"({' + '.join(c.inputs)}) / {len(c.inputs)}")


@emitter("graph.maximum")
def maximum(c: LayerCtx) -> Emitted:
    expr = c.inputs[0]
    for other in c.inputs[1:]:
        expr = f"torch.maximum({expr}, {other})"
    return Emitted(expr)


@emitter("graph.concatenate")
def concatenate(c: LayerCtx) -> Emitted:
    return Emitted(f"torch.cat([{', '.join(c.inputs)}], dim={c.static('axis')})")


@emitter("graph.residual_connection")
def residual(c: LayerCtx) -> Emitted:
    return Emitted(c.act(f"{c.inputs[0]} + {c.inputs[1]}"))

