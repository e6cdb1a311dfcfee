"""Reading and writing the files a user names, so that no file can hang or flood neuralc.

A path on the command line may name anything: a FIFO (opening it would wait for a writer
forever), ``/dev/zero`` (reading it never ends), a 10 GB file, a symlink or a device. Inputs are
opened without blocking, must be regular files, and are read at most a limit's worth of bytes.
Outputs are written to a temporary file beside the destination and renamed over it, so a
failed write leaves the old file as it was; a symlink is written through (its target is
replaced); a device or a FIFO is written through as it is, never replaced by a file, and a
write error (``/dev/full``) is reported; a directory or socket is refused.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO

__all__ = ["FileProblem", "FileTooLarge", "destination", "open_regular", "read_bytes",
           "read_text", "write_bytes"]


class FileProblem(Exception):
    """A named file cannot be read or written as asked; the message says why (one line),
    ``reason`` the why alone (``no directory /x``), for callers that name the file their way."""

    def __init__(self, message: str, reason: str = ""):
        super().__init__(message)
        self.reason = reason or message


def _cannot_write(p: object, reason: str) -> FileProblem:
    return FileProblem(f"cannot write {p}: {reason}", reason)


class FileTooLarge(FileProblem):
    """The file holds more than the caller's limit (a problem with its content, not its name)."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a special file"


def open_regular(path: str | os.PathLike[str]) -> BinaryIO:
    """The regular file ``path`` opened for reading; anything else is a FileProblem.

    Opened with ``O_NONBLOCK`` so that a FIFO is refused at once instead of waiting for a
    writer; a directory, a device (``/dev/zero``) or a socket is refused too.
    """
    p = os.fspath(path)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileProblem(f"no such file: {p}") from None
    except IsADirectoryError:
        raise FileProblem(f"{p} is a directory, not a file") from None
    except OSError as e:
        raise FileProblem(f"cannot read {p}: {e.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise FileProblem(f"cannot read {p}: it is {_kind(st.st_mode)}, not a regular file")
    return os.fdopen(fd, "rb")


def read_bytes(path: str | os.PathLike[str], limit: int, limit_text: str = "") -> bytes:
    """The bytes of the regular file ``path``, refusing one of more than ``limit`` bytes; at
    most ``limit + 1`` bytes are read even if the file grows meanwhile."""
    p = os.fspath(path)
    with open_regular(p) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise FileTooLarge(_too_large(p, size, limit_text))
        try:
            data = f.read(limit + 1)
        except OSError as e:
            raise FileProblem(f"cannot read {p}: {e.strerror}") from None
    if len(data) > limit:
        raise FileTooLarge(_too_large(p, None, limit_text))
    return data


def _too_large(p: str, size: int | None, limit_text: str) -> str:
    held = f"{size:,} bytes" if size is not None else "more bytes than that"
    return f"{p} holds {held}; {limit_text}" if limit_text else f"{p} is too large ({held})"


def read_text(path: str | os.PathLike[str], limit: int, limit_text: str = "") -> str:
    """``read_bytes`` decoded as UTF-8 (a file that is not UTF-8 is a FileProblem)."""
    data = read_bytes(path, limit, limit_text)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileProblem(f"{os.fspath(path)} is not a UTF-8 text file (byte {e.start:,} is "
                          f"not UTF-8)") from None


def _stream_kind(path: Path) -> int | None:
    """The mode of ``path`` (symlinks followed) when it is a character device or a FIFO."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return mode if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else None


def destination(path: str | os.PathLike[str]) -> Path:
    """Where writing ``path`` lands: a regular file (a symlink's final target), a new file in
    an existing directory, or a character device or FIFO, written through as it is."""
    p = Path(os.fspath(path))
    if _stream_kind(p) is not None:
        return p
    real = Path(os.path.realpath(p))
    try:
        st = real.stat()
    except FileNotFoundError:
        if not real.parent.is_dir():
            raise _cannot_write(p, f"no directory {real.parent}") from None
        return real
    except OSError as e:
        raise _cannot_write(p, str(e.strerror)) from None
    if not stat.S_ISREG(st.st_mode):
        raise _cannot_write(p, f"it is {_kind(st.st_mode)}, not a regular file")
    return real


def _write_stream(p: Path, data: bytes, mode: int) -> None:
    """Write to a device (``/dev/null``, ``/dev/full``: its errors reported) or a FIFO
    (refused at once when nothing reads it, instead of waiting for a reader)."""
    fifo = stat.S_ISFIFO(mode)
    try:
        fd = os.open(p, os.O_WRONLY | (os.O_NONBLOCK if fifo else 0) | os.O_CLOEXEC)
    except OSError as e:
        if fifo and e.errno == errno.ENXIO:
            raise _cannot_write(p, "it is a FIFO that no process reads") from None
        raise _cannot_write(p, str(e.strerror or e)) from None
    try:
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError as e:
        raise _cannot_write(p, str(e.strerror or e)) from None
    finally:
        os.close(fd)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all; returns where it landed.

    For a file, a temporary file in the destination's directory is written, flushed to disk
    and renamed over the destination; any error (a full disk, a missing directory) is a
    FileProblem and leaves the destination untouched. A device or FIFO is written through
    (never replaced by a file), and its errors are FileProblems too.
    """
    real = destination(path)
    mode = _stream_kind(real)
    if mode is not None:
        _write_stream(real, data, mode)
        return real
    fd, tmp = -1, ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
        with os.fdopen(fd, "wb") as f:
            fd = -1
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if real.exists():
            os.chmod(tmp, stat.S_IMODE(real.stat().st_mode))
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, real)
        tmp = ""
    except OSError as e:
        raise _cannot_write(os.fspath(path), str(e.strerror or e)) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if tmp:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return real
