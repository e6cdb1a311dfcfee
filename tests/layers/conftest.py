"""Fixtures of the layer-catalog tests: a fresh, reproducible random generator per test."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """Seeded from the test id (and NEURALC_TEST_SEED, to explore other draws)."""
    base = int(os.environ.get("NEURALC_TEST_SEED", "0"))
    return np.random.default_rng([base, zlib.crc32(request.node.nodeid.encode())])
