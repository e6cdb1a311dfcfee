"""BatchNormalization and LayerNormalization references against torch.nn modules.

The weights are loaded into torch.nn.BatchNorm*d / torch.nn.LayerNorm with load_state_dict
(strict), which also checks that their names and shapes are PyTorch's. Tolerance: float32
rtol=1e-5, atol=1e-5 (layer norm reduces over at most a few hundred elements).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from layer_helpers import ATOL, RTOL, make_attrs, run_layer, spec, tt

BN = {2: torch.nn.BatchNorm1d, 3: torch.nn.BatchNorm1d, 4: torch.nn.BatchNorm2d,
      5: torch.nn.BatchNorm3d}
CENTER_SCALE = [(True, True), (False, True), (True, False), (False, False)]


@pytest.mark.parametrize("shape", [(4, 6), (2, 7, 5), (3, 5, 6, 4), (1, 8, 8, 3), (2, 3, 4, 5, 6)])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-5])
def test_batch_norm_module(shape: tuple[int, ...], epsilon: float,
                           rng: np.random.Generator) -> None:
    s = spec("BatchNormalization")
    attrs = make_attrs(s, eps=epsilon)
    x = rng.normal(1.0, 2.0, size=shape).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    assert set(w) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    assert w["num_batches_tracked"].shape == () and w["num_batches_tracked"].dtype == np.int64
    m = BN[len(shape)](shape[-1], eps=epsilon)
    m.load_state_dict({k: tt(v) for k, v in w.items()})
    m.eval()
    with torch.no_grad():
        ref = m(tt(x).movedim(-1, 1)).movedim(1, -1).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis", [1, 2, -2, 3])
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_batch_norm_axis_center_scale(axis: int, center: bool, scale: bool,
                                      rng: np.random.Generator) -> None:
    s = spec("BatchNormalization")
    attrs = make_attrs(s, axis, 0.9, center=center, scale=scale)
    x = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    assert ("weight" in w) == scale and ("bias" in w) == center
    ax = axis % 4
    xc = tt(x).movedim(ax, 1)
    ref = F.batch_norm(xc, tt(w["running_mean"]), tt(w["running_var"]),
                       tt(w["weight"]) if scale else None, tt(w["bias"]) if center else None,
                       training=False, eps=attrs["epsilon"])
    np.testing.assert_allclose(y, ref.movedim(1, ax).numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape,axis", [
    ((4, 10), -1), ((2, 7, 12), -1), ((3, 5, 6, 4), -1), ((3, 5, 6, 4), [-2, -1]),
    ((3, 5, 6, 4), [1, 2, 3]), ((2, 4, 3, 5), [3, 2]), ((1, 6, 8), 2),
])
@pytest.mark.parametrize("epsilon", [1e-3, 1e-6])
def test_layer_norm_module(shape: tuple[int, ...], axis: int | list[int], epsilon: float,
                           rng: np.random.Generator) -> None:
    s = spec("LayerNormalization")
    attrs = make_attrs(s, axis=axis, epsilon=epsilon)
    x = rng.normal(0.5, 3.0, size=shape).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    k = len(attrs["axis"])
    m = torch.nn.LayerNorm(shape[-k:], eps=epsilon)
    m.load_state_dict({n: tt(v) for n, v in w.items()})
    with torch.no_grad():
        ref = m(tt(x)).numpy()
    np.testing.assert_allclose(y, ref, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("axis", [1, [1, 3], -3])
@pytest.mark.parametrize("center,scale", CENTER_SCALE)
def test_layer_norm_inner_axes(axis: int | list[int], center: bool, scale: bool,
                               rng: np.random.Generator) -> None:
    """Axes that are not trailing (torch.nn.LayerNorm cannot): written out in torch."""
    s = spec("LayerNormalization")
    attrs = make_attrs(s, axis, center=center, scale=scale)
    x = rng.normal(size=(3, 4, 5, 6)).astype(np.float32)
    y, w = run_layer(s, attrs, [x], rng)
    axes = sorted(a % 4 for a in attrs["axis"])
    t = tt(x)
    mean = t.mean(dim=axes, keepdim=True)
    var = t.var(dim=axes, keepdim=True, unbiased=False)
    ref = (t - mean) / torch.sqrt(var + attrs["epsilon"])
    bshape = [x.shape[a] if a in axes else 1 for a in range(4)]
    if scale:
        ref = ref * tt(w["weight"]).reshape(bshape)
    if center:
        ref = ref + tt(w["bias"]).reshape(bshape)
    assert ("weight" in w) == scale and ("bias" in w) == center
    np.testing.assert_allclose(y, ref.numpy(), rtol=RTOL, atol=ATOL)
