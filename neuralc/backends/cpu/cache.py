"""The on-disk cache of compiled object code, so a second run does not recompile.

An entry is keyed by a SHA-256 over everything that determines the object: the LLVM IR text,
the target (triple, cpu, features), the optimisation level, the llvmlite and LLVM versions and
this file's format version. Bump ``FORMAT_VERSION`` when the meaning of cached bytes changes.

Location (XDG): ``$NEURALC_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/neuralc``, else
``~/.cache/neuralc``; objects live in its ``cpu/`` folder as ``<key>.obj``.

The cache is an optimisation and never a reason to fail: writes are atomic (a temporary file
then ``os.replace``, so a reader sees the whole entry or none), every entry carries a SHA-256 of
its payload that ``load`` checks (a truncated or corrupted entry is a miss and is removed), and
a directory that cannot be written gives one warning and is skipped from then on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import threading
import warnings
from pathlib import Path

import llvmlite

from neuralc.backends.cpu.host import TargetSpec, llvm_version

__all__ = [
    "FORMAT_VERSION",
    "CacheWarning",
    "cache_dir",
    "cache_key",
    "cache_root",
    "clear",
    "info",
    "load",
    "store",
]

FORMAT_VERSION = 2  # 2: LLVM's loop vectoriser and unroller off (the schedule does both)
_MAGIC = b"NCCPUO1\n"  # 8 bytes: what the file is; the digest follows
_DIGEST_LEN = 32
_SUFFIX = ".obj"
_TMP_PREFIX = ".tmp-"

_LOCK = threading.Lock()
_SKIPPED: set[Path] = set()  # directories found unwritable (warned once each)


class CacheWarning(UserWarning):
    """The code cache could not be used; compilation goes on without it."""


def cache_root() -> Path:
    """neuralc's cache folder: ``$NEURALC_CACHE_DIR``, ``$XDG_CACHE_HOME/neuralc`` or
    ``~/.cache/neuralc`` (XDG ignores an empty or relative ``XDG_CACHE_HOME``)."""
    explicit = os.environ.get("NEURALC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "neuralc"
    return Path.home() / ".cache" / "neuralc"


def cache_dir() -> Path:
    """Where CPU object code is cached: the ``cpu/`` folder of :func:`cache_root`."""
    return cache_root() / "cpu"


def cache_key(llvm_ir: str, spec: TargetSpec, opt: int = 3) -> str:
    """The hex SHA-256 naming the object ``compile_object(llvm_ir, spec, opt)`` produces.

    Fields are length-prefixed, so no two different field lists hash the same text.
    """
    h = hashlib.sha256()
    fields = (
        f"neuralc-cpu-object/{FORMAT_VERSION}",
        f"llvmlite/{llvmlite.__version__}",
        f"llvm/{llvm_version()}",
        spec.triple,
        spec.cpu,
        spec.features,
        f"O{opt}",
        llvm_ir,
    )
    for text in fields:
        data = text.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _entry(key: str) -> Path:
    if len(key) != 64 or any(c not in "0123456789abcdef" for c in key):
        raise ValueError(f"not a cache key (64 lowercase hex digits): {key!r}")
    return cache_dir() / f"{key}{_SUFFIX}"


def _discard(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def load(key: str) -> bytes | None:
    """The cached object for ``key``, or None on a miss.

    A damaged entry (wrong header, short, digest mismatch) counts as a miss and is deleted so
    the next store replaces it; an unreadable one is a miss.
    """
    path = _entry(key)
    try:
        blob = path.read_bytes()
    except OSError:
        return None
    head = len(_MAGIC) + _DIGEST_LEN
    payload = blob[head:]
    if (
        len(blob) < head
        or not blob.startswith(_MAGIC)
        or hashlib.sha256(payload).digest() != blob[len(_MAGIC) : head]
    ):
        _discard(path)
        return None
    return payload


def store(key: str, data: bytes) -> None:
    """Save ``data`` under ``key`` atomically; warn once and skip if the folder is unwritable."""
    path = _entry(key)
    folder = path.parent
    with _LOCK:
        if folder in _SKIPPED:
            return
    tmp: str | None = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=_TMP_PREFIX, suffix=_SUFFIX)
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC)
            f.write(hashlib.sha256(data).digest())
            f.write(data)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        with _LOCK:
            first = folder not in _SKIPPED
            _SKIPPED.add(folder)
        if first:
            warnings.warn(
                f"neuralc: cannot write the code cache in {folder} ({exc.strerror or exc}); "
                "compiling without it (set NEURALC_CACHE_DIR to a writable folder)",
                CacheWarning,
                stacklevel=2,
            )
    finally:
        if tmp is not None:
            _discard(Path(tmp))


def _entries() -> list[Path]:
    try:
        return [p for p in cache_dir().iterdir() if p.suffix == _SUFFIX and p.is_file()]
    except OSError:
        return []


def clear() -> int:
    """Delete every cached object (and leftover temporary files); returns the entries removed."""
    removed = 0
    for p in _entries():
        if p.name.startswith(_TMP_PREFIX):
            _discard(p)
            continue
        try:
            p.unlink()
            removed += 1
        except OSError:
            pass
    return removed


def info() -> dict[str, object]:
    """``{"path": str, "entries": int, "bytes": int}`` for ``neuralc cache`` style reports."""
    entries = [p for p in _entries() if not p.name.startswith(_TMP_PREFIX)]
    size = 0
    for p in entries:
        with contextlib.suppress(OSError):
            size += p.stat().st_size
    return {"path": str(cache_dir()), "entries": len(entries), "bytes": size}
