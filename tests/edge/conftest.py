"""Fixtures of the edge tests: the examples built once per session, and what the machine has.

Without a C toolchain (ziglang, or a system compiler) or without qemu-aarch64 the tests that
need them skip and say why; with ``NEURALC_EDGE_REQUIRED=1`` (set by ``.ci/run``) they fail
instead, so CI never skips them silently.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from edge_helpers import build_all, missing, qemu  # noqa: E402


@pytest.fixture(scope="session")
def toolchain() -> str:
    """The C toolchain's name; skips (or fails in CI) when there is none."""
    from neuralc.backends.base import BackendUnavailable
    from neuralc.backends.cpu.edge.toolchain import EdgeTarget, find_toolchain
    from neuralc.backends.cpu.host import TargetSpec

    try:
        return find_toolchain(EdgeTarget(TargetSpec.host()), "exe").name
    except BackendUnavailable as e:
        missing(f"no C toolchain for edge builds: {e}")
        raise


@pytest.fixture(scope="session")
def qemu_aarch64() -> str:
    path = qemu()
    if path is None:
        missing("qemu-aarch64 is not installed (Debian: apt install qemu-user)")
    assert path is not None
    return path


def _shared_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder every xdist worker of this session shares (the session's own without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session", autouse=True)
def session_code_cache(tmp_path_factory: pytest.TempPathFactory):
    """A native code cache of this session only: "the same code" in process and in a binary
    then holds even where the user's cache has objects from an older code generator."""
    old = os.environ.get("NEURALC_CACHE_DIR")
    os.environ["NEURALC_CACHE_DIR"] = str(_shared_root(tmp_path_factory) / "edge-code-cache")
    yield
    if old is None:
        os.environ.pop("NEURALC_CACHE_DIR", None)
    else:
        os.environ["NEURALC_CACHE_DIR"] = old


@pytest.fixture(scope="session")
def builds(toolchain: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Every example as a host executable, library and C driver, and as an aarch64 executable
    (built once for all xdist workers of the session)."""
    reuse = os.environ.get("NEURALC_EDGE_BUILDS")  # a folder of an earlier session, to debug
    return build_all(Path(reuse) if reuse else _shared_root(tmp_path_factory) / "edge-builds")
