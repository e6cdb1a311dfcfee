"""The models the keras-target tests run, and their preparation in the test process.

Every case is compiled by neuralc, written by the keras target (source plus weights file),
given random inputs at two sizes (batch 1 and 3, two values of every other symbolic dim) and
run by the reference interpreter here; the generated modules then all run in one Keras
process (keras_runner.py, KERAS_BACKEND=torch), whose outputs the tests compare.

Weights are neuralc's seeded initial values moved off their defaults (BatchNorm statistics,
LayerNorm scales and the like start at ones and zeros, which would hide a layout mistake), so
every converted weight matters.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.backends.base import BackendOptions
from neuralc.backends.keras import KerasBackend
from neuralc.driver import compile_file, compile_source
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import func_body
from neuralc.ir.dims import dim_facts, evaluate, fit_size, symbols
from neuralc.layers import catalog
from neuralc.runtime import samples
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = sorted((ROOT / "examples").glob("*.nr"))
RUNNER = Path(__file__).with_name("keras_runner.py")


def net(inputs: str, layers: str, extra: str = "") -> str:
    return f"network T {{\n  input: {inputs}\n  {extra}\n  layers:\n    {layers}\n}}\n"


# (id, model text, sizes of the non-batch symbols for the two runs)
LAYER_CASES: list[tuple[str, str, dict[str, tuple[int, int]]]] = [
    # dense
    ("dense-relu-rank3", net("(seq, 6)", 'Dense(5, "relu")'), {}),
    ("dense-nobias-tanh", net("(6,)", 'Dense(4, activation="tanh", use_bias=false)'), {}),
    ("output-softmax", net("(7,)", "Output(3)"), {}),
    # convolution
    ("conv1d-causal-dilated", net("(seq, 4)", 'Conv1D(6, 3, "elu", padding="causal", '
                                              "dilation_rate=2)"), {"seq": (6, 11)}),
    ("conv1d-same-stride", net("(seq, 4)", 'Conv1D(5, 4, strides=2, padding="same")'),
     {"seq": (7, 10)}),
    ("conv2d-same-stride-groups", net("(9, 10, 4)", 'Conv2D(6, (3, 2), strides=2, '
                                                    'padding="same", groups=2)'), {}),
    ("conv2d-dilated-nobias", net("(h, w, 3)", "Conv2D(4, 3, dilation_rate=2, use_bias=false)"),
     {"h": (7, 9), "w": (8, 12)}),
    ("conv3d-same", net("(5, 6, 7, 2)", 'Conv3D(3, (2, 3, 2), "sigmoid", strides=(1, 2, 1), '
                                        'padding="same")'), {}),
    ("conv1d-transpose-dilated", net("(seq, 3)", "Conv1DTranspose(5, 3, dilation_rate=2)"), {}),
    ("conv1d-transpose-groups", net("(seq, 4)", "Conv1DTranspose(6, 3, strides=2, groups=2, "
                                                "output_padding=1)"), {}),
    ("conv2d-transpose-groups", net("(4, 5, 6)", 'Conv2DTranspose(9, (2, 3), "tanh", groups=3, '
                                                 'padding="same", use_bias=false)'), {}),
    ("conv2d-transpose-same", net("(5, 6, 3)", 'Conv2DTranspose(4, 3, "relu", strides=2, '
                                               'padding="same")'), {}),
    ("conv2d-transpose-even-same", net("(h, w, 2)", 'Conv2DTranspose(3, 2, strides=2, '
                                                    'padding="same", output_padding=0)'),
     {"h": (4, 5), "w": (3, 6)}),
    ("conv3d-transpose", net("(3, 4, 5, 2)", "Conv3DTranspose(3, (2, 3, 2), strides=(2, 1, 2))"),
     {}),
    ("depthwise2d", net("(7, 8, 3)", 'DepthwiseConv2D(3, strides=2, padding="same", '
                                     "depth_multiplier=2)"), {}),
    ("depthwise1d", net("(seq, 4)", 'DepthwiseConv1D(5, "relu", depth_multiplier=3, '
                                    "use_bias=false)"), {"seq": (6, 9)}),
    ("separable2d", net("(7, 8, 3)", 'SeparableConv2D(5, 3, "relu", padding="same", '
                                     "depth_multiplier=2)"), {}),
    ("separable1d", net("(seq, 4)", "SeparableConv1D(6, 3, strides=2, use_bias=false)"),
     {"seq": (7, 12)}),
    # pooling
    ("maxpool1d-same", net("(seq, 3)", 'MaxPooling1D(3, strides=2, padding="same")'),
     {"seq": (7, 10)}),
    ("avgpool1d", net("(seq, 3)", "AveragePooling1D(2)"), {}),
    ("maxpool2d-overlap", net("(9, 9, 2)", "MaxPooling2D(3, strides=2)"), {}),
    ("avgpool2d-same", net("(7, 9, 2)", 'AveragePooling2D((3, 2), strides=2, padding="same")'),
     {}),
    ("maxpool3d-same", net("(5, 6, 7, 2)", 'MaxPooling3D(2, padding="same")'), {}),
    ("avgpool3d", net("(4, 6, 5, 2)", "AveragePooling3D((2, 3, 2), strides=1)"), {}),
    ("global-max1d", net("(seq, 3)", "GlobalMaxPooling1D()"), {}),
    ("global-avg1d-keepdims", net("(seq, 3)", "GlobalAveragePooling1D(keepdims=true)"), {}),
    ("global-max2d-keepdims", net("(h, w, 3)", "GlobalMaxPooling2D(keepdims=true)"), {}),
    ("global-avg2d", net("(5, 6, 3)", "GlobalAveragePooling2D()"), {}),
    ("global-max3d", net("(3, 4, 5, 2)", "GlobalMaxPooling3D()"), {}),
    ("global-avg3d-keepdims", net("(3, 4, 5, 2)", "GlobalAveragePooling3D(keepdims=true)"), {}),
    ("adaptive-avg1d", net("(seq, 2)", "AdaptiveAveragePooling1D(3)"), {"seq": (7, 10)}),
    ("adaptive-max1d", net("(seq, 2)", "AdaptiveMaxPooling1D(4)"), {"seq": (2, 9)}),
    ("adaptive-avg2d", net("(h, w, 2)", "AdaptiveAveragePooling2D((3, 3))"),
     {"h": (7, 5), "w": (9, 3)}),
    ("adaptive-max2d", net("(7, 9, 2)", "AdaptiveMaxPooling2D((2, 3))"), {}),
    ("adaptive-avg3d", net("(5, 6, 4, 2)", "AdaptiveAveragePooling3D(2)"), {}),
    ("adaptive-max3d", net("(5, 6, 4, 2)", "AdaptiveMaxPooling3D((1, 2, 3))"), {}),
    # reshaping and resampling
    ("flatten", net("(3, 4, 2)", "Flatten()"), {}),
    ("reshape-infer", net("(6, 4)", "Reshape((3, -1, 2))"), {}),
    ("permute", net("(3, 4, 5)", "Permute((3, 1, 2))"), {}),
    ("repeat-vector", net("(5,)", "RepeatVector(3)"), {}),
    ("zero-padding1d", net("(seq, 3)", "ZeroPadding1D((1, 2))"), {}),
    ("zero-padding2d", net("(4, 5, 2)", "ZeroPadding2D(((1, 2), (0, 1)))"), {}),
    ("zero-padding3d", net("(2, 3, 4, 2)", "ZeroPadding3D(1)"), {}),
    ("cropping1d", net("(seq, 3)", "Cropping1D((1, 2))"), {"seq": (5, 8)}),
    ("cropping2d", net("(8, 9, 2)", "Cropping2D(((2, 1), (1, 3)))"), {}),
    ("cropping3d", net("(5, 6, 7, 2)", "Cropping3D(1)"), {}),
    ("upsampling1d", net("(seq, 3)", "UpSampling1D(3)"), {}),
    ("upsampling2d-nearest", net("(3, 4, 2)", "UpSampling2D((2, 3))"), {}),
    ("upsampling2d-bilinear", net("(h, w, 2)", 'UpSampling2D((2, 3), "bilinear")'),
     {"h": (3, 5), "w": (4, 2)}),
    ("upsampling3d", net("(2, 3, 4, 2)", "UpSampling3D((1, 2, 2))"), {}),
    # regularisation (the identity at inference)
    ("dropout-noise-shape", net("(6, 4)", "Dropout(0.5, noise_shape=(None, 1, 4), seed=3)"), {}),
    ("spatial-dropout1d", net("(seq, 4)", "SpatialDropout1D(0.3)"), {}),
    ("spatial-dropout2d", net("(4, 5, 3)", "SpatialDropout2D(0.2, seed=1)"), {}),
    ("spatial-dropout3d", net("(2, 4, 5, 3)", "SpatialDropout3D(0.2)"), {}),
    ("gaussian-noise", net("(6,)", "GaussianNoise(0.1)"), {}),
    ("gaussian-dropout", net("(6,)", "GaussianDropout(0.3)"), {}),
    ("alpha-dropout", net("(6, 2)", "AlphaDropout(0.2, noise_shape=(None, 6, 1))"), {}),
    ("activity-regularization", net("(6,)", "ActivityRegularization(l1=0.01, l2=0.001)"), {}),
    # normalisation
    ("batchnorm-axis1", net("(4, 5)", "BatchNormalization(axis=1, epsilon=0.01)"), {}),
    ("batchnorm-channels", net("(h, w, 3)", "BatchNormalization()"), {}),
    ("batchnorm-no-affine", net("(6, 3)", "BatchNormalization(center=false, scale=false)"), {}),
    ("layernorm-multiaxis", net("(3, 4, 5)", "LayerNormalization(axis=(1, -1))"), {}),
    ("layernorm-nocenter", net("(seq, 6)", "LayerNormalization(center=false, epsilon=1e-5)"),
     {}),
    # contiguous axes that are not the last ones: Keras's torch backend would call
    # F.layer_norm over the wrong axes (LayerNormalizationAxes instead)
    ("layernorm-axis1-rank4", net("(3, 4, 5)", "LayerNormalization(axis=1)"), {}),
    ("layernorm-axis1-nocenter", net("(4, seq, 3)", "LayerNormalization(axis=1, center=false, "
                                                    "epsilon=1e-5)"), {}),
    ("layernorm-middle-symbolic-no-affine", net("(seq, f, 3)", "LayerNormalization(axis=(1, 2), "
                                                               "center=false, scale=false)"),
     {"seq": (3, 6), "f": (4, 2)}),
    ("groupnorm", net("(h, w, 6)", "GroupNormalization(groups=3)"), {}),
    ("groupnorm-axis1", net("(4, 5)", "GroupNormalization(2, axis=1, scale=false)"), {}),
    ("instancenorm", net("(seq, 4)", "InstanceNormalization(epsilon=1e-5)"), {}),
    ("instancenorm-noscale", net("(5, 5, 3)", "InstanceNormalization(scale=false)"), {}),
    ("rmsnorm", net("(seq, 8)", "RMSNormalization(epsilon=1e-5)"), {}),
    ("rmsnorm-multiaxis-noscale", net("(3, 4, 5)", "RMSNormalization(axis=(1, 2), scale=false)"),
     {}),
    ("rmsnorm-symbolic-noscale", net("(seq, f)", "RMSNormalization(scale=false)"),
     {"f": (4, 7)}),
    # embedding
    ("embedding", net("(seq,)", "Embedding(50, 6)"), {}),
    ("embedding-2d-indices", net("(3, seq)", "Embedding(20, 4)"), {}),
    # activation layers
    *[(f"activation-{name}", net("(3, 7)", f'Activation("{name}")'), {})
      for name in ("linear", "relu", "leaky_relu", "elu", "selu", "gelu", "swish", "sigmoid",
                   "tanh", "softmax", "softplus", "softsign", "relu6", "hard_sigmoid",
                   "exponential", "hard_swish", "mish", "log_softmax")],
    ("activation-leaky-alpha", net("(7,)", 'Activation("leaky_relu", 0.1)'), {}),
    ("activation-elu-alpha", net("(7,)", 'Activation("elu", alpha=0.5)'), {}),
    ("relu-layer", net("(3, 7)", "ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5)"), {}),
    ("relu6-layer", net("(7,)", "ReLU(6.0)"), {}),
    ("leaky-relu-layer", net("(7,)", "LeakyReLU()"), {}),
    ("elu-layer", net("(7,)", "ELU(0.7)"), {}),
    ("softmax-axes", net("(3, 4, 5)", "Softmax(axis=(1, 2))"), {}),
    ("softmax-layer", net("(seq, 5)", "Softmax()"), {}),
    ("prelu-channels", net("(h, w, 3)", "PReLU()"), {}),
    ("prelu-shared", net("(seq, 4)", "PReLU(num_parameters=1, init=0.1)"), {}),
    ("prelu-vector", net("(5,)", "PReLU()"), {}),
    # merges and residuals
    ("add-three", net("(6,)", 'Add { { Dense(4) } { Dense(4, "relu") } { Dense(4) } }'), {}),
    ("subtract", net("(6,)", "Subtract { { Dense(4) } { Dense(4) } }"), {}),
    ("multiply-gate", net("(h, w, 4)", 'Multiply { { } { GlobalAveragePooling2D(keepdims=true) '
                                        'Dense(4, "sigmoid") } }'), {}),
    ("average", net("(seq, 3)", "Average { { Dense(2) } { Dense(2) } }"), {}),
    ("maximum", net("(6,)", "Maximum { { Dense(3) } { Dense(3) } { Dense(3) } }"), {}),
    ("concatenate-axis1", net("(3, 4)", "Concatenate(axis=1) { { Dense(4) } { } }"), {}),
    ("residual", net("(seq, 6)", 'ResidualConnection { Dense(6, "relu") Dense(6) }'), {}),
    ("residual-activation", net("(6,)", 'ResidualConnection(activation="gelu") { Dense(6) }'),
     {}),
    ("squeeze-excitation-2d", net("(h, w, 8)", "SqueezeExcitation(ratio=4)"), {}),
    ("squeeze-excitation-1d", net("(seq, 6)", "SqueezeExcitation(2)"), {}),
    # recurrent layers and wrappers
    ("simple-rnn-seq", net("(seq, 5)", 'SimpleRNN(4, "relu", return_sequences=true)'), {}),
    ("lstm-state", net("(seq, 5)", "LSTM(6, return_state=true)"), {}),
    ("lstm-backwards", net("(seq, 5)", 'LSTM(6, recurrent_activation="hard_sigmoid", '
                                       "use_bias=false, return_sequences=true, "
                                       "go_backwards=true)"), {}),
    ("gru", net("(seq, 5)", "GRU(5)"), {}),
    ("gru-reset-before", net("(seq, 5)", "GRU(5, reset_after=false, return_sequences=true)"),
     {}),
    ("gru-backwards-state", net("(seq, 3)", 'GRU(4, activation="relu", go_backwards=true, '
                                            "return_state=true)"), {}),
    ("conv-lstm2d-same", net("(t, 6, 6, 2)", 'ConvLSTM2D(3, 3, padding="same", '
                                             "return_sequences=true)"), {"t": (2, 4)}),
    ("conv-lstm2d-strided", net("(t, 7, 7, 2)", "ConvLSTM2D(2, (2, 3), strides=2, "
                                                "go_backwards=true, use_bias=false)"),
     {"t": (3, 2)}),
    ("bidirectional-lstm", net("(seq, 5)", "Bidirectional(LSTM(4, return_sequences=true))"),
     {}),
    ("bidirectional-gru-sum", net("(seq, 5)", 'Bidirectional(GRU(4), merge_mode="sum")'), {}),
    ("bidirectional-rnn-ave", net("(seq, 3)", "Bidirectional(SimpleRNN(3, return_sequences="
                                              'true), "ave")'), {}),
    ("bidirectional-lstm-mul-state", net("(seq, 3)", "Bidirectional(LSTM(3, return_state=true),"
                                                     ' merge_mode="mul")'), {}),
    ("time-distributed-dense", net("(t, 6)", 'TimeDistributed(Dense(3, "relu"))'), {}),
    ("time-distributed-conv", net("(t, 6, 6, 2)", "TimeDistributed(Conv2D(3, 3))"), {}),
    ("time-distributed-se", net("(t, 5, 5, 4)", "TimeDistributed(SqueezeExcitation(2))"), {}),
    ("time-distributed-encoder", net("(t, seq, 8)", "TimeDistributed(TransformerEncoder(2, 8))"),
     {"t": (2, 3), "seq": (4, 6)}),
    ("time-distributed-bidirectional", net("(t, seq, 3)", "TimeDistributed(Bidirectional("
                                                          "GRU(2, return_sequences=true)))"),
     {"t": (2, 3), "seq": (4, 5)}),
    ("time-distributed-layernorm-axis1", net("(t, 4, 5)", "TimeDistributed(LayerNormalization("
                                                          "axis=1))"), {}),
    ("time-distributed-avgpool-same", net("(t, 5, 3)", 'TimeDistributed(AveragePooling1D(2, '
                                                       'padding="same"))'), {}),
    # attention
    ("mha-self", net("(seq, 8)", "MultiHeadAttention(2, 4)"), {}),
    ("mha-causal-shapes", net("(seq, 8)", "MultiHeadAttention(2, 3, value_dim=5, "
                                          "output_shape=6, causal=true)"), {}),
    ("mha-cross", net("{ q: (ql, 8), m: (ml, 6) }",
                      "q: { MultiHeadAttention(2, 4, context=m, use_bias=false) }"), {}),
    ("attention-self", net("(seq, 6)", "Attention()"), {}),
    ("attention-concat-causal", net("(seq, 6)", 'Attention(use_scale=true, score_mode="concat", '
                                                "causal=true)"), {}),
    ("attention-value-key", net("{ q: (ql, 4), v: (vl, 5), k: (vl, 4) }",
                                "q: { Attention(use_scale=true, value=v, key=k) }"), {}),
    ("positional-sinusoidal", net("(seq, 7)", "PositionalEncoding(32)"), {}),
    ("positional-learned", net("(seq, 6)", 'PositionalEncoding(20, "learned")'), {}),
    ("transformer-encoder", net("(seq, 8)", "TransformerEncoder(2, 16)"), {}),
    ("transformer-encoder-prenorm", net("(seq, 8)", 'TransformerEncoder(2, 12, activation="gelu",'
                                                    " norm_first=true, causal=true, "
                                                    "use_bias=false)"), {}),
    ("transformer-decoder", net("{ tgt: (t, 8), mem: (s, 8) }",
                                "tgt: { TransformerDecoder(2, 16, memory=mem) }"), {}),
    ("transformer-decoder-prenorm", net("{ tgt: (t, 8), mem: (s, 8) }",
                                        "tgt: { TransformerDecoder(4, 16, memory=mem, "
                                        "norm_first=true, causal=false) }"), {}),
]

# Cases that train one epoch (loss, optimizer and schedule set-ups), by example or by text.
FIT_TEXTS = {
    "fit-exponential-decay": net("(6,)", 'Dense(8, "relu") Output(3)', textwrap.dedent("""
        loss: "categorical_crossentropy"
        optimizer: SGD(learning_rate=ExponentialDecay(0.1, 10, 0.9), momentum=0.9)
        metrics: ["accuracy"]
        train { epochs: 3  batch_size: 4  validation_split: 0.25 }""")),
    "fit-step-decay-mse": net("(seq, 4)", "LSTM(5) Dense(2)", textwrap.dedent("""
        loss: "mse"
        optimizer: RMSprop(lr=StepDecay(0.01, 5, 0.5), eps=1e-6)
        metrics: ["mae"]""")),
    "fit-cosine-adamw": net("(seq,)", "Embedding(30, 8) TransformerEncoder(2, 16) "
                                      "GlobalAveragePooling1D() Output(2)", textwrap.dedent("""
        loss: SparseCategoricalCrossentropy(from_logits=false)
        optimizer: AdamW(learning_rate=CosineDecay(0.001, 100), weight_decay=0.01,
                         betas=(0.9, 0.98))""")),
}
FIT_EXAMPLES = ("mlp", "mnist_cnn", "lstm_text_classifier", "resnet_small", "bigru_tagger")
RELOAD_EXAMPLES = ("se_resnet_block", "seq2seq_decoder", "vit_tiny")
RELOAD_LAYERS = ("conv1d-transpose-groups", "positional-sinusoidal", "transformer-encoder",
                 "layernorm-axis1-rank4")


@dataclass
class Prepared:
    """One generated model, its inputs and the reference outputs for them."""

    id: str
    model: CompiledModel
    module_path: Path
    weights_path: Path
    inputs: list[Path]
    expected: list[list[np.ndarray]]
    manifest: list[dict[str, Any]] = field(default_factory=list)


def perturbed_weights(model: CompiledModel, seed: int) -> dict[str, np.ndarray]:
    """neuralc's initial weights, moved off constant starts (positive running variances)."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, w in init_weights(model.module, seed=seed).items():
        if w.dtype.kind != "f":
            out[name] = w
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 1.5, w.shape).astype(w.dtype)
        else:
            out[name] = (w + 0.2 * rng.standard_normal(w.shape)).astype(w.dtype)
    return out


def symbol_sizes(model: CompiledModel, batch: int, run: int,
                 given: dict[str, tuple[int, int]]) -> dict[str, int]:
    """batch, then each other symbol: the case's size for this run, else 5 / 8 within its
    dims range."""
    sizes = {"batch": batch}
    ranges = model.module.attributes.get("dims", {})
    for a in func_body(model.module.funcs[0]).args:
        for d in a.type.shape:
            for s in sorted(symbols(d)):
                if s in sizes:
                    continue
                if s in given:
                    sizes[s] = given[s][run]
                    continue
                sizes[s] = fit_size(5 + 3 * run, *dim_facts(ranges.get(s)))
    return sizes


def random_inputs(model: CompiledModel, sizes: dict[str, int],
                  rng: np.random.Generator) -> list[np.ndarray]:
    return samples.random_inputs(model.module, sizes, rng)


def prepare(case_id: str, model: CompiledModel, out_dir: Path,
            given: dict[str, tuple[int, int]] | None = None, seed: int = 1,
            options: BackendOptions | None = None, perturb: bool = True) -> Prepared:
    """Emit ``model`` for Keras into ``out_dir`` and compute its reference outputs.

    Training starts from neuralc's own initial weights (``perturb=False``): the perturbed ones
    saturate deep softmax outputs, where a clipped cross-entropy has no gradient at all.
    """
    key = case_id.replace("/", "_")
    weights = perturbed_weights(model, seed) if perturb else init_weights(model.module, seed)
    artifact = KerasBackend().emit(model, weights, options or BackendOptions())
    module_path, weights_path = artifact.write(out_dir / f"{key}.py")
    rng = np.random.default_rng(seed)
    inputs, expected = [], []
    for run, batch in enumerate((1, 3)):
        xs = random_inputs(model, symbol_sizes(model, batch, run, given or {}), rng)
        path = out_dir / f"{key}_in{run}.npz"
        np.savez(path, **{f"x{i}": x for i, x in enumerate(xs)})
        inputs.append(path)
        expected.append(run_module(model.module, xs, weights))
    return Prepared(case_id, model, module_path, weights_path, inputs, expected)


def labels_for(model: CompiledModel, xs: list[np.ndarray], rng: np.random.Generator
               ) -> np.ndarray:
    """Training targets that fit the model's loss and output shape."""
    ret = func_body(model.module.funcs[0]).ops[-1]
    t = ret.operands[0].type
    sizes = {"batch": xs[0].shape[0]}
    for a, x in zip(func_body(model.module.funcs[0]).args, xs):
        for d, n in zip(a.type.shape, x.shape):
            if not isinstance(d, int) and d.is_atomic():
                sizes[next(iter(d.symbols()))] = n
    shape = tuple(evaluate(d, sizes) for d in t.shape)
    loss = (model.info.training.loss or "mse").lower()
    if "sparse" in loss:
        return rng.integers(0, shape[-1], size=shape[:-1]).astype(np.int64)
    if "categorical" in loss:
        return np.eye(shape[-1], dtype=np.float32)[rng.integers(0, shape[-1], size=shape[:-1])]
    return rng.standard_normal(shape).astype(np.float32)


def run_keras(manifest: list[dict[str, Any]], work: Path) -> dict[str, Any]:
    """Run every case in one Keras process; its results by case id."""
    (work / "manifest.json").write_text(json.dumps(manifest))
    env = {**os.environ, "KERAS_BACKEND": "torch", "KERAS_HOME": str(work / "keras_home"),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.run([sys.executable, str(RUNNER), str(work / "manifest.json"),
                           str(work / "results.json")], cwd=work, env=env, capture_output=True,
                          text=True, timeout=900)
    if proc.returncode != 0 or not (work / "results.json").exists():
        raise RuntimeError(f"the Keras runner failed (exit {proc.returncode}):\n{proc.stderr}")
    return json.loads((work / "results.json").read_text())


@functools.cache
def compile_case(text_or_path: str | Path, name: str = "t.nr") -> CompiledModel:
    """The compiled model of a case (cached: the tests only read it)."""
    if isinstance(text_or_path, Path):
        return compile_file(text_or_path)
    return compile_source(text_or_path, name)


def layer_kinds(model: CompiledModel) -> set[str]:
    """The catalog layers a model uses, wrapped layers included."""
    kinds = set()
    for op in func_body(model.module.funcs[0]).ops:
        spec = catalog.by_op(op.name)
        if spec is None:
            continue
        kinds.add(spec.name)
        if "layer" in op.attributes and isinstance(op.attributes["layer"], dict):
            kinds.add(catalog.inner_layer(op.attributes["layer"])[0].name)
    return kinds

