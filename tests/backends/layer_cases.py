"""Small models around each catalog layer, shared by the target tests (onnx, cpu, cuda).

Each case is a model written in the DSL around one layer with parameters that reach its less
common paths (symbolic spatial dims for 'same' padding, layouts after a convolution, scan-based
recurrences, opset-dependent operators for the onnx target). ``CASES`` hold one layer each
(``(id, input, layers[, onnx opsets])``), ``MULTI`` whole models with several inputs.
"""

from __future__ import annotations


def net(inp: str, layers: str) -> str:
    return f"network Case {{\n  input: {inp}\n  layers:\n    {layers}\n}}\n"


# (case id, input, layers[, opsets]); opsets default to (17,).
CASES: list[tuple] = [
    # dense
    ("dense", "(12,)", 'Dense(7, "relu")'),
    ("dense_rank4_nobias", "(3, 5, 6)", "Dense(4, use_bias=false)"),
    ("dense_seq", "(seq, 8)", 'Dense(6, "tanh")'),
    ("output", "(10,)", "Output(5)"),
    # activations (the Activation layer and the activation= of other layers)
    *[(f"activation_{a}", "(4, 6)", f'Activation("{a}")') for a in (
        "linear", "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "sigmoid", "tanh",
        "softmax", "softplus", "softsign", "relu6", "hard_sigmoid", "exponential", "hard_swish",
        "mish", "log_softmax")],
    ("activation_gelu_opset20", "(4, 6)", 'Activation("gelu")', (20,)),
    ("activation_mish_hardswish_new", "(4, 6)", 'Activation("mish") Activation("hard_swish")',
     (13, 22)),
    ("activation_alpha", "(4, 6)", 'Activation("leaky_relu", 0.1) Activation("elu", alpha=0.5)'),
    ("softmax_after_conv", "(6, 6, 3)", 'Conv2D(4, 3, activation="softmax")'),
    ("relu", "(4, 6)", "ReLU()"),
    ("relu_cap", "(4, 6)", "ReLU(max_value=0.5)"),
    ("relu_leaky", "(4, 6)", "ReLU(negative_slope=0.1)"),
    ("relu_general", "(4, 6)", "ReLU(max_value=1.0, negative_slope=0.2, threshold=0.3)"),
    ("leaky_relu", "(4, 6)", "LeakyReLU(0.1)"),
    ("elu", "(4, 6)", "ELU(0.5)"),
    ("softmax_layer", "(4, 6)", "Softmax()"),
    ("softmax_axis1", "(4, 6)", "Softmax(axis=1)"),
    ("softmax_two_axes", "(4, 5, 6)", "Softmax(axis=(1, 2))"),
    ("prelu", "(6,)", "PReLU()"),
    ("prelu_after_conv", "(6, 6, 2)", "Conv2D(3, 3) PReLU()"),
    ("prelu_shared", "(5, 3)", "PReLU(num_parameters=1, init=0.1)"),
    # convolutions
    ("conv1d", "(10, 3)", "Conv1D(4, 3)"),
    ("conv1d_causal_dilated", "(seq, 3)", 'Conv1D(4, 3, padding="causal", dilation_rate=2)'),
    ("conv1d_same_strided_symbolic", "(seq, 3)", 'Conv1D(6, 3, padding="same", strides=2)'),
    ("conv1d_same_dilated_symbolic", "(seq, 3)", 'Conv1D(2, 3, padding="same", dilation_rate=2)'),
    ("conv2d_same_strided", "(9, 8, 3)", 'Conv2D(4, (3, 2), strides=(2, 1), padding="same")'),
    ("conv2d_groups_dilated", "(10, 10, 3)", 'Conv2D(6, 3, groups=3, dilation_rate=2, '
                                            'activation="relu")'),
    ("conv2d_same_symbolic", "(h, w, 3)", 'Conv2D(4, 3, padding="same", strides=2)'),
    ("conv3d", "(5, 6, 7, 2)", 'Conv3D(3, 2, padding="same", strides=2)'),
    # 'same' with the stride over the window on a symbolic axis: the total padding is negative
    # at some sizes (9 for the Conv2D: -3), where Keras pads nothing; pads computed in the graph
    ("conv2d_same_stride_over_window_symbolic", "(h, w, 2)",
     'Conv2D(3, 1, strides=5, padding="same")'),
    ("conv1d_same_stride_over_window_symbolic", "(seq, 3)",
     'Conv1D(2, 2, strides=3, padding="same", activation="relu")'),
    ("depthwise_conv2d_same_stride_over_window_mixed", "(h, 7, 2)",
     'DepthwiseConv2D((2, 3), strides=(3, 2), padding="same")'),
    ("separable_conv1d_same_stride_over_window_symbolic", "(seq, 3)",
     'SeparableConv1D(4, 1, strides=2, padding="same")'),
    ("conv2d_transpose_same", "(5, 4, 3)", 'Conv2DTranspose(4, 3, strides=2, padding="same")'),
    ("conv2d_transpose_even_same", "(5, 4, 3)",
     'Conv2DTranspose(3, 2, strides=2, padding="same")'),
    ("conv2d_transpose_output_padding", "(5, 4, 4)",
     'Conv2DTranspose(4, 3, strides=2, output_padding=1, groups=2, activation="relu")'),
    ("conv2d_transpose_valid_small_kernel", "(5, 4, 3)", "Conv2DTranspose(2, 1, strides=3)"),
    ("conv1d_transpose_symbolic", "(seq, 3)", "Conv1DTranspose(3, 4, strides=2)"),
    ("conv1d_transpose_dilated", "(seq, 3)",
     'Conv1DTranspose(2, 3, dilation_rate=2, padding="same")'),
    ("conv3d_transpose", "(3, 4, 2, 2)", "Conv3DTranspose(2, 2, strides=2, use_bias=false)"),
    ("depthwise_conv2d", "(9, 8, 3)",
     'DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=2)'),
    ("depthwise_conv1d_symbolic", "(seq, 4)", 'DepthwiseConv1D(3, activation="relu")'),
    ("separable_conv2d", "(7, 7, 3)", 'SeparableConv2D(6, 3, "relu", padding="same")'),
    ("separable_conv1d", "(seq, 3)", "SeparableConv1D(4, 3, depth_multiplier=2, use_bias=false)"),
    # pooling
    ("max_pooling1d", "(seq, 4)", "MaxPooling1D(2)"),
    ("average_pooling1d_same_symbolic", "(seq, 4)",
     'AveragePooling1D(3, strides=2, padding="same")'),
    ("max_pooling2d_same", "(7, 8, 3)", 'MaxPooling2D((2, 3), padding="same")'),
    ("average_pooling2d_same", "(7, 8, 3)", 'AveragePooling2D(3, strides=2, padding="same")'),
    ("max_pooling3d", "(5, 5, 5, 2)", "MaxPooling3D(2)"),
    ("average_pooling3d_same", "(5, 5, 5, 2)", 'AveragePooling3D(2, padding="same")'),
    ("max_pooling2d_same_stride_over_window_symbolic", "(h, w, 2)",
     'MaxPooling2D(2, strides=3, padding="same")'),
    ("average_pooling2d_same_stride_over_window_symbolic", "(h, w, 2)",
     'AveragePooling2D(2, strides=3, padding="same")'),
    ("average_pooling1d_same_stride_over_window_after_conv", "(seq, 3)",
     'Conv1D(4, 3) AveragePooling1D(1, strides=4, padding="same")'),
    ("global_max_pooling1d", "(seq, 4)", "GlobalMaxPooling1D()"),
    ("global_average_pooling1d_keepdims", "(seq, 4)", "GlobalAveragePooling1D(keepdims=true)"),
    ("global_average_pooling2d_after_conv", "(6, 6, 3)", "Conv2D(4, 3) GlobalAveragePooling2D()"),
    ("global_max_pooling2d_keepdims_after_conv", "(6, 6, 3)",
     "Conv2D(4, 3) GlobalMaxPooling2D(keepdims=true)"),
    ("global_max_pooling2d", "(6, 5, 3)", "GlobalMaxPooling2D()"),
    ("global_average_pooling3d", "(4, 5, 3, 2)", "GlobalAveragePooling3D()"),
    ("global_max_pooling3d_keepdims", "(4, 5, 3, 2)", "GlobalMaxPooling3D(keepdims=true)"),
    ("adaptive_average_pooling2d", "(7, 5, 3)", "AdaptiveAveragePooling2D((3, 2))"),
    ("adaptive_average_pooling2d_divisible", "(6, 4, 3)", "AdaptiveAveragePooling2D((3, 2))"),
    ("adaptive_max_pooling1d_symbolic", "(seq, 4)", "AdaptiveMaxPooling1D(4)"),
    ("adaptive_average_pooling1d", "(8, 4)", "AdaptiveAveragePooling1D(3)"),
    ("adaptive_max_pooling2d_symbolic", "(h, w, 2)", "AdaptiveMaxPooling2D((2, 3))"),
    ("adaptive_max_pooling3d", "(5, 4, 3, 2)", "AdaptiveMaxPooling3D(2)"),
    ("adaptive_average_pooling3d", "(4, 5, 6, 2)", "AdaptiveAveragePooling3D((2, 1, 4))"),
    # reshaping
    ("flatten_after_conv", "(6, 6, 2)", "Conv2D(3, 3) Flatten()"),
    ("reshape", "(8, 3)", "Reshape((4, -1))"),
    ("permute", "(5, 3)", "Permute((2, 1))"),
    ("permute_after_conv", "(6, 5, 2)", "Conv2D(3, 2) Permute((3, 1, 2)) Flatten()"),
    ("repeat_vector", "(4,)", "RepeatVector(3)"),
    ("embedding", "(seq,)", "Embedding(20, 5)"),
    # regularisation (identity at inference; also the model's first and last layer)
    ("dropout", "(6,)", "Dropout(0.5)"),
    ("regularisation_chain", "(5, 4)",
     "SpatialDropout1D(0.2) GaussianNoise(0.1) GaussianDropout(0.2) AlphaDropout(0.1) "
     "ActivityRegularization(l2=0.1)"),
    ("spatial_dropout2d_after_conv", "(6, 6, 2)", "Conv2D(3, 3) SpatialDropout2D(0.2)"),
    ("spatial_dropout3d", "(3, 3, 3, 2)", "SpatialDropout3D(0.2)"),
    # normalisation
    ("batch_norm_matrix", "(6,)", "BatchNormalization()"),
    ("batch_norm_axis1", "(5, 4)", "BatchNormalization(axis=1)"),
    ("batch_norm_channels_last", "(5, 5, 3)", "BatchNormalization(epsilon=0.01)"),
    ("batch_norm_after_conv", "(6, 6, 2)", "Conv2D(3, 3) BatchNormalization(center=false)"),
    ("batch_norm_no_affine", "(5, 3)", "BatchNormalization(center=false, scale=false)"),
    ("layer_norm", "(seq, 6)", "LayerNormalization()", (13, 17)),
    ("layer_norm_two_axes", "(4, 5, 6)", "LayerNormalization(axis=(2, 3))", (13, 17)),
    ("layer_norm_middle_axes", "(4, 5, 6)", "LayerNormalization(axis=(1, 2), center=false)"),
    ("layer_norm_after_conv", "(6, 6, 2)", "Conv2D(3, 3) LayerNormalization(scale=false)"),
    ("group_norm", "(5, 5, 4)", "GroupNormalization(groups=2)"),
    ("group_norm_per_channel", "(seq, 4)", "GroupNormalization(groups=-1, center=false)"),
    ("group_norm_matrix", "(6,)", "GroupNormalization(groups=3)"),
    ("group_norm_after_conv", "(6, 6, 2)", "Conv2D(4, 3) GroupNormalization(groups=2)", (17, 21)),
    ("instance_norm", "(5, 5, 3)", "InstanceNormalization()"),
    ("instance_norm_no_affine_after_conv", "(seq, 3)",
     "Conv1D(4, 3) InstanceNormalization(center=false, scale=false)"),
    ("rms_norm", "(5, 6)", "RMSNormalization()", (17, 23)),
    ("rms_norm_two_axes", "(4, 5, 6)", "RMSNormalization(axis=(1, 2))", (17, 23)),
    ("rms_norm_no_scale", "(seq, 6)", "RMSNormalization(scale=false)", (17, 23)),
    # no affine over a symbolic axis: no constant scale of its size, so the formula
    ("layer_norm_symbolic_axis_no_affine", "(seq, f)",
     "LayerNormalization(scale=false, center=false)", (13, 17, 23)),
    ("layer_norm_symbolic_axes_no_affine", "(seq, f)",
     "LayerNormalization(axis=(1, 2), scale=false, center=false)", (17,)),
    ("rms_norm_symbolic_axis_no_scale", "(seq, f)", "RMSNormalization(scale=false)", (17, 23)),
    # merges and residuals
    ("add", "(6,)", "Add { { Dense(4) } { Dense(4) } { Dense(4) } }"),
    ("subtract", "(6,)", "Subtract { { Dense(4) } { Dense(4) } }"),
    ("multiply_gate", "(5, 5, 4)",
     'Multiply { { } { GlobalAveragePooling2D(keepdims=true) Dense(4, "sigmoid") } }'),
    ("average", "(4,)", "Average { { Dense(4) } { Dense(4) } { } }"),
    ("maximum_after_conv", "(6, 6, 2)", "Maximum { { Conv2D(3, 1) } { Conv2D(3, 1) } }"),
    ("concatenate_seq_axis1", "(seq, 4)", "Concatenate(axis=1) { { Dense(4) } { } }"),
    ("concatenate_after_conv", "(6, 6, 2)",
     'Concatenate() { { Conv2D(3, 1) } { Conv2D(2, 3, padding="same") } { } }'),
    ("residual", "(8,)", 'ResidualConnection(activation="relu") { Dense(8) }'),
    ("residual_conv", "(6, 6, 3)",
     'ResidualConnection() { Conv2D(3, 3, padding="same") BatchNormalization() }'),
    # padding, cropping, upsampling
    ("zero_padding1d", "(seq, 3)", "ZeroPadding1D(2)"),
    ("zero_padding2d", "(5, 4, 2)", "ZeroPadding2D(((1, 2), (0, 1)))"),
    ("zero_padding2d_after_conv", "(5, 4, 2)", "Conv2D(3, 1) ZeroPadding2D(1)"),
    ("zero_padding3d", "(3, 3, 3, 2)", "ZeroPadding3D(1)"),
    ("cropping1d", "(seq, 3)", "Cropping1D((1, 2))"),
    ("cropping2d", "(6, 5, 2)", "Cropping2D(((2, 1), (0, 1)))"),
    ("cropping3d_after_conv", "(5, 5, 5, 2)", "Conv3D(2, 1) Cropping3D(1)"),
    ("up_sampling1d", "(seq, 3)", "UpSampling1D(2)"),
    ("up_sampling2d", "(3, 4, 2)", "UpSampling2D((2, 3))"),
    ("up_sampling2d_bilinear", "(3, 4, 2)", 'UpSampling2D(2, interpolation="bilinear")'),
    ("up_sampling2d_bilinear_symbolic", "(h, w, 2)", 'UpSampling2D((3, 2), "bilinear")'),
    ("up_sampling3d", "(2, 3, 2, 2)", "UpSampling3D((1, 2, 2))"),
    # squeeze and excitation
    ("squeeze_excitation", "(5, 5, 8)", "SqueezeExcitation(ratio=2)"),
    ("squeeze_excitation_after_conv", "(6, 6, 2)", "Conv2D(8, 3) SqueezeExcitation(4)"),
    ("squeeze_excitation_1d", "(seq, 8)", "SqueezeExcitation(ratio=4)"),
    # recurrent
    ("simple_rnn", "(seq, 4)", "SimpleRNN(6)"),
    ("simple_rnn_relu_backwards_seq", "(seq, 4)",
     'SimpleRNN(5, "relu", return_sequences=true, go_backwards=true)'),
    ("simple_rnn_gelu_scan", "(seq, 4)",
     'SimpleRNN(4, activation="gelu", go_backwards=true, return_sequences=true)'),
    ("lstm_sequences", "(seq, 4)", "LSTM(5, return_sequences=true)"),
    ("lstm_backwards", "(seq, 3)", "LSTM(4, go_backwards=true, return_sequences=true)"),
    ("lstm_hard_sigmoid_relu", "(seq, 3)",
     'LSTM(4, activation="relu", recurrent_activation="hard_sigmoid")'),
    ("lstm_linear_softsign", "(seq, 3)",
     'LSTM(3, activation="linear", recurrent_activation="softsign", return_sequences=true)'),
    ("lstm_no_bias_state", "(seq, 3)", "LSTM(4, use_bias=false, return_state=true)"),
    ("lstm_gelu_scan", "(seq, 3)", 'LSTM(4, activation="gelu", return_sequences=true)'),
    ("gru", "(seq, 4)", "GRU(5)"),
    ("gru_reset_before", "(seq, 4)", "GRU(5, reset_after=false, return_sequences=true)"),
    ("gru_backwards_elu", "(seq, 3)", 'GRU(4, activation="elu", go_backwards=true)'),
    ("gru_swish_scan", "(seq, 3)", 'GRU(4, activation="swish", return_sequences=true)'),
    ("gru_reset_before_scan", "(seq, 3)",
     'GRU(3, activation="selu", reset_after=false, go_backwards=true, return_sequences=true)'),
    ("conv_lstm2d_same_seq", "(t, 5, 5, 2)",
     'ConvLSTM2D(3, 3, padding="same", return_sequences=true)'),
    ("conv_lstm2d_strided", "(t, 7, 6, 2)", "ConvLSTM2D(2, (3, 2), strides=2)"),
    ("conv_lstm2d_same_stride_over_window_symbolic", "(t, h, w, 2)",
     'ConvLSTM2D(2, 1, strides=2, padding="same", return_sequences=true)'),
    ("conv_lstm2d_backwards", "(t, 4, 4, 1)",
     'ConvLSTM2D(2, 2, go_backwards=true, activation="relu", recurrent_activation='
     '"hard_sigmoid", use_bias=false, return_sequences=true)'),
    ("bidirectional_lstm", "(seq, 4)", "Bidirectional(LSTM(4, return_sequences=true))"),
    ("bidirectional_gru_sum", "(seq, 4)", 'Bidirectional(GRU(3), merge_mode="sum")'),
    ("bidirectional_rnn_mul", "(seq, 3)",
     'Bidirectional(SimpleRNN(3, "relu", return_sequences=true), merge_mode="mul")'),
    ("bidirectional_lstm_scan_ave", "(seq, 3)",
     'Bidirectional(LSTM(3, activation="gelu"), merge_mode="ave")'),
    ("bidirectional_gru_scan_states", "(seq, 3)",
     'Bidirectional(GRU(3, recurrent_activation="swish", return_state=true))'),
    ("time_distributed_dense", "(seq, 4)", 'TimeDistributed(Dense(3, "softmax"))'),
    ("time_distributed_conv2d", "(t, 6, 6, 2)", 'TimeDistributed(Conv2D(3, 3, padding="same"))'),
    ("time_distributed_flatten", "(t, 3, 2)", "TimeDistributed(Flatten())"),
    ("time_distributed_pool_symbolic", "(t, s, 3)", "TimeDistributed(MaxPooling1D(2))"),
    # attention and transformers
    ("mha_self", "(seq, 8)", "MultiHeadAttention(2, 4)", (17, 23)),
    ("mha_causal_value_dim", "(seq, 6)",
     "MultiHeadAttention(3, 4, value_dim=2, output_shape=5, causal=true, use_bias=false)",
     (17, 23)),
    ("attention_self", "(seq, 6)", "Attention()"),
    ("attention_concat_scaled_causal", "(seq, 6)",
     'Attention(use_scale=true, score_mode="concat", causal=true)'),
    ("positional_encoding", "(seq, 8)", "PositionalEncoding(32)"),
    ("positional_encoding_odd_static", "(6, 5)", "PositionalEncoding(10)"),
    ("positional_encoding_learned", "(seq, 4)", 'PositionalEncoding(12, "learned")'),
    ("transformer_encoder", "(seq, 8)", "TransformerEncoder(2, 16)", (13, 17, 23)),
    ("transformer_encoder_prenorm_gelu_causal", "(seq, 8)",
     'TransformerEncoder(4, 12, activation="gelu", norm_first=true, causal=true, '
     "use_bias=false)", (17, 20, 23)),
]

# Models with several inputs (cross-attention), written in full.
MULTI: list[tuple] = [
    ("mha_cross_causal", """network Case {
  input: { x: (tq, 8), memory: (tk, 6) }
  layers:
    x: { MultiHeadAttention(2, 4, context=memory, causal=true) }
}
""", (17, 23)),
    ("attention_value_key", """network Case {
  input: { q: (tq, 6), v: (tk, 5), k: (tk, 6) }
  layers:
    q: { Attention(value=v, key=k, use_scale=true) }
}
""", (17,)),
    ("attention_value", """network Case {
  input: { q: (tq, 6), v: (tk, 6) }
  layers:
    q: { Attention(value=v, causal=true) }
}
""", (17,)),
    ("transformer_decoder", """network Case {
  input: { x: (tq, 8), mem: (tk, 8) }
  layers:
    x: { TransformerDecoder(2, 16, memory=mem) }
}
""", (13, 17, 23)),
    ("transformer_decoder_prenorm", """network Case {
  input: { x: (tq, 8), mem: (tk, 8) }
  layers:
    x: { TransformerDecoder(2, 16, memory=mem, norm_first=true, causal=false,
                            activation="gelu") }
}
""", (17, 23)),
    ("two_inputs_branches", """network Case {
  input: { image: (6, 6, 2), meta: (3,) }
  layers:
    image: { Conv2D(4, 3) GlobalMaxPooling2D() }
    meta: { Dense(4) }
    Concatenate(image, meta)
    Dense(2)
}
""", (17,)),
]
