"""Reading ``.npy`` input files: checked from the header on, before any data is read.

numpy's own reader trusts the header: a header length that points past the file, a 4 GB
header, or a shape of 10^10 images backed by a few bytes end in tokenizer errors, MemoryError
or an attempt to allocate terabytes. Here the header is read with a bounded reader and parsed
as a literal (never unpickled: an input never executes code), the declared size is compared
with the file's size and with the memory limit, and only then are the numbers read. The first
inconsistency is the error.
"""

from __future__ import annotations

import ast
import math
import os
import struct

import numpy as np

from neuralc.files import open_regular
from neuralc.limits import MEMORY, format_bytes

__all__ = ["NpyError", "read_npy"]

MAGIC = b"\x93NUMPY"
MAX_HEADER = 65_536  # numpy writes headers of a few hundred bytes; it reads at most 10,000


class NpyError(Exception):
    """The file is not a readable numeric .npy array; the message says what is wrong."""


def _header(f, path: str, size: int) -> tuple[dict, int]:
    """The header dict and the offset of the data."""
    lead = f.read(8)
    if len(lead) < 8 or lead[:6] != MAGIC:
        raise NpyError(f"{path} is not a .npy file (save inputs with numpy.save)")
    major = lead[6]
    if major not in (1, 2, 3):
        raise NpyError(f"{path} is a .npy file of format version {major}.{lead[7]}, which "
                       "neuralc does not read (1.0, 2.0 and 3.0 are)")
    width = 2 if major == 1 else 4
    raw = f.read(width)
    if len(raw) < width:
        raise NpyError(f"{path} ends inside its header")
    length = struct.unpack("<H" if width == 2 else "<I", raw)[0]
    start = 8 + width + length
    if length > MAX_HEADER:
        raise NpyError(f"{path}: its header claims {length:,} bytes, more than a .npy header "
                       f"holds (at most {MAX_HEADER:,})")
    if start > size:
        raise NpyError(f"{path}: its header claims {length:,} bytes, but the file ends "
                       f"{size - 8 - width:,} bytes after the header's start")
    text = f.read(length).decode("utf-8" if major == 3 else "latin-1", errors="replace")
    try:
        header = ast.literal_eval(text.strip())
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError):
        raise NpyError(f"{path}: its header is not a .npy header (a dict of descr, "
                       f"fortran_order and shape): {text[:60]!r}") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpyError(f"{path}: its header must hold exactly descr, fortran_order and shape")
    return header, start


def _dtype(descr: object, path: str) -> np.dtype:
    if descr in ("|O", "O", "<O", ">O"):
        raise NpyError(f"{path} holds Python objects, not numbers; neuralc reads only numeric "
                       ".npy arrays")
    try:
        dtype = np.dtype(descr)  # a string such as '<f4'; never code
    except (TypeError, ValueError):
        raise NpyError(f"{path}: its header names the element type {descr!r}, which is no "
                       "numpy type") from None
    if dtype.kind not in "biuf":
        raise NpyError(f"{path} holds {dtype} elements, not numbers neuralc can read "
                       "(booleans, integers or floats)")
    return dtype


def read_npy(path: str | os.PathLike[str]) -> np.ndarray:
    """The numeric array in the .npy file ``path`` (refused with an NpyError or FileProblem)."""
    p = os.fspath(path)
    with open_regular(p) as f:
        size = os.fstat(f.fileno()).st_size
        header, start = _header(f, p, size)
        shape, order = header["shape"], header["fortran_order"]
        if not isinstance(shape, tuple) or not all(
                isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise NpyError(f"{p}: its header's shape {shape!r} is not a tuple of sizes")
        if not isinstance(order, bool):
            raise NpyError(f"{p}: its header's fortran_order {order!r} is not true or false")
        dtype = _dtype(header["descr"], p)
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > MEMORY.value:
            raise NpyError(f"{p} declares an array of shape {shape} ({format_bytes(nbytes)}); "
                           f"{MEMORY.exceeded()}")
        if size - start != nbytes:
            raise NpyError(f"{p} declares an array of shape {shape} and {dtype} "
                           f"({nbytes:,} bytes of data), but holds {size - start:,} bytes of "
                           "data: it is truncated or not what its header says")
        data = bytearray(nbytes)
        if f.readinto(data) != nbytes:
            raise NpyError(f"{p} changed while it was read")
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if order else "C")
