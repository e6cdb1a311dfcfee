"""Importing another framework's weights without silent mistakes.

Two things make a PyTorch ``state_dict`` load into the wrong model without a word:

- **Flatten order.** neuralc is channels-last, so ``Flatten`` of a ``(batch, h, w, c)`` map
  orders features ``(h, w, c)``; a PyTorch CNN flattens NCHW, ``(c, h, w)``. The first Dense
  after such a Flatten has the same shape either way and loads, then computes nonsense.
  ``layout="torch"`` (``--weights-layout torch``) permutes that Dense's input columns from
  ``(c, h, w)`` to ``(h, w, c)``; without it, loading a file that neuralc did not write warns.
- **Layer names.** ``conv1.weight`` is not ``conv2d.weight``; a suggestion by spelling would pair
  ``conv1`` with ``conv2d_1``. Suggestions here go by structure: the file's layers and the
  network's, in order, with the same parameters and shapes.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import numpy as np

from neuralc.ir.core import Module, Op, OpResult, func_body
from neuralc.runtime.signature import select_func

# Written into every safetensors file neuralc (or a script it generated) saves: its tensors are
# in neuralc's layouts, so the Flatten-order warning does not apply.
LAYOUT_KEY = "neuralc_layout"
NEURALC_LAYOUT = "channels_last"
LAYOUTS = ("neuralc", "torch")


class WeightsWarning(UserWarning):
    """Weights that load but may not mean what the file's author meant."""


def dense_after_flatten(module: Module, func_name: str | None = None
                        ) -> list[tuple[str, tuple[int, ...]]]:
    """Each Dense whose input is a Flatten of a spatial map: (its name, the map's (h, ..., c))."""
    out = []
    for op in func_body(select_func(module, func_name)).ops:
        if op.name not in ("graph.dense", "graph.output"):
            continue
        src = op.operands[0]
        if not isinstance(src, OpResult) or src.op.name != "graph.flatten":
            continue
        shape = _static(src.op)
        if shape is not None and len(shape) >= 2:
            out.append((str(op.attributes["name"]), shape))
    return out


def _static(flatten: Op) -> tuple[int, ...] | None:
    """The per-sample shape a Flatten flattens, if static (a symbolic map cannot be permuted)."""
    shape = flatten.operands[0].type.shape
    if shape is None or not all(isinstance(d, int) for d in shape[1:]):
        return None
    return tuple(int(d) for d in shape[1:])


def to_channels_last(weight: np.ndarray, spatial: tuple[int, ...]) -> np.ndarray:
    """A Dense weight ``(out, c*h*w)`` whose columns follow a torch NCHW flatten, with its
    columns reordered to neuralc's ``(h, w, c)`` flatten."""
    *hw, c = spatial
    w = weight.reshape(weight.shape[0], c, *hw)
    return np.moveaxis(w, 1, -1).reshape(weight.shape[0], -1)


def apply_layout(weights: dict[str, np.ndarray], module: Module, layout: str,
                 file_layout: str | None, source: str, func_name: str | None = None) -> None:
    """Convert (``layout="torch"``) or warn about (a foreign file) the Dense after a Flatten."""
    pairs = dense_after_flatten(module, func_name)
    if layout == "torch":
        for name, spatial in pairs:
            key = f"{name}.weight"
            if key in weights:
                weights[key] = to_channels_last(weights[key], spatial)
        return
    if file_layout == NEURALC_LAYOUT or not pairs:
        return
    name, spatial = pairs[0]
    warnings.warn(
        f"{source}: Dense '{name}' follows a Flatten of a {'x'.join(map(str, spatial))} map; "
        "neuralc flattens channels-last (h, w, c), a PyTorch model flattens (c, h, w); if "
        "these weights come from PyTorch, load them with --weights-layout torch "
        "(weights_layout=\"torch\")", WeightsWarning, stacklevel=3)


# -- suggestions by structure ------------------------------------------------------------------

def _natural(key: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]


def _signatures(expected: list, header: Mapping[str, tuple[str, tuple[int, ...]]]
                ) -> tuple[dict[str, tuple], dict[str, tuple]] | None:
    """Each network layer's and each file layer's (prefix's) parameters with their shapes,
    optional ones aside; None when a file tensor ends in no parameter the network has."""
    want: dict[str, list] = {}
    for w in expected:
        if not w.spec.optional:
            want.setdefault(w.layer, []).append((w.param, tuple(w.spec.shape)))
    params = sorted({w.param for w in expected}, key=len, reverse=True)  # longest first
    optional = {w.param for w in expected if w.spec.optional}
    got: dict[str, list] = {}
    for key, (_, shape) in header.items():
        param = next((p for p in params if key.endswith("." + p)), None)
        if param is None:
            return None
        if param not in optional:
            got.setdefault(key[: -len(param) - 1], []).append((param, tuple(shape)))
    return ({k: tuple(sorted(v)) for k, v in want.items()},
            {k: tuple(sorted(v)) for k, v in got.items()})


def suggest_by_structure(key: str, expected: list,
                         header: Mapping[str, tuple[str, tuple[int, ...]]]) -> str | None:
    """The network's name for the file tensor ``key``: in a layer with the same parameters
    and shapes as the file layer ``key`` belongs to (the closest spelling among several)."""
    from neuralc.diagnostics import suggest

    sigs = _signatures(expected, header)
    if sigs is None:
        return None
    want, got = sigs
    prefix = next((p for p in sorted(got, key=len, reverse=True) if key.startswith(p + ".")),
                  None)
    if prefix is None:
        return None
    same = [layer for layer, sig in want.items() if sig == got[prefix]]
    layer = same[0] if len(same) == 1 else suggest(prefix, same)
    return None if layer is None else layer + key[len(prefix):]


def structural_mapping(expected: list, header: Mapping[str, tuple[str, tuple[int, ...]]]
                       ) -> dict[str, str] | None:
    """File layer prefix -> network layer name, when the file's layers have the network's
    parameters and shapes layer for layer (in network order); None when they do not."""
    sigs = _signatures(expected, header)
    if sigs is None:
        return None
    want, got = sigs
    # Layers with the same parameters and shapes pair in order (the file's in natural order:
    # safetensors keeps no order of its own); every layer must pair, and every file layer.
    by_sig: dict[tuple, list[str]] = {}
    for layer, sig in want.items():
        by_sig.setdefault(sig, []).append(layer)
    file_sig: dict[tuple, list[str]] = {}
    for prefix in sorted(got, key=_natural):
        file_sig.setdefault(got[prefix], []).append(prefix)
    if not want or by_sig.keys() != file_sig.keys() or any(
            len(by_sig[k]) != len(file_sig[k]) for k in by_sig):
        return None
    mapping = {p: lay for k in by_sig for p, lay in zip(file_sig[k], by_sig[k])}
    order = list(want)
    mapping = {p: mapping[p] for p in sorted(mapping, key=lambda p: order.index(mapping[p]))}
    if all(p == lay for p, lay in mapping.items()):
        return None
    return mapping
