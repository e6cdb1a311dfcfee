"""Window arithmetic: Keras's 'valid', 'same' and 'causal' rules, sliding windows over
channels-last arrays, transposed-convolution lengths and PyTorch's adaptive windows.

One implementation, at the bottom layer, because both the layer catalog (shape rules and numpy
references) and the tensor dialect (conv, pool, resize semantics) use it.
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.dims import Dim, ceildiv, floordiv


def effective_window(k: int, dilation: int) -> int:
    """Extent of a dilated window: ``(k - 1) * dilation + 1``."""
    return (k - 1) * dilation + 1


def window_out_dim(d: Dim, k: int, stride: int, dilation: int, padding: str) -> Dim:
    """Output length of a window sliding over ``d`` (Keras's rule, symbolic dims allowed).

    ``valid``: ``floor((d - eff) / stride) + 1``; ``same`` and ``causal``: ``ceil(d / stride)``.
    """
    if padding in ("same", "causal"):
        return ceildiv(d, stride)
    return floordiv(d - effective_window(k, dilation), stride) + 1


def same_pads(size: int, k: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """Keras/TensorFlow 'same' padding of one axis: (before, after), the extra pixel at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + effective_window(k, dilation) - size, 0)
    return total // 2, total - total // 2


def spatial_pads(shape: tuple[int, ...], kernel: list[int], strides: list[int],
                 dilation: list[int], padding: str) -> list[tuple[int, int]]:
    """Per-axis (before, after) pads for the spatial axes of a channels-last array."""
    spatial = shape[1:-1]
    if padding == "same":
        return [same_pads(s, k, st, dl) for s, k, st, dl in zip(spatial, kernel, strides, dilation)]
    if padding == "causal":
        return [(effective_window(k, dl) - 1, 0) for k, dl in zip(kernel, dilation)]
    return [(0, 0)] * len(spatial)


def pad_spatial(x: np.ndarray, pads: list[tuple[int, int]], value: float = 0.0) -> np.ndarray:
    """Pad the spatial axes (all but the first and last) of a channels-last array."""
    if all(p == (0, 0) for p in pads):
        return x
    return np.pad(x, [(0, 0), *pads, (0, 0)], mode="constant", constant_values=value)


def sliding_windows(x: np.ndarray, kernel: list[int], strides: list[int],
                    dilation: list[int]) -> np.ndarray:
    """Windows of a (padded) channels-last array: ``(N, *out_spatial, C, *kernel)``, a view."""
    n = len(kernel)
    eff = [effective_window(k, d) for k, d in zip(kernel, dilation)]
    v = np.lib.stride_tricks.sliding_window_view(x, eff, axis=tuple(range(1, n + 1)))
    v = v[(slice(None), *(slice(None, None, s) for s in strides), slice(None))]
    return v[(Ellipsis, *(slice(None, None, d) for d in dilation))]


def transpose_out_dim(d: Dim, k: int, stride: int, dilation: int, padding: str,
                      output_padding: int | None) -> Dim:
    """Output length of a Keras transposed convolution (``deconv_output_length``).

    With ``output_padding=None``: ``valid`` gives ``d * stride + max(eff - stride, 0)`` and
    ``same`` gives ``d * stride``. With an ``output_padding`` ``p``: ``valid`` gives
    ``(d - 1) * stride + eff + p`` and ``same`` gives ``(d - 1) * stride + eff % 2 + p``
    (Keras's ``eff - 2 * (eff // 2)``). Linear in ``d``, so symbolic dims stay exact.
    """
    eff = effective_window(k, dilation)
    if output_padding is None:
        if padding == "same":
            return d * stride
        return d * stride + max(eff - stride, 0)
    if padding == "same":
        return (d - 1) * stride + eff % 2 + output_padding
    return (d - 1) * stride + eff + output_padding


def transpose_crop(size: int, k: int, stride: int, dilation: int, out: int) -> int:
    """Elements cropped from the start of the full transposed convolution to give ``out``.

    The full result has ``(size - 1) * stride + eff`` elements; a transposed convolution is
    the adjoint of the forward convolution from ``out`` elements back to ``size``, whose Keras
    'same' padding puts the smaller half first, so the crop is ``max(full - out, 0) // 2``.
    'valid' layers always give ``out >= full`` here, so their crop is 0. Positions past the
    full result (``out > full - crop``) receive no contribution, only the bias.
    """
    full = (size - 1) * stride + effective_window(k, dilation)
    return max(full - out, 0) // 2


def adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive windows: ``[floor(i * size / out), ceil((i + 1) * size / out))``."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_window_total(d: Dim, out: int) -> Dim:
    """Sum of the lengths of the ``out`` adaptive windows over ``d`` elements (symbolic ok)."""
    total: Dim = 0
    for i in range(out):
        total = total + ceildiv((i + 1) * d, out) - floordiv(i * d, out)
    return total
