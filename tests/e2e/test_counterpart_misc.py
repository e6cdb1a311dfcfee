"""Issue 3's layers end to end: a hand-built torch.nn counterpart of examples/se_resnet_block.nr,
the torch oracle's rules for every new op kind, and located errors from the frontend.

The counterpart's state_dict keys are exactly neuralc's weight names; it is saved with
safetensors, loaded with neuralc.runtime.weights.load_weights, and the reference interpreter
must give what the torch module gives. Tolerance: float32, rtol=1e-4, atol=1e-5 as
test_examples.py (three 3x3x16 convolutions and three group norms chained).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from torch_oracle import act, run_torch

from neuralc.diagnostics import CompileError
from neuralc.driver import compile_file, compile_source
from neuralc.ir.activations import apply_activation
from neuralc.ir.core import func_body
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.weights import init_weights, load_weights, weight_specs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "se_resnet_block.nr"
RTOL, ATOL = 1e-4, 1e-5


class SEGate(nn.Module):
    """Squeeze-and-excitation on channels-first maps; children named as neuralc's weights."""

    def __init__(self, channels: int, ratio: int):
        super().__init__()
        self.fc1 = nn.Linear(channels, channels // ratio)
        self.fc2 = nn.Linear(channels // ratio, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3))
        g = torch.sigmoid(self.fc2(torch.relu(self.fc1(s))))
        return x * g[:, :, None, None]


class SEResNetBlock(nn.Module):
    """examples/se_resnet_block.nr written as a PyTorch model (channels-first inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2d = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.group_normalization = nn.GroupNorm(4, 16, eps=1e-3)
        self.p_re_lu = nn.PReLU(16)
        self.conv2d_1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.group_normalization_1 = nn.GroupNorm(4, 16, eps=1e-3)
        self.p_re_lu_1 = nn.PReLU(16)
        self.conv2d_2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.group_normalization_2 = nn.GroupNorm(4, 16, eps=1e-3)
        self.squeeze_excitation = SEGate(16, 4)
        self.spatial_dropout2d = nn.Dropout2d(0.1)
        self.output = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2)
        x = self.p_re_lu(self.group_normalization(self.conv2d(x)))
        body = self.p_re_lu_1(self.group_normalization_1(self.conv2d_1(x)))
        body = self.squeeze_excitation(self.group_normalization_2(self.conv2d_2(body)))
        x = torch.relu(x + body)
        x = self.spatial_dropout2d(x).mean(dim=(2, 3))
        return torch.softmax(self.output(x), dim=-1)


def _randomise(model: nn.Module) -> None:
    """Norm affines and PReLU slopes away from their constant defaults, so they matter."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "group_normalization" in name or "p_re_lu" in name:
                p.copy_(torch.rand(p.shape, generator=g) * 0.8 + 0.2 if "weight" in name
                        else torch.randn(p.shape, generator=g) * 0.3)


def test_se_resnet_block_counterpart(tmp_path: Path) -> None:
    module = compile_file(EXAMPLE).module
    torch.manual_seed(0)
    model = SEResNetBlock()
    _randomise(model)
    model.eval()
    state = model.state_dict()
    specs = weight_specs(module)
    assert list(state) == list(specs)
    for k, t in state.items():
        assert tuple(t.shape) == specs[k].shape, k
    path = tmp_path / "se.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    weights = load_weights(path, module)
    rng = np.random.default_rng()
    for batch, h, w in ((1, 9, 12), (3, 16, 7)):
        x = rng.standard_normal((batch, h, w, 3)).astype(np.float32)
        (ours,) = run_module(module, [x], weights)
        with torch.no_grad():
            theirs = model(torch.from_numpy(x)).numpy()
        assert ours.shape == (batch, 10)
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


# -- the oracle's rules for every new op kind, against the reference interpreter ----------------

ORACLE_MODELS = {
    "images": """
network Images {
  input: (h, w, 8)
  layers:
    GaussianNoise(0.1)
    InstanceNormalization()
    ReLU(max_value=2.0, negative_slope=0.1, threshold=0.5)
    GroupNormalization(groups=-1, center=false)
    SpatialDropout2D(0.2)
    GaussianDropout(0.3)
    AlphaDropout(0.1)
    ActivityRegularization(l1=0.01)
    LeakyReLU()
    GroupNormalization(2, axis=-1, scale=false)
    PReLU(1)
    SqueezeExcitation(2)
    RMSNormalization(axis=[1, 2], scale=false)
    ELU(0.7)
    Conv2D(4, 1, activation="hard_swish")
    InstanceNormalization(epsilon=1e-5, scale=false)
    Softmax(axis=[1, 2])
}
""",
    "sequences": """
network Sequences {
  input: (t, 6)
  layers:
    SpatialDropout1D(0.2, 3)
    RMSNormalization(scale=false)
    SqueezeExcitation(ratio=3)
    Dense(5, activation="mish")
    PReLU()
    Softmax(1)
    Dense(4, activation="log_softmax")
}
""",
    "volumes": """
network Volumes {
  input: (d, 4, 5, 3)
  layers:
    SpatialDropout3D(0.5)
    InstanceNormalization(axis=2, center=false)
    GroupNormalization(groups=3)
    SqueezeExcitation(ratio=1)
    RMSNormalization(axis=3)
    ReLU(6.0)
}
""",
}


@pytest.mark.parametrize("name", ORACLE_MODELS)
def test_oracle_rules_match_the_interpreter(name: str) -> None:
    module = compile_source(ORACLE_MODELS[name], f"{name}.nr").module
    kinds = {op.name for op in func_body(module.funcs[0]).ops}
    assert len(kinds) >= 6
    weights = init_weights(module, seed=5)
    rng = np.random.default_rng()
    for k, v in weights.items():  # norm affines and PReLU slopes away from their constants
        if "normalization." in k or "re_lu." in k:
            weights[k] = (rng.uniform(0.3, 1.5, v.shape) if k.endswith(".weight")
                          else rng.normal(0.0, 0.5, v.shape)).astype(np.float32)
    for batch, other in ((1, 5), (3, 7)):
        shapes = [tuple(batch if str(d) == "batch" else other if not isinstance(d, int) else d
                        for d in a.type.shape) for a in func_body(module.funcs[0]).args]
        xs = [rng.normal(0.0, 2.0, s).astype(np.float32) for s in shapes]
        (ours,) = run_module(module, xs, weights)
        (theirs,) = run_torch(module, xs, weights)
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", ["hard_swish", "mish", "log_softmax"])
def test_core_oracle_act_knows_the_new_activations(name: str) -> None:
    x = np.random.default_rng().uniform(-12, 12, size=(3, 4, 9)).astype(np.float32)
    ref = apply_activation(name, x)
    np.testing.assert_allclose(act(name, torch.from_numpy(x)).numpy(), ref, rtol=1e-5, atol=1e-5)


def test_core_oracle_act_hand_values() -> None:
    t = torch.tensor([[-4.0, -3.0, 0.0, 1.0, 3.0]])
    np.testing.assert_allclose(act("hard_swish", t).numpy(), [[0, 0, 0, 4 / 6, 3]], atol=1e-7)
    assert act("mish", torch.tensor([0.0])).item() == 0.0
    ls = act("log_softmax", torch.tensor([[0.0, float(np.log(3.0))]])).numpy()
    np.testing.assert_allclose(ls, [[np.log(0.25), np.log(0.75)]], rtol=1e-6)
    np.testing.assert_allclose(F.softmax(torch.tensor(ls), -1).sum().item(), 1.0, rtol=1e-6)


# -- errors in model files are located diagnostics -------------------------------------------


@pytest.mark.parametrize("layers,message", [
    ("Conv2D(12, 3)\n    GroupNormalization(groups=5)",
     "GroupNormalization groups=5 must divide the number of channels 12"),
    ("Conv2D(8, 3)\n    SqueezeExcitation(ratio=16)",
     "SqueezeExcitation ratio=16 leaves 8 // 16 = 0 hidden units"),
    ("Flatten()\n    SpatialDropout2D(0.1)",
     "SpatialDropout2D expects input (batch, height, width, channels), got (batch, "),
    ("Flatten()\n    InstanceNormalization()",
     "InstanceNormalization expects input (batch, ..., channels) with at least one spatial"),
    ("Conv2D(8, 3)\n    PReLU(num_parameters=3)",
     "PReLU num_parameters=3 does not match the 8 channels"),
])
def test_shape_errors_are_located(layers: str, message: str) -> None:
    src = f"network Bad {{\n  input: (16, 16, 3)\n  layers:\n    {layers}\n    Output(2)\n}}\n"
    with pytest.raises(CompileError) as e:
        compile_source(src, "bad.nr")
    assert message in str(e.value)
    (diag,) = e.value.diagnostics
    assert str(diag.location).startswith("bad.nr:5:5")
    assert diag.notes  # every rule gives a suggestion


@pytest.mark.parametrize("call,message", [
    ("GaussianNoise(1.5)", "'stddev' must be a number in [0, 1], got 1.5"),
    ("GaussianDropout(1.0)", "'rate' must be a number in [0, 1), got 1.0"),
    ("ReLU(max_value=-1)", "'max_value' must be a number >= 0, got -1"),
    ("LeakyReLU(alpha=-0.1)", "'negative_slope' must be a number >= 0"),
    ("GroupNormalization(groups=0)", "'groups' must be a positive integer or -1"),
    ("SqueezeExcitation(ratio=0)", "'ratio' must be a positive integer, got 0"),
])
def test_param_errors_are_located(call: str, message: str) -> None:
    src = f"network Bad {{\n  input: (16, 16, 8)\n  layers:\n    {call}\n    Output(2)\n}}\n"
    with pytest.raises(CompileError) as e:
        compile_source(src, "bad.nr")
    assert message in str(e.value)
