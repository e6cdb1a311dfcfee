"""Loop lowering of the core tensor ops, checked against the tensor IR (loop interpreter vs
tensor interpreter): elementwise chains, broadcasts, transposes and reshapes inside a kernel,
reductions with their epilogue, matmul with bias and activation, convolution with padding,
stride, dilation and groups, concatenation, slices and gathers."""

from __future__ import annotations

import numpy as np
import pytest
from loop_check import check_source, check_tensor_ir

RNG = np.random.default_rng(11)


def f32(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("fused", [True, False])
def test_elementwise_broadcast_transpose_reshape(fused: bool) -> None:
    text = """
    module @T attributes {dim_nominal = {batch = 1}} {
      func.func @T(%x: tensor<batch x 3 x 4 x f32>, %y: tensor<4 x f32>) -> (tensor<* x f32>) {
        %0 = "tensor.binary"(%x, %y) {fn = "mul"} : (tensor<batch x 3 x 4 x f32>, tensor<4 x f32>) -> tensor<* x f32>
        %1 = "tensor.transpose"(%0) {perm = [0, 2, 1]} : (tensor<* x f32>) -> tensor<* x f32>
        %2 = "tensor.reshape"(%1) : (tensor<* x f32>) -> tensor<batch x 12 x f32>
        %3 = "tensor.unary"(%2) {fn = "tanh"} : (tensor<batch x 12 x f32>) -> tensor<* x f32>
        "func.return"(%3) : (tensor<* x f32>) -> ()
      }
    }"""
    for batch in (1, 3):
        check_tensor_ir(text, [f32(batch, 3, 4), f32(4)], fused=fused)


@pytest.mark.parametrize("kind", ["sum", "mean", "max", "min", "prod", "var"])
@pytest.mark.parametrize("keepdims", [True, False])
def test_reductions(kind: str, keepdims: bool) -> None:
    text = f"""
    module @T attributes {{dim_nominal = {{batch = 1}}}} {{
      func.func @T(%x: tensor<batch x 5 x 6 x f32>) -> (tensor<* x f32>) {{
        %0 = "tensor.reduce"(%x) {{axes = [1, -1], keepdims = {str(keepdims).lower()}, kind = "{kind}"}} : (tensor<batch x 5 x 6 x f32>) -> tensor<* x f32>
        %1 = "tensor.unary"(%0) {{fn = "relu"}} : (tensor<* x f32>) -> tensor<* x f32>
        "func.return"(%1) : (tensor<* x f32>) -> ()
      }}
    }}"""
    x = (RNG.standard_normal((2, 5, 6)) * 0.3 + 1).astype(np.float32)
    check_tensor_ir(text, [x], rtol=1e-4)


SOURCES = {
    "softmax_layernorm": """
        network N {
          input: (seq, 16)
          layers:
            Dense(16)
            LayerNormalization()
            Dense(8, "softmax")
        }""",
    "conv_stride_dilation_groups": """
        network N {
          input: (h, w, 4)
          dims { h: 8..32, w: 8..32 }
          layers:
            Conv2D(8, 3, strides=2, padding="same", activation="relu")
            Conv2D(8, 3, dilation_rate=2, padding="same", groups=2)
            Conv2D(6, (1, 3), padding="valid")
            GlobalAveragePooling2D()
        }""",
    "concat_slice_gather": """
        network N {
          input: (seq,)
          dims { seq: 2..16 }
          layers:
            Embedding(20, 6)
            Concatenate(axis=-1) {
              { Dense(3) }
              { Dense(5, "sigmoid") }
            }
            Flatten()
        }""",
}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_models_lower_to_loops_at_every_level(name: str) -> None:
    check_source(SOURCES[name], levels=(0, 1, 2, 3), rtol=1e-4)


def test_attention_without_a_scale_over_a_symbolic_depth() -> None:
    """No ``scale`` and a depth known only at run time: 1/sqrt(d) from d's size (the
    reference takes it from the array), at two depths."""
    text = """
    module @T attributes {dim_nominal = {batch = 1, d = 8}} {
      func.func @T(%q: tensor<batch x 5 x d x f32>, %k: tensor<batch x 7 x d x f32>, %v: tensor<batch x 7 x 4 x f32>) -> (tensor<* x f32>) {
        %0 = "tensor.attention"(%q, %k, %v) {causal = false} : (tensor<batch x 5 x d x f32>, tensor<batch x 7 x d x f32>, tensor<batch x 7 x 4 x f32>) -> tensor<* x f32>
        "func.return"(%0) : (tensor<* x f32>) -> ()
      }
    }"""
    for d in (8, 13):
        check_tensor_ir(text, [f32(2, 5, d), f32(2, 7, d), f32(2, 7, 4)])
