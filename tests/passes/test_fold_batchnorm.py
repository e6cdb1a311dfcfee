"""fold-batchnorm keeps results: the interpreter agrees before and after on random weights."""

from pathlib import Path

import numpy as np
import pytest

from neuralc.ir.parser import parse_module
from neuralc.ir.printer import print_module
from neuralc.passes.base import PassContext
from neuralc.passes.fold_batchnorm import fold
from neuralc.passes.manager import PassManager
from neuralc.passes.registry import parse_pipeline
from neuralc.runtime.interpreter import run_module

NIR = Path(__file__).resolve().parents[1] / "filecheck" / "fold" / "conv_bn.nir"


@pytest.mark.parametrize("n,h,w", [(1, 5, 7), (3, 8, 6)])
def test_folding_keeps_results(n, h, w):
    before = parse_module(NIR.read_text(), "conv_bn.nir")
    after = parse_module(NIR.read_text(), "conv_bn.nir")
    assert fold(after) == 1
    PassManager(parse_pipeline("canonicalize"), verify_each=True).run(after, PassContext())
    assert print_module(after).count('fn = "mul"') == 4  # 3 on weights + none on activations
    rng = np.random.default_rng()
    weights = {
        "conv2d.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "conv2d.bias": rng.standard_normal(4).astype(np.float32),
        "bn.weight": rng.standard_normal(4).astype(np.float32),
        "bn.bias": rng.standard_normal(4).astype(np.float32),
        "bn.running_mean": rng.standard_normal(4).astype(np.float32),
        "bn.running_var": rng.uniform(0.5, 2.0, 4).astype(np.float32),
    }
    x = rng.standard_normal((n, h, w, 3)).astype(np.float32)
    (a,) = run_module(before, [x], weights)
    (b,) = run_module(after, [x], weights)
    np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)


def test_no_fold_when_the_scale_reads_an_activation():
    text = NIR.read_text().replace('%s = "tensor.binary"(%g, %r)', '%s0 = "tensor.binary"(%g, %r)')
    # Make the scale depend on the input: it must not be folded into the weights.
    text = text.replace(
        '    %be = "tensor.constant"',
        '    %xs = "tensor.reduce"(%x) {axes = [0, 1, 2, 3], keepdims = false, kind = "mean"} : (tensor<batch x h x w x 3 x f32>) -> tensor<f32>\n'
        '    %s = "tensor.binary"(%s0, %xs) {fn = "mul"} : (tensor<4 x f32>, tensor<f32>) -> tensor<4 x f32>\n'
        '    %be = "tensor.constant"')
    m = parse_module(text, "no_fold.nir")
    assert fold(m) == 0
