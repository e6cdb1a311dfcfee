'''Source text the generated module carries: weight converters and the few custom layers.

Each snippet is a top-level definition of the generated file; the generator includes a snippet
only when an emitter asked for it (``Gen.use``), plus its dependencies, so a generated model
reads as plain Keras with nothing unused. The snippets import nothing beyond the generated
module's own imports (keras, layers, ops, numpy, Path).
'''

from __future__ import annotations

SNIPPETS: dict[str, str] = {}
DEPENDS: dict[str, tuple[str, ...]] = {}


def _snippet(name: str, source: str, depends: tuple[str, ...] = ()) -> None:
    SNIPPETS[name] = source.strip("\n") + "\n"
    DEPENDS[name] = depends


def with_dependencies(names: list[str]) -> list[str]:
    """``names`` and what they need, dependencies first, each once, in a stable order."""
    out: list[str] = []

    def visit(n: str) -> None:
        for d in DEPENDS[n]:
            visit(d)
        if n not in out:
            out.append(n)

    for n in names:
        visit(n)
    return out


_snippet("_model_settings", '''
@contextlib.contextmanager
def _model_settings():
    """Build with neuralc's channels-last layout (whatever keras.json says) and DTYPE_POLICY."""
    data_format, policy = keras.config.image_data_format(), keras.config.dtype_policy()
    keras.config.set_image_data_format("channels_last")
    if DTYPE_POLICY is not None:
        keras.config.set_dtype_policy(DTYPE_POLICY)
    try:
        yield
    finally:
        keras.config.set_image_data_format(data_format)
        keras.config.set_dtype_policy(policy)
''')


# -- reading weights -------------------------------------------------------------------------------

_snippet("_read_safetensors", '''
_FILE_DTYPES = {"F64": "<f8", "F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4",
                "I16": "<i2", "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def _read_safetensors(path: str | Path, expected: dict[str, tuple[int, ...]]
                      ) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file, checked against the names and shapes expected.

    safetensors holds only arrays, so reading one never runs code. bfloat16 tensors are
    widened to float32 (numpy has no bfloat16).
    """
    from safetensors import deserialize

    tensors: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for name, info in deserialize(Path(path).read_bytes()):
        shape = tuple(int(s) for s in info["shape"])
        data = bytes(info["data"])
        if info["dtype"] == "BF16":
            bits = np.frombuffer(data, dtype="<u2").astype(np.uint32) << 16
            tensors[name] = bits.view(np.float32).reshape(shape)
        elif info["dtype"] in _FILE_DTYPES:
            tensors[name] = np.frombuffer(data, dtype=_FILE_DTYPES[info["dtype"]]).reshape(shape)
        else:
            problems.append(f"{name} has the unsupported dtype {info['dtype']}")
    # BatchNorm's step counter is optional: inference never reads it.
    problems += [f"missing tensor {n}" for n in expected
                 if n not in tensors and not n.endswith(".num_batches_tracked")]
    problems += [f"unexpected tensor {n}" for n in tensors if n not in expected]
    problems += [f"{n} has shape {tensors[n].shape}, expected {s}"
                 for n, s in expected.items() if n in tensors and tensors[n].shape != s]
    if problems:
        raise ValueError(f"weights file '{path}' does not fit network {NETWORK}:\\n  "
                         + "\\n  ".join(problems))
    return tensors
''')

_snippet("_set", '''
def _set(layer: keras.layers.Layer, arrays: list[np.ndarray]) -> None:
    """Give a Keras layer its weights (in the order of ``layer.weights``) as float32."""
    arrays = [np.array(a, dtype=np.float32, order="C") for a in arrays]
    want = [tuple(w.shape) for w in layer.weights]
    got = [a.shape for a in arrays]
    if want != got:
        raise ValueError(f"layer '{layer.name}' has weights of shapes {want}, got {got}")
    layer.set_weights(arrays)
''')

# -- layout conversions ----------------------------------------------------------------------------

_snippet("_conv_kernel", '''
def _conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch ConvNd (out, in / groups, *kernel) -> Keras (*kernel, in / groups, out)."""
    n = w.ndim - 2
    return np.transpose(w, (*range(2, n + 2), 1, 0))
''')

_snippet("_depthwise_kernel", '''
def _depthwise_kernel(w: np.ndarray, depth_multiplier: int) -> np.ndarray:
    """torch depthwise ConvNd (in * m, 1, *kernel), output c * m + j -> Keras (*kernel, in, m)."""
    n = w.ndim - 2
    w = w.reshape(w.shape[0] // depth_multiplier, depth_multiplier, *w.shape[2:])
    return np.transpose(w, (*range(2, n + 2), 0, 1))
''')

_snippet("_transpose_group", '''
def _transpose_group(w: np.ndarray, b: np.ndarray | None, groups: int, g: int
                     ) -> list[np.ndarray]:
    """Group g of torch's grouped ConvTransposeNd (in, out / groups, *kernel), as Keras's."""
    cin, fout = w.shape[0] // groups, w.shape[1]
    kernel = _conv_kernel(w[g * cin:(g + 1) * cin])
    return [kernel] if b is None else [kernel, b[g * fout:(g + 1) * fout]]
''', ("_conv_kernel",))

_snippet("_rnn_weights", '''
def _rnn_weights(kind: str, w_ih: np.ndarray, w_hh: np.ndarray, b_ih: np.ndarray | None,
                 b_hh: np.ndarray | None, reset_after: bool = True) -> list[np.ndarray]:
    """torch RNN/LSTM/GRU weights -> Keras [kernel, recurrent_kernel(, bias)].

    LSTM gates are i, f, g, o in both. torch's GRU gates r, z, n become Keras's z, r, h; its
    reset_after bias is (2, 3 * units) (input row, then recurrent row); every other Keras
    recurrent layer has one bias, which is the sum of torch's two.
    """
    if kind == "GRU":
        u = w_hh.shape[1]
        order = np.r_[u:2 * u, 0:u, 2 * u:3 * u]
        w_ih, w_hh = w_ih[order], w_hh[order]
        b_ih = None if b_ih is None else b_ih[order]
        b_hh = None if b_hh is None else b_hh[order]
    out = [w_ih.T, w_hh.T]
    if b_ih is not None and b_hh is not None:
        out.append(np.stack([b_ih, b_hh]) if kind == "GRU" and reset_after else b_ih + b_hh)
    return out
''')

_snippet("_proj_in", '''
def _proj_in(w: np.ndarray, b: np.ndarray | None, heads: int) -> list[np.ndarray]:
    """torch Linear (heads * dim, d) -> Keras MultiHeadAttention kernel (d, heads, dim)."""
    kernel = w.T.reshape(w.shape[1], heads, w.shape[0] // heads)
    return [kernel] if b is None else [kernel, b.reshape(heads, -1)]
''')

_snippet("_proj_out", '''
def _proj_out(w: np.ndarray, b: np.ndarray | None, heads: int) -> list[np.ndarray]:
    """torch Linear (d_out, heads * dim) -> Keras attention output kernel (heads, dim, d_out)."""
    kernel = w.T.reshape(heads, w.shape[1] // heads, w.shape[0])
    return [kernel] if b is None else [kernel, b]
''')

_snippet("_packed_proj", '''
def _packed_proj(w: np.ndarray, b: np.ndarray | None, part: int, heads: int
                 ) -> list[np.ndarray]:
    """Query (0), key (1) or value (2) of torch's packed in_proj (3 * d, d), as _proj_in."""
    d = w.shape[0] // 3
    rows = slice(part * d, (part + 1) * d)
    return _proj_in(w[rows], None if b is None else b[rows], heads)
''', ("_proj_in",))

# -- custom layers ---------------------------------------------------------------------------------

_snippet("SqueezeExcitation", '''
@keras.saving.register_keras_serializable(package="neuralc")
class SqueezeExcitation(layers.Layer):
    """Squeeze-and-excitation: GlobalAveragePooling (keepdims) -> Dense(relu) ->
    Dense(sigmoid) -> Multiply with the input; fc1/fc2 are torch's SEBlock Linear layers."""

    def __init__(self, channels: int, hidden: int, spatial_rank: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.channels, self.hidden, self.spatial_rank = channels, hidden, spatial_rank
        pool = (layers.GlobalAveragePooling1D, layers.GlobalAveragePooling2D,
                layers.GlobalAveragePooling3D)[spatial_rank - 1]
        self.squeeze = pool(keepdims=True, name="squeeze")
        self.fc1 = layers.Dense(hidden, activation="relu", name="fc1")
        self.fc2 = layers.Dense(channels, activation="sigmoid", name="fc2")
        self.excite = layers.Multiply(name="excite")

    def build(self, input_shape):
        gate = (input_shape[0], *([1] * self.spatial_rank))
        self.fc1.build((*gate, self.channels))
        self.fc2.build((*gate, self.hidden))
        self.built = True

    def call(self, x):
        return self.excite([x, self.fc2(self.fc1(self.squeeze(x)))])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "channels": self.channels, "hidden": self.hidden,
                "spatial_rank": self.spatial_rank}
''')

_snippet("GroupedConvTranspose", '''
@keras.saving.register_keras_serializable(package="neuralc")
class GroupedConvTranspose(layers.Layer):
    """A transposed convolution with channel groups, as torch's ConvTransposeNd(groups=g)
    (Keras's ConvNDTranspose has no groups): the input channels split into g equal parts, each
    through its own ConvNDTranspose with filters / g outputs, concatenated in group order."""

    def __init__(self, filters: int, kernel_size, groups: int, strides=1, padding="valid",
                 output_padding=None, dilation_rate=1, activation="linear", use_bias=True,
                 **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.groups = filters, tuple(kernel_size), groups
        self.strides, self.padding, self.output_padding = strides, padding, output_padding
        self.dilation_rate, self.activation, self.use_bias = dilation_rate, activation, use_bias
        conv = (layers.Conv1DTranspose, layers.Conv2DTranspose,
                layers.Conv3DTranspose)[len(self.kernel_size) - 1]
        self.convs = [conv(filters // groups, kernel_size, strides=strides, padding=padding,
                           output_padding=output_padding, dilation_rate=dilation_rate,
                           use_bias=use_bias, name=f"group{g}") for g in range(groups)]
        self.act = keras.activations.get(activation)

    def build(self, input_shape):
        self.per_group = input_shape[-1] // self.groups
        for conv in self.convs:
            conv.build((*input_shape[:-1], self.per_group))
        self.built = True

    def call(self, x):
        c = self.per_group
        parts = [conv(x[..., g * c:(g + 1) * c]) for g, conv in enumerate(self.convs)]
        return self.act(ops.concatenate(parts, axis=-1))

    def compute_output_shape(self, input_shape):
        part = self.convs[0].compute_output_shape((*input_shape[:-1], self.per_group))
        return (*part[:-1], self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters,
                "kernel_size": self.kernel_size, "groups": self.groups,
                "strides": self.strides, "padding": self.padding,
                "output_padding": self.output_padding, "dilation_rate": self.dilation_rate,
                "activation": self.activation, "use_bias": self.use_bias}
''')

_snippet("AveragePoolingSame", '''
@keras.saving.register_keras_serializable(package="neuralc")
class AveragePoolingSame(layers.Layer):
    """Average pooling with Keras's "same" padding (the extra element at the end) that
    averages the real elements of each window only, as Keras defines it on every backend."""

    def __init__(self, pool_size, strides=None, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = tuple(pool_size)
        self.strides = tuple(strides) if strides is not None else self.pool_size

    def call(self, x):
        spatial = ops.shape(x)[1:-1]
        pads = []
        for size, k, s in zip(spatial, self.pool_size, self.strides):
            total = max((-(-size // s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        widths = [(0, 0), *pads, (0, 0)]
        ones = ops.ones((1, *spatial, 1), dtype=x.dtype)
        total = ops.average_pool(ops.pad(x, widths), self.pool_size, self.strides, "valid")
        count = ops.average_pool(ops.pad(ones, widths), self.pool_size, self.strides, "valid")
        return total / count

    def compute_output_shape(self, input_shape):
        spatial = [None if d is None else -(-d // s)
                   for d, s in zip(input_shape[1:-1], self.strides)]
        return (input_shape[0], *spatial, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides}
''')

_snippet("RMSNormalizationAxes", '''
@keras.saving.register_keras_serializable(package="neuralc")
class RMSNormalizationAxes(layers.Layer):
    """x / sqrt(mean(x ** 2 over axes) + epsilon) * scale, for any axes (Keras's own layer
    hands its axes to torch.rms_norm on the torch backend, which takes trailing axes only)."""

    def __init__(self, axis, epsilon: float = 1e-6, scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon, self.use_scale = sorted(axis), epsilon, scale

    def build(self, input_shape):
        if self.use_scale:
            self.scale = self.add_weight(name="scale",
                                         shape=tuple(input_shape[a] for a in self.axis),
                                         initializer="ones")
        self.built = True

    def call(self, x):
        y = x * ops.rsqrt(ops.mean(ops.square(x), axis=self.axis, keepdims=True) + self.epsilon)
        if not self.use_scale:
            return y
        shape = [1] * len(x.shape)
        for a, n in zip(self.axis, self.scale.shape):
            shape[a] = n
        return y * ops.reshape(self.scale, shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "scale": self.use_scale}
''')

_snippet("LayerNormalizationAxes", '''
@keras.saving.register_keras_serializable(package="neuralc")
class LayerNormalizationAxes(layers.Layer):
    """(x - mean) / sqrt(variance + epsilon) * gamma + beta over any axes, in at least
    float32, as Keras's LayerNormalization defines it (on the torch backend Keras hands any
    contiguous axes to torch's layer_norm, which normalises the trailing axes only)."""

    def __init__(self, axis, epsilon: float = 1e-3, center: bool = True, scale: bool = True,
                 **kwargs):
        super().__init__(**kwargs)
        self.axis, self.epsilon = sorted(axis), epsilon
        self.center, self.scale = center, scale

    def build(self, input_shape):
        shape = tuple(input_shape[a] for a in self.axis)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer="ones",
                                     autocast=False) if self.scale else None
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros",
                                    autocast=False) if self.center else None
        self.built = True

    def call(self, x):
        x = ops.cast(x, keras.backend.result_type(x.dtype, "float32"))
        mean = ops.mean(x, axis=self.axis, keepdims=True)
        variance = ops.mean(ops.square(x - mean), axis=self.axis, keepdims=True)
        y = (x - mean) * ops.rsqrt(variance + self.epsilon)
        for weight, combine in ((self.gamma, ops.multiply), (self.beta, ops.add)):
            if weight is not None:
                shape = [1] * len(x.shape)
                for a, n in zip(self.axis, weight.shape):
                    shape[a] = n
                y = combine(y, ops.reshape(ops.cast(weight, y.dtype), shape))
        return ops.cast(y, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale}
''')

_snippet("_sinusoid_table", '''
def _sinusoid_table(length: int, d: int) -> np.ndarray:
    """Vaswani et al.'s table (float64): sin on even channels, cos on odd ones."""
    pos = np.arange(length, dtype=np.float64)[:, None]
    i = np.arange(d)
    angle = pos * np.power(10000.0, -(2 * (i // 2)).astype(np.float64) / d)[None, :]
    return np.where(i % 2 == 0, np.sin(angle), np.cos(angle))
''')

_snippet("PositionalEncoding", '''
@keras.saving.register_keras_serializable(package="neuralc")
class PositionalEncoding(layers.Layer):
    """Adds a position code to (batch, seq, features): the sinusoid table, computed once in
    float64 for max_len positions, or a learned (max_len, features) table."""

    def __init__(self, max_len: int = 512, encoding: str = "sinusoidal", **kwargs):
        super().__init__(**kwargs)
        self.max_len, self.encoding = max_len, encoding

    def build(self, input_shape):
        d = input_shape[-1]
        if self.encoding == "learned":
            self.weight = self.add_weight(
                name="weight", shape=(self.max_len, d),
                initializer=keras.initializers.RandomNormal(stddev=0.02))
        else:
            self.table = ops.convert_to_tensor(
                _sinusoid_table(self.max_len, d).astype("float32"))
        self.built = True

    def call(self, x):
        table = self.weight if self.encoding == "learned" else self.table
        rows = ops.take(table, ops.arange(ops.shape(x)[1]), axis=0)
        return x + ops.cast(rows[None], x.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "max_len": self.max_len, "encoding": self.encoding}
''', ("_sinusoid_table",))

_snippet("_TransformerBlock", '''
class _TransformerBlock(layers.Layer):
    """What torch's TransformerEncoderLayer and TransformerDecoderLayer share (batch first):
    multi-head attention, the feed-forward linear1 -> activation -> dropout -> linear2, and
    LayerNorms, in post-norm (norm(x + f(x))) or pre-norm (x + f(norm(x))) order."""

    attentions: tuple[str, ...] = ()

    def __init__(self, d_model: int, num_heads: int, ff_dim: int, dropout: float = 0.1,
                 activation: str = "relu", norm_first: bool = False, epsilon: float = 1e-5,
                 causal: bool = False, use_bias: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.d_model, self.num_heads, self.ff_dim = d_model, num_heads, ff_dim
        self.rate, self.activation, self.norm_first = dropout, activation, norm_first
        self.epsilon, self.causal, self.use_bias = epsilon, causal, use_bias
        for name in self.attentions:
            setattr(self, name, layers.MultiHeadAttention(
                num_heads, d_model // num_heads, dropout=dropout, use_bias=use_bias, name=name))
        for i in range(len(self.attentions) + 1):
            setattr(self, f"norm{i + 1}", layers.LayerNormalization(
                epsilon=epsilon, center=use_bias, name=f"norm{i + 1}"))
        self.linear1 = layers.Dense(ff_dim, activation=activation, use_bias=use_bias,
                                    name="linear1")
        self.linear2 = layers.Dense(d_model, use_bias=use_bias, name="linear2")
        self.drops = [layers.Dropout(dropout) for _ in range(len(self.attentions) + 2)]

    def _norms(self) -> list:
        return [getattr(self, f"norm{i + 1}") for i in range(len(self.attentions) + 1)]

    def _build_block(self, x_shape, memory_shape=None):
        for name in self.attentions:
            kv = x_shape if name == "self_attn" else memory_shape
            getattr(self, name).build(x_shape, kv)
        for norm in self._norms():
            norm.build(x_shape)
        self.linear1.build(x_shape)
        self.linear2.build((*x_shape[:-1], self.ff_dim))
        self.built = True

    def _attend(self, i, x, kv, causal, training):
        att = getattr(self, self.attentions[i])
        y = att(x, kv, use_causal_mask=True, training=training) if causal else \\
            att(x, kv, training=training)
        return self.drops[i](y, training=training)

    def _feed_forward(self, x, training):
        h = self.drops[-1](self.linear1(x), training=training)
        return self.drops[-2](self.linear2(h), training=training)

    def _sublayers(self, x, steps, training):
        """x through each (function, norm) in turn, post- or pre-norm."""
        for f, norm in zip(steps, self._norms()):
            x = x + f(norm(x), training) if self.norm_first else norm(x + f(x, training))
        return x

    def get_config(self):
        return {**super().get_config(), "d_model": self.d_model, "num_heads": self.num_heads,
                "ff_dim": self.ff_dim, "dropout": self.rate, "activation": self.activation,
                "norm_first": self.norm_first, "epsilon": self.epsilon, "causal": self.causal,
                "use_bias": self.use_bias}
''')

_snippet("TransformerEncoder", '''
@keras.saving.register_keras_serializable(package="neuralc")
class TransformerEncoder(_TransformerBlock):
    """torch.nn.TransformerEncoderLayer(batch_first=True): self-attention, feed-forward."""

    attentions = ("self_attn",)

    def build(self, input_shape):
        self._build_block(tuple(input_shape))

    def call(self, x, training=None):
        def sa(h, tr):
            return self._attend(0, h, h, self.causal, tr)

        return self._sublayers(x, (sa, self._feed_forward), training)

    def compute_output_shape(self, input_shape):
        return input_shape
''', ("_TransformerBlock",))

_snippet("TransformerDecoder", '''
@keras.saving.register_keras_serializable(package="neuralc")
class TransformerDecoder(_TransformerBlock):
    """torch.nn.TransformerDecoderLayer(batch_first=True): (causal) self-attention,
    cross-attention over the memory (the second input), feed-forward."""

    attentions = ("self_attn", "multihead_attn")

    def build(self, input_shape):
        self._build_block(tuple(input_shape[0]), tuple(input_shape[1]))

    def call(self, inputs, training=None):
        x, memory = inputs

        def sa(h, tr):
            return self._attend(0, h, h, self.causal, tr)

        def ca(h, tr):
            return self._attend(1, h, memory, False, tr)

        return self._sublayers(x, (sa, ca, self._feed_forward), training)

    def compute_output_shape(self, input_shape):
        return input_shape[0]
''', ("_TransformerBlock",))
