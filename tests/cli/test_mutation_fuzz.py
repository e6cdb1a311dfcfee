"""Property: any mutant of an example file gets success or diagnostics, never a traceback.

Mutations are the slips people make in model files: deleted, inserted or duplicated text,
numbers swapped for odd values, truncation. The compiler must answer every one with a
CompileError (rendered diagnostics) or a UsageError, or compile it.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from neuralc.diagnostics import CompileError, render_all
from neuralc.driver import UsageError, compile_source

EXAMPLES = {p.name: p.read_text() for p in
            sorted(Path(__file__).resolve().parents[2].joinpath("examples").glob("*.nr"))}

SNIPPETS = ["(", ")", "{", "}", ",", ";", ":", "=", "*", "@", "$", '"', "'", "-", ".", "..",
            "0", "-1", "1e9", "0.0", "None", "true", "x", "Dense", "define", "network", "\n",
            "/*", "//", "#", "HPO(", "choice(", "(3, 3)", "[", "]", "* 0", "* 3", "@ \"tpu\""]


@st.composite
def mutant(draw) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(EXAMPLES)))
    text = EXAMPLES[name]
    for _ in range(draw(st.integers(1, 4))):
        n = len(text)
        i = draw(st.integers(0, n))
        j = draw(st.integers(i, min(n, i + 12)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate", "truncate"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.sampled_from(SNIPPETS)) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.sampled_from(SNIPPETS)) + text[j:]
        elif kind == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i]
    return name, text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutant())
def test_mutants_get_success_or_diagnostics(case):
    name, text = case
    try:
        compile_source(text, name)
    except CompileError as e:
        out = render_all(e.diagnostics)
        assert "error:" in out
        assert e.diagnostics, "a CompileError must carry diagnostics"
    except UsageError as e:
        assert str(e)
