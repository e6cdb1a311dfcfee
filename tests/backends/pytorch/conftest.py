import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# pytorch_target_helpers.py lives beside the tests (tests/ is not a package).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """These tests run tiny tensors, where torch's thread pool costs more than it gives (a 2-core
    machine spends ~40 ms per small convolution synchronising threads, 1 ms with one)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
