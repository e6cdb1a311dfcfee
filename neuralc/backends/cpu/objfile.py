"""What an ELF object needs from the process that loads it.

LLVM resolves some operations to calls out of the object (``memcpy``/``memset``; half-precision
conversions on an x86-64 without F16C call ``__extendhfsf2``/``__truncsfhf2``). Loaded into a
Python process, such a call is resolved against the symbols the process has loaded; a symbol it
lacks would be a call to address 0. So an object is checked before it is loaded, and the symbol
table is read defensively: the bytes may come from an artifact.
"""

from __future__ import annotations

import ctypes
import struct

__all__ = ["ObjectFileError", "undefined_symbols", "unresolved"]


class ObjectFileError(ValueError):
    """The bytes are not a readable 64-bit little-endian ELF object."""


def undefined_symbols(obj: bytes) -> list[str]:
    """The global symbols a 64-bit little-endian ELF object uses but does not define."""
    if obj[:6] != b"\x7fELF\x02\x01":
        raise ObjectFileError("is not a 64-bit little-endian ELF object")
    try:
        shoff, = struct.unpack_from("<Q", obj, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", obj, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + k * shentsize)
                    for k in range(shnum)]
        names = []
        for sec in sections:
            if sec[1] != 2:  # SHT_SYMTAB
                continue
            strtab = sections[sec[6]][4]
            for off in range(sec[4], sec[4] + sec[5], 24):
                name, info, _, shndx = struct.unpack_from("<IBBH", obj, off)
                if shndx == 0 and info >> 4 in (1, 2) and name:  # undefined, global or weak
                    end = obj.index(b"\0", strtab + name)
                    names.append(obj[strtab + name:end].decode())
    except (struct.error, IndexError, ValueError) as e:  # UnicodeDecodeError is a ValueError
        raise ObjectFileError(f"has a damaged symbol table ({e})") from None
    return sorted(set(names))


def unresolved(obj: bytes) -> list[str]:
    """The undefined symbols of ``obj`` that this process has not loaded."""
    process = ctypes.CDLL(None)
    missing = []
    for name in undefined_symbols(obj):
        if name == "_GLOBAL_OFFSET_TABLE_":
            continue
        try:
            getattr(process, name)
        except AttributeError:
            missing.append(name)
    return missing
