"""The layout pass keeps results, and leaves channels-last modules alone when asked to."""

from pathlib import Path

import numpy as np
import pytest

from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.passes.base import PassContext
from neuralc.passes.layout import LayoutPass
from neuralc.runtime.interpreter import run_module

NIR = Path(__file__).resolve().parents[1] / "filecheck" / "layout" / "conv_chain.nir"


@pytest.mark.parametrize("n,h,w", [(1, 5, 7), (2, 9, 4)])
def test_channels_first_keeps_results(n, h, w):
    before = parse_module(NIR.read_text(), "a.nir")
    after = parse_module(NIR.read_text(), "b.nir")
    LayoutPass().run(after, PassContext())
    text = print_module(after)
    assert text.count('"tensor.transpose"') == 2 and text.count('layout = "nchw"') == 2
    rng = np.random.default_rng()
    weights = {k: rng.standard_normal(s).astype(np.float32) for k, s in (
        ("c1.weight", (4, 4, 3, 3)), ("c1.bias", (4,)), ("c2.weight", (4, 4, 3, 3)),
        ("c2.bias", (4,)))}
    x = rng.standard_normal((n, h, w, 4)).astype(np.float32)
    (a,) = run_module(before, [x], weights)
    (b,) = run_module(after, [x], weights)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_channels_last_is_a_no_op():
    m = parse_module(NIR.read_text(), "c.nir")
    text = print_module(m)
    LayoutPass(target="channels_last").run(m, PassContext())
    assert print_module(m) == text


def test_unknown_layout_is_an_error():
    m = parse_module(NIR.read_text(), "d.nir")
    ctx = PassContext()
    LayoutPass(target="nhcw").run(m, ctx)
    assert "unknown target layout 'nhcw'" in ctx.diags.errors[0].message
