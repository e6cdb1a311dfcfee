"""The cuda target's tests run its kernels in Triton's interpreter on the CPU (no GPU here).

``TRITON_INTERPRET=1`` is set before triton is first imported in this process: triton decides
at import (its standard library) and at ``@triton.jit`` whether functions are interpreted.
Tests marked ``gpu`` run their work in a subprocess without it, and skip cleanly where torch
sees no GPU.
"""

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ["TRITON_INTERPRET"] = "1"

# cuda_helpers.py lives beside the tests; cpu_helpers.py (varied weights) beside the cpu ones.
sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1] / "cpu"))

pytest.importorskip("triton", reason="the cuda target needs triton (pip install 'neuralc[cuda]')")
pytest.importorskip("torch", reason="the cuda target needs torch")


@pytest.fixture(autouse=True)
def _aot_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Kernels compiled ahead of time are kept between test runs (the session's code cache is
    fresh each run): entries are keyed by everything that determines them, so reuse is sound."""
    if not os.environ.get("NEURALC_CUDA_AOT_CACHE"):
        monkeypatch.setenv("NEURALC_CUDA_AOT_CACHE",
                           str(Path(tempfile.gettempdir()) / "neuralc-test-cuda-aot-cache"))


@pytest.fixture(autouse=True)
def _gpu_or_skip(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") is not None:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs an NVIDIA GPU (torch sees none)")


def pytest_configure(config: pytest.Config) -> None:
    # Masked-off lanes of a block compute on padding (0/0 and the like) before the mask drops
    # them; Triton's interpreter reports numpy's warnings for those lanes.
    config.addinivalue_line("filterwarnings", "ignore::RuntimeWarning:triton.runtime.interpreter")
