"""Checks of concrete sizes before a model runs, on every target.

Shape inference proves a model right for every size its symbols may take, but some sizes are
only known when an input arrives: a sequence shorter than a convolution's window, longer than
a positional table, or a token index beyond an embedding's vocabulary. Those are the user's
data, not the model: they get an InputError naming the layer and its ``.nr`` line before any
target runs, instead of an exception from deep inside numpy, PyTorch or onnxruntime.
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.core import Op, func_body
from neuralc.ir.dims import evaluate, symbols
from neuralc.layers import catalog
from neuralc.location import primary
from neuralc.runtime.signature import InputError


def _where(op: Op) -> str:
    spec = catalog.by_op(op.name)
    kind = spec.name if spec else op.name
    return f"{kind} '{op.attributes.get('name', '')}' at {primary(op.location)}"


def _sizes_text(env: dict[str, int], dims: set[str]) -> str:
    return ", ".join(f"{s}={env[s]}" for s in sorted(dims) if s in env)


def check_sizes(func: Op, env: dict[str, int]) -> None:
    """Every layer's output must have at least one element along each axis at ``env``."""
    for op in func_body(func).ops:
        if op.dialect != "graph":
            continue
        for r in op.results:
            if r.type.shape is None:
                continue
            for axis, d in enumerate(r.type.shape):
                try:
                    size = evaluate(d, env)
                except KeyError:
                    continue
                if size < 1:
                    raise InputError(
                        f"{_where(op)}: with these inputs ({_sizes_text(env, symbols(d))}) its "
                        f"output would have {size} elements on axis {axis} ({d}); the input is "
                        "too small for this layer")
        spec = catalog.by_op(op.name)
        limit = spec.extra.get("max_length") if spec is not None else None
        if limit is not None:
            # A layer with a fixed table of positions: the sequence (axis 1) must fit in it.
            table = int(op.attributes[limit])
            t = op.operands[0].type.shape
            if t is not None and len(t) > 1:
                try:
                    n = evaluate(t[1], env)
                except KeyError:
                    continue
                if n > table:
                    raise InputError(f"{_where(op)}: the sequence has {n} positions, more than "
                                     f"{limit}={table}; feed shorter sequences or raise {limit}")


def embedding_attrs(op: Op) -> dict | None:
    """The Embedding attributes of ``op`` (itself or the layer it wraps), or None."""
    embedding = catalog.lookup("Embedding")
    if catalog.by_op(op.name) is embedding:
        return op.attributes
    for v in op.attributes.values():
        if isinstance(v, dict) and set(v) == {"layer", "params"} \
                and catalog.lookup(v["layer"]) is embedding:
            return v["params"]
    return None


def check_indices(func: Op, arrays: list[np.ndarray]) -> None:
    """Token indices fed to an Embedding must lie in [0, input_dim)."""
    for arg, x in zip(func_body(func).args, arrays):
        if not np.issubdtype(np.asarray(x).dtype, np.integer):
            continue
        for user in arg.users():
            attrs = embedding_attrs(user)
            if attrs is None or np.asarray(x).size == 0:
                continue
            n = int(attrs["input_dim"])
            lo, hi = int(np.min(x)), int(np.max(x))
            if lo < 0 or hi >= n:
                bad = lo if lo < 0 else hi
                raise InputError(
                    f"input '{arg.name_hint}' holds the token index {bad}, but {_where(user)} "
                    f"has {n} rows (indices 0 to {n - 1})")


def check_constraints(constraints: list, env: dict[str, int]) -> None:
    """Facts of symbols that shape inference bound to expressions: a range (``seq = t * 2``
    with ``seq: 8..512``) is ``[text, lo, hi]``; a step (``h = t * 2`` with ``h`` a multiple
    of 8) is ``["(t * 2) mod 8", 0, 0]``."""
    from neuralc.ir.dims import parse_dim

    for text, lo, hi in constraints or []:
        try:
            value = evaluate(parse_dim(text), env)
        except KeyError:
            continue
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if (lo, hi) == (0, 0) and " mod " in text:
                raise InputError(f"with these inputs {text} is {value}, not 0: the dimension it "
                                 "stands for must be a multiple of the step dims { } gives it")
            rng = f"{'' if lo is None else lo}..{'' if hi is None else hi}"
            raise InputError(f"with these inputs {text} is {value}, outside the range {rng} "
                             "that dims { } gives the dimension it stands for")


def check_memory(func: Op, env: dict[str, int]) -> None:
    """The run must fit the memory limit at these sizes (a graph-IR function; the estimate
    is neuralc.passes.run_memory's)."""
    from neuralc.passes.run_memory import run_memory

    if not any(op.dialect == "graph" for op in func_body(func).ops):
        return  # optimised IR: the graph it came from was checked
    refusal = run_memory(func, env).over_limit()
    if refusal is not None:
        shown = ", ".join(f"{k}={v:,}" for k, v in sorted(env.items()))
        raise InputError(f"with these inputs ({shown}) {refusal}" if shown else refusal)


def check_run(func: Op, arrays: list[np.ndarray], env: dict[str, int],
              constraints: list | None = None) -> None:
    check_sizes(func, env)
    check_indices(func, arrays)
    check_constraints(constraints or [], env)
    check_memory(func, env)
