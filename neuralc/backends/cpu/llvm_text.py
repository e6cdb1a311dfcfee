"""Writing LLVM IR text: a function's blocks and instructions, typed values, constants.

The CPU code generator emits LLVM IR as text (as the feasibility study did: it is fast to
produce and easy to read in ``--emit llvm``); this module holds the bookkeeping: fresh names,
the current block, type spellings, exact float literals and vector splats.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

# bfloat16 values live in i16 registers: LLVM promotes ``bfloat`` to float on CPUs without
# AVX512-BF16 and rounds it back through ``__truncsfbf2``, a libcall a Python process lacks, so
# the code generator does the two conversions itself in integer arithmetic.
LLVM_TYPES = {"f32": "float", "f16": "half", "bf16": "i16", "f64": "double",
              "i64": "i64", "i32": "i32", "i16": "i16", "i8": "i8", "i1": "i1"}
FLOATS = ("f32", "f16", "bf16", "f64")
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4, "i16": 2, "i8": 1,
            "i1": 1}


def llvm_type(dtype: str, lanes: int = 1) -> str:
    t = LLVM_TYPES[dtype]
    return t if lanes == 1 else f"<{lanes} x {t}>"


def float_literal(value: float, dtype: str) -> str:
    """An exact LLVM literal of ``value`` rounded to ``dtype``."""
    v = float(value)
    if dtype == "f16":
        bits = struct.unpack("<H", struct.pack("<e", v))[0]
        return f"0xH{bits:04X}"
    if dtype == "bf16":
        with np.errstate(over="ignore"):
            f32 = int(np.float32(v).view(np.uint32))
        bits = 0x7FC0 if v != v else ((f32 + 0x7FFF + ((f32 >> 16) & 1)) >> 16) & 0xFFFF
        return str(bits - 0x10000 if bits >= 0x8000 else bits)  # an i16 (see LLVM_TYPES)
    if dtype == "f32":
        with np.errstate(over="ignore"):
            v = float(np.float32(v))  # LLVM wants the double spelling of a float value
    return f"0x{struct.unpack('<Q', struct.pack('<d', v))[0]:016X}"


def literal(value: float | int | bool, dtype: str) -> str:
    if dtype in FLOATS:
        return float_literal(float(value), dtype)
    if dtype == "i1":
        return "true" if value else "false"
    return str(int(value))


@dataclass
class Val:
    """An SSA value: its name (or a literal), element type and lane count (1: a scalar)."""

    ref: str
    dtype: str
    lanes: int = 1

    @property
    def ty(self) -> str:
        return llvm_type(self.dtype, self.lanes)


@dataclass
class FunctionText:
    """The body of one LLVM function under construction."""

    lines: list[str] = field(default_factory=list)
    counter: int = 0
    block: str = "entry"

    def fresh(self, hint: str = "v") -> str:
        self.counter += 1
        return f"%{hint}.{self.counter}"  # the dot keeps "i1" + 26 apart from "i" + 126

    def label(self, hint: str) -> str:
        self.counter += 1
        return f"{hint}.{self.counter}"

    def emit(self, text: str) -> None:
        self.lines.append(f"  {text}")

    def assign(self, text: str, hint: str = "v") -> str:
        name = self.fresh(hint)
        self.lines.append(f"  {name} = {text}")
        return name

    def start(self, label: str) -> None:
        self.lines.append(f"{label}:")
        self.block = label

    def branch(self, label: str) -> None:
        self.emit(f"br label %{label}")

    def splat(self, v: Val, lanes: int) -> Val:
        """``v`` broadcast to ``lanes`` lanes (a vector stays as it is)."""
        if v.lanes == lanes or lanes == 1:
            return v
        t = llvm_type(v.dtype)
        one = self.assign(f"insertelement <1 x {t}> poison, {t} {v.ref}, i64 0", "s")
        out = self.assign(f"shufflevector <1 x {t}> {one}, <1 x {t}> poison, "
                          f"<{lanes} x i32> zeroinitializer", "s")
        return Val(out, v.dtype, lanes)
