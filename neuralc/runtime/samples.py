"""Seeded sample inputs for a model: ``neuralc run --random``, the tests and the benchmarks.

Sizes: the batch dim (the leading dim of the first input, whatever its name) takes the batch
size asked for, every other symbol the other size; each is moved into the symbol's
``dims { }`` range and onto its step. Values: float inputs are standard normal; integer inputs
are token indices below the smallest vocabulary among the Embeddings that read them (wrapped
ones too).
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.core import Module, func_body
from neuralc.ir.dims import Expr, dim_facts, evaluate, fit_size, symbols
from neuralc.runtime.signature import numpy_dtype
from neuralc.runtime.sizes import embedding_attrs


def clamp_to_range(module: Module, name: str, value: int) -> int:
    """``value`` moved into the ``dims { }`` range of symbol ``name`` (at least 1) and onto a
    multiple of its step: the nearest allowed size at or above it, else the largest below."""
    return fit_size(value, *dim_facts((module.attributes.get("dims") or {}).get(name)))


def input_symbols(module: Module) -> list[str]:
    """The symbols of the model's inputs, in order of first appearance."""
    out: list[str] = []
    for a in func_body(module.funcs[0]).args:
        for d in a.type.shape or ():
            for s in sorted(symbols(d)):
                if s not in out:
                    out.append(s)
    return out


def batch_symbol(module: Module) -> str | None:
    """The symbol of the batch dim: the leading dim of the first input, when it is a symbol."""
    args = func_body(module.funcs[0]).args
    shape = args[0].type.shape if args else None
    lead = shape[0] if shape else None
    return next(iter(lead.symbols())) if isinstance(lead, Expr) and lead.is_atomic() else None


def symbol_sizes(module: Module, batch: int, other: int) -> dict[str, int]:
    """``batch`` for the batch dim and ``other`` for every other input symbol, each moved into
    its ``dims { }`` facts."""
    lead = batch_symbol(module)
    return {s: clamp_to_range(module, s, batch if s == lead else other)
            for s in input_symbols(module)}


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
