"""The keras target without running Keras: catalog coverage, located errors, the training
set-up it writes, the generated file's imports, and the command line.

(test_keras_models.py runs the generated files; nothing here imports Keras.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from keras_cases import EXAMPLES, FIT_TEXTS, LAYER_CASES, compile_case, layer_kinds

from neuralc.backends.base import BackendError, BackendOptions
from neuralc.backends.keras import KerasBackend
from neuralc.backends.keras.codegen import generate
from neuralc.backends.keras.pycode import WIDTH, wrap
from neuralc.backends.keras.registry import CANNOT_EXPRESS, EMITTERS, Unsupported, emitter_for
from neuralc.backends.registry import get_backend
from neuralc.cli import main
from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import compile_source
from neuralc.ir.core import func_body
from neuralc.layers import catalog
from neuralc.runtime.weights import init_weights

ALLOWED_IMPORTS = {"__future__", "argparse", "contextlib", "sys", "pathlib", "keras", "numpy",
                   "safetensors"}


def source_of(text: str, **options) -> str:
    return generate(compile_source(textwrap.dedent(text), "m.nr"), BackendOptions(**options))


def emit_errors(text: str) -> str:
    model = compile_source(textwrap.dedent(text), "m.nr")
    with pytest.raises(BackendError) as ei:
        KerasBackend().emit(model, init_weights(model.module), BackendOptions())
    return render_all(ei.value.diagnostics)


# -- coverage -------------------------------------------------------------------------------------


def test_registered_as_keras_target() -> None:
    backend = get_backend("keras")
    assert isinstance(backend, KerasBackend)
    assert (backend.extension, backend.extra, backend.runnable) == (".py", "keras", False)


def test_every_catalog_layer_has_an_emitter_or_a_reason() -> None:
    emitter_for(catalog.all_specs()[0])  # loads the emitter modules
    names = {s.name for s in catalog.all_specs()}
    missing = [n for n in sorted(names) if n not in EMITTERS and n not in CANNOT_EXPRESS]
    assert missing == []
    assert set(EMITTERS) <= names and set(CANNOT_EXPRESS) <= names
    assert not set(EMITTERS) & set(CANNOT_EXPRESS)
    assert all(reason.strip() for reason in CANNOT_EXPRESS.values())


def test_every_emitter_has_a_layer_case() -> None:
    covered: set[str] = set()
    for _, text, _ in LAYER_CASES:
        covered |= layer_kinds(compile_case(text))
    emitter_for(catalog.all_specs()[0])
    assert sorted(set(EMITTERS) - covered) == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_op_is_expressible(path: Path) -> None:
    model = compile_case(path)
    backend = KerasBackend()
    for op in func_body(model.module.funcs[0]).ops[:-1]:
        assert backend.unsupported(op) is None, op


# -- located errors ---------------------------------------------------------------------------------

TWO_DENSE = """\
network N {
  input: (4,)
  layers:
    Dense(8, "relu")
    Dropout(0.1)
    Dense(2, name="head")
}
"""


def test_a_layer_without_emitter_is_a_located_error(monkeypatch: pytest.MonkeyPatch) -> None:
    emitter_for(catalog.all_specs()[0])
    monkeypatch.delitem(EMITTERS, "Dense")
    text = emit_errors(TWO_DENSE)
    # Every such layer is reported, each at its line.
    assert ("m.nr:4:5: error: keras cannot express Dense 'dense': the keras target has no "
            "emitter for this layer yet") in text
    assert "m.nr:6:5: error: keras cannot express Dense 'head'" in text
    model = compile_source(TWO_DENSE, "m.nr")
    first = func_body(model.module.funcs[0]).ops[0]
    assert KerasBackend().unsupported(first) == "the keras target has no emitter for this layer yet"


def test_an_emitter_refusal_is_a_located_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(op, gen):  # noqa: ANN001, ANN202
        raise Unsupported("Keras has no such thing")

    emitter_for(catalog.all_specs()[0])
    monkeypatch.setitem(EMITTERS, "Dropout", refuse)
    text = emit_errors(TWO_DENSE)
    assert "m.nr:5:5: error: keras cannot express Dropout 'dropout': Keras has no such thing" \
        in text


def test_a_table_entry_is_a_located_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(CANNOT_EXPRESS, "Dropout", "no such layer in Keras")
    text = emit_errors(TWO_DENSE)
    assert "m.nr:5:5: error: keras cannot express Dropout 'dropout': no such layer in Keras" \
        in text


def test_cli_reports_backend_errors(monkeypatch: pytest.MonkeyPatch, capsys,
                                    tmp_path: Path) -> None:
    f = tmp_path / "m.nr"
    f.write_text(TWO_DENSE)
    monkeypatch.setitem(CANNOT_EXPRESS, "Dropout", "no such layer in Keras")
    assert main([str(f), "--target", "keras", "-o", str(tmp_path / "m.py")]) == 1
    err = capsys.readouterr().err
    assert f"{f}:5:5: error: keras cannot express Dropout 'dropout'" in err
    assert "Traceback" not in err and not (tmp_path / "m.py").exists()


def one_layer(inputs: str, layer: str) -> str:
    return f"network N {{\n  input: {inputs}\n  layers:\n    {layer}\n}}\n"


@pytest.mark.parametrize("inputs,layer,message", [
    # Keras's GroupNormalization (groups=-1) sizes its groups from the channels, affine or not.
    ("(seq, c)", "InstanceNormalization(center=false, scale=false)",
     "keras cannot express InstanceNormalization 'instance_normalization': Keras needs a fixed "
     "number of channels (axis 2) for its GroupNormalization, but the model leaves it as the "
     "symbolic dim 'c'; give it a number in the input shape"),
    ("(t, s, c)", "TimeDistributed(InstanceNormalization(center=false, scale=false))",
     "keras cannot express TimeDistributed 'time_distributed': Keras needs a fixed number of "
     "channels (axis 2) for its GroupNormalization, but the model leaves it as the symbolic "
     "dim 'c'"),
    # Keras's ConvLSTM2D cell is built for fixed spatial sizes.
    ("(t, h, 6, 2)", 'ConvLSTM2D(3, 3, padding="same")',
     "keras cannot express ConvLSTM2D 'conv_lstm2d': Keras's ConvLSTM2D needs a fixed height "
     "and width (axes 2 and 3), but the model leaves 'h' symbolic; give it a number in the "
     "input shape (the time axis may stay symbolic)"),
    ("(t, h, w, 2)", "ConvLSTM2D(3, 3)", "but the model leaves 'h' and 'w' symbolic; give "
                                         "them numbers in the input shape"),
    # The sinusoid table is built once, from the feature size.
    ("(seq, d)", "PositionalEncoding(16)",
     "keras cannot express PositionalEncoding 'positional_encoding': Keras needs a fixed number "
     "of features (axis 2) to build its position table, but the model leaves it as the symbolic "
     "dim 'd'"),
])
def test_a_size_keras_needs_fixed_is_a_located_error(inputs: str, layer: str,
                                                     message: str) -> None:
    """Where Keras needs a number the model leaves symbolic, the target refuses at the layer's
    line, saying what to make static, instead of writing a file that fails in build_model()."""
    text = emit_errors(one_layer(inputs, layer))
    assert "m.nr:4:5: error: " in text and message in text
    model = compile_source(one_layer(inputs, layer), "m.nr")
    reason = KerasBackend().unsupported(func_body(model.module.funcs[0]).ops[0])
    assert reason is not None and "symbolic" in reason


def test_a_symbolic_dim_never_reaches_the_generated_code(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """A dim written as a literal must be a number: an emitter that formats a symbolic one
    gets a located error, not a file naming ``Expr('seq')``."""
    from neuralc.backends.keras.pycode import call, literal
    from neuralc.backends.keras.registry import KerasLayer
    from neuralc.ir.dims import sym

    with pytest.raises(Unsupported, match="symbolic dim 'seq'"):
        literal(sym("seq"))
    with pytest.raises(Unsupported, match="symbolic dim 'seq \\+ 1'"):
        literal([3, sym("seq") + 1])

    def careless(op, gen):  # noqa: ANN001, ANN202
        return KerasLayer(call("layers.Dropout", 0.1, noise_shape=[None, op.in_shape[1], 1]))

    emitter_for(catalog.all_specs()[0])
    monkeypatch.setitem(EMITTERS, "Dropout", careless)
    text = emit_errors(one_layer("(seq, 4)", "Dropout(0.1)"))
    assert ("m.nr:4:5: error: keras cannot express Dropout 'dropout': Keras needs a fixed size "
            "here, but the model leaves it as the symbolic dim 'seq'") in text
    # Nothing the target writes today names a symbolic dim.
    for _, case, _ in LAYER_CASES:
        assert "Expr(" not in generate(compile_case(case), BackendOptions())


# -- the training sections --------------------------------------------------------------------------

def with_sections(sections: str) -> str:
    return f"network N {{\n  input: (4,)\n  layers:\n    Output(3)\n{sections}\n}}\n"


@pytest.mark.parametrize(("sections", "expected"), [
    ('loss: "mse"\noptimizer: Adam(0.01)', ['return "mse"',
                                             "keras.optimizers.Adam(learning_rate=0.01)"]),
    ("loss: CategoricalCrossentropy(from_logits=true, label_smoothing=0.1)\noptimizer: sgd",
     ["keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)",
      "keras.optimizers.SGD()"]),
    ('loss: "MSE"\noptimizer: Adam(lr=0.1, betas=(0.8, 0.9), eps=1e-7, amsgrad=true)',
     ['return "mse"', "keras.optimizers.Adam(learning_rate=0.1, beta_1=0.8, "
      "beta_2=0.9, epsilon=1e-07, amsgrad=True)"]),
    ('loss: "logcosh"', ['return "log_cosh"']),
    ("loss: Huber(delta=0.5)", ["keras.losses.Huber(delta=0.5)"]),
    ("optimizer: SGD(learning_rate=StepDecay(0.1, drop_every=100, gamma=0.5))",
     ["keras.optimizers.schedules.ExponentialDecay(initial_learning_rate=0.1, decay_steps=100, "
      "decay_rate=0.5, staircase=True)"]),
    ("optimizer: Adam(learning_rate=ExponentialDecay(0.01, 1000, 0.96))",
     ["keras.optimizers.schedules.ExponentialDecay(initial_learning_rate=0.01, "
      "decay_steps=1000, decay_rate=0.96)"]),
    ("optimizer: Nadam(learning_rate=CosineDecay(0.002, 500, alpha=0.1))",
     ["keras.optimizers.schedules.CosineDecay(initial_learning_rate=0.002, decay_steps=500, "
      "alpha=0.1)"]),
    ('metrics: ["accuracy", "auc"]\ntrain { epochs: 3 batch_size: 16 validation_split: 0.2 '
     'search_method: "random" }',
     ["EPOCHS = 3", "BATCH_SIZE = 16", "VALIDATION_SPLIT = 0.2", 'METRICS = ["accuracy", "auc"]',
      "# Settings of the train section that Keras's fit does not use: "
      "search_method='random'"]),
    ("", ["raise ValueError(f\"{NETWORK} has no loss section; pass loss= to train()\")",
          "keras.optimizers.Adam()", "EPOCHS = 1", "BATCH_SIZE = 32"]),
])
def test_training_sections_become_compile_and_fit(sections: str, expected: list[str]) -> None:
    src = source_of(with_sections(sections))
    for line in expected:
        assert line in src


@pytest.mark.parametrize(("sections", "message"), [
    ('loss: "cross_entropy_loss"', "m.nr:5:7: error: unknown loss 'cross_entropy_loss'"),
    ('loss: "categorical_crossentropyy"', "did you mean 'categorical_crossentropy'?"),
    ("loss: Huber(0.5)", "give the parameters of loss 'Huber' by name"),
    ("optimizer: Adam(momentum=0.9)", "m.nr:5:17: error: Adam has no parameter 'momentum'"),
    ("optimizer: SGD(0.1, 0.9)", "SGD takes one positional argument (the learning rate)"),
    ("optimizer: SGD(learning_rate=ExponentialDecay(0.1, 10))",
     "ExponentialDecay needs decay_rate"),
    ("optimizer: SGD(learning_rate=CosineDecay(0.1, 10, warmup=3))",
     "CosineDecay has no parameter 'warmup'"),
])
def test_training_sections_keras_cannot_take_are_located_errors(sections: str,
                                                                message: str) -> None:
    """What Keras could not take is refused by the frontend, at its line, for every target
    (issue 15: the pytorch and keras targets agree; no error at 1:1)."""
    with pytest.raises(CompileError) as ei:
        compile_source(with_sections(sections), "m.nr")
    assert message in render_all(ei.value.diagnostics)


# -- the generated file -----------------------------------------------------------------------------

def generated_examples() -> list[tuple[str, str]]:
    return [(p.stem, generate(compile_case(p), BackendOptions())) for p in EXAMPLES]


def test_generated_files_import_only_keras_numpy_safetensors_and_stdlib() -> None:
    for stem, src in generated_examples():
        tree = ast.parse(src)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, (stem, roots)
        # Keras's backend is the user's choice (KERAS_BACKEND); the file sets none.
        assert "environ" not in src and "set_backend" not in src, stem
        assert "allow_pickle=False" in src


def test_generated_files_are_deterministic_and_lint_clean(tmp_path: Path) -> None:
    for stem, src in generated_examples():
        assert src == generate(compile_case(next(p for p in EXAMPLES if p.stem == stem)),
                               BackendOptions())
        (tmp_path / f"{stem}.py").write_text(src)
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated",
                           "--select", "E,F,W,I", "--line-length", "100", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_loader_converts_every_weight() -> None:
    """Each neuralc weight is read by some line of the loader; only BatchNorm's step counter
    (num_batches_tracked, which Keras has no use for) is checked but not set."""
    models = [compile_case(p) for p in EXAMPLES] + [compile_case(t) for _, t, _ in LAYER_CASES]
    for model in models:
        src = generate(model, BackendOptions())
        loader = src[src.index("def load_weights_safetensors"):src.index("# -- training")]
        for name in init_weights(model.module):
            used = f't["{name}"]' in loader
            assert used != name.endswith(".num_batches_tracked"), (model.info.name, name)
            assert f'"{name}":' in src  # WEIGHT_SHAPES checks it


def test_layer_names_and_keras_layers() -> None:
    src = source_of("""
        network N {
          input: (28, 28, 1)
          layers:
            Conv2D(8, 3, "relu", name="stem")
            MaxPooling2D()
            Flatten()
            Output(10)
        }
    """)
    assert 'stem = layers.Conv2D(8, (3, 3), activation="relu", name="stem")(input_)' in src
    assert 'max_pooling2d = layers.MaxPooling2D((2, 2), name="max_pooling2d")(stem)' in src
    assert 'output = layers.Dense(10, activation="softmax", name="output")(flatten)' in src
    assert 'keras.Input(shape=(28, 28, 1), dtype="float32", name="input")' in src
    assert '_set(model.get_layer("stem"), [_conv_kernel(t["stem.weight"]), t["stem.bias"]])' \
        in src


def test_residual_is_add_then_activation_named_as_the_residual() -> None:
    src = source_of("""
        network N {
          input: (6,)
          layers:
            ResidualConnection(activation="relu") { Dense(6) }
        }
    """)
    assert 'layers.Add(name="residual_connection_add")([input_, dense])' in src
    assert 'layers.Activation("relu", name="residual_connection")(' in src


def test_precision_is_a_dtype_policy() -> None:
    assert "DTYPE_POLICY = None" in source_of(with_sections(""))
    assert 'DTYPE_POLICY = "mixed_float16"' in source_of(with_sections(""), precision="mixed")
    text = with_sections('execution { precision: "bf16" }')
    assert 'DTYPE_POLICY = "bfloat16"' in source_of(text)


def test_fit_texts_compile() -> None:
    for text in FIT_TEXTS.values():
        generate(compile_case(text), BackendOptions())


def test_wrap_keeps_lines_within_width() -> None:
    line = ('transformer_encoder = TransformerEncoder(32, 4, 64, dropout=0.1, activation="relu", '
            'norm_first=False, epsilon=1e-05, causal=False, use_bias=True, '
            'name="transformer_encoder")(positional_encoding)')
    lines = wrap(line, 8)
    assert all(8 + len(x) <= WIDTH for x in lines)
    assert "".join(x.strip() for x in lines).replace(",", ", ").replace("(  ", "(") \
        .replace("  ", " ") == line
    assert wrap('x = "a, (b" + f(1, 2)', 0) == ['x = "a, (b" + f(1, 2)']


# -- command line ---------------------------------------------------------------------------------

MNIST = next(p for p in EXAMPLES if p.stem == "mnist_cnn")


def test_cli_writes_source_and_weights(capsys, tmp_path: Path) -> None:
    assert main([str(MNIST), "--target", "keras", "-o", str(tmp_path / "net.py")]) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'net.py'}" in out and f"wrote {tmp_path / 'net.safetensors'}" in out
    assert "def build_model() -> keras.Model:" in (tmp_path / "net.py").read_text()
    from safetensors.numpy import load_file

    weights = load_file(str(tmp_path / "net.safetensors"))
    model = compile_case(MNIST)
    expected = init_weights(model.module, seed=0)
    assert list(weights) == list(expected) or set(weights) == set(expected)


def test_cli_without_output_prints_the_source(capsys) -> None:
    assert main([str(MNIST), "--target", "keras"]) == 0
    out = capsys.readouterr().out
    assert out.startswith('"""DigitNet as a Keras 3 model, generated by neuralc from mnist_cnn.nr.')
    ast.parse(out)


def test_run_with_keras_target_is_refused(capsys) -> None:
    assert main(["run", str(MNIST), "--target", "keras", "--random"]) == 2
    assert "target 'keras' writes source code" in capsys.readouterr().err
