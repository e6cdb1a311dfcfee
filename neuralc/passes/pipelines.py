"""The pass pipelines of each optimisation level, written out in one place.

Only graph-level passes exist so far; the tensor-level pipeline (lowering, fusion, memory
planning) is added by the optimisation work and will extend these lists per target.
"""

from __future__ import annotations

GRAPH_PIPELINE: dict[int, list[str]] = {
    0: ["shape-infer"],
    1: ["shape-infer"],
    2: ["shape-infer"],
    3: ["shape-infer"],
}


def pipeline(level: int) -> list[str]:
    if level not in GRAPH_PIPELINE:
        raise ValueError(f"unknown optimisation level -O{level}; use -O0 to -O3")
    return list(GRAPH_PIPELINE[level])
