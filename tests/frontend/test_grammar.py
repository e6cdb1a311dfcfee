"""The parser accepts every form of DSL.md sections 1-7 and builds the AST it means.

Each test checks the nodes it gets (names, values, nesting, spans), not only that parsing
succeeds.
"""

from __future__ import annotations

import textwrap

import pytest

from neuralc.frontend import ast
from neuralc.frontend.parser import parse
from neuralc.location import FileLoc


def P(src: str) -> ast.File:
    return parse(textwrap.dedent(src), "t.nr")


def net_of(layers: str = "Dense(1)", *, sections: str = "", inp: str = "(4,)") -> ast.Network:
    f = P(f"network N {{\n  input: {inp}\n{sections}\n  layers:\n{layers}\n}}\n")
    assert len(f.networks) == 1
    return f.networks[0]


def layer(text: str) -> ast.LayerCall:
    items = net_of(text).layers
    assert len(items) == 1
    assert isinstance(items[0], ast.LayerCall)
    return items[0]


def arg(text: str) -> ast.Value:
    """The single positional argument of ``F(<text>)``."""
    call = layer(f"F({text})")
    assert len(call.args) == 1 and not call.kwargs
    return call.args[0]


def plain(v: ast.Value):
    """A value without spans, for compact comparisons."""
    if isinstance(v, (ast.Number, ast.String, ast.Bool)):
        return v.value
    if isinstance(v, ast.NoneValue):
        return None
    if isinstance(v, ast.Name):
        return ("name", v.id)
    if isinstance(v, ast.TupleValue):
        return tuple(plain(i) for i in v.items)
    if isinstance(v, ast.ListValue):
        return [plain(i) for i in v.items]
    if isinstance(v, ast.DictValue):
        return {k: plain(i) for k, i in v.items}
    if isinstance(v, ast.Call):
        return ("call", v.name, [plain(a) for a in v.args], kwargs(v.kwargs))
    if isinstance(v, ast.HPO):
        return ("hpo", v.kind, [plain(a) for a in v.args], kwargs(v.kwargs))
    if isinstance(v, ast.ParamRef):
        return ("$", v.name)
    if isinstance(v, ast.BinOp):
        return (v.op, plain(v.left), plain(v.right))
    if isinstance(v, ast.Neg):
        return ("neg", plain(v.operand))
    raise AssertionError(v)


def kwargs(kws: list[ast.Kwarg]) -> dict:
    return {k.name: plain(k.value) for k in kws}


def text_at(src: str, loc: FileLoc) -> str:
    """The source text a one-line span covers."""
    assert loc.line == loc.end_line
    return src.splitlines()[loc.line - 1][loc.col - 1:loc.end_col - 1]


# -- section 2: the DigitNet example ----------------------------------------------------------

DIGITNET = """\
network DigitNet {
  input: (28, 28, 1)
  layers:
    Conv2D(32, (3, 3), "relu")
    MaxPooling2D((2, 2))
    Flatten()
    Dense(128, "relu")
    Dropout(0.3)
    Output(10, "softmax")
  loss: "sparse_categorical_crossentropy"
  optimizer: Adam(learning_rate=0.001)
  metrics: ["accuracy"]
  train {
    epochs: 8
    batch_size: 64
    validation_split: 0.1
  }
  execution {
    device: "auto"
  }
}
"""


def test_digitnet_example():
    f = parse(DIGITNET, "digit.nr")
    assert f.macros == []
    (net,) = f.networks
    assert net.name == "DigitNet"
    assert [plain(d) for d in net.inputs[0].dims] == [28, 28, 1]
    assert net.inputs[0].name is None
    assert [(c.name, [plain(a) for a in c.args]) for c in net.layers] == [
        ("Conv2D", [32, (3, 3), "relu"]),
        ("MaxPooling2D", [(2, 2)]),
        ("Flatten", []),
        ("Dense", [128, "relu"]),
        ("Dropout", [0.3]),
        ("Output", [10, "softmax"]),
    ]
    assert all(c.parens and c.repeat is None and c.body is None for c in net.layers)
    assert plain(net.sections["loss"].value) == "sparse_categorical_crossentropy"
    assert plain(net.sections["optimizer"].value) == ("call", "Adam", [], {"learning_rate": 0.001})
    assert plain(net.sections["metrics"].value) == ["accuracy"]
    train = net.sections["train"]
    assert train.value is None
    assert [(k.name, plain(k.value)) for k in train.entries] == [
        ("epochs", 8), ("batch_size", 64), ("validation_split", 0.1)
    ]
    assert [(k.name, plain(k.value)) for k in net.sections["execution"].entries] == [
        ("device", "auto")
    ]
    assert set(net.sections) == {"loss", "optimizer", "metrics", "train", "execution"}


def test_digitnet_spans():
    (net,) = parse(DIGITNET, "digit.nr").networks
    conv = net.layers[0]
    assert conv.span == FileLoc("digit.nr", 4, 5, 4, 31)
    assert text_at(DIGITNET, conv.span) == 'Conv2D(32, (3, 3), "relu")'
    assert text_at(DIGITNET, conv.name_span) == "Conv2D"
    assert text_at(DIGITNET, conv.args[1].span) == "(3, 3)"
    assert text_at(DIGITNET, net.name_span) == "DigitNet"
    assert net.span.line == 1 and net.span.end_line == 21
    assert text_at(DIGITNET, net.inputs_span) == "input: (28, 28, 1)"
    assert net.layers_span.line == 3 and net.layers_span.end_line == 9
    opt = net.sections["optimizer"]
    assert text_at(DIGITNET, opt.span) == "optimizer: Adam(learning_rate=0.001)"
    assert text_at(DIGITNET, opt.name_span) == "optimizer"
    assert text_at(DIGITNET, opt.value.kwargs[0].span) == "learning_rate=0.001"
    assert text_at(DIGITNET, net.sections["train"].entries[1].span) == "batch_size: 64"


def test_sections_in_any_order_and_execute_alias():
    src = """\
    network N {
      execute { device: "cpu", precision: "bf16" }
      train { epochs: 2 }
      layers:
        Dense(2)
      metrics: ["accuracy"]
      input: (3,)
      optimizer: "adam"
      loss: mse
    }
    """
    (net,) = P(src).networks
    assert [c.name for c in net.layers] == ["Dense"]
    assert [plain(d) for d in net.inputs[0].dims] == [3]
    assert [(k.name, plain(k.value)) for k in net.sections["execution"].entries] == [
        ("device", "cpu"), ("precision", "bf16")
    ]
    assert net.sections["execution"].name == "execution"
    assert plain(net.sections["loss"].value) == ("name", "mse")
    assert plain(net.sections["optimizer"].value) == "adam"


@pytest.mark.parametrize("opt, want", [
    ("Adam(learning_rate=1e-3)", ("call", "Adam", [], {"learning_rate": 0.001})),
    ("Adam", ("name", "Adam")),
    ('"adam"', "adam"),
    ("SGD(learning_rate=ExponentialDecay(0.1, 1000, 0.96))",
     ("call", "SGD", [], {"learning_rate": ("call", "ExponentialDecay", [0.1, 1000, 0.96], {})})),
    ("Adam(learning_rate=HPO(log_range(1e-4, 1e-2)))",
     ("call", "Adam", [], {"learning_rate": ("hpo", "log_range", [0.0001, 0.01], {})})),
])
def test_optimizer_forms(opt, want):
    net = net_of(sections=f"  optimizer: {opt}")
    assert plain(net.sections["optimizer"].value) == want


@pytest.mark.parametrize("loss, want", [
    ('"mse"', "mse"),
    ("categorical_crossentropy", ("name", "categorical_crossentropy")),
    ("Huber(delta=2.0)", ("call", "Huber", [], {"delta": 2.0})),
])
def test_loss_forms(loss, want):
    assert plain(net_of(sections=f"  loss: {loss}").sections["loss"].value) == want


def test_whitespace_before_colon_and_equals():
    net = net_of("    Dense(units = 3, activation =\"relu\")",
                 sections="  optimizer   : Adam(learning_rate = 0.1)\n  train { epochs = 3 }")
    assert [(k.name, plain(k.value)) for k in net.layers[0].kwargs] == [
        ("units", 3), ("activation", "relu")
    ]
    assert plain(net.sections["optimizer"].value) == ("call", "Adam", [], {"learning_rate": 0.1})
    assert plain(net.sections["train"].entries[0].value) == 3


def test_train_values_lists_and_hpo_and_unknown_keys():
    net = net_of(sections="""  train {
    epochs: 8; batch_size: [16, 32]
    validation_split: 0.2, search_method: "random"
    lr: HPO(choice(0.1, 0.01)) my_key: foo
  }""")
    assert [(k.name, plain(k.value)) for k in net.sections["train"].entries] == [
        ("epochs", 8), ("batch_size", [16, 32]), ("validation_split", 0.2),
        ("search_method", "random"), ("lr", ("hpo", "choice", [0.1, 0.01], {})),
        ("my_key", ("name", "foo")),
    ]


def test_section_words_are_case_insensitive():
    src = """\
    network N {
      INPUT: (3,)
      Layers:
        Dense(2)
      Loss: "mse"
      TRAIN { epochs: 1 }
      Execution { device: "cpu" }
    }
    """
    (net,) = P(src).networks
    assert [plain(d) for d in net.inputs[0].dims] == [3]
    assert [c.name for c in net.layers] == ["Dense"]
    assert set(net.sections) == {"loss", "train", "execution"}


def test_section_words_stay_names_elsewhere():
    # 'input' and 'loss' as argument names and values are ordinary names, not keywords.
    c = layer("    Concatenate(input, loss, metrics=input)")
    assert [plain(a) for a in c.args] == [("name", "input"), ("name", "loss")]
    assert plain(c.kwargs[0].value) == ("name", "input")


# -- section 1: lexical rules --------------------------------------------------------------


def test_comments_of_all_three_kinds():
    src = """\
    # a hash comment
    // a slash comment
    /* a block
       comment over lines */
    network N { // trailing
      input: (4,)   # trailing hash
      layers:
        Dense(3) /* inline */ Dense(/* inside args */ 4)
        /* Dense(99) commented out
        Dense(98) */
    }
    """
    (net,) = P(src).networks
    assert [plain(c.args[0]) for c in net.layers] == [3, 4]


@pytest.mark.parametrize("sep", [",", ";", " ,", ";;", ""])
def test_separators_after_layers_are_tolerated(sep):
    net = net_of(f"    Dense(1){sep}\n    Dense(2){sep} Dense(3){sep}\n    Flatten{sep}")
    assert [c.name for c in net.layers] == ["Dense", "Dense", "Dense", "Flatten"]


@pytest.mark.parametrize("text, want", [
    ("3", 3), ("-3", -3), ("0.5", 0.5), (".5", 0.5), ("1e-4", 1e-4), ("2E3", 2000.0),
    ("-1.5e2", -150.0), ("1.", 1.0), ("0", 0),
])
def test_numbers(text, want):
    v = arg(text)
    assert isinstance(v, ast.Number)
    assert v.value == want and type(v.value) is type(want)


def test_negative_number_span_covers_the_sign():
    src = "network N { input: (4,) layers: F(-3) }"
    (net,) = parse(src, "t.nr").networks
    v = net.layers[0].args[0]
    assert isinstance(v, ast.Number) and v.value == -3
    assert text_at(src, v.span) == "-3"


@pytest.mark.parametrize("text, want", [
    ('"relu"', "relu"), ("'relu'", "relu"), ('"it\'s"', "it's"), (r'"a\"b"', 'a"b'),
    ('""', ""), (r"'tab\there'", "tab\there"), ('"cuda:0"', "cuda:0"),
])
def test_strings(text, want):
    v = arg(text)
    assert isinstance(v, ast.String) and v.value == want


@pytest.mark.parametrize("text, want", [
    ("true", True), ("True", True), ("false", False), ("False", False),
])
def test_booleans(text, want):
    v = arg(text)
    assert isinstance(v, ast.Bool) and v.value is want


@pytest.mark.parametrize("text", ["None", "none"])
def test_none(text):
    assert isinstance(arg(text), ast.NoneValue)


@pytest.mark.parametrize("text, want", [
    ("(3, 3)", (3, 3)), ("(10,)", (10,)), ("()", ()), ("(1, 2, 3, 4, 5)", (1, 2, 3, 4, 5)),
    ("(1, 2,)", (1, 2)), ("((1, 2), (3, 4))", ((1, 2), (3, 4))),
    ("[16, 32]", [16, 32]), ("[]", []), ("[1, [2, 3]]", [1, [2, 3]]), ("[1,]", [1]),
    ("{a: 1}", {"a": 1}), ('{a: 1, "b c": [2]}', {"a": 1, "b c": [2]}), ("{}", {}),
    ("{a: 1 b: 2}", {"a": 1, "b": 2}),
    ("relu", ("name", "relu")),
    ("(7)", 7),  # parentheses group; a one-tuple needs the comma
])
def test_compound_values(text, want):
    assert plain(arg(text)) == want


def test_calls_as_values_and_wrapped_layers():
    assert plain(arg("ExponentialDecay(0.1, 1000, 0.96)")) == (
        "call", "ExponentialDecay", [0.1, 1000, 0.96], {}
    )
    td = layer("    TimeDistributed(Dense(64, activation=\"relu\"))")
    (inner,) = td.args
    assert isinstance(inner, ast.Call)
    assert plain(inner) == ("call", "Dense", [64], {"activation": "relu"})
    src = "network N { input: (4,) layers: Bidirectional(LSTM(64)) }"
    inner = parse(src, "t.nr").networks[0].layers[0].args[0]
    assert text_at(src, inner.span) == "LSTM(64)"
    assert text_at(src, inner.name_span) == "LSTM"


# -- section 7: hyperparameters ------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("HPO(choice(64, 128, 256))", ("hpo", "choice", [64, 128, 256], {})),
    ("HPO(range(0.1, 0.5, step=0.1))", ("hpo", "range", [0.1, 0.5], {"step": 0.1})),
    ("HPO(range(1, 10))", ("hpo", "range", [1, 10], {})),
    ("HPO(log_range(1e-4, 1e-2))", ("hpo", "log_range", [0.0001, 0.01], {})),
    ('HPO(choice("relu", "tanh"))', ("hpo", "choice", ["relu", "tanh"], {})),
    ("HPO(choice(32, HPO(range(64, 128, step=32))))",
     ("hpo", "choice", [32, ("hpo", "range", [64, 128], {"step": 32})], {})),
    ("HPO(choice((3, 3), (5, 5)))", ("hpo", "choice", [(3, 3), (5, 5)], {})),
])
def test_hpo_forms(text, want):
    v = arg(text)
    assert isinstance(v, ast.HPO)
    assert plain(v) == want


def test_hpo_span_covers_the_whole_expression():
    src = "network N { input: (4,) layers: Dense(HPO(choice(64, 128))) }"
    v = parse(src, "t.nr").networks[0].layers[0].args[0]
    assert text_at(src, v.span) == "HPO(choice(64, 128))"


# -- macros' values: $param and arithmetic (section 6) -------------------------------------


@pytest.mark.parametrize("text, want", [
    ("$f", ("$", "f")),
    ("$f * 2", ("*", ("$", "f"), 2)),
    ("$a + $b * 2", ("+", ("$", "a"), ("*", ("$", "b"), 2))),
    ("($a + $b) * 2", ("*", ("+", ("$", "a"), ("$", "b")), 2)),
    ("$a - 1 - 2", ("-", ("-", ("$", "a"), 1), 2)),
    ("$a / 2", ("/", ("$", "a"), 2)),
    ("-$a", ("neg", ("$", "a"))),
    ("2 * -$a", ("*", 2, ("neg", ("$", "a")))),
    ("($k, $k)", (("$", "k"), ("$", "k"))),
])
def test_param_refs_and_arithmetic(text, want):
    f = P(f"define M(a, b, f, k) {{ F({text}) }}\nnetwork N {{ input: (1,) layers: Dense(1) }}")
    (m,) = f.macros
    assert plain(m.body[0].args[0]) == want


def test_binop_span():
    src = "define M(a) { F(($a + 1) * 2) }\nnetwork N { input: (1,) layers: M(1) }"
    v = parse(src, "t.nr").macros[0].body[0].args[0]
    assert text_at(src, v.span) == "($a + 1) * 2"
    assert text_at(src, v.left.span) == "$a + 1"


def test_macro_example_of_section_6():
    src = """\
    define ConvBN(filters, stride) {
      Conv2D(filters=$filters, kernel_size=3, strides=$stride, padding="same", use_bias=false)
      BatchNormalization()
      Activation("relu")
    }
    define Stem { Conv2D(16, 3, padding="same") }

    network Net {
      input: (32, 32, 3)
      layers:
        Stem()
        ConvBN(filters=32, stride=1) * 2
        ConvBN(64, 2)
        GlobalAveragePooling2D()
        Output(10)
    }
    """
    f = P(src)
    conv_bn, stem = f.macros
    assert conv_bn.name == "ConvBN" and [p.name for p in conv_bn.params] == ["filters", "stride"]
    assert all(p.default is None for p in conv_bn.params)
    assert [c.name for c in conv_bn.body] == ["Conv2D", "BatchNormalization", "Activation"]
    assert [(k.name, plain(k.value)) for k in conv_bn.body[0].kwargs] == [
        ("filters", ("$", "filters")), ("kernel_size", 3), ("strides", ("$", "stride")),
        ("padding", "same"), ("use_bias", False),
    ]
    assert stem.name == "Stem" and stem.params == []
    assert plain(stem.body[0].args[1]) == 3
    (net,) = f.networks
    names = [c.name for c in net.layers]
    assert names == ["Stem", "ConvBN", "ConvBN", "GlobalAveragePooling2D", "Output"]
    assert plain(net.layers[1].repeat) == 2
    assert kwargs(net.layers[1].kwargs) == {"filters": 32, "stride": 1}


def test_macro_params_with_defaults_and_dollar_names():
    f = P("define M(a, b=2, $c=(3, 3)) { Dense($a) }\nnetwork N { input: (1,) layers: M(1) }")
    (m,) = f.macros
    assert [(p.name, plain(p.default) if p.default else None) for p in m.params] == [
        ("a", None), ("b", 2), ("c", (3, 3))
    ]


def test_defines_and_networks_in_any_order():
    src = """\
    network A { input: (1,) layers: M() }
    define M { Dense(1) }
    network B { input: (2,) layers: Dense(2) }
    define K(x) { Dense($x) }
    """
    f = P(src)
    assert [n.name for n in f.networks] == ["A", "B"]
    assert [m.name for m in f.macros] == ["M", "K"]


# -- section 3: inputs and dims ------------------------------------------------------------


@pytest.mark.parametrize("inp, want", [
    ("(28, 28, 1)", [(None, [28, 28, 1])]),
    ("(10,)", [(None, [10])]),
    ("(None, 28, 28, 1)", [(None, [None, 28, 28, 1])]),
    ("(seq, 128)", [(None, [("name", "seq"), 128])]),
    ("(batch, None, 64)", [(None, [("name", "batch"), None, 64])]),
    ("(28, 28, 1), (10,)", [(None, [28, 28, 1]), (None, [10])]),
    ("{ image: (64, 64, 3), meta: (10,) }", [("image", [64, 64, 3]), ("meta", [10])]),
    ('{ "image": (64, 64, 3) }', [("image", [64, 64, 3])]),
    ("784", [(None, [784])]),
])
def test_input_forms(inp, want):
    net = net_of(inp=inp)
    assert [(i.name, [plain(d) for d in i.dims]) for i in net.inputs] == want


def test_named_input_spans():
    src = "network N {\n  input: { image: (64, 64, 3), meta: (10,) }\n  layers: Dense(1)\n}"
    (net,) = parse(src, "t.nr").networks
    image, meta = net.inputs
    assert text_at(src, image.name_span) == "image"
    assert text_at(src, image.span) == "(64, 64, 3)"
    assert text_at(src, meta.name_span) == "meta"


@pytest.mark.parametrize("dims, want", [
    ("dims { batch: 1..64, seq: 8..512 }", [("batch", 1, 64), ("seq", 8, 512)]),
    ("dims { seq: 8.. }", [("seq", 8, None)]),
    ("dims { seq: ..512 }", [("seq", None, 512)]),
    ("dims { seq: 16 }", [("seq", 16, 16)]),
    ("dims: { a: 1..2; b: 3..4 }", [("a", 1, 2), ("b", 3, 4)]),
    ("dims {\n  a: 1..2\n  b: 3..\n}", [("a", 1, 2), ("b", 3, None)]),
])
def test_dims_forms(dims, want):
    net = net_of(sections="  " + dims, inp="(seq, 4)")
    assert [(d.name, d.lo, d.hi) for d in net.dims] == want


# -- sections 4 and 5: layer items ----------------------------------------------------------


def test_layer_call_parts():
    c = layer('    Conv2D(64, (3, 3), activation="relu", name="c1") @ "cuda:0"')
    assert c.name == "Conv2D" and c.parens
    assert [plain(a) for a in c.args] == [64, (3, 3)]
    assert [(k.name, plain(k.value)) for k in c.kwargs] == [("activation", "relu"), ("name", "c1")]
    assert c.device is not None and c.device.value == "cuda:0"
    assert c.body is None and c.branches is None and c.repeat is None


@pytest.mark.parametrize("text, name, parens", [
    ("Flatten", "Flatten", False),
    ("Flatten()", "Flatten", True),
    ("flatten()", "flatten", True),
    ("DENSE(1)", "DENSE", True),
    ("dEnSe(1)", "dEnSe", True),
])
def test_bare_names_and_case_is_preserved(text, name, parens):
    c = layer("    " + text)
    assert (c.name, c.parens) == (name, parens)


def test_layer_names_are_not_validated_by_the_parser():
    assert layer("    NoSuchLayer(1, x=2)").name == "NoSuchLayer"


def test_repeat_forms():
    assert plain(layer("    Dense(8) * 3").repeat) == 3
    c = layer("    Dense(8) @ \"cpu\" { Dropout(0.1) } * 2")
    assert plain(c.repeat) == 2 and c.device.value == "cpu"
    assert [b.name for b in c.body] == ["Dropout"]
    src = ("define M(n) { Dense(1) * $n Dense(2) * ($n + 1) }\n"
           "network N { input: (1,) layers: M(1) }")
    body = P(src).macros[0].body
    assert plain(body[0].repeat) == ("$", "n")
    assert plain(body[1].repeat) == ("+", ("$", "n"), 1)


@pytest.mark.parametrize("text", [
    "ResidualConnection { Dense(8) Dense(8) }",
    "ResidualConnection() { Dense(8) Dense(8) }",
    "Residual(activation=\"relu\") {\n      Dense(8)\n      Dense(8)\n    }",
])
def test_nested_blocks(text):
    c = layer("    " + text)
    assert c.branches is None
    assert [b.name for b in c.body] == ["Dense", "Dense"]


def test_empty_nested_block_is_an_empty_body():
    c = layer("    Residual { }")
    assert c.body == [] and c.branches is None


def test_merge_with_branches_including_an_empty_one():
    c = layer("    Add { { Dense(8) Dense(8) } { } }")
    assert c.name == "Add" and not c.parens and c.body is None
    assert [[b.name for b in br] for br in c.branches] == [["Dense", "Dense"], []]


def test_branches_with_args_separators_and_nesting():
    c = layer("""    Concatenate(axis=-1) {
      { Conv2D(8, 1) },
      { Conv2D(8, 1) Conv2D(8, 3, padding="same") }
      { MaxPooling2D(3, 1, "same") Add { { Dense(2) } { } } }
    }""")
    assert [(k.name, plain(k.value)) for k in c.kwargs] == [("axis", -1)]
    assert [[b.name for b in br] for br in c.branches] == [
        ["Conv2D"], ["Conv2D", "Conv2D"], ["MaxPooling2D", "Add"]
    ]
    inner = c.branches[2][1]
    assert [[b.name for b in br] for br in inner.branches] == [["Dense"], []]


def test_named_branches():
    net = net_of("""    image: {
      Conv2D(16, 3)
      Flatten()
    }
    meta: { Dense(16) }
    Concatenate()
    Concatenate(image, meta)""", inp="{ image: (8, 8, 3), meta: (10,) }")
    image, meta, cat, cat2 = net.layers
    assert isinstance(image, ast.NamedBranch) and image.name == "image"
    assert [b.name for b in image.body] == ["Conv2D", "Flatten"]
    assert isinstance(meta, ast.NamedBranch) and [b.name for b in meta.body] == ["Dense"]
    assert cat.name == "Concatenate" and cat.args == []
    assert [plain(a) for a in cat2.args] == [("name", "image"), ("name", "meta")]


def test_named_branch_spans():
    src = "network N {\n  input: { a: (4,) }\n  layers:\n    a: { Dense(2) }\n}\n"
    (net,) = parse(src, "t.nr").networks
    nb = net.layers[0]
    assert text_at(src, nb.name_span) == "a"
    assert text_at(src, nb.span) == "a: { Dense(2) }"


def test_a_section_keyword_ends_the_layer_list():
    # 'train {' after layers is the section, 'Residual {' a layer with a block.
    net = net_of("    Residual { Dense(2) }\n    Dense(3)", sections="")
    assert [c.name for c in net.layers] == ["Residual", "Dense"]
    src = "network N {\n input: (2,)\n layers:\n  Residual { Dense(2) }\n train { epochs: 1 }\n}"
    (net,) = parse(src, "t.nr").networks
    assert [c.name for c in net.layers] == ["Residual"]
    assert net.sections["train"].entries[0].name == "epochs"


def test_one_line_network():
    src = 'network N { input: (2,) layers: Dense(2) Dense(3) loss: "mse" }'
    (net,) = parse(src, "t.nr").networks
    assert [plain(c.args[0]) for c in net.layers] == [2, 3]
    assert plain(net.sections["loss"].value) == "mse"


def test_several_networks():
    f = P("""\
    network A { input: (1,) layers: Dense(1) }
    network B { input: (2,) layers: Dense(2) }
    """)
    assert [n.name for n in f.networks] == ["A", "B"]
    assert f.networks[1].name_span.line == 2
