"""Kernel counts at -O2, from .nr models through the real pipeline (regressions change them)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from neuralc.driver import compile_file, compile_source, tensor_stage
from neuralc.ir.core import func_body
from neuralc.passes import analysis
from neuralc.passes.pipelines import pipeline, tensor_pipeline

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def kernels_at(source: str | Path, level: int = 2):
    m = compile_file(source) if isinstance(source, Path) else compile_source(
        textwrap.dedent(source), "k.nr")
    module, _ = tensor_stage(m, tensor_pipeline(level)[len(pipeline(level)):])
    ks = [op for op in func_body(module.funcs[0]).ops if op.name == "kernel.fused"]
    assert len(ks) == analysis.kernel_count(module)
    return ks


def body(k) -> list[str]:
    return [op.name.split(".")[1] for op in k.regions[0].blocks[0].ops if op.name != "kernel.yield"]


def net(inp: str, layers: str) -> str:
    return f"network N {{\n  input: {inp}\n  layers:\n{textwrap.indent(layers, '    ')}\n}}\n"


def test_conv_batchnorm_relu_is_one_kernel():
    (k,) = kernels_at(net("(h, w, 3)", 'Conv2D(8, 3, padding="same")\nBatchNormalization()\n'
                                       'Activation("relu")'))
    assert body(k) == ["conv", "binary", "unary"]  # BatchNorm folded into the weights and bias


def test_dense_gelu_is_one_kernel():
    (k,) = kernels_at(net("(16,)", 'Dense(32, "gelu")'))
    assert body(k) == ["matmul", "binary", "unary"]


def test_softmax_is_one_kernel():
    dense, softmax = kernels_at(net("(16,)", 'Dense(10)\nActivation("softmax")'))
    assert body(dense) == ["matmul", "binary"]
    # max-reduce, subtract, exp, sum-reduce, divide: all in one kernel.
    assert body(softmax) == ["reduce", "binary", "unary", "reduce", "binary"]


def test_layer_normalization_is_one_kernel():
    dense, norm = kernels_at(net("(seq, 16)", "Dense(16)\nLayerNormalization()"))
    assert body(norm).count("reduce") == 2


def test_residual_add_joins_the_conv_kernel():
    (k,) = kernels_at(net("(h, w, 4)", 'ResidualConnection(activation="relu") {\n'
                                       '  Conv2D(4, 3, padding="same")\n}'))
    assert body(k) == ["conv", "binary", "binary", "unary"]


def test_small_resnet_kernel_count():
    # 10 conv kernels (BN folded, residual adds and activations joined), the stride-2
    # projection shortcut's add and relu joined, one global pool, the classifier matmul and its
    # softmax: 13. A change here is a change in what fusion does: check it on purpose.
    assert len(kernels_at(EXAMPLES / "resnet_small.nr")) == 13


@pytest.mark.parametrize("level,count", [(0, 51), (1, 13), (2, 13), (3, 13)])
def test_resnet_kernels_by_level(level, count):
    assert len(kernels_at(EXAMPLES / "resnet_small.nr", level)) == count


def test_batchnorm_folding_shrinks_the_kernels_at_o2():
    src = net("(h, w, 3)", 'Conv2D(8, 3, padding="same")\nBatchNormalization()\nActivation("relu")')
    (o1,) = kernels_at(src, 1)
    (o2,) = kernels_at(src, 2)
    # -O1 fuses BatchNorm's per-element scale and shift into the conv kernel; -O2 folds them
    # into the weights, leaving one bias add.
    assert len(body(o1)) > len(body(o2)) == 3
