"""The convolution/pooling/resampling family end to end.

- Hand-built torch.nn counterparts of examples/mobilenet_tiny.nr and examples/unet_small.nr:
  their state_dict keys are exactly neuralc's weight names; each is saved with safetensors,
  loaded with neuralc.runtime.weights.load_weights, and the reference interpreter must give
  what the torch module gives (at two batch sizes; MobileNet also at an odd and an even image
  size, which exercise Keras's asymmetric 'same' padding of strided layers).
- Networks written in the DSL that use every other op kind of the family, so each torch-oracle
  rule in oracle_conv.py is exercised through the frontend (argument forms included).
Tolerance: float32, rtol=1e-4, atol=1e-5 as test_examples.py (chains of up to ~20 layers).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch_oracle import run_torch

from neuralc.driver import compile_file, compile_source
from neuralc.ir.core import func_body
from neuralc.ir.dims import evaluate
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, load_weights, weight_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RTOL, ATOL = 1e-4, 1e-5


def keras_same(x: torch.Tensor, k: int, s: int) -> torch.Tensor:
    """Keras's 'same' padding of an NCHW tensor for a square window (extra pixel at the end)."""
    pads: list[int] = []
    for size in (x.shape[3], x.shape[2]):  # F.pad wants the last axis first
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def bn(c: int) -> nn.BatchNorm2d:
    """Keras's BatchNormalization default epsilon, with non-trivial statistics and affine."""
    m = nn.BatchNorm2d(c, eps=1e-3)
    with torch.no_grad():
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(0.5, 2.0)
        m.weight.uniform_(0.5, 1.5)
        m.bias.uniform_(-0.5, 0.5)
    return m


class Separable(nn.Module):
    """SeparableConv2D: children named as neuralc's weights (depthwise.*, pointwise.*)."""

    def __init__(self, cin: int, filters: int, k: int, bias: bool, dm: int = 1):
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin * dm, k, padding=k // 2, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin * dm, filters, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


class MobileNetTiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(3, 16, 3, stride=2, bias=False)
        self.batch_normalization = bn(16)
        self.depthwise_conv2d = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.batch_normalization_1 = bn(16)
        self.conv2d_1 = nn.Conv2d(16, 24, 1, bias=False)
        self.batch_normalization_2 = bn(24)
        self.depthwise_conv2d_1 = nn.Conv2d(24, 24, 3, stride=2, groups=24, bias=False)
        self.batch_normalization_3 = bn(24)
        self.conv2d_2 = nn.Conv2d(24, 32, 1, bias=False)
        self.batch_normalization_4 = bn(32)
        self.depthwise_conv2d_2 = nn.Conv2d(32, 64, 3, padding=1, groups=32)
        self.separable_conv2d = Separable(64, 48, 3, bias=False)
        self.batch_normalization_5 = bn(48)
        self.output = nn.Linear(48, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        x = F.relu6(self.batch_normalization(self.conv2d(keras_same(x, 3, 2))))
        x = F.relu6(self.batch_normalization_1(self.depthwise_conv2d(x)))
        x = F.relu6(self.batch_normalization_2(self.conv2d_1(x)))
        x = F.relu6(self.batch_normalization_3(self.depthwise_conv2d_1(keras_same(x, 3, 2))))
        x = F.relu6(self.batch_normalization_4(self.conv2d_2(x)))
        x = F.relu6(self.depthwise_conv2d_2(x))
        x = F.relu6(self.batch_normalization_5(self.separable_conv2d(x)))
        x = x.mean(dim=(2, 3))  # GlobalAveragePooling2D; Dropout is the identity at inference
        return torch.softmax(self.output(x), dim=-1)


class UNetSmall(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.batch_normalization = bn(8)
        self.conv2d_1 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.batch_normalization_1 = bn(16)
        self.conv2d_2 = nn.Conv2d(16, 32, 3, stride=2)
        self.conv2d_3 = nn.Conv2d(32, 32, 3, padding=1, bias=False)
        self.batch_normalization_2 = bn(32)
        self.conv2d_transpose = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.conv2d_4 = nn.Conv2d(32, 16, 3, padding=1, bias=False)
        self.batch_normalization_3 = bn(16)
        self.conv2d_5 = nn.Conv2d(16, 8, 3, padding=1)
        self.conv2d_6 = nn.Conv2d(16, 8, 3, padding=1, bias=False)
        self.batch_normalization_4 = bn(8)
        self.conv2d_7 = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        e1 = F.relu(self.batch_normalization(self.conv2d(x)))  # 64x64
        e2 = F.relu(self.batch_normalization_1(self.conv2d_1(F.max_pool2d(e1, 2))))  # 32x32
        b = F.relu(self.conv2d_2(keras_same(e2, 3, 2)))  # 16x16
        b = F.relu(self.batch_normalization_2(self.conv2d_3(b)))
        d = torch.cat([e2, self.conv2d_transpose(b)], dim=1)  # 32x32
        d = F.relu(self.batch_normalization_3(self.conv2d_4(d)))
        d = F.interpolate(d, scale_factor=2, mode="bilinear", align_corners=False)
        d = F.relu(self.conv2d_5(d))
        y = torch.cat([e1, d], dim=1)  # 64x64
        y = F.relu(self.batch_normalization_4(self.conv2d_6(y)))
        return torch.softmax(self.conv2d_7(y), dim=1).permute(0, 2, 3, 1)


@pytest.mark.parametrize("example,model_cls,sizes", [
    ("mobilenet_tiny", MobileNetTiny, [(1, 17, 24), (3, 24, 13)]),
    ("unet_small", UNetSmall, [(1, 64, 64), (2, 64, 64)]),
])
def test_counterpart_module(example: str, model_cls: type, sizes: list[tuple[int, int, int]],
                            tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = model_cls().eval()
    module = compile_file(EXAMPLES / f"{example}.nr").module
    state = model.state_dict()
    assert sorted(state) == sorted(weight_specs(module))
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    weights = load_weights(path, module)
    rng = np.random.default_rng(0)
    for batch, h, w in sizes:
        x = rng.standard_normal((batch, h, w, 3)).astype(np.float32)
        (ours,) = run_module(module, [x], weights)
        with torch.no_grad():
            theirs = model(torch.from_numpy(x)).numpy()
        assert ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


FAMILY = """
network Sequences {
  input: (t, 6)
  layers:
    ZeroPadding1D((1, 2))
    DepthwiseConv1D(3, "relu", depth_multiplier=2, padding="same")
    SeparableConv1D(8, 3, "tanh", strides=2, padding="same", depth_multiplier=2)
    Conv1DTranspose(6, 3, strides=2, padding="same", output_padding=1)
    UpSampling1D(2)
    Cropping1D((1, 0))
    AdaptiveMaxPooling1D(5)
    Permute((2, 1))
    AdaptiveAveragePooling1D(4)
    Flatten()
    RepeatVector(3)
}

network Volumes {
  input: (5, d, 7, 2)
  layers:
    Conv3D(4, 3, strides=2, padding="same", dilation_rate=1, groups=2)
    ZeroPadding3D(((0, 1), 1, (2, 0)))
    Conv3DTranspose(3, 2, "relu", strides=(1, 2, 2), output_padding=(0, 1, 0))
    Cropping3D(((1, 0), (0, 1), 1))
    MaxPooling3D(2, padding="same")
    AveragePooling3D((2, 1, 2), strides=1, padding="same")
    UpSampling3D((1, 2, 1))
    AdaptiveMaxPooling3D((2, 3, 2))
    AdaptiveAveragePooling3D(1)
    GlobalMaxPooling3D()
}

network Images {
  input: (h, w, 3)
  layers:
    ZeroPadding2D(((1, 2), (0, 1)))
    Conv2DTranspose(4, 3, strides=2, padding="same", groups=1)
    DepthwiseConv2D((3, 2), strides=2, padding="same")
    SeparableConv2D(5, 3, "relu", padding="same", dilation_rate=2)
    Cropping2D((1, (0, 2)))
    UpSampling2D((2, 1), interpolation="bilinear")
    AdaptiveAveragePooling2D((3, 4))
    AdaptiveMaxPooling2D(2)
    Flatten()
}
"""


@pytest.mark.parametrize("network", ["Sequences", "Volumes", "Images"])
def test_family_ops_against_torch_oracle(network: str) -> None:
    model = compile_source(FAMILY, "family.nr", network=network)
    module = model.module
    weights = init_weights(module, seed=2)
    args = func_body(module.funcs[0]).args
    ret = func_body(module.funcs[0]).ops[-1]
    rng = np.random.default_rng(1)
    for batch, other in ((1, 9), (3, 14)):
        sizes = {"batch": batch, "t": other, "d": other, "h": other, "w": other + 3}
        xs = [rng.standard_normal(tuple(evaluate(d, sizes) for d in a.type.shape))
              .astype(np.float32) for a in args]
        ours = run_module(module, xs, weights)
        theirs = run_torch(module, xs, weights)
        for y, t, v in zip(ours, theirs, ret.operands):
            assert y.shape == tuple(evaluate(d, sizes) for d in v.type.shape)
            np.testing.assert_allclose(y, t, rtol=RTOL, atol=ATOL)


def test_frontend_binds_nested_forms() -> None:
    """Nested tuples from the DSL reach the ops in canonical form."""
    model = compile_source(FAMILY, "family.nr", network="Images")
    ops = {op.attributes["name"]: op.attributes for op in func_body(model.module.funcs[0]).ops
           if "name" in op.attributes}
    assert ops["zero_padding2d"]["padding"] == [[1, 2], [0, 1]]
    assert ops["cropping2d"]["cropping"] == [[1, 1], [0, 2]]
    assert ops["up_sampling2d"]["size"] == [2, 1]
    assert ops["conv2d_transpose"]["output_padding"] is None


@pytest.mark.parametrize("network", ["Sequences", "Volumes", "Images"])
def test_family_graph_ir_round_trips_and_verifies(network: str) -> None:
    from neuralc.ir.parser import parse_module
    from neuralc.ir.printer import print_module
    from neuralc.ir.verifier import verify

    module = compile_source(FAMILY, "family.nr", network=network).module
    text = print_module(module)
    again = parse_module(text, "rt.nir")
    assert print_module(again) == text
    assert not verify(again)
