"""Lowering to graph IR: binding, naming, topology, HPO, dims; and the errors of each."""

from __future__ import annotations

import textwrap

import pytest

from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import UsageError, compile_source
from neuralc.frontend.hparams import HParams
from neuralc.ir.core import func_body
from neuralc.ir.printer import print_module


def compile_text(src: str, **kw):
    return compile_source(textwrap.dedent(src), "m.nr", **kw)


def errors_of(src: str, **kw) -> str:
    with pytest.raises(CompileError) as ei:
        compile_text(src, **kw)
    return render_all(ei.value.diagnostics)


def ops(model):
    return [op for op in func_body(model.module.funcs[0]).ops if op.name != "func.return"]


def test_keras_names_count_through_macros_repeats_and_containers():
    m = compile_text("""
        define Block { Dense(8) Dense(8) }
        network N {
          input: (4,)
          layers:
            Block() * 2
            ResidualConnection { Dense(8, name="inner") Dense(8) }
            Output(3)
        }
    """)
    names = [op.attributes["name"] for op in ops(m)]
    assert names == ["dense", "dense_1", "dense_2", "dense_3", "inner", "dense_4",
                     "residual_connection", "output"]


def test_positional_keyword_and_alias_binding_fill_defaults():
    m = compile_text("""
        network N {
          input: (8, 8, 3)
          layers:
            conv2d(4, 3, "relu", stride=2, padding="same")
            FLATTEN()
            Dense(out_features=5)
        }
    """)
    conv, flat, dense = ops(m)
    assert conv.name == "graph.conv2d"
    assert conv.attributes["filters"] == 4 and conv.attributes["kernel_size"] == [3, 3]
    assert conv.attributes["strides"] == [2, 2] and conv.attributes["activation"] == "relu"
    assert dense.attributes == {"activation": "linear", "name": "dense", "units": 5, "use_bias": True}
    assert str(dense.result.type) == "tensor<batch x 5 x f32>"


def test_merge_branches_residual_and_named_branches():
    m = compile_text("""
        network N {
          input: { a: (6,), b: (4,) }
          layers:
            a: { Dense(4) }
            b: { Dense(4) }
            Add()
            Concatenate { { } { Dense(2) } }
            ResidualConnection(activation="relu") { Dense(6) }
        }
    """)
    kinds = [op.name for op in ops(m)]
    assert kinds == ["graph.dense", "graph.dense", "graph.add", "graph.dense",
                     "graph.concatenate", "graph.dense", "graph.residual_connection"]
    cat = ops(m)[4]
    assert str(cat.result.type) == "tensor<batch x 6 x f32>"
    assert cat.operands[0] is ops(m)[2].result  # the empty branch is the identity


def test_named_dims_unify_and_ranges_are_kept():
    m = compile_text("""
        network N {
          input: { x: (seq, 8), y: (len, 8) }
          dims { seq: 2..100 }
          layers:
            Add(x, y)
        }
    """)
    add = ops(m)[0]
    assert str(add.result.type) == "tensor<batch x seq x 8 x f32>"
    text = print_module(m.module)
    assert "dims = {seq = [2, 100]}" in text
    assert "%y: tensor<batch x seq x 8 x f32>" in text


def test_embedding_input_is_integer():
    m = compile_text("""
        network N {
          input: (seq,)
          layers:
            Embedding(100, 8)
            GlobalAveragePooling1D()
        }
    """)
    arg = func_body(m.module.funcs[0]).args[0]
    assert str(arg.type) == "tensor<batch x seq x i64>"


def test_hpo_defaults_warn_and_overrides_apply():
    src = """
        network N {
          input: (4,)
          layers:
            Dense(HPO(choice(16, 32)))
            Dropout(HPO(range(0.1, 0.5, step=0.1)))
          optimizer: Adam(learning_rate=HPO(log_range(1e-4, 1e-2)))
          train { batch_size: [8, 16] }
        }
    """
    m = compile_text(src)
    assert ops(m)[0].attributes["units"] == 16
    assert ops(m)[1].attributes["rate"] == 0.1
    warn = render_all(m.warnings)
    for path in ("dense.units", "dropout.rate", "optimizer.learning_rate", "train.batch_size"):
        assert path in warn
    m2 = compile_text(src, hparams=HParams.from_strings(["dense.units=32", "train.batch_size=16"]))
    assert ops(m2)[0].attributes["units"] == 32
    assert m2.info.training.train["batch_size"] == 16
    with pytest.raises(UsageError, match="no such hyperparameter"):
        compile_text(src, hparams=HParams.from_strings(["dense.unit=32"]))
    assert "not one of the choices" in errors_of(src, hparams=HParams.from_strings(["dense.units=20"]))


def test_network_selection():
    src = "network A { input: (2,) layers: Dense(1) } network B { input: (3,) layers: Dense(1) }"
    with pytest.raises(UsageError, match="several networks"):
        compile_text(src)
    assert compile_text(src, network="B").module.name == "B"
    with pytest.raises(UsageError, match="no network 'C'"):
        compile_text(src, network="C")


# -- errors -----------------------------------------------------------------------------------

NET = """network N {{
  input: {inp}
  layers:
{layers}
}}
"""


def net_errors(layers: str, inp: str = "(28, 28, 1)") -> str:
    return errors_of(NET.format(inp=inp, layers=textwrap.indent(textwrap.dedent(layers), "    ")))


def test_unknown_layer_suggests_the_closest():
    out = net_errors("Conv2d(8, 3)\nDens(10)")
    assert "m.nr:5:5: error: unknown layer 'Dens'; did you mean 'Dense'?" in out


def test_every_independent_error_is_reported():
    out = net_errors('Conv2D(-8, 3)\nDropout(1.5)\nDense(10, activation="relux")')
    assert "m.nr:4:12: error: Conv2D: 'filters' must be a positive integer, got -8" in out
    assert "m.nr:5:13: error: Dropout: 'rate' must be a number in [0, 1], got 1.5" in out
    assert "m.nr:6:26: error: Dense: unknown activation \"relux\" for 'activation'; did you mean 'relu'?" in out
    assert "3 errors generated." in out


def test_unknown_parameter_and_too_many_positionals():
    out = net_errors("Dense(10, unitz=3)\nDropout(0.1, None, 3, 4)", inp="(4,)")
    assert "error: Dense has no parameter 'unitz'; did you mean 'units'?" in out
    assert "m.nr:5:27: error: Dropout takes at most 3 positional arguments (rate, noise_shape, seed), got 4" in out


def test_missing_required_parameter():
    assert "Dense is missing the required parameter 'units'" in net_errors("Dense()", inp="(4,)")


def test_shape_error_points_at_layer_and_its_input():
    out = net_errors("Flatten()\nDense(128)\nConv2D(64, (3, 3), \"relu\")")
    assert "m.nr:6:5: error: Conv2D expects input (batch, height, width, channels), got (batch, 128)" in out
    assert "    6 |     Conv2D(64, (3, 3), \"relu\")\n      |     ^~~~~~~~~~~~~~~~~~~~~~~~~~" in out
    assert "note: the input comes from Dense 'dense' at m.nr:5:5" in out


def test_residual_that_changes_shape_suggests_projection():
    out = net_errors("ResidualConnection { Dense(3) }", inp="(4,)")
    assert "ResidualConnection body changes the shape" in out
    assert "projection" in out


def test_merge_with_nothing_to_merge():
    out = net_errors("Dense(4)\nConcatenate()", inp="(4,)")
    assert "Concatenate has 0 inputs to merge" in out
    assert "write branches as Concatenate" in out


def test_layer_without_single_input_in_multi_input_network():
    out = net_errors("Dense(4)", inp="{ a: (4,), b: (4,) }")
    assert "Dense has no single input to apply to" in out


def test_macro_error_points_at_definition_and_use():
    out = errors_of("""\
define Block(n) {
  Dense($n)
}
network N {
  input: (4,)
  layers:
    Block(-1)
}
""")
    assert "m.nr:2:9: error: Dense: 'units' must be a positive integer, got -1" in out
    assert "    2 |   Dense($n)\n      |         ^~" in out
    assert "m.nr:7:11: note: in expansion of the macro used here" in out
    assert "    7 |     Block(-1)\n      |           ^~" in out


def test_nested_macro_error_lists_every_use_site():
    out = errors_of("""\
define Inner(n) {
  Dense(units=$n, activation="relu")
}
define Outer {
  Inner(3)
  Conv1D(4, 0)
}
network N {
  input: (8, 4)
  layers:
    Outer()
}
""")
    assert "m.nr:6:13: error: Conv1D: 'kernel_size' must be a positive integer" in out
    assert "m.nr:11:5: note: in expansion of the macro used here" in out


def test_range_violation_is_a_shape_error():
    out = errors_of("""\
network N {
  input: { a: (seq, 4), b: (3, 4) }
  dims { seq: 8..16 }
  layers:
    Add(a, b)
}
""")
    assert "outside its range 8..16" in out


def test_weight_needing_a_fixed_size_is_a_compile_error():
    out = errors_of("""\
network N {
  input: (seq, feat)
  layers:
    Dense(4)
}
""")
    assert "m.nr:4:5: error: Dense needs a fixed number of input features to size its weights, got the symbolic dim 'feat'" in out


def test_wrapped_embedding_input_is_integer():
    m = compile_text("""
        network N {
          input: (steps, 5)
          layers:
            TimeDistributed(Embedding(50, 4))
        }
    """)
    arg = func_body(m.module.funcs[0]).args[0]
    assert str(arg.type) == "tensor<batch x steps x 5 x i64>"
    assert str(ops(m)[0].result.type) == "tensor<batch x steps x 5 x 4 x f32>"


def test_optimizer_hpos_are_named_by_their_keyword():
    m = compile_text("""
        network N {
          input: (4,)
          layers:
            Dense(2)
          optimizer: SGD(learning_rate=HPO(log_range(1e-3, 1e-1)), momentum=HPO(choice(0.0, 0.9)))
        }
    """, hparams=HParams.from_strings(["optimizer.momentum=0.9"]))
    assert m.info.training.optimizer_params == {"learning_rate": 1e-3, "momentum": 0.9}
    assert sorted(u.path for u in m.info.hparams.uses) == ["optimizer.learning_rate",
                                                           "optimizer.momentum"]


@pytest.mark.parametrize("layers", [
    "ResidualConnection { a: { Dense(4) } }",
    "Add { { a: { Dense(4) } } { Dense(4) } }",
    "a: { Dense(8) }\nb: { Dense(8) }\nDense(4)\nConcatenate()",
])
def test_a_layer_whose_output_is_dropped_is_an_error(layers):
    out = net_errors(layers, inp="(4,)")
    assert "is never used: nothing merges it and the network does not return it" in out


def test_reserved_dim_names_and_input_names():
    out = errors_of("""\
network N {
  input: { "my img": (4,), b: (floordiv, 2), c: (_d0, 2) }
  layers:
    Dense(3)
}
""")
    assert "input name 'my img' must be an identifier" in out
    assert "'floordiv' cannot name a dimension (reserved)" in out
    assert "'_d0' cannot name a dimension (reserved)" in out


def test_two_networks_with_one_name():
    out = errors_of("network N { input: (2,) layers: Dense(1) }\nnetwork N { input: (3,) layers: Dense(1) }\n")
    assert "m.nr:2:9: error: network 'N' is defined twice" in out


def test_nested_repeats_are_capped():
    out = errors_of("define R { Dense(2) * 10000 }\nnetwork N {\n  input: (4,)\n  layers:\n    R * 10000\n}\n")
    assert "expands to more than 10,000 layers in all" in out


def test_absurd_numbers_are_located_errors():
    out = errors_of("network N {\n  input: (4,)\n  layers:\n    Dense(" + "9" * 5000 + ")\n}\n")
    assert "m.nr:4:11: error: number too long (5000 characters)" in out
    out = errors_of("network N {\n  input: (4,)\n  layers:\n    Dense(99999999999999999999999)\n}\n")
    assert "Dense weight 'weight' would have 399,999,999,999,999,999,999,996 elements" in out


def test_unclosed_pass_options_are_refused():
    from neuralc.passes.registry import parse_pipeline

    with pytest.raises(KeyError, match="must end with"):
        parse_pipeline("fuse{")
