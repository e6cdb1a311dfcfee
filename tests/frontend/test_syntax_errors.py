"""Syntax errors: each class gets a human message at the exact line:col, with its caret line.

The rendered diagnostics are compared as text (DSL.md section 9), so a change of position,
wording or caret width shows up here.
"""

from __future__ import annotations

import textwrap

import pytest

from neuralc.diagnostics import CompileError, render_all
from neuralc.frontend.parser import parse


def errors(src: str) -> str:
    with pytest.raises(CompileError) as ei:
        parse(textwrap.dedent(src), "m.nr")
    assert ei.value.diagnostics, "a CompileError carries its diagnostics"
    return render_all(ei.value.diagnostics)


def expect(src: str, want: str) -> None:
    assert errors(src) == textwrap.dedent(want).strip("\n")


# -- lexical errors -------------------------------------------------------------------------


def test_unterminated_string():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(10, "relu)
        }
        """, """
        m.nr:4:15: error: unterminated string: missing closing " before the end of the line
            4 |     Dense(10, "relu)
              |               ^~~~~~
        1 error generated.
        """)


def test_unterminated_single_quoted_string_reports_no_cascade():
    # The string swallows the ')' and the line's end; no 'missing )' follows from it.
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Activation('relu)
            Dense(2)
        }
        """)
    assert out.startswith("m.nr:4:16: error: unterminated string: missing closing '")
    assert out.endswith("1 error generated.")


def test_unterminated_block_comment():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(10)
        }
        /* never closed
        """, """
        m.nr:6:1: error: unterminated comment: '/*' has no closing '*/'
            6 | /* never closed
              | ^~
        1 error generated.
        """)


def test_unexpected_character():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(10) ~
        }
        """, """
        m.nr:4:15: error: unexpected character '~'
            4 |     Dense(10) ~
              |               ^
        1 error generated.
        """)


def test_dollar_without_a_name():
    expect("""\
        define M(a) { Dense($) }
        network N { input: (4,) layers: M(1) }
        """, """
        m.nr:1:21: error: expected a parameter name after '$'
            1 | define M(a) { Dense($) }
              |                     ^
        1 error generated.
        """)


# -- brackets -------------------------------------------------------------------------------


def test_missing_closing_paren_at_the_end_of_its_line():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(10, "relu"
            Dropout(0.3)
        }
        """, """
        m.nr:4:21: error: missing ')' to close '('
            4 |     Dense(10, "relu"
              |                     ^
        m.nr:4:10: note: '(' opened here
            4 |     Dense(10, "relu"
              |          ^
        1 error generated.
        """)


def test_missing_paren_over_several_lines_of_arguments():
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Conv2D(32,
                   (3, 3),
                   "relu"
            Flatten()
        }
        """)
    assert out.startswith("m.nr:6:18: error: missing ')' to close '('")
    assert "m.nr:4:11: note: '(' opened here" in out


def test_unmatched_closing_paren():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(10))
        }
        """, """
        m.nr:4:14: error: unmatched ')'
            4 |     Dense(10))
              |              ^
        1 error generated.
        """)


def test_missing_closing_brace_at_end_of_file():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(4)
        """, """
        m.nr:4:13: error: missing '}' to close '{'
            4 |     Dense(4)
              |             ^
        m.nr:1:11: note: '{' opened here
            1 | network N {
              |           ^
        1 error generated.
        """)


def test_missing_brace_does_not_swallow_the_next_network():
    out = errors("""\
        network A {
          input: (4,)
          layers:
            Dense(4)
        network B {
          input: (4,)
          layers:
            Dense(4 4)
        }
        """)
    assert "m.nr:4:13: error: missing '}' to close '{'" in out
    assert "m.nr:8:13: error: unexpected number 4; expected ',' or ')'" in out
    assert out.endswith("2 errors generated.")


def test_mismatched_bracket_kinds():
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Dense([1, 2)
        }
        """)
    assert out.startswith("m.nr:4:16: error: missing ']' to close '['")


# -- parser errors --------------------------------------------------------------------------


def test_unexpected_close_paren_where_a_value_is_expected():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dropout(rate=)
        }
        """, """
        m.nr:4:18: error: unexpected ')'; expected a value
            4 |     Dropout(rate=)
              |                  ^
        1 error generated.
        """)


def test_missing_comma_between_arguments():
    expect("""\
        network N {
          input: (4,)
          layers:
            Conv2D(32 (3, 3))
        }
        """, """
        m.nr:4:15: error: unexpected '('; expected ',' or ')'
            4 |     Conv2D(32 (3, 3))
              |               ^
        1 error generated.
        """)


def test_leading_comma():
    expect("""\
        network N {
          input: (4,)
          layers: Dense(,)
        }
        """, """
        m.nr:3:17: error: unexpected ','; expected a value or ')'
            3 |   layers: Dense(,)
              |                 ^
        1 error generated.
        """)


def test_missing_value_in_a_train_entry():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(4)
          train {
            epochs: 3
            batch_size:
          }
        }
        """, """
        m.nr:8:3: error: unexpected '}'; expected a value
            8 |   }
              |   ^
        1 error generated.
        """)


def test_missing_colon_in_a_train_entry():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(4)
          train {
            batch_size 32
          }
        }
        """, """
        m.nr:6:16: error: unexpected number 32; expected ':' or '='
            6 |     batch_size 32
              |                ^~
        1 error generated.
        """)


def test_missing_colon_after_a_section_word():
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Dense(4)
          metrics ["accuracy"]
        }
        """)
    assert out.startswith("m.nr:5:11: error: unexpected '['; expected ':'")


def test_bad_repeat_count_token():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(8) * Dense
        }
        """, """
        m.nr:4:16: error: unexpected name 'Dense'; expected a repeat count
            4 |     Dense(8) * Dense
              |                ^~~~~
        1 error generated.
        """)


def test_bad_device_token():
    out = errors("network N { input: (4,) layers: Dense(4) @ 3 }")
    assert out.startswith('m.nr:1:44: error: unexpected number 3; expected a device such as "cuda"')


def test_layers_mixed_with_branches():
    out = errors("network N { input: (4,) layers: Add { { Dense(1) } Dense(2) } }")
    assert out.startswith(
        "m.nr:1:52: error: unexpected name 'Dense'; expected another branch '{ ... }' or '}'"
    )


def test_network_without_name():
    expect("""\
        network {
          input: (4,)
        }
        """, """
        m.nr:1:9: error: unexpected '{'; expected a network name
            1 | network {
              |         ^
        1 error generated.
        """)


def test_network_without_body():
    expect("network N\n", """
        m.nr:1:10: error: unexpected end of file; expected '{'
            1 | network N
              |          ^
        1 error generated.
        """)


def test_bad_macro_parameter():
    expect("""\
        define K(1) { Dense(1) }
        network N { input: (4,) layers: Dense(1) }
        """, """
        m.nr:1:10: error: unexpected number 1; expected a parameter name or ')'
            1 | define K(1) { Dense(1) }
              |          ^
        1 error generated.
        """)


def test_misspelt_network_keyword():
    assert errors("netwrok N {\n  input: (4,)\n}\n") == (
        "m.nr:1:1: error: unexpected name 'netwrok'; expected 'network' or 'define'; "
        "did you mean 'network'?\n"
        "    1 | netwrok N {\n"
        "      | ^~~~~~~\n"
        "1 error generated."
    )


# -- sections -------------------------------------------------------------------------------


@pytest.mark.parametrize("line, message", [
    ("trian {\n    epochs: 3\n  }", "unknown section 'trian'; did you mean 'train'?"),
    ("optimzer: Adam(learning_rate=0.1)", "unknown section 'optimzer'; did you mean 'optimizer'?"),
    ('lost "mse"', "unknown section 'lost'; did you mean 'loss'?"),
    ("metric: [\"accuracy\"]", "unknown section 'metric'; did you mean 'metrics'?"),
    ("executon { device: \"cpu\" }", "unknown section 'executon'; did you mean 'execution'?"),
    ("trian { }", "unknown section 'trian'; did you mean 'train'?"),
])
def test_unknown_sections_get_a_suggestion(line, message):
    src = f"network N {{\n  input: (4,)\n  layers:\n    Dense(4)\n  {line}\n}}\n"
    with pytest.raises(CompileError) as ei:
        parse(src, "m.nr")
    out = render_all(ei.value.diagnostics)
    name = line.split()[0].rstrip(":")
    assert out == (
        f"m.nr:5:3: error: {message}\n"
        f"    5 |   {line.splitlines()[0]}\n"
        f"      |   ^{'~' * (len(name) - 1)}\n"
        "1 error generated."
    )


def test_duplicate_section_points_at_both():
    expect("""\
        network N {
          input: (4,)
          layers:
            Dense(4)
          loss: "mse"
          loss: "mae"
        }
        """, """
        m.nr:6:3: error: duplicate 'loss' section
            6 |   loss: "mae"
              |   ^~~~
        m.nr:5:3: note: the first 'loss' section is here
            5 |   loss: "mse"
              |   ^~~~
        1 error generated.
        """)


def test_execute_and_execution_are_one_section():
    out = errors("""\
        network N {
          input: (4,)
          layers: Dense(4)
          execute { device: "cpu" }
          execution { device: "cuda" }
        }
        """)
    assert out.startswith("m.nr:5:3: error: duplicate 'execution' section")
    assert "m.nr:4:3: note: the first 'execution' section is here" in out


def test_layer_before_layers_section():
    out = errors("network N {\n  input: (4,)\n  loss: \"mse\"\n  Dense(4)\n  layers: Dense(2)\n}\n")
    assert out.startswith(
        "m.nr:4:3: error: layer 'Dense' is inside the 'loss' section; layers belong after 'layers:'"
    )


def test_duplicate_train_key_and_keyword_argument():
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Dense(units=4, units=5)
          train { epochs: 1 epochs: 2 }
        }
        """)
    assert "m.nr:4:20: error: 'units' is given more than once in Dense(...)" in out
    assert "m.nr:5:21: error: duplicate 'epochs' in the 'train' section" in out


def test_positional_after_keyword():
    expect("network N { input: (4,) layers: Dense(units=4, \"relu\") }", """
        m.nr:1:48: error: positional argument follows keyword argument
            1 | network N { input: (4,) layers: Dense(units=4, "relu") }
              |                                                ^~~~~~
        m.nr:1:39: note: give it by name, or move it before 'units='
            1 | network N { input: (4,) layers: Dense(units=4, "relu") }
              |                                       ^~~~~~~
        1 error generated.
        """)


@pytest.mark.parametrize("inp, message, col", [
    ("(0, 4)", "an input dimension must be a positive integer, got 0", 11),
    ("(2.5,)", "an input dimension must be a positive integer, got 2.5", 11),
    ('("x", 4)', "an input dimension is a positive integer, a name (a symbolic size) or None", 11),
    ('"img"', "an input shape is a tuple of dimensions, such as (28, 28, 1) or (seq, 128)", 10),
    ("28, 28", "an input shape is a tuple of dimensions: write (28, 28) for one input, "
               "(28,), (28,) for two", 10),
])
def test_bad_input_shapes(inp, message, col):
    out = errors(f"network N {{\n  input: {inp}\n  layers: Dense(1)\n}}\n")
    assert out.startswith(f"m.nr:2:{col}: error: {message}")


def test_bad_dim_ranges():
    out = errors("network N {\n  input: (a, b)\n  dims { a: 5..2, b: 1.5..3 }\n"
                 "  layers: Dense(1)\n}")
    assert "m.nr:3:10: error: empty range for 'a': 5 is more than 2" in out
    assert "m.nr:3:22: error: a dimension bound must be a non-negative integer, got 1.5" in out


@pytest.mark.parametrize("text, message", [
    ("HPO(foo(1))", "HPO(...) takes one of choice(a, b, ...), range(low, high, step=s) or "
                    "log_range(low, high)"),
    ("HPO(chocie(1, 2))", "HPO(...) takes one of choice(a, b, ...), range(low, high, step=s) or "
                          "log_range(low, high); did you mean 'choice'?"),
    ("HPO(choice())", "choice(...) takes one or more values and no keywords"),
    ("HPO(range(1))", "range(...) takes (low, high) and an optional step="),
    ("HPO(range(1, 2, stp=1))", "range(...) takes (low, high) and an optional step="),
    ("HPO(log_range(1, 2, 3))", "log_range(...) takes (low, high)"),
])
def test_bad_hpo_forms(text, message):
    out = errors(f"network N {{ input: (4,) layers: Dense({text}) }}")
    assert f"error: {message}" in out


# -- several errors in one run --------------------------------------------------------------


def test_independent_errors_in_one_layer_list_are_all_reported():
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Dense(64)
            Conv2D(32 (3, 3))
            Dense()
            Dropout(rate=)
            Dense(8) * Dense
        }
        """)
    lines = [ln for ln in out.splitlines() if ": error: " in ln]
    assert lines == [
        "m.nr:5:15: error: unexpected '('; expected ',' or ')'",
        "m.nr:7:18: error: unexpected ')'; expected a value",
        "m.nr:8:16: error: unexpected name 'Dense'; expected a repeat count",
    ]


def test_errors_in_several_blocks_and_kinds_are_all_reported():
    out = errors("""\
        define M(a) { Dense($a 1) }
        network A {
          input: (4,)
          layers:
            Dense(4
        }
        network B {
          input: (4,)
          trian { epochs: 1 }
          layers: Dense(,)
          train { epochs: }
        }
        """)
    lines = [ln for ln in out.splitlines() if ": error: " in ln]
    assert lines == [
        "m.nr:1:24: error: unexpected number 1; expected ',' or ')'",
        "m.nr:5:12: error: missing ')' to close '('",
        "m.nr:9:3: error: unknown section 'trian'; did you mean 'train'?",
        "m.nr:10:17: error: unexpected ','; expected a value or ')'",
        "m.nr:11:19: error: unexpected '}'; expected a value",
    ]
    assert out.endswith("5 errors generated.")


def test_an_error_in_a_nested_block_drops_only_that_line():
    out = errors("""\
        network N {
          input: (4,)
          layers:
            Residual {
              Dense(3 3)
              Dense(4)
            }
            Add { { Dense(3) } { Dense(2 2) } }
        }
        """)
    lines = [ln for ln in out.splitlines() if ": error: " in ln]
    assert lines == [
        "m.nr:5:15: error: unexpected number 3; expected ',' or ')'",
        "m.nr:8:34: error: unexpected number 2; expected ',' or ')'",
    ]


def test_recovery_deep_into_a_long_network_reports_each_error_once():
    # Recovery resumes from parser snapshots; an error far into a long layer list must not
    # replay earlier statements (which would report 'duplicate section' for a single one).
    body = "\n".join(f"    Dense({i}, activation=\"relu\")" for i in range(200))
    out = errors(
        "network N {\n  input: (4,)\n  layers:\n" + body + "\n    Dense(1 2)\n"
        + '  loss: "mse"\n  optimizer: A:am(learning_rate=0.1)\n  metrics: ["accuracy"]\n}\n'
    )
    lines = [ln for ln in out.splitlines() if ": error: " in ln]
    assert lines == [
        "m.nr:204:13: error: unexpected number 2; expected ',' or ')'",
        "m.nr:206:15: error: unexpected ':'; expected a layer, a section or '}'",
    ]


def test_values_after_a_name_do_not_list_a_call_paren():
    out = errors('network N { input: (4,) layers: Conv2D(16, act"relu") }')
    assert out.startswith(
        "m.nr:1:47: error: unexpected string \"relu\"; expected ',', ')' or '='"
    )


def test_many_errors_stay_fast_and_capped():
    body = "\n".join(f"    Dense({i} {i})" for i in range(80))
    out = errors("network N {\n  input: (4,)\n  layers:\n" + body + "\n}\n")
    assert "too many syntax errors; the rest of this network is not checked" in out
    assert out.endswith("51 errors generated.")


def test_empty_file():
    expect("# nothing here\n", """
        m.nr:1:1: error: the file holds no network; write 'network Name { ... }'
            1 | # nothing here
              | ^
        1 error generated.
        """)


@pytest.mark.parametrize("src", [
    "", "{", "}", ")", "network", "network N {", "network N { layers: Dense( }", "define",
    "define M", "define M(", "network N { input: }", "network N { input: ( }", "$", '"', "'",
    "network N { layers: Dense(1) * }", "network N { dims { a: .. } }", "@@@",
    "network N { layers: a: }", "network N { layers: Add { { } { } ", "/*", "..", "1e",
    "network N { train { a: 1 b: } }", "network N network M", "define M { M( }",
])
def test_garbage_never_escapes_as_a_python_exception(src):
    with pytest.raises(CompileError) as ei:
        parse(src, "m.nr")
    out = render_all(ei.value.diagnostics)
    assert "error:" in out and "Traceback" not in out and "Lark" not in out
