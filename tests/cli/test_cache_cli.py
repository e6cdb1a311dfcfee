"""``neuralc cache`` and ``--version`` say where the native code cache is; ``--clear`` empties it;
``--no-cache`` compiles afresh."""

from __future__ import annotations

from pathlib import Path

import pytest

from neuralc.cli import main

MLP = Path(__file__).resolve().parents[2] / "examples" / "mlp.nr"


def test_cache_location_contents_and_clear(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(tmp_path))
    assert main(["run", str(MLP), "--random", "--target", "cpu"]) == 0
    capsys.readouterr()
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path / "cpu") in out and "1 objects" in out
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert str(tmp_path / "cpu") in capsys.readouterr().out
    assert main(["cache", "--clear"]) == 0
    assert "removed 1 cached objects" in capsys.readouterr().out
    assert main(["run", str(MLP), "--random", "--target", "cpu", "--no-cache"]) == 0
    capsys.readouterr()
    assert main(["cache"]) == 0
    assert "0 objects" in capsys.readouterr().out  # --no-cache neither read nor wrote it
