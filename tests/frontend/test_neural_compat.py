"""Programs written for Neural itself (issue 15): its quoted optimizer and schedule strings,
``HPO(categorical(...))``, ``Transformer`` and TransformerEncoder's defaults and
``num_layers``, attention over a feature map, and what it refuses (no layers, unknown loss).

The programs here are written in the style of Neural's own examples and test snippets, with
the constructs they use; each is checked and run on the reference target.
"""

from __future__ import annotations

import numpy as np
import pytest

from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import compile_source
from neuralc.frontend.hparams import HParams
from neuralc.frontend.values import CallValue
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.samples import random_inputs, symbol_sizes
from neuralc.runtime.weights import init_weights, module_weights


def errors(text: str) -> str:
    with pytest.raises(CompileError) as ei:
        compile_source(text, "m.nr")
    return render_all(ei.value.diagnostics)


def runs(text: str, **kwargs) -> list[np.ndarray]:
    """Compile, then run on the reference target (graph and optimised tensor IR agree)."""
    from neuralc.driver import tensor_stage
    from neuralc.passes.pipelines import pipeline, tensor_pipeline

    model = compile_source(text, "m.nr", **kwargs)
    w = init_weights(model.module)
    xs = random_inputs(model.module, symbol_sizes(model.module, 2, 8), np.random.default_rng(0))
    graph = run_module(model.module, xs, w)
    optimised, _ = tensor_stage(model, tensor_pipeline(2)[len(pipeline(2)):])
    for a, b in zip(graph, run_module(optimised, xs, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    return graph


# -- optimizer and schedule strings -------------------------------------------------------------

MNIST_HPO = """\
network MnistHpo {
  input: (28, 28, 1)
  layers:
    Conv2D(filters=8, kernel_size=(3,3), activation="relu")
    MaxPooling2D(pool_size=(2,2))
    Flatten()
    Dense(HPO(categorical(32, 64)), activation="relu")
    Dropout(HPO(range(0.3, 0.7, step=0.1)))
    Output(units=10, activation="softmax")
  loss: "sparse_categorical_crossentropy"
  optimizer: 'Adam(learning_rate=HPO(log_range(1e-4, 1e-2)))'
  train { epochs: 3  batch_size: HPO(choice(16, 32))  search_method: "bayesian" }
}
"""


def test_quoted_optimizer_call_with_hpo_means_the_call():
    hp = HParams.from_strings(["optimizer.learning_rate=0.001", "dense.units=64"])
    model = compile_source(MNIST_HPO, "m.nr", hparams=hp)
    cfg = model.info.training
    assert cfg.optimizer == "Adam" and cfg.optimizer_params == {"learning_rate": 0.001}
    assert {u.path for u in hp.uses} >= {"optimizer.learning_rate", "dense.units"}
    runs(MNIST_HPO)


def test_an_error_inside_a_quoted_call_points_into_the_string():
    text = 'network N {\n  input: (4,)\n  layers:\n    Dense(2)\n  optimizer: "Adam(lr=1e-3, momentm=0.9)"\n}\n'
    out = errors(text)
    assert "m.nr:5:29: error: Adam has no parameter 'momentm'" in out
    assert "|" + " " * 29 + "^~~~~~~~~~~\n" in out


def test_schedule_written_as_a_string_with_hpo():
    text = """network N {
  input: (4,)
  layers:
    Dense(2)
  optimizer: SGD(learning_rate="ExponentialDecay(HPO(range(0.05, 0.2, step=0.05)), 1000, 0.96)", momentum=0.9)
}
"""
    model = compile_source(text, "m.nr")
    lr = model.info.training.optimizer_params["learning_rate"]
    assert isinstance(lr, CallValue) and lr.name == "ExponentialDecay"
    assert lr.args == [0.05, 1000, 0.96]
    assert [u.path for u in model.info.hparams.uses] == ["optimizer.learning_rate"]
    assert "5:33: error: ExponentialDecay: 'decay_rate' must be a positive number" in errors(
        text.replace("0.96", "-0.96"))


def test_categorical_is_choice():
    a = compile_source(MNIST_HPO, "m.nr", hparams=HParams.from_strings(["dense.units=64"]))
    dense = next(op for op in a.module.walk() if op.name == "graph.dense")
    assert dense.attributes["units"] == 64
    assert "not one of the choices choice(32, 64)" in errors_with_hparam("dense.units=48")


def errors_with_hparam(item: str) -> str:
    with pytest.raises(CompileError) as ei:
        compile_source(MNIST_HPO, "m.nr", hparams=HParams.from_strings([item]))
    return render_all(ei.value.diagnostics)


# -- Transformer ---------------------------------------------------------------------------------

TEXT_TRANSFORMER = """\
network TextTransformer {
  input: (12, 32)
  layers:
    Transformer(num_layers=3, dropout=0.1)
    TransformerEncoder(num_heads=4, ff_dim=64, name="top")
    GlobalAveragePooling1D()
    Output(units=5, activation="softmax")
  loss: "categorical_crossentropy"
  optimizer: Adam(learning_rate=0.0001)
}
"""


def test_transformer_alias_defaults_and_num_layers():
    model = compile_source(TEXT_TRANSFORMER, "m.nr")
    encoders = [op for op in model.module.walk() if op.name == "graph.transformer_encoder"]
    assert [op.attributes["name"] for op in encoders] == [
        "transformer_encoder", "transformer_encoder_1", "transformer_encoder_2", "top"]
    first = encoders[0].attributes
    assert (first["num_heads"], first["ff_dim"]) == (8, 512)  # Neural's defaults
    names = [w.name for w in module_weights(model.module)]
    assert len(names) == len(set(names))  # each stacked layer has its own weights
    assert "transformer_encoder_2.linear1.weight" in names
    (y,) = runs(TEXT_TRANSFORMER)
    assert y.shape == (2, 5)


def test_num_layers_with_an_explicit_name():
    text = TEXT_TRANSFORMER.replace("Transformer(num_layers=3, dropout=0.1)",
                                    'Transformer(num_layers=2, name="enc")')
    model = compile_source(text, "m.nr")
    assert [op.attributes["name"] for op in model.module.walk()
            if op.name == "graph.transformer_encoder"] == ["enc", "enc_1", "top"]


VIT = """\
network ViT {
  input: (16, 16, 3)
  layers:
    Conv2D(16, (3,3), strides=2) @ "cuda:0"
    TransformerEncoder(num_heads=4, ff_dim=32) {
      Conv2D(16, (3,3))
      Dense(16)
    } * 2
    GlobalAveragePooling2D()
    Dense(10, "softmax")
  loss: "categorical_crossentropy"
  optimizer: "Adam(learning_rate=1e-4)"
  train { epochs: 300  batch_size: HPO(range(128, 512, step=64)) }
}
"""


def test_transformer_encoder_on_a_feature_map():
    """Neural's ViT example: the encoder on (batch, h, w, c) attends over all h * w positions."""
    model = compile_source(VIT, "m.nr")
    shapes = [str(op.results[0].type) for op in model.module.walk()
              if op.name == "graph.transformer_encoder"]
    assert shapes == ["tensor<batch x 7 x 7 x 16 x f32>", "tensor<batch x 5 x 5 x 16 x f32>"]
    (y,) = runs(VIT)
    assert y.shape == (2, 10)
    np.testing.assert_allclose(y.sum(axis=1), 1.0, rtol=1e-5)


def test_feature_map_attention_is_attention_over_the_flattened_positions():
    """The reference against torch's TransformerEncoderLayer on the (batch, h * w, c) sequence
    (an independent implementation) and its MultiheadAttention for MultiHeadAttention."""
    torch = pytest.importorskip("torch")
    text = ("network A {\n  input: (3, 4, 8)\n  layers:\n"
            "    TransformerEncoder(2, 16, dropout=0.0)\n    MultiHeadAttention(2, 4)\n}\n")
    model = compile_source(text, "m.nr")
    w = init_weights(model.module, seed=3)
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 8)).astype(np.float32)
    (y,) = run_module(model.module, [x], w)
    enc = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True).eval()
    enc.load_state_dict({k.removeprefix("transformer_encoder."): torch.from_numpy(v)
                         for k, v in w.items() if k.startswith("transformer_encoder.")})
    mha = torch.nn.MultiheadAttention(8, 2, batch_first=True).eval()
    mha.load_state_dict({
        "in_proj_weight": torch.from_numpy(np.concatenate(
            [w[f"multi_head_attention.{p}_proj.weight"] for p in "qkv"])),
        "in_proj_bias": torch.from_numpy(np.concatenate(
            [w[f"multi_head_attention.{p}_proj.bias"] for p in "qkv"])),
        "out_proj.weight": torch.from_numpy(w["multi_head_attention.out_proj.weight"]),
        "out_proj.bias": torch.from_numpy(w["multi_head_attention.out_proj.bias"])})
    with torch.no_grad():
        t = enc(torch.from_numpy(x).reshape(2, 12, 8))
        want = mha(t, t, t, need_weights=False)[0].reshape(2, 3, 4, 8).numpy()
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5)


# -- what Neural refuses too -----------------------------------------------------------------------

def test_a_network_without_layers_is_an_error_at_its_place():
    assert "m.nr:1:9: error: network 'N' has no 'layers:' section" in errors(
        'network N {\n  input: (4,)\n  loss: "mse"\n}\n')
    assert "m.nr:3:3: error: network 'N' has no layers after 'layers:'" in errors(
        'network N {\n  input: (4,)\n  layers:\n  loss: "mse"\n}\n')


def test_an_unknown_loss_is_an_error_with_a_suggestion():
    text = 'network N {\n  input: (4,)\n  layers:\n    Dense(2)\n  loss: "{}"\n}}\n'
    out = errors(text.replace("{}", "invalid_loss").replace("}}", "}"))
    assert "m.nr:5:9: error: unknown loss 'invalid_loss'; known: sparse_categorical_crossentropy" \
        in out
    out = errors(text.replace("{}", "mean_squared_eror").replace("}}", "}"))
    assert "unknown loss 'mean_squared_eror'; did you mean 'mean_squared_error'?" in out


# -- padding masks: refused at their line, saying why -------------------------------------------

def test_mask_zero_is_refused_at_its_argument_saying_what_to_do():
    out = errors('network N {\n  input: (seq,)\n  layers:\n'
                 '    Embedding(100, 8, mask_zero=True)\n    LSTM(4)\n}\n')
    assert "m.nr:4:23: error: Embedding: 'mask_zero' is not supported yet: neuralc carries no " \
           "padding mask, so the recurrent and attention layers after this one" in out
    assert "drop mask_zero" in out


def test_mask_zero_false_is_the_default_and_accepted():
    (y,) = runs('network N {\n  input: (seq,)\n  layers:\n'
                '    Embedding(100, 8, mask_zero=false)\n    LSTM(4)\n}\n')
    assert y.shape[-1] == 4


def test_use_attention_mask_is_refused_at_its_argument():
    out = errors('network N {\n  input: (seq, 8)\n  layers:\n'
                 '    TransformerEncoder(num_heads=2, ff_dim=16, use_attention_mask=true)\n}\n')
    assert "m.nr:4:48: error: TransformerEncoder: 'use_attention_mask' is not supported yet" \
        in out
