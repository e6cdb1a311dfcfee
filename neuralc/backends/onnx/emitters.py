"""The emitter table: graph op kind -> a function that writes the layer as ONNX nodes.

An emitter takes the builder, the :class:`~neuralc.backends.onnx.builder.Layer` and its input
values, and returns one value per result of the op. Each layer family has its module
(``layers_*.py``) that registers its emitters with :func:`emits`; :func:`load_emitters` imports
them all. A catalog layer with no emitter is listed in :data:`CANNOT_EXPRESS` with the reason,
and compiling a model that uses it is a located error, never a silently different graph.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from neuralc.backends.onnx.builder import Builder, Layer, Val

Emitter = Callable[[Builder, Layer, list[Val]], list[Val]]

EMITTERS: dict[str, Emitter] = {}

# Catalog layers (canonical names) this target cannot express, with the reason. Every layer
# of the catalog is expressible today, so the table is empty; tests check that each catalog
# layer has an emitter or an entry here.
CANNOT_EXPRESS: dict[str, str] = {}

_FAMILIES = (
    "neuralc.backends.onnx.layers_core",
    "neuralc.backends.onnx.layers_conv",
    "neuralc.backends.onnx.layers_norm",
    "neuralc.backends.onnx.layers_recurrent",
    "neuralc.backends.onnx.layers_attention",
)


def emits(*kinds: str) -> Callable[[Emitter], Emitter]:
    """Register an emitter for graph op kinds (``"dense"`` for ``graph.dense``)."""

    def deco(fn: Emitter) -> Emitter:
        for k in kinds:
            if k in EMITTERS:
                raise ValueError(f"two ONNX emitters for {k}")
            EMITTERS[k] = fn
        return fn

    return deco


_loaded = False


def load_emitters() -> dict[str, Emitter]:
    global _loaded
    if not _loaded:
        for mod in _FAMILIES:
            importlib.import_module(mod)
        _loaded = True
    return EMITTERS


def emitter_for(kind: str) -> Emitter | None:
    return load_emitters().get(kind)
