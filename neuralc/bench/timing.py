"""How one cell is timed: warm-up, then timed single calls, then order statistics.

Single calls (not batches of calls averaged) so that the spread is visible: the table shows
the median with the 10th and 90th percentiles, and the result file keeps every sample. With
``--repeat N`` exactly N calls are timed; otherwise calls are timed until ``--min-time``
seconds have passed (at least 5 calls, at most 100,000), as ``torch.utils.benchmark``'s
``blocked_autorange`` does with its ``min_run_time``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

MIN_CALLS = 5
MAX_CALLS = 100_000


def time_calls(fn: Callable[[], Any], repeat: int | None, min_time: float,
               warmup: int) -> list[float]:
    """Seconds of each timed call of ``fn`` after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    samples: list[float] = []
    clock = time.perf_counter
    start = clock()
    while True:
        t0 = clock()
        fn()
        samples.append(clock() - t0)
        if repeat is not None:
            if len(samples) >= repeat:
                break
        elif (len(samples) >= MIN_CALLS and clock() - start >= min_time) \
                or len(samples) >= MAX_CALLS:
            break
    return samples


def summary_ms(samples: list[float]) -> dict[str, float | int]:
    """Median, p10, p90, min, mean and count of ``samples`` (seconds), in milliseconds."""
    a = np.asarray(samples, dtype=np.float64) * 1e3
    return {"median": float(np.median(a)), "p10": float(np.percentile(a, 10)),
            "p90": float(np.percentile(a, 90)), "min": float(a.min()),
            "mean": float(a.mean()), "n": int(a.size)}
