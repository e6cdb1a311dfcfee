"""What every cell process loads first: the model, its weights, the inputs and the oracle's
outputs, all handed over by the parent as files (so every cell sees the same bytes)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralc.frontend.model import CompiledModel


@dataclass
class CellContext:
    """One cell's request (``spec``: see :func:`neuralc.bench.plan.cell_spec`) and its data."""

    spec: dict[str, Any]
    model: CompiledModel
    weights: dict[str, np.ndarray]
    inputs: list[np.ndarray]
    expected: list[np.ndarray]
    frontend_s: float
    tmp: Path
    notes: list[str] = field(default_factory=list)

    @property
    def precision(self) -> str:
        return str(self.spec["precision"])

    @property
    def threads(self) -> int:
        return int(self.spec["threads"])

    @property
    def opt(self) -> int:
        return int(self.spec["opt"])

    @property
    def sizes(self) -> dict[str, int]:
        return dict(self.spec["sizes"])


def load_context(spec: dict[str, Any]) -> CellContext:
    """Compile the model's graph IR (timed: the frontend) and read the cell's data files."""
    from neuralc.driver import compile_file
    from neuralc.frontend.hparams import HParams
    from neuralc.runtime.weights import load_weights

    t0 = time.perf_counter()
    model = compile_file(spec["model"], network=spec.get("network"),
                         hparams=HParams.from_strings(spec.get("hparams", [])),
                         opt_level=int(spec["opt"]))
    frontend_s = time.perf_counter() - t0
    weights = load_weights(spec["weights"], model.module)
    inputs = [np.load(p, allow_pickle=False) for p in spec["inputs"]]
    expected = [np.load(p, allow_pickle=False) for p in spec["expected"]]
    tmp = Path(spec["tmp"])
    tmp.mkdir(parents=True, exist_ok=True)
    return CellContext(spec, model, weights, inputs, expected, frontend_s, tmp)
