"""Shared pieces of the API tests: the examples, seeded inputs, one compiled MNIST artifact."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import neuralc
from neuralc.runtime.samples import random_inputs, symbol_sizes

sys.path.insert(0, str(Path(__file__).parent))
from api_helpers import MNIST  # noqa: E402


@pytest.fixture(scope="session")
def make_inputs() -> Callable[..., list[np.ndarray]]:
    """Seeded inputs for a loaded model: batch 2, every other symbol 8 (moved into its range)."""

    def make(model: neuralc.Model, batch: int = 2, seed: int = 0) -> list[np.ndarray]:
        module = model.compiled_model.module
        return random_inputs(module, symbol_sizes(module, batch, 8), np.random.default_rng(seed))

    return make


@pytest.fixture(scope="session")
def mnist_ncz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The MNIST example compiled with target auto and saved once for the session."""
    path = tmp_path_factory.mktemp("mnist") / "mnist.ncz"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the example compiles without a warning
        neuralc.compile(MNIST).save(path)
    return path
