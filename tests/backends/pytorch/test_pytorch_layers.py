"""Every catalog layer through the pytorch target: a small one-layer network per case, with
interesting parameters, compared with the reference interpreter on the same weights.

Tolerance: float32 with rtol 1e-4, atol 1e-5 (pytorch_target_helpers.RTOL/ATOL): one layer's
float32 rounding against the reference's float64 is ~1e-7. Each case runs at two batch sizes and
two values of its other symbolic dims. A coverage test requires an emitter (and a case here) for
every spec of the catalog, so a layer added later fails until it is covered.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pytorch_target_helpers import check_parity, generate

from neuralc.backends.base import BackendError
from neuralc.backends.pytorch.core import ACTIVATION_CODE, EMITTERS, UNSUPPORTED, EmitError
from neuralc.backends.pytorch.emit_advanced import transpose_plan
from neuralc.driver import compile_source
from neuralc.ir.activations import activation_defs
from neuralc.ir.windows import effective_window, transpose_crop, transpose_out_dim
from neuralc.layers import catalog


def network(inputs: str, layers: str, extra: str = "") -> str:
    return f"network T {{\n  input: {inputs}\n  {extra}\n  layers:\n    {layers}\n}}\n"


# (id, input declaration, layers, extra sections)
CASES: list[tuple[str, str, str, str]] = [
    # dense and convolution
    ("dense", "(6,)", 'Dense(5, "relu")', ""),
    ("dense_3d_nobias", "(4, 6)", "Dense(5, use_bias=false)", ""),
    ("output", "(6,)", "Output(3)", ""),
    ("conv1d_causal_dilated", "(seq, 3)", 'Conv1D(4, 3, padding="causal", dilation_rate=2)', ""),
    ("conv1d_same_strided", "(seq, 3)", 'Conv1D(4, 4, strides=2, padding="same")', ""),
    ("conv2d_same_strided", "(9, 8, 3)",
     'Conv2D(4, 3, strides=2, padding="same", activation="gelu")', ""),
    ("conv2d_same_symbolic", "(h, w, 3)", 'Conv2D(4, 3, strides=2, padding="same")', ""),
    ("conv2d_same_even", "(7, 6, 2)", 'Conv2D(3, (2, 4), padding="same", activation="tanh")', ""),
    ("conv2d_groups_dilated", "(9, 7, 4)", "Conv2D(6, (3, 2), groups=2, dilation_rate=(2, 1))",
     ""),
    ("conv3d", "(5, 6, 5, 2)", 'Conv3D(3, 2, strides=(1, 2, 1), padding="same")', ""),
    # pooling
    ("max_pool1d_same", "(seq, 3)", 'MaxPooling1D(3, strides=2, padding="same")', ""),
    ("avg_pool1d_valid", "(9, 3)", "AveragePooling1D(3, strides=2)", ""),
    ("max_pool2d", "(7, 8, 2)", "MaxPooling2D((2, 3))", ""),
    ("max_pool2d_same", "(7, 8, 2)", 'MaxPooling2D(3, strides=1, padding="same")', ""),
    ("avg_pool2d_same_asym", "(7, 8, 2)", 'AveragePooling2D(2, strides=2, padding="same")', ""),
    ("avg_pool2d_same_sym", "(7, 8, 2)", 'AveragePooling2D(3, strides=1, padding="same")', ""),
    ("avg_pool2d_same_symbolic", "(h, w, 2)", 'AveragePooling2D(3, strides=2, padding="same")',
     ""),
    ("max_pool3d", "(4, 5, 6, 2)", "MaxPooling3D(2)", ""),
    ("avg_pool3d_same", "(4, 5, 6, 2)", 'AveragePooling3D(2, padding="same")', ""),
    ("global_max1d", "(seq, 3)", "GlobalMaxPooling1D()", ""),
    ("global_avg1d_keep", "(seq, 3)", "GlobalAveragePooling1D(keepdims=true)", ""),
    ("global_max2d_keep", "(5, 6, 3)", "GlobalMaxPooling2D(keepdims=true)", ""),
    ("global_avg2d", "(5, 6, 3)", "GlobalAveragePooling2D()", ""),
    ("global_max3d", "(3, 4, 5, 2)", "GlobalMaxPooling3D()", ""),
    ("global_avg3d", "(3, 4, 5, 2)", "GlobalAveragePooling3D()", ""),
    ("adaptive_avg1d", "(seq, 3)", "AdaptiveAveragePooling1D(4)", ""),
    ("adaptive_max1d", "(seq, 3)", "AdaptiveMaxPooling1D(3)", ""),
    ("adaptive_avg2d", "(7, 9, 2)", "AdaptiveAveragePooling2D((3, 4))", ""),
    ("adaptive_max2d", "(7, 9, 2)", "AdaptiveMaxPooling2D(2)", ""),
    ("adaptive_avg3d", "(5, 4, 6, 2)", "AdaptiveAveragePooling3D((2, 3, 2))", ""),
    ("adaptive_max3d", "(5, 4, 6, 2)", "AdaptiveMaxPooling3D(2)", ""),
    # reshaping
    ("flatten", "(3, 4, 2)", "Flatten()", ""),
    ("reshape", "(3, 4, 2)", "Reshape((4, -1))", ""),
    ("permute", "(3, 4, 2)", "Permute((2, 3, 1))", ""),
    ("repeat_vector", "(5,)", "RepeatVector(3)", ""),
    # regularisation: identity at inference
    ("dropout", "(6,)", "Dropout(0.4)", ""),
    ("dropout_noise_shape", "(4, 6)", "Dropout(0.4, noise_shape=(None, 1, 6))", ""),
    ("spatial_dropout1d", "(seq, 3)", "SpatialDropout1D(0.3)", ""),
    ("spatial_dropout2d", "(4, 5, 3)", "SpatialDropout2D(0.3)", ""),
    ("spatial_dropout3d", "(3, 4, 5, 2)", "SpatialDropout3D(0.3)", ""),
    ("gaussian_noise", "(6,)", "GaussianNoise(0.2)", ""),
    ("gaussian_dropout", "(6,)", "GaussianDropout(0.2)", ""),
    ("alpha_dropout", "(6,)", "AlphaDropout(0.2)", ""),
    ("alpha_dropout_noise_shape", "(4, 6)", "AlphaDropout(0.2, noise_shape=(None, 4, 1))", ""),
    ("activity_regularization", "(6,)", "ActivityRegularization(l1=0.01, l2=0.1)", ""),
    # normalisation
    ("batch_norm_image", "(4, 5, 3)", "BatchNormalization(momentum=0.9, epsilon=0.01)", ""),
    ("batch_norm_vector", "(6,)", "BatchNormalization()", ""),
    ("batch_norm_axis1", "(4, 6)", "BatchNormalization(axis=1)", ""),
    ("batch_norm_no_center", "(seq, 4)", "BatchNormalization(center=false)", ""),
    ("batch_norm_no_scale", "(3, 4, 5, 2)", "BatchNormalization(scale=false)", ""),
    ("batch_norm_plain", "(4, 3)", "BatchNormalization(center=false, scale=false)", ""),
    ("layer_norm", "(seq, 6)", "LayerNormalization()", ""),
    ("layer_norm_trailing2", "(3, 4, 5)", "LayerNormalization(axis=(-2, -1), epsilon=1e-5)", ""),
    ("layer_norm_inner_axis", "(3, 4, 5)", "LayerNormalization(axis=1)", ""),
    ("layer_norm_no_scale", "(6,)", "LayerNormalization(scale=false)", ""),
    ("layer_norm_no_center", "(6,)", "LayerNormalization(center=false)", ""),
    ("group_norm", "(4, 5, 6)", "GroupNormalization(groups=3)", ""),
    ("group_norm_per_channel", "(seq, 4)", "GroupNormalization(groups=-1, center=false)", ""),
    ("instance_norm_2d", "(4, 5, 3)", "InstanceNormalization(epsilon=1e-5)", ""),
    ("instance_norm_1d_no_scale", "(seq, 3)", "InstanceNormalization(scale=false)", ""),
    ("rms_norm", "(seq, 6)", "RMSNormalization()", ""),
    ("rms_norm_axes", "(3, 4, 5)", "RMSNormalization(axis=(1, 2), epsilon=1e-5)", ""),
    # embedding
    ("embedding", "(seq,)", "Embedding(11, 4)", ""),
    # activation layers
    ("relu_layer", "(6,)", "ReLU()", ""),
    ("relu_capped", "(6,)", "ReLU(max_value=0.5)", ""),
    ("relu6_layer", "(6,)", "ReLU(6.0)", ""),
    ("relu_slope", "(6,)", "ReLU(negative_slope=0.1)", ""),
    ("relu_threshold", "(6,)", "ReLU(max_value=1.5, negative_slope=0.2, threshold=0.3)", ""),
    ("leaky_relu_layer", "(6,)", "LeakyReLU()", ""),
    ("elu_layer", "(6,)", "ELU(alpha=0.5)", ""),
    ("softmax_layer", "(4, 6)", "Softmax()", ""),
    ("softmax_axis1", "(4, 6)", "Softmax(axis=1)", ""),
    ("softmax_axes", "(3, 4, 5)", "Softmax(axis=(1, 2))", ""),
    ("prelu_image", "(4, 5, 3)", "PReLU()", ""),
    ("prelu_vector", "(6,)", "PReLU(init=0.1)", ""),
    ("prelu_shared", "(seq, 3)", "PReLU(num_parameters=1)", ""),
    ("activation_leaky_alpha", "(6,)", 'Activation("leaky_relu", 0.05)', ""),
    ("activation_elu_alpha", "(6,)", 'Activation("elu", 0.3)', ""),
    # merges
    ("add", "(6,)", "Add { { Dense(4) } { Dense(4) } { Dense(4) } }", ""),
    ("subtract", "(6,)", "Subtract { { Dense(4) } { Dense(4) } }", ""),
    ("multiply_gate", "(4, 5, 3)",
     'Multiply { { } { GlobalAveragePooling2D(keepdims=true) Dense(3, "sigmoid") } }', ""),
    ("average", "(6,)", "Average { { Dense(4) } { Dense(4) } { Dense(4) } }", ""),
    ("maximum", "(6,)", "Maximum { { Dense(4) } { Dense(4) } { Dense(4) } }", ""),
    ("concatenate", "(seq, 3)", "Concatenate(axis=-1) { { } { Conv1D(2, 1) } }", ""),
    ("concatenate_axis1", "(4, 3)", "Concatenate(axis=1) { { } { Dense(3) } }", ""),
    ("residual", "(6,)", 'ResidualConnection(activation="relu") { Dense(6) Dense(6) }', ""),
    # convolution variants
    ("conv1d_transpose", "(seq, 3)", "Conv1DTranspose(4, 3, strides=2)", ""),
    ("conv1d_transpose_small_kernel", "(seq, 3)", "Conv1DTranspose(2, 2, strides=3)", ""),
    ("conv2d_transpose_same", "(4, 5, 3)",
     'Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")', ""),
    ("conv2d_transpose_same_even", "(4, 5, 3)", 'Conv2DTranspose(2, 2, padding="same")', ""),
    ("conv2d_transpose_same_even_strided", "(h, 5, 3)",
     'Conv2DTranspose(2, 4, strides=2, padding="same")', ""),
    ("conv2d_transpose_output_padding", "(4, 5, 4)",
     "Conv2DTranspose(4, 3, strides=2, output_padding=1, groups=2)", ""),
    ("conv2d_transpose_same_output_padding", "(4, 5, 2)",
     'Conv2DTranspose(3, (3, 4), strides=(2, 3), padding="same", output_padding=(1, 0))', ""),
    ("conv3d_transpose", "(3, 4, 3, 2)", "Conv3DTranspose(2, 2, strides=(1, 2, 2))", ""),
    ("conv2d_transpose_dilated", "(4, 5, 2)", "Conv2DTranspose(2, 3, dilation_rate=2)", ""),
    ("depthwise_conv1d", "(seq, 3)", "DepthwiseConv1D(3, depth_multiplier=2)", ""),
    ("depthwise_conv2d_same", "(7, 6, 3)",
     'DepthwiseConv2D(3, strides=2, padding="same", activation="relu6")', ""),
    ("separable_conv1d", "(seq, 3)", 'SeparableConv1D(4, 3, padding="same", use_bias=false)', ""),
    ("separable_conv2d", "(7, 6, 3)",
     "SeparableConv2D(5, (3, 2), depth_multiplier=2, dilation_rate=2)", ""),
    # padding, cropping, upsampling
    ("zero_padding1d", "(seq, 3)", "ZeroPadding1D((1, 2))", ""),
    ("zero_padding2d", "(4, 5, 3)", "ZeroPadding2D(((1, 2), (0, 1)))", ""),
    ("zero_padding3d", "(3, 4, 5, 2)", "ZeroPadding3D(1)", ""),
    ("cropping1d", "(seq, 3)", "Cropping1D((1, 2))", ""),
    ("cropping2d", "(6, 7, 3)", "Cropping2D(((2, 0), (1, 3)))", ""),
    ("cropping3d", "(5, 6, 7, 2)", "Cropping3D(1)", ""),
    ("up_sampling1d", "(seq, 3)", "UpSampling1D(3)", ""),
    ("up_sampling2d", "(4, 5, 3)", "UpSampling2D((2, 1))", ""),
    ("up_sampling2d_bilinear", "(4, 5, 3)", 'UpSampling2D((2, 3), interpolation="bilinear")',
     ""),
    ("up_sampling3d", "(3, 4, 5, 2)", "UpSampling3D((1, 2, 2))", ""),
    # blocks
    ("squeeze_excitation", "(4, 5, 8)", "SqueezeExcitation(ratio=4)", ""),
    ("squeeze_excitation_1d", "(seq, 6)", "SqueezeExcitation(2)", ""),
    # recurrent layers and wrappers
    ("simple_rnn", "(seq, 3)", "SimpleRNN(5)", ""),
    ("simple_rnn_relu_seq", "(seq, 3)", 'SimpleRNN(5, "relu", return_sequences=true)', ""),
    ("simple_rnn_sigmoid", "(seq, 3)", 'SimpleRNN(4, "sigmoid", go_backwards=true)', ""),
    ("lstm", "(seq, 3)", "LSTM(5)", ""),
    ("lstm_backwards_seq", "(seq, 3)", "LSTM(4, return_sequences=true, go_backwards=true)", ""),
    ("lstm_state", "(seq, 3)", "LSTM(4, return_state=true) Dense(2)", ""),
    ("lstm_custom", "(seq, 3)",
     'LSTM(4, activation="relu", recurrent_activation="hard_sigmoid", use_bias=false)', ""),
    ("lstm_dropout", "(seq, 3)", "LSTM(4, dropout=0.2, recurrent_dropout=0.3)", ""),
    ("gru", "(seq, 3)", "GRU(5, return_sequences=true)", ""),
    ("gru_reset_before", "(seq, 3)", "GRU(4, reset_after=false)", ""),
    ("gru_state", "(seq, 3)", "GRU(4, return_state=true, return_sequences=true) Flatten()", ""),
    ("conv_lstm2d", "(seq, 5, 6, 2)", 'ConvLSTM2D(3, 3, padding="same")', ""),
    ("conv_lstm2d_seq", "(seq, 5, 6, 2)",
     "ConvLSTM2D(2, (2, 3), strides=(1, 2), return_sequences=true, go_backwards=true)", ""),
    ("bidirectional_lstm", "(seq, 3)", "Bidirectional(LSTM(4, return_sequences=true))", ""),
    ("bidirectional_gru_sum", "(seq, 3)", 'Bidirectional(GRU(4), merge_mode="sum")', ""),
    ("bidirectional_rnn_ave", "(seq, 3)",
     'Bidirectional(SimpleRNN(3, return_sequences=true), merge_mode="ave")', ""),
    ("bidirectional_mul", "(seq, 3)", 'Bidirectional(LSTM(3), merge_mode="mul")', ""),
    ("bidirectional_state", "(seq, 3)", "Bidirectional(LSTM(3, return_state=true))", ""),
    ("bidirectional_custom", "(seq, 3)",
     'Bidirectional(GRU(3, reset_after=false, return_sequences=true))', ""),
    ("time_distributed_dense", "(seq, 4)", 'TimeDistributed(Dense(3, "softmax"))', ""),
    ("time_distributed_conv", "(seq, 6, 5, 2)",
     'TimeDistributed(Conv2D(3, 3, strides=2, padding="same"))', ""),
    ("time_distributed_flatten", "(seq, 3, 2)", "TimeDistributed(Flatten())", ""),
    # attention and transformer layers
    ("multi_head_attention", "(seq, 8)", "MultiHeadAttention(2, 3)", ""),
    ("multi_head_attention_causal", "(seq, 6)",
     "MultiHeadAttention(3, 2, value_dim=4, output_shape=5, causal=true, use_bias=false)", ""),
    ("multi_head_attention_cross", "{ q: (5, 6), mem: (seq, 4) }",
     "q: { MultiHeadAttention(2, 3, context=mem) }", ""),
    ("attention", "(seq, 4)", "Attention()", ""),
    ("attention_scaled_causal", "(seq, 4)", "Attention(use_scale=true, causal=true)", ""),
    ("attention_concat_value", "{ q: (5, 4), v: (seq, 4) }",
     'q: { Attention(score_mode="concat", use_scale=true, value=v) }', ""),
    ("attention_key", "{ q: (5, 4), v: (seq, 3), k: (seq, 4) }",
     "q: { Attention(value=v, key=k) }", ""),
    ("positional_encoding", "(seq, 6)", "PositionalEncoding(32)", ""),
    ("positional_encoding_odd_learned", "(seq, 5)", 'PositionalEncoding(16, "learned")', ""),
    ("transformer_encoder", "(seq, 8)", "TransformerEncoder(2, 16)", ""),
    ("transformer_encoder_prenorm", "(seq, 8)",
     'TransformerEncoder(4, 12, activation="gelu", norm_first=true, causal=true, epsilon=1e-3)',
     ""),
    ("transformer_encoder_nobias", "(seq, 6)", "TransformerEncoder(3, 8, use_bias=false)", ""),
    ("transformer_decoder", "{ src: (seq, 8), tgt: (tlen, 8) }",
     "tgt: { TransformerDecoder(2, 16, memory=src) }", ""),
    ("transformer_decoder_prenorm", "{ src: (seq, 8), tgt: (tlen, 8) }",
     "tgt: { TransformerDecoder(4, 8, memory=src, norm_first=true, causal=false) }", ""),
]
# Every activation, as a layer and as a Dense parameter: one network of branches each.
CASES += [
    ("activations", "(4, 6)", "Concatenate { "
     + " ".join(f'{{ Activation("{d.name}") }}' for d in activation_defs()) + " }", ""),
    ("dense_activations", "(4, 6)", "Concatenate { "
     + " ".join(f'{{ Dense(3, "{d.name}") }}' for d in activation_defs()) + " }", ""),
]


@pytest.mark.parametrize("name,inputs,layers,extra", CASES, ids=[c[0] for c in CASES])
def test_layer_matches_reference(name: str, inputs: str, layers: str, extra: str,
                                 tmp_path: Path) -> None:
    model = compile_source(network(inputs, layers, extra), f"{name}.nr")
    module, _ = generate(model, tmp_path)
    check_parity(model, module, tmp_path)


def test_every_catalog_layer_has_an_emitter_and_a_case() -> None:
    """Coverage: each spec has an emitter or a reason in UNSUPPORTED, and a case above."""
    tested = " ".join(layers for _, _, layers, _ in CASES).lower()
    missing = []
    for spec in catalog.all_specs():
        if spec.op_name not in EMITTERS and spec.op_name not in UNSUPPORTED:
            missing.append(f"{spec.name}: no emitter")
        if spec.op_name in EMITTERS and f"{spec.name.lower()}(" not in tested \
                and f"{spec.name.lower()} {{" not in tested:
            missing.append(f"{spec.name}: no test case")
    assert not missing, missing
    assert not UNSUPPORTED, "every layer of the catalog is expressible in PyTorch"


def test_every_activation_has_a_torch_form() -> None:
    from neuralc.backends.pytorch.snippets import ACTIVATIONS

    names = {d.name for d in activation_defs()}
    assert names <= set(ACTIVATION_CODE)
    assert names <= set(ACTIVATIONS)


def test_layer_without_emitter_is_a_located_error(tmp_path: Path) -> None:
    """A graph op without an emitter is refused at its .nr line, never silently dropped."""
    model = compile_source(network("(6,)", 'Dense(5, "relu")\n    Dense(2)'), "m.nr")
    saved = EMITTERS.pop("graph.dense")
    try:
        with pytest.raises(BackendError) as info:
            generate(model, tmp_path)
    finally:
        EMITTERS["graph.dense"] = saved
    diags = info.value.diagnostics
    assert [d.message for d in diags] == [
        "pytorch cannot express Dense 'dense': the pytorch target has no emitter for it",
        "pytorch cannot express Dense 'dense_1': the pytorch target has no emitter for it",
    ]
    assert str(diags[0].location) == "m.nr:5:5"
    assert str(diags[1].location) == "m.nr:6:5"


def test_layer_names_that_are_not_attributes(tmp_path: Path) -> None:
    """Layers named like nn.Module methods, or not as identifiers, are reached via _modules."""
    text = network("(6,)", 'Dense(5, name="train")\n    Dense(4, name="lambda")\n'
                           '    Dense(3, name="forward")')
    model = compile_source(text, "names.nr")
    module, path = generate(model, tmp_path)
    source = path.read_text()
    assert 'self._modules["train"] = nn.Linear(6, 5)' in source
    assert 'self._modules["lambda"]' in source and 'self._modules["forward"]' in source
    check_parity(model, module, tmp_path)


def test_module_attribute_snapshot_covers_torch() -> None:
    """MODULE_ATTRIBUTES must name every public attribute of nn.Module in this torch."""
    import torch

    from neuralc.backends.pytorch.codegen import MODULE_ATTRIBUTES

    public = {n for n in dir(torch.nn.Module) if not n.startswith("_")}
    public |= {n for n in vars(torch.nn.Module()) if not n.startswith("_")}
    assert public <= MODULE_ATTRIBUTES


def test_training_time_noise_follows_keras(tmp_path: Path) -> None:
    """In train mode the regularisation layers act as Keras's do (the parity tests above run
    them in eval mode, where they are the identity): Dropout's mask is shared along the axes
    where noise_shape is 1 and scales by 1 / (1 - rate); ActivityRegularization records
    (l1 * sum|x| + l2 * sum x^2) / batch for the loss."""
    import torch

    text = network("(4, 6)", "Dropout(0.5, noise_shape=(None, 1, 6))\n"
                             "    ActivityRegularization(l1=0.01, l2=0.1)")
    module, _ = generate(compile_source(text, "noise.nr"), tmp_path)
    net = module.build_model().train()
    x = torch.rand(3, 4, 6) + 1.0
    y = net(x)
    ratio = y / x
    assert torch.equal(ratio, ratio[:, :1, :].expand_as(ratio))  # one mask per (sample, feature)
    assert set(ratio.unique().tolist()) <= {0.0, 2.0}
    want = (0.01 * y.abs().sum() + 0.1 * y.square().sum()) / 3
    torch.testing.assert_close(module.regularization_loss(net), want)
    assert module.regularization_loss(net) == 0.0  # read once


def test_transpose_plan_gives_keras_length_and_crop_at_every_size() -> None:
    """torch's ConvTransposeNd with the plan's padding and output_padding, less its cut, has
    neuralc's (Keras's) output length and starts at neuralc's crop, whatever the input size."""
    checked = 0
    for k in range(1, 6):
        for s in range(1, 4):
            for d in range(1, 3):
                for padding in ("valid", "same"):
                    for p in (None, 0, 1, 2):
                        try:
                            (crop,), (extra,), (cut,) = transpose_plan(
                                [k], [s], [d], padding, None if p is None else [p])
                        except EmitError:
                            continue
                        for n in range(1, 7):
                            out = transpose_out_dim(n, k, s, d, padding, p)
                            torch_len = (n - 1) * s - 2 * crop + effective_window(k, d) + extra
                            assert torch_len - cut == out, (k, s, d, padding, p, n)
                            assert crop == transpose_crop(n, k, s, d, out)
                            checked += 1
    assert checked > 1000
