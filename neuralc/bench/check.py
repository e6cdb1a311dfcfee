"""Is a cell's output right? Compared with the reference interpreter before any timing.

The oracle is neuralc's numpy interpreter on the shape-checked graph IR in float32, on the
same weights and inputs (computed once by the parent process and handed to every cell). The
error is norm-wise, ``max|y - ref| / max|ref|``, as the precision pass's tests measure it, with
the same bounds for low precision:

- fp32: 1e-3. Targets and peers reorder sums (blocked matmuls, Winograd convs, fused kernels);
  that moves results by a few ulps per layer, orders of magnitude under this bound, while a
  wrong weight, layout or kernel gives errors of order one.
- fp16 and mixed: 1e-2; bf16: 5e-2 (eight times fewer significand bits than fp16).

Integer outputs must be equal. A cell whose output fails is reported as ``wrong`` and never
timed: a fast wrong answer cannot win.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOUNDS = {"fp32": 1e-3, "fp16": 1e-2, "mixed": 1e-2, "bf16": 5e-2}
MEASURE = "max|y - ref| / max|ref| over each output (norm-wise), integer outputs exact"


@dataclass
class Verdict:
    ok: bool
    error: float | None  # the largest norm-wise error over the outputs
    message: str | None = None


def compare(outputs: list[np.ndarray], expected: list[np.ndarray], precision: str) -> Verdict:
    """Whether ``outputs`` match the oracle's ``expected`` within the bound of ``precision``."""
    bound = BOUNDS[precision]
    if len(outputs) != len(expected):
        return Verdict(False, None, f"returned {len(outputs)} outputs, the reference "
                                    f"{len(expected)}")
    worst = 0.0
    for i, (y, ref) in enumerate(zip(outputs, expected)):
        y = np.asarray(y)
        label = "the output" if len(expected) == 1 else f"output {i}"
        if y.shape != ref.shape:
            return Verdict(False, None, f"{label} has shape {y.shape}, the reference "
                                        f"{ref.shape}")
        if ref.dtype.kind in "iub":
            if not np.array_equal(y, ref):
                return Verdict(False, None, f"{label} differs from the reference "
                                            f"({int((y != ref).sum())} elements)")
            continue
        y = y.astype(np.float64)
        r = ref.astype(np.float64)
        if not np.isfinite(y).all() and np.isfinite(r).all():
            return Verdict(False, None, f"{label} holds NaN or infinity; the reference does not")
        scale = float(np.abs(r).max()) if r.size else 0.0
        diff = float(np.abs(y - r).max()) if r.size else 0.0
        err = diff / scale if scale > 0 else diff
        worst = max(worst, err)
    if worst > bound:
        return Verdict(False, worst, f"max error {worst:.2e} against the reference, over the "
                                     f"{precision} bound {bound:.0e}")
    return Verdict(True, worst)
