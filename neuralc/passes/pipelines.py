"""The pass pipelines of each optimisation level, written out in one place.

A pipeline has two stages: the graph stage (shape inference and graph rewrites) and the
tensor stage (lowering, cleanup, folding, fusion, memory planning). ``--emit graph-ir`` stops
after the first; ``--emit tensor-ir`` and ``--emit kernels`` run both. Numerics-changing
rewrites stay outside ``-O``: ``--precision`` inserts the precision pass before fusion.

- ``-O0``: no optimisation; every tensor op is a kernel of its own.
- Every level ends with ``outline-init`` (work on weights alone goes to an init function, run
  once at load) and ``memory-plan``.
- ``-O1``: inference simplification (Dropout and friends go) and cleanup (canonicalize,
  CSE, DCE); fusion.
- ``-O2``: ``-O1`` plus BatchNorm folding and a second cleanup after it.
- ``-O3``: ``-O2`` plus the target's layout choice (channels-first convs where the target
  wants them; ``reference`` and ``cpu`` keep channels-last), then cleanup again.
- From ``-O1``, targets that want it (``cpu``) get ``pack-weights`` before fusion: weights in
  output-channel-last layouts, transposed once at load time.
"""

from __future__ import annotations

# The graph stage keeps the model as written (Dropout included): it is what --emit graph-ir
# shows and what the source backends (PyTorch, Keras: they train) read.
GRAPH: dict[int, list[str]] = {
    0: ["shape-infer"],
    1: ["shape-infer"],
    2: ["shape-infer"],
    3: ["shape-infer"],
}

# Inference from here on: layers that are the identity at inference go first.
TENSOR: dict[int, list[str]] = {
    0: ["lower-to-tensor", "fuse{merge=false}", "outline-init", "memory-plan"],
    1: ["simplify-inference", "lower-to-tensor", "canonicalize", "cse", "fuse", "outline-init",
        "memory-plan"],
    2: ["simplify-inference", "lower-to-tensor", "canonicalize", "cse", "fold-batchnorm",
        "canonicalize", "fuse", "outline-init", "memory-plan"],
    3: ["simplify-inference", "lower-to-tensor", "canonicalize", "cse", "fold-batchnorm",
        "canonicalize", "{layout}", "canonicalize", "cse", "fuse", "outline-init",
        "memory-plan"],
}

# Targets whose kernels want weights packed output-channel-last (from -O1).
PACKED_WEIGHTS = ("cpu",)

# The conv layout each target wants at -O3.
TARGET_LAYOUT = {"reference": "channels_last", "cpu": "channels_last", "cuda": "channels_first",
                 "tensorrt": "channels_first"}


def _check(level: int) -> None:
    if level not in GRAPH:
        raise ValueError(f"unknown optimisation level -O{level}; use -O0 to -O3")


def pipeline(level: int) -> list[str]:
    """The graph stage of ``-O<level>`` (what ``--emit graph-ir`` and the backends read)."""
    _check(level)
    return list(GRAPH[level])


def tensor_pipeline(level: int, precision: str = "fp32", target: str = "reference") -> list[str]:
    """Graph stage then tensor stage of ``-O<level>``, with ``--precision`` before fusion."""
    _check(level)
    layout = TARGET_LAYOUT.get(target, "channels_last")
    out = list(GRAPH[level])
    for name in TENSOR[level]:
        if name == "{layout}":
            out.append(f"layout{{target={layout}}}")
            continue
        if name.startswith("fuse") and level >= 1 and target in PACKED_WEIGHTS:
            out += ["decompose-attention", "pack-weights"]
        if name.startswith("fuse") and precision != "fp32":
            out.append(f"precision{{mode={precision}}}")
        out.append(name)
    return out


def with_fusion_debug(passes: list[str]) -> list[str]:
    """``--debug-fusion``: the fuse pass reports why each rejected pair was not fused."""
    return [("fuse{debug=true}" if p == "fuse" else p) for p in passes]
