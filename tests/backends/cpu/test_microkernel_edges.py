"""The register-tiled kernels at the edges of their tiles, against the reference interpreter.

The schedule tiles a contraction as rows x vectors (unroll-and-jam) with a masked last vector;
a padded convolution's input loads go through a zero buffer; narrow dense layers run as dot
products. Each case below forces one edge: sizes that are not a multiple of the tile or the
vector (in both M and N), M = 1, K = 1, odd channel counts, stride 2, dilation, groups,
depthwise (with channel multipliers), 1x1 convolutions, padding wider than the kernel's
reach. Runs at -O2 (where weights are packed and tiles jammed) and -O0 (neither), bounds
checks on, at batch 1 and at a batch that is not a multiple of the row tile (cpu_helpers.py
states the tolerance).
"""

from __future__ import annotations

import pytest
from cpu_helpers import check_cpu

from neuralc.driver import compile_source

SIZES = ((1, 5), (13, 7))

CASES = {
    # dense: (in) -> (out); M = batch
    "dense-k1": ("(1,)", "Dense(37)"),
    "dense-n1": ("(70,)", "Dense(1)"),
    "dense-odd": ("(33,)", "Dense(47)"),
    "dense-n-not-vector-multiple": ("(96,)", "Dense(100)"),
    "dense-narrow-long-k": ("(300,)", "Dense(10)"),
    "dense-narrow-short-k": ("(12,)", "Dense(10)"),
    "dense-wide": ("(64,)", "Dense(260, activation=\"gelu\")"),
    # convolutions (NHWC)
    "conv-odd-channels": ("(9, 11, 3)", "Conv2D(5, (3, 3), padding=\"same\")"),
    "conv-stride2": ("(15, 13, 7)", "Conv2D(17, (3, 3), strides=2, padding=\"same\")"),
    "conv-dilation": ("(12, 12, 4)", "Conv2D(8, (3, 3), dilation_rate=2, padding=\"same\")"),
    "conv-groups": ("(10, 10, 8)", "Conv2D(12, (3, 3), groups=4, padding=\"same\")"),
    "conv-1x1": ("(7, 9, 19)", "Conv2D(33, (1, 1))"),
    "conv-5x5-valid": ("(11, 11, 6)", "Conv2D(20, (5, 5), padding=\"valid\")"),
    "conv-wide-pad": ("(4, 4, 3)", "Conv2D(16, (7, 7), padding=\"same\")"),
    "conv-1-channel": ("(8, 8, 1)", "Conv2D(1, (3, 3), padding=\"same\")"),
    "conv-many-out": ("(6, 6, 5)", "Conv2D(70, (3, 3), padding=\"same\", activation=\"relu\")"),
    "depthwise": ("(9, 9, 24)", "DepthwiseConv2D((3, 3), padding=\"same\")"),
    "depthwise-stride2": ("(10, 7, 5)", "DepthwiseConv2D((3, 3), strides=2, padding=\"same\")"),
    # a channel multiplier: output channel c reads input channel c floordiv m (a repeated
    # contiguous load where the vector's lanes divide by m, a gather where they do not)
    "depthwise-multiplier2": ("(7, 6, 24)",
                              "DepthwiseConv2D((3, 3), padding=\"same\", depth_multiplier=2)"),
    "depthwise-multiplier2-tail": ("(5, 5, 13)",
                                   "DepthwiseConv2D((3, 3), padding=\"same\", depth_multiplier=2)"),
    "depthwise-multiplier4": ("(6, 5, 4)", "DepthwiseConv2D((3, 3), depth_multiplier=4)"),
    "depthwise-multiplier3": ("(6, 6, 16)", "DepthwiseConv2D((3, 3), depth_multiplier=3)"),
    "conv1d-stride2": ("(seq, 6)", "Conv1D(9, 3, strides=2, padding=\"same\")"),
    # transposed convolutions (weights packed (*k, in, out)): a window equal to the stride
    # has one tap per output (no tap reduction), others reduce over guarded taps
    "conv-transpose-k2-s2": ("(5, 6, 7)", "Conv2DTranspose(19, 2, strides=2)"),
    "conv-transpose-k2-s2-same": ("(5, 5, 3)",
                                  "Conv2DTranspose(16, 2, strides=2, padding=\"same\")"),
    "conv-transpose-k3-s2-same": ("(4, 5, 6)",
                                  "Conv2DTranspose(17, 3, strides=2, padding=\"same\")"),
    "conv-transpose-k3-s1": ("(6, 4, 5)", "Conv2DTranspose(8, (3, 2))"),
    "maxpool-same": ("(9, 9, 5)", "MaxPooling2D((3, 3), strides=2, padding=\"same\")"),
}


def _net(shape: str, layer: str) -> str:
    return f"network E {{\n  input: {shape}\n  layers:\n    {layer}\n}}\n"


@pytest.mark.parametrize("level", [0, 2])
@pytest.mark.parametrize("case", sorted(CASES))
def test_tile_edges_match_reference(case: str, level: int) -> None:
    shape, layer = CASES[case]
    check_cpu(compile_source(_net(shape, layer), "edge.nr"), level, SIZES)
