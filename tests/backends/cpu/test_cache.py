"""The on-disk object cache: location, keys, hits and misses, damaged entries, unwritable dirs."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import pytest

pytest.importorskip("llvmlite")

from neuralc.backends.cpu import cache  # noqa: E402
from neuralc.backends.cpu.host import TargetSpec  # noqa: E402

IR = "define i32 @one() {\n  ret i32 1\n}\n"
KEY = hashlib.sha256(b"some object").hexdigest()


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "nc-cache"
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(root))
    return root


def test_location_follows_neuralc_then_xdg_then_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache.cache_dir() == tmp_path / "explicit" / "cpu"
    monkeypatch.delenv("NEURALC_CACHE_DIR")
    assert cache.cache_dir() == tmp_path / "xdg" / "neuralc" / "cpu"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/dir")  # XDG: relative paths are ignored
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "neuralc" / "cpu"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache.cache_dir() == tmp_path / "home" / ".cache" / "neuralc" / "cpu"
    monkeypatch.setenv("NEURALC_CACHE_DIR", "")  # empty counts as unset
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "neuralc"


def test_key_covers_ir_target_and_opt_level() -> None:
    spec = TargetSpec.x86_64_v3()
    key = cache.cache_key(IR, spec)
    assert len(key) == 64 and int(key, 16) >= 0
    assert key == cache.cache_key(IR, TargetSpec.x86_64_v3())  # stable
    different = {
        cache.cache_key(IR + "\n", spec),
        cache.cache_key(IR, TargetSpec.x86_64()),
        cache.cache_key(IR, TargetSpec(spec.triple, "znver4", spec.features)),
        cache.cache_key(IR, TargetSpec(spec.triple, spec.cpu, spec.features + ",+avx512f")),
        cache.cache_key(IR, spec, opt=2),
    }
    assert key not in different and len(different) == 5


def test_key_is_not_fooled_by_moving_text_between_fields() -> None:
    a = TargetSpec("x86_64-unknown-linux-gnu", "x86-64", "")
    b = TargetSpec("x86_64-unknown-linux-gn", "ux86-64", "")
    assert cache.cache_key(IR, a) != cache.cache_key(IR, b)


def test_miss_then_hit(cache_root: Path) -> None:
    assert cache.load(KEY) is None
    cache.store(KEY, b"\x7fELF object bytes")
    assert cache.load(KEY) == b"\x7fELF object bytes"
    files = os.listdir(cache_root / "cpu")
    assert files == [f"{KEY}.obj"], "a temporary file was left behind"
    assert cache.info() == {
        "path": str(cache_root / "cpu"),
        "entries": 1,
        "bytes": (cache_root / "cpu" / f"{KEY}.obj").stat().st_size,
    }


def test_store_replaces_an_entry(cache_root: Path) -> None:
    cache.store(KEY, b"first")
    cache.store(KEY, b"second")
    assert cache.load(KEY) == b"second"
    assert cache.info()["entries"] == 1


def test_empty_payload_round_trips(cache_root: Path) -> None:
    cache.store(KEY, b"")
    assert cache.load(KEY) == b""


def _entry(root: Path) -> Path:
    return root / "cpu" / f"{KEY}.obj"


def test_corrupted_entry_is_a_miss_and_is_removed(cache_root: Path) -> None:
    cache.store(KEY, b"0123456789" * 100)
    blob = bytearray(_entry(cache_root).read_bytes())
    blob[-7] ^= 0x01  # one flipped bit in the payload
    _entry(cache_root).write_bytes(bytes(blob))
    assert cache.load(KEY) is None
    assert not _entry(cache_root).exists()
    cache.store(KEY, b"fresh")
    assert cache.load(KEY) == b"fresh"


@pytest.mark.parametrize("keep", [0, 5, 20, 39, 40, 500])
def test_truncated_entry_is_a_miss_and_is_removed(cache_root: Path, keep: int) -> None:
    cache.store(KEY, b"0123456789" * 100)
    blob = _entry(cache_root).read_bytes()
    _entry(cache_root).write_bytes(blob[:keep])
    assert cache.load(KEY) is None
    assert not _entry(cache_root).exists()


def test_foreign_file_is_a_miss(cache_root: Path) -> None:
    (cache_root / "cpu").mkdir(parents=True)
    payload = b"not ours"
    _entry(cache_root).write_bytes(b"XXXXXXXX" + hashlib.sha256(payload).digest() + payload)
    assert cache.load(KEY) is None


def test_clear_and_info(cache_root: Path) -> None:
    assert cache.info()["entries"] == 0 and cache.clear() == 0
    keys = [hashlib.sha256(bytes([i])).hexdigest() for i in range(3)]
    for k in keys:
        cache.store(k, b"x" * 10)
    (cache_root / "cpu" / ".tmp-abandoned.obj").write_bytes(b"half")  # a crashed writer
    (cache_root / "cpu" / "README").write_text("not an entry")
    info = cache.info()
    assert info["entries"] == 3 and info["bytes"] == 3 * (8 + 32 + 10)
    assert cache.clear() == 3
    assert cache.info()["entries"] == 0
    assert sorted(os.listdir(cache_root / "cpu")) == ["README"]


@pytest.mark.parametrize("bad", ["", "../../etc/passwd", KEY.upper(), KEY[:-1], KEY + "0"])
def test_keys_must_be_sha256_hex(cache_root: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        cache.load(bad)
    with pytest.raises(ValueError):
        cache.store(bad, b"x")


def test_unwritable_directory_warns_once_and_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A regular file where the folder should be: unwritable even for root.
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(blocker / "nc"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache.store(KEY, b"data")
        cache.store(KEY, b"data")
        assert cache.load(KEY) is None
    msgs = [w for w in caught if issubclass(w.category, cache.CacheWarning)]
    assert len(msgs) == 1, [str(w.message) for w in caught]
    assert "cannot write the code cache" in str(msgs[0].message)
    assert cache.info() == {"path": str(blocker / "nc" / "cpu"), "entries": 0, "bytes": 0}
    assert cache.clear() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions")
def test_read_only_directory_warns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "ro"
    (root / "cpu").mkdir(parents=True)
    os.chmod(root / "cpu", 0o500)
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(root))
    try:
        with pytest.warns(cache.CacheWarning):
            cache.store(KEY, b"data")
        assert cache.load(KEY) is None
    finally:
        os.chmod(root / "cpu", 0o700)
