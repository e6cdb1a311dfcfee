"""Seeded sample inputs for a model: ``neuralc run --random``, the tests and the benchmarks.

Sizes: ``batch`` and every other symbol take a chosen size moved into the symbol's
``dims { }`` range. Values: float inputs are standard normal; integer inputs are token
indices below the smallest vocabulary among the Embeddings that read them (wrapped ones too).
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.core import Module, func_body
from neuralc.ir.dims import evaluate, symbols
from neuralc.runtime.signature import numpy_dtype
from neuralc.runtime.sizes import embedding_attrs


def clamp_to_range(module: Module, name: str, value: int) -> int:
    """``value`` moved into the ``dims { }`` range of symbol ``name`` (at least 1)."""
    lo, hi = module.attributes.get("dims", {}).get(name) or [None, None]
    value = max(value, lo or 1)
    return min(value, hi) if hi is not None else value


def input_symbols(module: Module) -> list[str]:
    """The symbols of the model's inputs, in order of first appearance."""
    out: list[str] = []
    for a in func_body(module.funcs[0]).args:
        for d in a.type.shape or ():
            for s in sorted(symbols(d)):
                if s not in out:
                    out.append(s)
    return out


def symbol_sizes(module: Module, batch: int, other: int) -> dict[str, int]:
    """``batch`` for the batch and ``other`` for every other input symbol, each in its range."""
    sizes = {"batch": clamp_to_range(module, "batch", batch)}
    for s in input_symbols(module):
        sizes.setdefault(s, clamp_to_range(module, s, other))
    return sizes


def random_inputs(module: Module, sizes: dict[str, int],
                  rng: np.random.Generator) -> list[np.ndarray]:
    arrays = []
    for a in func_body(module.funcs[0]).args:
        assert a.type.shape is not None
        shape = tuple(evaluate(d, sizes) for d in a.type.shape)
        if a.type.dtype.startswith("i"):
            vocab = [int(e["input_dim"]) for e in map(embedding_attrs, a.users()) if e]
            high = min(vocab) if vocab else 2
            arrays.append(rng.integers(0, high, size=shape).astype(numpy_dtype(a.type.dtype)))
        else:
            arrays.append(rng.standard_normal(shape).astype(np.float32))
    return arrays
