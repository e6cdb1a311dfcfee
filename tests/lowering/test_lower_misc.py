"""Lowering of normalisation, activation, regularisation, merge, reshaping, embedding and
squeeze-and-excitation layers, and of the example models built from them.

Each case compiles a small network, lowers it, and compares the tensor IR with the graph IR in
the reference interpreter on the same weights and fresh random inputs at two sizes of every
symbol (``check_lowering``); the cases mirror the parity tests in ``tests/layers``. Weights are
drawn at random here (the initialisers' constants, BatchNorm's zero means and unit variances,
the norms' unit scales, PReLU's 0.25, would leave most terms of a lowering untested). Beyond
the numbers, the tests pin the patterns later passes rely on: BatchNorm folds into a preceding
matmul, each normalisation fuses into one kernel, identity layers leave no op.

Tolerance: float32, rtol = atol = 1e-5 (the graph references compute in float64 and round
once; the tensor ops round after each op and sum in float32 in matmuls). The example models,
whose chains of convolutions and normalisations are deeper, use rtol = atol = 1e-4.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import lowering_helpers
import numpy as np
import pytest
from lowering_helpers import check_lowering, compile_any, lowered

from neuralc.ir.activations import activation_defs
from neuralc.ir.core import func_body
from neuralc.layers import catalog
from neuralc.passes.fold_batchnorm import is_load_time
from neuralc.runtime.interpreter import run_module
from neuralc.runtime.signature import InputError
from neuralc.runtime.weights import init_weights

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(autouse=True)
def random_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    """``check_lowering`` draws weights at random: float weights get N(0, 0.5^2) noise added,
    running variances are U(0.5, 2), counters stay as initialised."""

    def init(module, seed: int = 0, func_name: str | None = None) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        out: dict[str, np.ndarray] = {}
        for name, w in init_weights(module, seed, func_name).items():
            if w.dtype.kind != "f":
                out[name] = w
            elif name.endswith("running_var"):
                out[name] = rng.uniform(0.5, 2.0, w.shape).astype(w.dtype)
            else:
                out[name] = (w + rng.normal(0.0, 0.5, w.shape)).astype(w.dtype)
        return out

    monkeypatch.setattr(lowering_helpers, "init_weights", init)


def net(inp: str, *layers: str) -> str:
    body = "\n".join(f"    {layer}" for layer in layers)
    return f"network N {{\n  input: {inp}\n  layers:\n{body}\n}}\n"


def op_names(low) -> list[str]:
    return [op.name for op in func_body(low.funcs[0]).ops if op.name != "func.return"]


def compute_ops(low) -> list[str]:
    """The ops that touch activations: constants left out."""
    return [n for n in op_names(low) if n != "tensor.constant"]


def flag(v: bool) -> str:
    return "true" if v else "false"


CENTER_SCALE = [(True, True), (True, False), (False, True), (False, False)]


# -- BatchNormalization ----------------------------------------------------------------------


@pytest.mark.parametrize("inp", ["(6,)", "(seq, 5)", "(h, w, 3)", "(2, 3, 4, 5)"])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_batch_norm(inp: str, epsilon: float) -> None:
    low = check_lowering(net(inp, f"BatchNormalization(epsilon={epsilon})"))
    # Inference BatchNorm is an affine map: no reduction over the activations.
    assert "tensor.reduce" not in op_names(low)


@pytest.mark.parametrize("axis", [1, 2, -2, 3])
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_batch_norm_axis_center_scale(axis: int, center: bool, scale: bool) -> None:
    check_lowering(net("(4, 5, 3)",
                       f"BatchNormalization(axis={axis}, center={flag(center)}, "
                       f"scale={flag(scale)})"))


def test_batch_norm_folds_into_the_preceding_matmul() -> None:
    """The lowering's ``x * scale + shift`` is the pattern ``fold-batchnorm`` folds."""
    src = net("(seq, 6)", "Dense(4)", "BatchNormalization()", "Dense(3, use_bias=false)",
              "BatchNormalization(center=false)")
    low = check_lowering(src, passes="lower-to-tensor,fold-batchnorm,canonicalize,dce")
    muls = [op for op in func_body(low.funcs[0]).ops
            if op.name == "tensor.binary" and op.attributes["fn"] == "mul"]
    # Every multiply left scales weights (once, at load time); none touches the activations.
    assert muls and all(is_load_time(op.result) for op in muls)


# -- LayerNormalization, GroupNormalization, InstanceNormalization, RMSNormalization -----------


@pytest.mark.parametrize("inp,axis", [
    ("(6,)", "-1"), ("(seq, 6)", "-1"), ("(seq, 4, 5)", "[-2, -1]"), ("(3, 4, 5)", "[1, 2, 3]"),
    ("(3, 4, 5)", "1"), ("(3, 4, 5)", "[1, 3]"), ("(3, 4, 5)", "-3"), ("(seq, 4, 5)", "[3, 2]"),
], ids=str)
@pytest.mark.parametrize("epsilon", [1e-3, 1e-6])
def test_layer_norm(inp: str, axis: str, epsilon: float) -> None:
    low = check_lowering(net(inp, f"LayerNormalization(axis={axis}, epsilon={epsilon})"))
    assert op_names(low).count("tensor.reduce") == 2


@pytest.mark.parametrize("axis", ["-1", "[1, 3]"])
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_layer_norm_center_scale_symbolic(axis: str, center: bool, scale: bool) -> None:
    inp = "(seq, 4, 5)" if axis == "-1" else "(3, seq, 5)"
    check_lowering(net(inp, f"LayerNormalization(axis={axis}, center={flag(center)}, "
                            f"scale={flag(scale)})"))


def test_layer_norm_without_affine_over_a_symbolic_axis() -> None:
    check_lowering(net("(seq, 4)", "LayerNormalization(axis=1, center=false, scale=false)"))


@pytest.mark.parametrize("inp", ["(12,)", "(t, 12)", "(h, w, 12)", "(2, h, 3, 12)"])
@pytest.mark.parametrize("groups", [1, 3, 4, 12, -1])
def test_group_norm(inp: str, groups: int) -> None:
    check_lowering(net(inp, f"GroupNormalization(groups={groups})"))


@pytest.mark.parametrize("axis", [-1, 1, 2])
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_group_norm_axis_center_scale(axis: int, center: bool, scale: bool) -> None:
    check_lowering(net("(6, 6, 6)", f"GroupNormalization(groups=3, axis={axis}, "
                                    f"center={flag(center)}, scale={flag(scale)})"))


@pytest.mark.parametrize("inp", ["(t, 6)", "(h, w, 6)", "(d, 3, w, 6)"])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_instance_norm(inp: str, epsilon: float) -> None:
    check_lowering(net(inp, f"InstanceNormalization(epsilon={epsilon})"))


@pytest.mark.parametrize("axis", [-1, 1, 2])
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_instance_norm_axis_center_scale(axis: int, center: bool, scale: bool) -> None:
    check_lowering(net("(5, 5, 5)", f"InstanceNormalization(axis={axis}, "
                                    f"center={flag(center)}, scale={flag(scale)})"))


def test_instance_norm_without_affine_on_symbolic_channels() -> None:
    check_lowering(net("(t, c)", "InstanceNormalization(center=false, scale=false)"))


@pytest.mark.parametrize("inp,axis", [
    ("(8,)", "-1"), ("(t, 8)", "-1"), ("(h, w, 8)", "-1"), ("(t, 4, 5)", "[-2, -1]"),
    ("(3, 4, 5)", "[2, 3]"), ("(3, 4, 5)", "[1, 2, 3]"), ("(3, t, 5)", "[1, 3]"),
], ids=str)
@pytest.mark.parametrize("scale", [True, False])
def test_rms_norm(inp: str, axis: str, scale: bool) -> None:
    if scale and axis == "[1, 3]":
        inp = "(3, 4, 5)"  # a weight over the normalised axes needs them static
    low = check_lowering(net(inp, f"RMSNormalization(axis={axis}, epsilon=1e-5, "
                                  f"scale={flag(scale)})"))
    assert op_names(low).count("tensor.reduce") == 1


def test_rms_norm_without_scale_over_a_symbolic_axis() -> None:
    check_lowering(net("(3, t)", "RMSNormalization(axis=[1, 2], scale=false)"))


@pytest.mark.parametrize("layer", [
    "LayerNormalization()", "LayerNormalization(axis=[2, 3])", "RMSNormalization()",
    "BatchNormalization()", "BatchNormalization(axis=2)",
])
def test_each_normalisation_fuses_into_one_kernel(layer: str) -> None:
    """Reductions over the innermost axes plus elementwise ops: one fused kernel."""
    low = check_lowering(net("(seq, 6, 4)", layer), passes="lower-to-tensor,fuse")
    assert op_names(low).count("kernel.fused") == 1, op_names(low)


@pytest.mark.parametrize("layer", [
    "GroupNormalization(2)", "GroupNormalization(2, axis=2)", "InstanceNormalization()",
    "Softmax(axis=[1, 2])",
])
def test_statistics_over_outer_axes_get_their_own_kernels(layer: str) -> None:
    """A reduction over axes that are not innermost, broadcast back over its input, stays out of
    the consumer's kernel (loop code would recompute it for every element): the two statistics
    (mean and variance, or max and sum) and the elementwise result are three kernels."""
    low = check_lowering(net("(seq, 6, 4)", layer), passes="lower-to-tensor,fuse")
    assert op_names(low).count("kernel.fused") == 3, op_names(low)


# -- activation layers ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(d.name for d in activation_defs()))
def test_activation(name: str) -> None:
    check_lowering(net("(t, 7)", f'Activation("{name}")'))


@pytest.mark.parametrize("name,alpha", [("leaky_relu", 0.1), ("leaky_relu", 0.0), ("elu", 0.5),
                                        ("elu", 2.0)])
def test_activation_alpha(name: str, alpha: float) -> None:
    check_lowering(net("(h, w, 3)", f'Activation("{name}", {alpha})'))


@pytest.mark.parametrize("args,thresholded", [
    ("", False), ("max_value=6.0", False), ("max_value=4.0", False), ("max_value=0.0", False),
    ("negative_slope=0.2", False), ("threshold=1.0", True), ("None, 0.2, 1.0", True),
    ("4.0, 0.5, 0.0", False), ("1.0, 0.3, 2.0", True), ("0.0, 1.5, 0.0", False),
    ("6.0, 0.1, 0.5", True),
], ids=str)
def test_relu(args: str, thresholded: bool) -> None:
    low = check_lowering(net("(h, w, 3)", f"ReLU({args})"))
    # Only a positive threshold needs compare + select; otherwise relu (or relu6) and min/max.
    assert ("tensor.compare" in op_names(low)) == thresholded


@pytest.mark.parametrize("args", ["threshold=1.0", "1.5, 0.5, 1.0", "None, 0.25, 2.0"])
def test_relu_hand_values_at_the_threshold(args: str) -> None:
    """Keras's strict test: x == threshold takes the slope branch (which is 0 there)."""
    model = compile_any(net("(8,)", f"ReLU({args})"))
    low = lowered(model.module)
    x = np.array([[-3.0, -1.0, 0.0, 0.5, 1.0, 1.25, 2.0, 5.0]], np.float32)
    (want,) = run_module(model.module, [x], {})
    (got,) = run_module(low, [x], {})
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("args", ["", "0.01", "negative_slope=0.0", "alpha=2.0"])
def test_leaky_relu(args: str) -> None:
    check_lowering(net("(t, 5)", f"LeakyReLU({args})"))


@pytest.mark.parametrize("args", ["", "0.5", "alpha=2.0", "alpha=-1.0"])
def test_elu(args: str) -> None:
    check_lowering(net("(h, w, 4)", f"ELU({args})"))


@pytest.mark.parametrize("inp", ["(6,)", "(t, 6)", "(h, w, 6)", "(d, h, w, 6)"])
def test_prelu_per_channel(inp: str) -> None:
    check_lowering(net(inp, "PReLU()"))


@pytest.mark.parametrize("inp", ["(6,)", "(t, c)", "(h, w, 5)"])
def test_prelu_shared_slope(inp: str) -> None:
    check_lowering(net(inp, "PReLU(1, init=0.1)"))


@pytest.mark.parametrize("axis", ["-1", "1", "2", "[1, 2]", "[-1, 1]", "[1, 2, 3]"], ids=str)
def test_softmax(axis: str) -> None:
    low = check_lowering(net("(h, w, 5)", f"Softmax(axis={axis})"))
    reduces = [op for op in func_body(low.funcs[0]).ops if op.name == "tensor.reduce"]
    assert [r.attributes["kind"] for r in reduces] == ["max", "sum"]
    assert reduces[0].attributes["axes"] == reduces[1].attributes["axes"]


# -- regularisation: identity at inference -------------------------------------------------------

IDENTITY_LAYERS = [
    ("(t, 6)", "Dropout(0.5)"), ("(t, 6)", "Dropout(0.2, noise_shape=(None, 1, 6))"),
    ("(t, 6)", "SpatialDropout1D(0.3)"), ("(h, w, 6)", "SpatialDropout2D(0.3)"),
    ("(d, h, w, 6)", "SpatialDropout3D(0.3)"), ("(t, 6)", "GaussianNoise(0.1)"),
    ("(t, 6)", "GaussianDropout(0.2)"), ("(t, 6)", "AlphaDropout(0.1)"),
    ("(t, 6)", "ActivityRegularization(l1=0.01, l2=0.001)"),
]


@pytest.mark.parametrize("inp,layer", IDENTITY_LAYERS, ids=str)
def test_identity_layers_leave_no_op(inp: str, layer: str) -> None:
    low = check_lowering(net(inp, "Dense(6)", layer, "Dense(2)"))
    assert compute_ops(low) == ["tensor.matmul", "tensor.binary"] * 2


@pytest.mark.parametrize("inp,layer", IDENTITY_LAYERS, ids=str)
def test_identity_layers_go_in_simplify_inference(inp: str, layer: str) -> None:
    """Marked ``identity_at_inference``: the graph-level pass removes them before lowering."""
    model = compile_any(net(inp, layer, "Dense(2)"))
    graph = lowered(model.module, "simplify-inference,lower-to-tensor")
    assert compute_ops(graph) == ["tensor.matmul", "tensor.binary"]


def test_every_regularisation_layer_is_marked() -> None:
    from neuralc.layers import regularization

    specs = [v for v in vars(regularization).values() if isinstance(v, catalog.LayerSpec)]
    assert len(specs) == 8
    for s in specs:
        assert s.extra.get("identity_at_inference") is True, s.name
        assert s.lower is not None


# -- merges ------------------------------------------------------------------------------------


def branches(n: int, inner: str = "Dense(5)") -> str:
    return " ".join(f"{{ {inner} }}" for _ in range(n))


@pytest.mark.parametrize("layer", ["Add", "Multiply", "Average", "Maximum"])
@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("inp", ["(5,)", "(h, w, 5)"])
def test_elementwise_merges(layer: str, n: int, inp: str) -> None:
    check_lowering(net(inp, f"{layer} {{ {branches(n)} }}"))


def test_subtract() -> None:
    check_lowering(net("(t, 5)", "Subtract { { Dense(5) } { Dense(5, \"relu\") } }"))


@pytest.mark.parametrize("layer", ["Add", "Multiply", "Maximum", "Average", "Subtract"])
def test_merges_broadcast_size_one_axes(layer: str) -> None:
    check_lowering(net("{ a: (h, w, 5), g: (1, 1, 5) }", f"{layer}(a, g)"))


@pytest.mark.parametrize("axis", [-1, 1, 2, -2])
@pytest.mark.parametrize("n", [2, 3])
def test_concatenate(axis: int, n: int) -> None:
    ins = []
    for i in range(n):
        shape = [4, 3, 5]
        shape[axis % 4 - 1] += i  # axes count the batch as 0
        ins.append(f"x{i}: ({', '.join(map(str, shape))})")
    names = ", ".join(f"x{i}" for i in range(n))
    low = check_lowering(net("{ " + ", ".join(ins) + " }", f"Concatenate({names}, axis={axis})"))
    assert compute_ops(low) == ["tensor.concat"]


def test_concatenate_symbolic_lengths() -> None:
    check_lowering(net("{ a: (s, 4), b: (r, 4) }", "Concatenate(a, b, axis=1)"))


@pytest.mark.parametrize("act", sorted(d.name for d in activation_defs()))
def test_residual(act: str) -> None:
    check_lowering(net("(t, 6)", f'ResidualConnection(activation="{act}") {{ Dense(6) }}'))


# -- reshaping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("inp", ["(3, 5)", "(2, 4, 6)", "(1, 3, 4, 5)", "(seq, 4)",
                                 "(h, w, 3)", "(7,)"])
def test_flatten(inp: str) -> None:
    low = check_lowering(net(inp, "Flatten()"))
    assert compute_ops(low) == ["tensor.reshape"]


@pytest.mark.parametrize("inp,target", [
    ("(12,)", "(3, 4)"), ("(12,)", "(-1, 2)"), ("(2, 6)", "(3, -1)"), ("(2, 3, 4)", "(24,)"),
    ("(seq, 6)", "(-1, 3)"), ("(seq, 6)", "(2, -1)"), ("(h, w, 4)", "(-1,)"),
    ("(seq, 6)", "(-1, 2, 3)"),
], ids=str)
def test_reshape(inp: str, target: str) -> None:
    check_lowering(net(inp, f"Reshape({target})"))


@pytest.mark.parametrize("inp,dims", [("(t, 5)", "(2, 1)"), ("(h, w, 3)", "(3, 1, 2)"),
                                      ("(2, 3, 4)", "(1, 2, 3)"), ("(h, w, 3)", "(2, 3, 1)")])
def test_permute(inp: str, dims: str) -> None:
    check_lowering(net(inp, f"Permute({dims})"))


@pytest.mark.parametrize("n", [1, 4])
def test_repeat_vector(n: int) -> None:
    low = check_lowering(net("(6,)", "Dense(5)", f"RepeatVector({n})", "Dense(2)"))
    assert "tensor.broadcast" in op_names(low)


# -- embedding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("inp", ["(seq,)", "(seq, 3)", "(5,)"])
def test_embedding(inp: str) -> None:
    low = check_lowering(net(inp, "Embedding(50, 8)", "Dense(3)"))
    assert compute_ops(low)[0] == "tensor.gather"


@pytest.mark.parametrize("bad", [50, -1])
def test_embedding_refuses_out_of_range_indices(bad: int) -> None:
    """As the reference: an error, not numpy's wrap-around for negative indices.

    On the graph IR the run-time input check names the layer first (runtime/sizes.py); the
    lowered gather keeps its own guard for tensor-level modules run directly.
    """
    model = compile_any(net("(4,)", "Embedding(50, 8)"))
    low = lowered(model.module)
    weights = init_weights(model.module, seed=1)
    idx = np.array([[0, 3, bad, 7]], np.int64)
    with pytest.raises(InputError, match=f"token index {bad}"):
        run_module(model.module, [idx], weights)
    with pytest.raises(IndexError, match="out of range"):
        run_module(low, [idx], weights)


# -- SqueezeExcitation -------------------------------------------------------------------------


@pytest.mark.parametrize("inp,ratio", [("(h, w, 8)", 4), ("(t, 6)", 2), ("(d, h, w, 4)", 1),
                                       ("(3, 5, 16)", 16)])
def test_squeeze_excitation(inp: str, ratio: int) -> None:
    low = check_lowering(net(inp, f"SqueezeExcitation(ratio={ratio})"))
    assert compute_ops(low) == ["tensor.reduce", "tensor.matmul", "tensor.binary", "tensor.unary",
                                "tensor.matmul", "tensor.binary", "tensor.unary", "tensor.binary"]


# -- example models ------------------------------------------------------------------------------

EXAMPLE_MODELS = ["mlp", "hpo", "macros", "resnet_small", "two_inputs", "text_embedding",
                  "sequence_dims", "se_resnet_block"]


@pytest.mark.parametrize("name", EXAMPLE_MODELS)
def test_example(name: str) -> None:
    check_lowering(EXAMPLES / f"{name}.nr", rtol=1e-4, atol=1e-4)


def test_every_layer_of_these_families_has_a_rule() -> None:
    families = ("normalization", "activation_layers", "regularization", "merge", "reshaping",
                "embedding", "blocks")
    for fam in families:
        mod = importlib.import_module(f"neuralc.layers.{fam}")
        for v in vars(mod).values():
            if isinstance(v, catalog.LayerSpec):
                assert v.lower is not None, f"{v.name} has no lowering"
