"""The keras-target tests share one Keras process: the session fixture ``keras_run`` prepares
the cases the selected tests ask for (``keras_case`` parameters), runs them all in one
subprocess with KERAS_BACKEND=torch (this process never imports Keras, so no other test is
affected), and hands the results to each test."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from keras_session import KerasSession  # noqa: E402


@pytest.fixture(scope="session")
def keras_run(request: pytest.FixtureRequest,
              tmp_path_factory: pytest.TempPathFactory) -> KerasSession:
    wanted: list[Any] = []
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "keras_case" in callspec.params:
            wanted.append(callspec.params["keras_case"])
    session = KerasSession(tmp_path_factory.mktemp("keras"))
    session.run(sorted(set(wanted)))
    return session
