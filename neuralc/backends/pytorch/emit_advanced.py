"""Emitters of the later layer families: convolution variants, resampling, blocks, recurrent
layers and wrappers, attention and transformer layers.

torch.nn modules are used wherever their parameters carry neuralc's names (ConvTransposeNd,
LSTM/GRU/RNN, TransformerEncoderLayer/DecoderLayer); what torch lacks is a snippet class copied
into the generated file (KerasRNN, ConvLSTM2D, MultiHeadAttention with separate projections,
Keras's dot-product Attention, SqueezeExcitation, ...), whose parameters are registered under
neuralc's names too.
"""

from __future__ import annotations

from neuralc.backends.pytorch.core import (
    EMITTERS,
    EmitError,
    Emitted,
    LayerCtx,
    emitter,
    int_or_tuple,
    tup,
)
from neuralc.backends.pytorch.emit_basic import conv_keywords, conv_padding
from neuralc.ir.windows import effective_window, transpose_crop, transpose_out_dim

# -- transposed, depthwise and separable convolutions ---------------------------------------------


def transpose_plan(kernel: list[int], strides: list[int], dilation: list[int], padding: str,
                   output_padding: list[int] | None) -> tuple[list[int], list[int], list[int]]:
    """Per axis: torch's ``padding`` (the start crop), ``output_padding`` and a cut at the end
    that together give Keras's transposed-convolution output.

    Keras's output length and the crop that realises it are neuralc's own (``transpose_out_dim``
    and ``transpose_crop`` of neuralc.layers.common); torch's ConvTransposeNd gives
    ``(in - 1) * stride - 2 * padding + eff + output_padding`` elements. Both lengths grow by
    ``stride`` per input element, so the plan taken at ``in = 1`` holds for every input size,
    symbolic ones included.
    """
    crops, extras, cuts = [], [], []
    for i, (k, s, d) in enumerate(zip(kernel, strides, dilation)):
        p = None if output_padding is None else output_padding[i]
        out = transpose_out_dim(1, k, s, d, padding, p)
        assert isinstance(out, int)
        crop = transpose_crop(1, k, s, d, out)
        extra = out - (effective_window(k, d) - 2 * crop)  # output_padding, or (< 0) a cut
        if extra >= max(s, d):
            raise EmitError(f"output_padding {extra} is not below the stride or dilation")
        crops.append(crop)
        extras.append(max(extra, 0))
        cuts.append(max(-extra, 0))
    return crops, extras, cuts


@emitter("graph.conv1d_transpose", "graph.conv2d_transpose", "graph.conv3d_transpose")
def conv_transpose(c: LayerCtx) -> Emitted:
    k, s, d = c.static("kernel_size"), c.static("strides"), c.static("dilation_rate")
    crops, extras, cuts = transpose_plan(k, s, d, c.static("padding"),
                                         c.static("output_padding"))
    args = [c.size(c.in_shape()[-1]), c.init("filters"), int_or_tuple(k)]
    if any(v != 1 for v in s):
        args.append(f"stride={int_or_tuple(s)}")
    if any(crops):
        args.append(f"padding={int_or_tuple(crops)}")
    if any(extras):
        args.append(f"output_padding={int_or_tuple(extras)}")
    args += conv_keywords(c, [1], d, c.static("groups"), c.static("use_bias"))
    c.need("channels_first", "channels_last")
    y = f"{c.mod}(channels_first({c.x}))"
    if any(cuts):
        y += "[" + ", ".join([":", ":"] + [f":-{cut}" if cut else ":" for cut in cuts]) + "]"
    return Emitted(c.act(f"channels_last({y})"), f"nn.ConvTranspose{len(k)}d({', '.join(args)})")


@emitter("graph.depthwise_conv1d", "graph.depthwise_conv2d")
def depthwise_conv(c: LayerCtx) -> Emitted:
    k, s, d = c.static("kernel_size"), c.static("strides"), c.static("dilation_rate")
    channels = c.in_shape()[-1]
    c.need("channels_first", "channels_last")
    x, pad_kw = conv_padding(c, f"channels_first({c.x})", k, s, d, c.static("padding"))
    out = c.size(channels * c.static("depth_multiplier"))
    args = [c.size(channels), out, int_or_tuple(k), *pad_kw,
            *conv_keywords(c, s, d, 1, c.static("use_bias")), f"groups={c.size(channels)}"]
    module = f"nn.Conv{len(k)}d({', '.join(args)})"
    return Emitted(c.act(f"channels_last({c.mod}({x}))"), module)


@emitter("graph.separable_conv1d", "graph.separable_conv2d")
def separable_conv(c: LayerCtx) -> Emitted:
    k, s, d = c.static("kernel_size"), c.static("strides"), c.static("dilation_rate")
    n = len(k)
    channels = c.in_shape()[-1]
    mid = c.size(channels * c.static("depth_multiplier"))
    c.need("channels_first", "channels_last", "SeparableConv")
    x, pad_kw = conv_padding(c, f"channels_first({c.x})", k, s, d, c.static("padding"))
    depthwise = ", ".join([c.size(channels), mid, int_or_tuple(k), *pad_kw,
                           *conv_keywords(c, s, d, 1, False), f"groups={c.size(channels)}"])
    bias = "" if c.static("use_bias") else ", bias=False"
    pointwise = f"nn.Conv{n}d({mid}, {c.init('filters')}, 1{bias})"
    module = f"SeparableConv(nn.Conv{n}d({depthwise}), {pointwise})"
    return Emitted(c.act(f"channels_last({c.mod}({x}))"), module)


# -- padding, cropping, upsampling (channels-last throughout) -------------------------------------


def _pairs(value: list) -> list[list[int]]:
    return [value] if isinstance(value[0], int) else value


@emitter("graph.zero_padding1d", "graph.zero_padding2d", "graph.zero_padding3d")
def zero_padding(c: LayerCtx) -> Emitted:
    flat = [0, 0] + [p for pair in reversed(_pairs(c.static("padding"))) for p in pair]
    return Emitted(f"F.pad({c.x}, {tup(flat)})")


@emitter("graph.cropping1d", "graph.cropping2d", "graph.cropping3d")
def cropping(c: LayerCtx) -> Emitted:
    parts = [":"]
    for before, after in _pairs(c.static("cropping")):
        start = str(before) if before else ""
        parts.append(f"{start}:-{after}" if after else f"{start}:")
    return Emitted(f"{c.x}[{', '.join(parts)}]")


@emitter("graph.up_sampling1d", "graph.up_sampling2d", "graph.up_sampling3d")
def up_sampling(c: LayerCtx) -> Emitted:
    size = c.static("size")
    sizes = [size] if isinstance(size, int) else size
    if "interpolation" in c.attrs and c.static("interpolation") == "bilinear":
        c.need("channels_first", "channels_last")
        return Emitted(f"channels_last(F.interpolate(channels_first({c.x}), "
                       f"scale_factor={tup([float(f) for f in sizes])}, mode=\"bilinear\", "
                       "align_corners=False))")
    expr = c.x
    for axis, f in enumerate(sizes, start=1):
        if f != 1:
            expr = f"{expr}.repeat_interleave({f}, dim={axis})"
    return Emitted(expr)


# -- blocks ---------------------------------------------------------------------------------------


@emitter("graph.squeeze_excitation")
def squeeze_excitation(c: LayerCtx) -> Emitted:
    channels = c.in_shape()[-1]
    if not isinstance(channels, int):
        raise EmitError("the gate's hidden width (channels // ratio) must be a fixed number")
    c.need("SqueezeExcitation")
    return Emitted(f"{c.mod}({c.x})",
                   f"SqueezeExcitation({channels}, {channels // c.static('ratio')})")


# -- recurrent layers and wrappers ----------------------------------------------------------------

_TORCH_RNN = {"SimpleRNN": "RNN", "LSTM": "LSTM", "GRU": "GRU"}


def _torch_has(kind: str, a: dict) -> bool:
    """Whether torch.nn.RNN/LSTM/GRU computes this layer (else the KerasRNN snippet does)."""
    if a["dropout"] or a["recurrent_dropout"]:
        return False  # Keras's per-sequence input/recurrent masks while training
    if kind == "SimpleRNN":
        return a["activation"] in ("tanh", "relu")
    return (a["activation"] == "tanh" and a.get("recurrent_activation") == "sigmoid"
            and a.get("reset_after", True))


def _rnn_module(c: LayerCtx, kind: str, features: str, bidirectional: bool) -> str:
    a = c.attrs
    for key in ("activation", "recurrent_activation", "use_bias", "reset_after", "dropout",
                "recurrent_dropout"):
        if key in a:
            c.static(key)
    units = c.init("units")
    if _torch_has(kind, a):
        kw = ["batch_first=True"]
        if kind == "SimpleRNN" and a["activation"] == "relu":
            kw.insert(0, 'nonlinearity="relu"')
        if not a["use_bias"]:
            kw.append("bias=False")
        if bidirectional:
            kw.append("bidirectional=True")
        return f"nn.{_TORCH_RNN[kind]}({features}, {units}, {', '.join(kw)})"
    c.need("KerasRNN")
    kw = [f"activation={a['activation']!r}"]
    if kind != "SimpleRNN" and a["recurrent_activation"] != "sigmoid":
        kw.append(f"recurrent_activation={a['recurrent_activation']!r}")
    if not a["use_bias"]:
        kw.append("bias=False")
    if kind == "GRU" and not a["reset_after"]:
        kw.append("reset_after=False")
    if bidirectional:
        kw.append("bidirectional=True")
    for key in ("dropout", "recurrent_dropout"):
        if a[key]:
            kw.append(f"{key}={a[key]!r}")
    return f"KerasRNN({kind!r}, {features}, {units}, {', '.join(kw)})"


@emitter("graph.simple_rnn", "graph.lstm", "graph.gru")
def recurrent(c: LayerCtx) -> Emitted:
    kind = c.spec.name
    module = _rnn_module(c, kind, c.size(c.in_shape()[-1]), False)
    x = f"{c.x}.flip(1)" if c.static("go_backwards") else c.x  # Keras keeps processed order
    call = f"{c.mod}({x})"
    seqs = c.static("return_sequences")
    if c.static("return_state"):
        c.need("keras_states")
        return Emitted(f"keras_states({call}, return_sequences={seqs})", module,
                       results=3 if kind == "LSTM" else 2)
    return Emitted(f"{call}[0]" if seqs else f"{call}[0][:, -1]", module)


@emitter("graph.bidirectional")
def bidirectional(c: LayerCtx) -> Emitted:
    inner = c.inner()
    kind = inner.spec.name
    a = inner.attrs
    module = _rnn_module(inner, kind, c.size(c.in_shape()[-1]), True)
    x = f"{c.x}.flip(1)" if inner.static("go_backwards") else c.x
    call = f"{c.mod}({x})"
    seqs, state, mode = a["return_sequences"], a["return_state"], c.static("merge_mode")
    inner.static("return_sequences")
    inner.static("return_state")
    if seqs and mode == "concat" and not state:
        return Emitted(f"{call}[0]", module)  # torch's layout is Keras's concat
    c.need("bidirectional_result")
    results = 1 + (2 * (2 if kind == "LSTM" else 1) if state else 0)
    return Emitted(f"bidirectional_result({call}, {inner.init('units')}, {seqs}, {mode!r}, "
                   f"{state})", module, results=results)


@emitter("graph.time_distributed")
def time_distributed(c: LayerCtx) -> Emitted:
    inner = c.inner(step=True)
    fn = EMITTERS.get(inner.spec.op_name)
    if fn is None:
        raise EmitError(f"no PyTorch form for the wrapped {inner.spec.name}")
    body = fn(inner)
    if body.results != 1:
        raise EmitError(f"the wrapped {inner.spec.name} has several results")
    c.need("over_time")
    if body.expr == f"{c.mod}(s)":
        return Emitted(f"over_time({c.mod}, {c.x})", body.module)
    return Emitted(f"over_time(lambda s: {body.expr}, {c.x})", body.module)


@emitter("graph.conv_lstm2d")
def conv_lstm2d(c: LayerCtx) -> Emitted:
    a = {k: c.static(k) for k in c.attrs if k not in ("filters", "name")}
    kw = []
    defaults = {"strides": [1, 1], "padding": "valid", "dilation_rate": [1, 1],
                "activation": "tanh", "recurrent_activation": "sigmoid", "use_bias": True,
                "return_sequences": False, "return_state": False, "dropout": 0.0,
                "recurrent_dropout": 0.0}
    names = {"dilation_rate": "dilation", "use_bias": "bias"}
    for key, default in defaults.items():
        if a[key] != default:
            value = tup(a[key]) if isinstance(a[key], list) else repr(a[key])
            kw.append(f"{names.get(key, key)}={value}")
    c.need("ConvLSTM2D")
    module = (f"ConvLSTM2D({c.size(c.in_shape()[-1])}, {c.init('filters')}, "
              f"{tup(a['kernel_size'])}{''.join(', ' + k for k in kw)})")
    x = f"{c.x}.flip(1)" if a["go_backwards"] else c.x
    return Emitted(f"{c.mod}({x})", module, results=3 if a["return_state"] else 1)


# -- attention and transformer layers -------------------------------------------------------------


@emitter("graph.multi_head_attention")
def multi_head_attention(c: LayerCtx) -> Emitted:
    heads, key_dim = c.init("num_heads"), c.init("key_dim")
    value_dim = key_dim if c.static("value_dim") is None else c.init("value_dim")
    dq = c.size(c.in_shape(0)[-1])
    dkv = c.size(c.in_shape(1)[-1]) if len(c.inputs) > 1 else dq
    out = dq if c.static("output_shape") is None else c.init("output_shape")
    kw = []
    if not c.static("use_bias"):
        kw.append("bias=False")
    if c.default("dropout") or "dropout" in c.hp_attrs:
        kw.append(f"dropout={c.init('dropout')}")
    if c.static("causal"):
        kw.append("causal=True")
    c.need("MultiHeadAttention")
    module = f"MultiHeadAttention({', '.join([dq, dkv, heads, key_dim, value_dim, out, *kw])})"
    inputs = [_flat(c, x, i) for i, x in enumerate(c.inputs)]
    return Emitted(_unflat(c, f"{c.mod}({', '.join(inputs)})"), module)


def _flat(c: LayerCtx, x: str, i: int = 0) -> str:
    """A feature map (batch, h, w, c) as the sequence of its positions (attention attends over
    all of them, as Keras's attention_axes); a sequence as it is."""
    return f"{x}.flatten(1, -2)" if len(c.in_shape(i)) > 3 else x


def _unflat(c: LayerCtx, expr: str) -> str:
    """The inverse of :func:`_flat` on the layer's result: back onto the input's positions."""
    return f"{expr}.unflatten(1, {c.x}.shape[1:-1])" if len(c.in_shape()) > 3 else expr


@emitter("graph.attention")
def attention(c: LayerCtx) -> Emitted:
    kw = []
    if c.static("use_scale"):
        kw.append("use_scale=True")
    if c.static("score_mode") != "dot":
        kw.append(f"score_mode={c.static('score_mode')!r}")
    if c.default("dropout") or "dropout" in c.hp_attrs:
        kw.append(f"dropout={c.init('dropout')}")
    if c.static("causal"):
        kw.append("causal=True")
    c.need("DotAttention")
    return Emitted(f"{c.mod}({', '.join(c.inputs)})", f"DotAttention({', '.join(kw)})")


@emitter("graph.positional_encoding")
def positional_encoding(c: LayerCtx) -> Emitted:
    if c.static("encoding") == "learned":
        c.need("LearnedPositions")
        module = f"LearnedPositions({c.init('max_len')}, {c.size(c.in_shape()[-1])})"
    else:
        c.need("SinusoidalPositions")
        module = f"SinusoidalPositions({c.init('max_len')})"
    return Emitted(f"{c.mod}({c.x})", module)


def _transformer_module(c: LayerCtx, cls: str) -> str:
    kw = [c.size(c.in_shape()[-1]), c.init("num_heads"), c.init("ff_dim")]
    if c.default("dropout") != 0.1 or "dropout" in c.hp_attrs:
        kw.append(f"dropout={c.init('dropout')}")
    if c.static("activation") != "relu":
        kw.append(f"activation={c.static('activation')!r}")
    if c.default("epsilon") != 1e-5 or "epsilon" in c.hp_attrs:
        kw.append(f"layer_norm_eps={c.init('epsilon')}")
    kw.append("batch_first=True")
    if c.static("norm_first"):
        kw.append("norm_first=True")
    if not c.static("use_bias"):
        kw.append("bias=False")
    return f"nn.{cls}({', '.join(kw)})"


@emitter("graph.transformer_encoder")
def transformer_encoder(c: LayerCtx) -> Emitted:
    module = _transformer_module(c, "TransformerEncoderLayer")
    x = _flat(c, c.x)
    if c.static("causal"):
        c.need("causal_mask")
        return Emitted(_unflat(c, f"{c.mod}({x}, src_mask=causal_mask({x}), is_causal=True)"),
                       module)
    return Emitted(_unflat(c, f"{c.mod}({x})"), module)


@emitter("graph.transformer_decoder")
def transformer_decoder(c: LayerCtx) -> Emitted:
    module = _transformer_module(c, "TransformerDecoderLayer")
    x, memory = c.inputs[0], c.inputs[1]
    if c.static("causal"):
        c.need("causal_mask")
        return Emitted(f"{c.mod}({x}, {memory}, tgt_mask=causal_mask({x}), tgt_is_causal=True)",
                       module)
    return Emitted(f"{c.mod}({x}, {memory})", module)

