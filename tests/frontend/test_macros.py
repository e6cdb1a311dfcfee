"""Macro expansion and ``* N`` unrolling: results, call-site spans, and the errors of each."""

from __future__ import annotations

import textwrap

import pytest

from neuralc.diagnostics import CompileError, Diagnostic, render_all
from neuralc.frontend import ast
from neuralc.frontend.macros import expand
from neuralc.frontend.parser import parse
from neuralc.frontend.values import evaluate
from neuralc.location import CallSiteLoc, FileLoc, expansion_stack, primary


def X(src: str) -> ast.File:
    return expand(parse(textwrap.dedent(src), "m.nr"))


def layers(src: str) -> list[ast.LayerItem]:
    f = X(src)
    assert len(f.networks) == 1
    return f.networks[0].layers


def summary(items: list[ast.LayerItem]) -> list:
    """Names with evaluated arguments, nested blocks included, for compact comparisons."""
    out: list = []
    for it in items:
        if isinstance(it, ast.NamedBranch):
            out.append((it.name + ":", summary(it.body)))
            continue
        entry: list = [it.name, *[evaluate(a) for a in it.args]]
        entry += [f"{k.name}={evaluate(k.value)!r}" for k in it.kwargs]
        if it.body is not None:
            entry.append(summary(it.body))
        if it.branches is not None:
            entry.append([summary(b) for b in it.branches])
        out.append(tuple(entry))
    return out


def expand_errors(src: str) -> str:
    with pytest.raises(CompileError) as ei:
        X(src)
    return render_all(ei.value.diagnostics)


SECTION6 = """\
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


def test_section6_example_expands():
    items = expand(parse(SECTION6, "m.nr")).networks[0].layers
    conv = lambda f, s: ("Conv2D", f"filters={f}", "kernel_size=3", f"strides={s}",  # noqa: E731
                         "padding='same'", "use_bias=False")
    assert summary(items) == [
        ("Conv2D", 16, 3, "padding='same'"),
        conv(32, 1), ("BatchNormalization",), ("Activation", "relu"),
        conv(32, 1), ("BatchNormalization",), ("Activation", "relu"),
        conv(64, 2), ("BatchNormalization",), ("Activation", "relu"),
        ("GlobalAveragePooling2D",), ("Output", 10),
    ]
    assert all(isinstance(c, ast.LayerCall) and c.repeat is None for c in items)


def test_expansion_spans_are_call_sites():
    items = expand(parse(SECTION6, "m.nr")).networks[0].layers
    stem_conv, conv_a = items[0], items[1]
    # Stem's Conv2D: text on line 6 of the define, used at line 11.
    assert isinstance(stem_conv.span, CallSiteLoc)
    assert stem_conv.span.callee == FileLoc("m.nr", 6, 15, 6, 44)
    assert stem_conv.span.caller == FileLoc("m.nr", 11, 5, 11, 11)
    assert stem_conv.name_span == CallSiteLoc(FileLoc("m.nr", 6, 15, 6, 21),
                                              FileLoc("m.nr", 11, 5, 11, 11))
    # Every node from the body is relocated, kwargs and values included ...
    kw = conv_a.kwargs[1]
    assert kw.span == CallSiteLoc(FileLoc("m.nr", 2, 28, 2, 41), FileLoc("m.nr", 12, 5, 12, 33))
    assert kw.value.span == CallSiteLoc(FileLoc("m.nr", 2, 40, 2, 41),
                                        FileLoc("m.nr", 12, 5, 12, 33))
    # ... and a substituted $param sits at the `$p` of the define, expanded at the argument.
    filters = conv_a.kwargs[0].value
    assert isinstance(filters, ast.Number) and filters.value == 32
    assert isinstance(filters.span, CallSiteLoc)
    assert filters.span.caller == FileLoc("m.nr", 12, 20, 12, 22)
    assert filters.span.callee.line == 2
    # Ordinary layers keep plain spans.
    assert items[-1].span == FileLoc("m.nr", 15, 5, 15, 15)


def test_nested_expansions_give_nested_call_sites():
    items = layers("""\
        define Inner(u) { Dense($u) }
        define Outer(u) {
          Inner($u)
        }
        network N {
          input: (4,)
          layers:
            Outer(7)
        }
        """)
    (dense,) = items
    assert evaluate(dense.args[0]) == 7
    assert dense.span == CallSiteLoc(
        FileLoc("m.nr", 1, 19, 1, 28),
        CallSiteLoc(FileLoc("m.nr", 3, 3, 3, 12), FileLoc("m.nr", 8, 5, 8, 13)),
    )
    assert primary(dense.span) == FileLoc("m.nr", 1, 19, 1, 28)
    assert expansion_stack(dense.span)  # at least the innermost use site is listed


def test_error_on_a_bad_value_shows_definition_and_use_lines():
    # A value computed inside the define (here the repeat count) points at the define's line
    # and, through the call site, at the line that used the macro.
    out = expand_errors("""\
        define Stack(n) {
          Dense(8) * ($n - 3)
        }
        network N {
          input: (4,)
          layers:
            Stack(2)
        }
        """)
    assert out == textwrap.dedent("""\
        m.nr:2:15: error: a repeat count must be a positive integer, got -1
            2 |   Dense(8) * ($n - 3)
              |               ^~~~~~
        m.nr:7:5: note: in expansion of the macro used here
            7 |     Stack(2)
              |     ^~~~~~~~
        1 error generated.""")


def test_call_site_diagnostic_renders_both_places():
    # What the lowering does with an expanded node: report at its span.
    items = layers(SECTION6)
    d = Diagnostic("error", "Conv2D: something is wrong", items[1].span)
    out = render_all([d])
    assert out.splitlines()[0] == "m.nr:2:3: error: Conv2D: something is wrong"
    assert "m.nr:12:5: note: in expansion of the macro used here" in out
    assert "   12 |     ConvBN(filters=32, stride=1) * 2" in out


def test_defaults_keywords_and_arithmetic():
    items = layers("""\
        define Block(units, mult=2, act="relu") {
          Dense($units * $mult, activation=$act)
          Dense($units / 4)
          Dense(-$units + 1)
        }
        network N {
          input: (4,)
          layers:
            Block(16)
            Block(8, act="tanh")
            Block(mult=3, units=4)
        }
        """)
    assert summary(items) == [
        ("Dense", 32, "activation='relu'"), ("Dense", 4), ("Dense", -15),
        ("Dense", 16, "activation='tanh'"), ("Dense", 2), ("Dense", -7),
        ("Dense", 12, "activation='relu'"), ("Dense", 1), ("Dense", -3),
    ]


def test_default_may_use_an_earlier_parameter():
    items = layers("""\
        define B(a, b=$a * 2) { Dense($b) }
        network N { input: (4,) layers: B(5) B(5, 1) }
        """)
    assert summary(items) == [("Dense", 10), ("Dense", 1)]


def test_bare_reference_and_macros_using_macros():
    items = layers("""\
        define Head { Flatten() Dense(10) }
        define Body(f) { Conv2D($f, 3) Head }
        network N {
          input: (8, 8, 1)
          layers:
            Body(4)
            Head
        }
        """)
    assert summary(items) == [("Conv2D", 4, 3), ("Flatten",), ("Dense", 10),
                              ("Flatten",), ("Dense", 10)]


def test_expansion_inside_bodies_branches_and_named_branches():
    items = layers("""\
        define C(f) { Conv2D($f, 1) }
        network N {
          input: { a: (8, 8, 3) }
          layers:
            a: { C(2) }
            Residual { C(3) * 2 }
            Add { { C(4) } { } }
        }
        """)
    assert summary(items) == [
        ("a:", [("Conv2D", 2, 1)]),
        ("Residual", [("Conv2D", 3, 1), ("Conv2D", 3, 1)]),
        ("Add", [[("Conv2D", 4, 1)], []]),
    ]


def test_repeat_unrolls_layers_blocks_and_references():
    items = layers("""\
        define Two { Dense(1) Dense(2) }
        network N {
          input: (4,)
          layers:
            Dense(8) * 3
            Residual { Dense(4) } * 2
            Two() * 2
        }
        """)
    assert summary(items) == [
        ("Dense", 8), ("Dense", 8), ("Dense", 8),
        ("Residual", [("Dense", 4)]), ("Residual", [("Dense", 4)]),
        ("Dense", 1), ("Dense", 2), ("Dense", 1), ("Dense", 2),
    ]
    assert all(c.repeat is None for c in items)
    # The copies are independent objects (each layer gets its own weights downstream).
    assert items[0] is not items[1] and items[3].body[0] is not items[4].body[0]


def test_repeat_count_from_a_parameter():
    items = layers("""\
        define Stack(n, u) { Dense($u) * $n }
        network N { input: (4,) layers: Stack(3, 5) Stack(n=1, u=6) }
        """)
    assert summary(items) == [("Dense", 5)] * 3 + [("Dense", 6)]


def test_device_on_a_reference_applies_to_its_layers():
    items = layers("""\
        define Two { Dense(1) Dense(2) @ "cpu" }
        network N { input: (4,) layers: Two() @ "cuda" }
        """)
    assert [c.device.value for c in items] == ["cuda", "cpu"]


def test_block_after_a_reference_follows_it():
    items = layers("""\
        define Two { Dense(1) Dense(2) }
        network N { input: (4,) layers: Two { Dense(3) } }
        """)
    assert summary(items) == [("Dense", 1), ("Dense", 2), ("Dense", 3)]


def test_macro_names_are_case_sensitive():
    items = layers("""\
        define Block { Dense(1) }
        network N { input: (4,) layers: block() Block() }
        """)
    assert summary(items) == [("block",), ("Dense", 1)]


def test_networks_and_macros_are_kept():
    f = X(SECTION6)
    assert [m.name for m in f.macros] == ["ConvBN", "Stem"]
    assert f.filename == "m.nr"
    assert f.networks[0].inputs[0].dims[0].value == 32


# -- errors ---------------------------------------------------------------------------------


def test_missing_argument():
    out = expand_errors("""\
        define B(units, act) { Dense($units, $act) }
        network N { input: (4,) layers: B(3) }
        """)
    assert out == textwrap.dedent("""\
        m.nr:2:33: error: macro 'B' needs a value for 'act'
            2 | network N { input: (4,) layers: B(3) }
              |                                 ^~~~
        m.nr:1:17: note: 'act' is declared here
            1 | define B(units, act) { Dense($units, $act) }
              |                 ^~~
        1 error generated.""")


def test_unknown_keyword_with_suggestion():
    out = expand_errors("""\
        define B(units) { Dense($units) }
        network N { input: (4,) layers: B(unit=3) }
        """)
    assert out.splitlines()[0] == (
        "m.nr:2:35: error: macro 'B' has no parameter 'unit'; did you mean 'units'?"
    )
    assert "m.nr:1:8: note: 'B' is defined here" in out


def test_too_many_arguments():
    out = expand_errors("""\
        define B(units) { Dense($units) }
        network N { input: (4,) layers: B(3, 4) }
        """)
    assert out.splitlines()[0] == "m.nr:2:38: error: macro 'B' takes 1 argument but 2 were given"


def test_argument_given_twice():
    out = expand_errors("""\
        define B(units) { Dense($units) }
        network N { input: (4,) layers: B(3, units=4) }
        """)
    assert out.splitlines()[0] == "m.nr:2:38: error: macro 'B' got two values for 'units'"


def test_direct_recursion():
    out = expand_errors("""\
        define Loop { Dense(1) Loop() }
        network N { input: (4,) layers: Loop() }
        """)
    assert out == textwrap.dedent("""\
        m.nr:1:24: error: recursive macro: Loop -> Loop
            1 | define Loop { Dense(1) Loop() }
              |                        ^~~~~~
        note: a macro cannot use itself, directly or through another
        1 error generated.""")


def test_indirect_recursion_shows_the_cycle_once():
    out = expand_errors("""\
        define A { B() }
        define B { Residual { C() } }
        define C { A }
        network N { input: (4,) layers: A() C() }
        """)
    errs = [ln for ln in out.splitlines() if ": error: " in ln]
    assert errs == ["m.nr:3:12: error: recursive macro: A -> B -> C -> A"]


def test_param_not_of_the_enclosing_macro():
    out = expand_errors("""\
        define B(filters) { Conv2D($fitlers, 3) }
        network N { input: (4,) layers: Dense(1) }
        """)
    assert out.splitlines()[0] == (
        "m.nr:1:28: error: '$fitlers' is not a parameter of macro 'B'; did you mean 'filters'?"
    )


def test_param_in_a_macro_without_params_and_outside_macros():
    out = expand_errors("""\
        define B { Dense($u) }
        network N { input: (4,) layers: Dense($v) Dense(1) * $n }
        """)
    errs = [ln for ln in out.splitlines() if ": error: " in ln]
    assert errs == [
        "m.nr:1:18: error: '$u' is used in macro 'B', which has no parameters",
        "m.nr:2:39: error: '$v' is used outside a macro",
        "m.nr:2:54: error: '$n' is used outside a macro",
    ]


def test_duplicate_macro():
    out = expand_errors("""\
        define B { Dense(1) }
        define B { Dense(2) }
        network N { input: (4,) layers: B() }
        """)
    assert out == textwrap.dedent("""\
        m.nr:2:8: error: macro 'B' is defined twice
            2 | define B { Dense(2) }
              |        ^
        m.nr:1:8: note: the first definition of 'B' is here
            1 | define B { Dense(1) }
              |        ^
        1 error generated.""")


def test_default_using_a_later_parameter():
    out = expand_errors("""\
        define B(a=$b, b=1) { Dense($a) }
        network N { input: (4,) layers: B() }
        """)
    assert "error: the default of 'a' can only use parameters declared before it, not '$b'" in out


def test_branches_on_a_macro_reference():
    out = expand_errors("""\
        define B { Dense(1) }
        network N { input: (4,) layers: B { { Dense(1) } { } } }
        """)
    assert out.splitlines()[0] == "m.nr:2:33: error: 'B' is a macro; it cannot take branch blocks"


@pytest.mark.parametrize("count, shown, col", [
    ("0", "0", 44), ("-2", "-2", 44), ("2.5", "2.5", 44), ("(1 - 1)", "0", 45),
    ("(true)", "true", 45), ("(4 / 8)", "0.5", 45), ('("3")', '"3"', 45),
])
def test_bad_repeat_counts(count, shown, col):
    out = expand_errors(f"network N {{ input: (4,) layers: Dense(1) * {count} }}")
    assert out.splitlines()[0] == (
        f"m.nr:1:{col}: error: a repeat count must be a positive integer, got {shown}"
    )


def test_repeat_count_with_an_unresolved_hpo():
    out = expand_errors("network N { input: (4,) layers: Dense(1) * (HPO(choice(1, 2))) }")
    assert "error: unresolved hyperparameter HPO(choice(...))" in out


def test_huge_repeat_count_is_refused():
    out = expand_errors("network N { input: (4,) layers: Dense(1) * 1000000 }")
    assert "error: a repeat count of 1000000 is more than the limit of 10000" in out


def test_all_independent_errors_are_reported_together():
    out = expand_errors("""\
        define B(units) { Dense($units) }
        network N {
          input: (4,)
          layers:
            B()
            B(1, 2)
            Dense(1) * 0
            B(nope=1, units=2)
        }
        """)
    assert out.endswith("4 errors generated.")
