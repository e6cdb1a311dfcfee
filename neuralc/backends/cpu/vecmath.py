"""Vector float32 transcendental functions written as plain LLVM IR text.

LLVM lowers ``llvm.exp.v16f32`` to sixteen scalar ``expf`` calls; these definitions are range
reduction plus a polynomial on the whole vector instead (exp at width 16 on Zen 4: 0.34 ns per
float against 2.3 ns through libm, 6.7x), and they call nothing: no libm, no x86 intrinsics,
so the same text links into a static executable for x86-64 or aarch64. Multiply-adds are
``llvm.fmuladd`` (fused where the target has FMA, a multiply and an add on SSE2), and the
range reductions are exact either way within their stated ranges: the split constants have few
enough bits that their products with the reduction integer are exact.

``define(name, width)`` returns one self-contained definition ``@nc_<name>_v<N>f32`` (``f32``
for width 1): ``internal``, ``alwaysinline`` and ``memory(none)``, so it inlines into its caller
and disappears when unused (``inline=False``: ``@..._call``, ``noinline``, for callers that
would otherwise inline many copies). Intrinsics are not declared: LLVM (17+) declares them
implicitly, so several definitions concatenate into one module without duplicate
declarations. Functions are generated whole (``tanh`` contains its own ``exp``), so no
definition depends on another.

Semantics follow numpy float32, with the error bounds in each generator's docstring (measured
against float64 references over dense sweeps in ``tests/backends/cpu/test_vecmath.py``). No
function flushes denormals: exp and friends produce gradual underflow, log accepts denormal
inputs. ``nan`` in gives ``nan`` out in every function. The results assume the default
round-to-nearest mode (the rounding trick ``x + 1.5*2^23`` relies on it).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable

import numpy as np

__all__ = ["NAMES", "WIDTHS", "define", "describe", "function_name"]

WIDTHS = (1, 2, 4, 8, 16, 32, 64)

_MAGIC = 12582912.0  # 1.5 * 2**23: adding it rounds |v| < 2**22 to an integer in the low bits
_MAGIC_BITS = 0x4B400000
_LOG2E = 1.4426950408889634
# ln 2 = _LN2_HI + _LN2_LO; _LN2_HI has 9 significant bits, so n * _LN2_HI is exact for |n| < 2**15.
_LN2_HI = 0.693359375
_LN2_LO = -2.12194440e-4
# pi/2 = _PIO2_1 + _PIO2_2 + _PIO2_3 (8, 11 and 24 significant bits): j * _PIO2_1 and
# j * _PIO2_2 are exact for |j| < 2**13, i.e. |x| < 12868.
_PIO2_1 = 1.5703125
_PIO2_2 = 4.837512969970703125e-4
_PIO2_3 = 7.54978995489188216e-8
# Past 2**21 * pi/2, x * 2/pi has an ulp of 0.5 and the quadrant may be off by one: |r| then
# leaves the polynomials' range. float32 just below 2**21 * pi/2:
_SINCOS_LIMIT = 3294198.5
_FLT_MIN = 1.1754943508222875e-38

# expm1(r) ~ r + r^2 * P(r) on |r| <= ln2/2 (relative minimax, 2.5e-10 before rounding).
_EXPM1_P = (
    1.984590635402128e-4,
    1.3941212091594934e-3,
    8.333390578627586e-3,
    4.166635498404503e-2,
    0.1666666567325592,
    0.5,
)
# Cephes logf: log(1+f) ~ f - f^2/2 + f^3 * P(f) on sqrt(1/2)-1 <= f < sqrt(2)-1.
_LOG_P = (
    7.0376836292e-2,
    -1.1514610310e-1,
    1.1676998740e-1,
    -1.2420140846e-1,
    1.4249322787e-1,
    -1.6668057665e-1,
    2.0000714765e-1,
    -2.4999993993e-1,
    3.3333331174e-1,
)
# Cephes tanhf for |x| < 0.625: tanh(x) ~ x + x^3 * P(x^2).
_TANH_P = (
    -5.70498872745e-3,
    2.06390887954e-2,
    -5.37397155531e-2,
    1.33314422036e-1,
    -3.33332819422e-1,
)
# Cephes sinf/cosf on |r| <= pi/4.
_SIN_P = (-1.9515295891e-4, 8.3321608736e-3, -1.6666654611e-1)
_COS_P = (2.443315711809948e-5, -1.388731625493765e-3, 4.166664568298827e-2)
# erf(x) ~ x * P(x^2) for |x| < 0.875 (relative minimax, 8.5e-9 before rounding) and
# erfc(x) ~ exp(Q(x)) for 0.875 <= x <= 4 (absolute minimax on erfc, 1.8e-9): fitted here.
_ERF_SPLIT = 0.875
_ERF_P = (
    -6.203194498084486e-4,
    5.032171029597521e-3,
    -2.679145708680153e-2,
    0.11282455176115036,
    -0.3761255145072937,
    1.1283791065216064,
)
_ERFC_Q = (
    1.9990366126876324e-4,
    -3.0820181127637625e-3,
    2.2381115704774857e-2,
    -0.10425037890672684,
    -0.6368204355239868,
    -1.1278895139694214,
    -1.4418379578273743e-4,
)


def _float_literal(value: float) -> str:
    """LLVM's spelling of a float constant: the hex of the double equal to the float32 value."""
    if math.isnan(value):
        return "0x7FF8000000000000"
    f32 = float(np.float32(value))
    return "0x" + struct.pack(">d", f32).hex().upper()


class _Builder:
    """Straight-line SSA text for one function over ``float`` or ``<N x float>`` lanes."""

    def __init__(self, width: int):
        self.width = width
        if width == 1:
            self.f, self.i, self.b, self.sfx = "float", "i32", "i1", "f32"
        else:
            self.f = f"<{width} x float>"
            self.i = f"<{width} x i32>"
            self.b = f"<{width} x i1>"
            self.sfx = f"v{width}f32"
        self.lines: list[str] = []
        self._n = 0

    def _emit(self, rhs: str) -> str:
        self._n += 1
        name = f"%v{self._n}"
        self.lines.append(f"  {name} = {rhs}")
        return name

    # constants
    def cf(self, value: float) -> str:
        lit = _float_literal(value)
        return lit if self.width == 1 else f"splat (float {lit})"

    def ci(self, value: int) -> str:
        return str(value) if self.width == 1 else f"splat (i32 {value})"

    # float arithmetic (no fast-math flags: IEEE semantics, nan and inf pass through)
    def fadd(self, a: str, b: str) -> str:
        return self._emit(f"fadd {self.f} {a}, {b}")

    def fsub(self, a: str, b: str) -> str:
        return self._emit(f"fsub {self.f} {a}, {b}")

    def fmul(self, a: str, b: str) -> str:
        return self._emit(f"fmul {self.f} {a}, {b}")

    def fdiv(self, a: str, b: str) -> str:
        return self._emit(f"fdiv {self.f} {a}, {b}")

    def fneg(self, a: str) -> str:
        return self._emit(f"fneg {self.f} {a}")

    def fma(self, a: str, b: str, c: str) -> str:
        """a * b + c, fused where the target has FMA."""
        f = self.f
        return self._emit(f"call {f} @llvm.fmuladd.{self.sfx}({f} {a}, {f} {b}, {f} {c})")

    def fabs(self, a: str) -> str:
        return self._emit(f"call {self.f} @llvm.fabs.{self.sfx}({self.f} {a})")

    def fcmp(self, pred: str, a: str, b: str) -> str:
        return self._emit(f"fcmp {pred} {self.f} {a}, {b}")

    def select(self, cond: str, a: str, b: str, ty: str | None = None) -> str:
        t = ty or self.f
        return self._emit(f"select {self.b} {cond}, {t} {a}, {t} {b}")

    def selecti(self, cond: str, a: str, b: str) -> str:
        return self.select(cond, a, b, self.i)

    def poly(self, x: str, coeffs: tuple[float, ...]) -> str:
        """Horner's rule, highest coefficient first."""
        acc = self.cf(coeffs[0])
        for c in coeffs[1:]:
            acc = self.fma(acc, x, self.cf(c))
        return acc

    # integer views of float bits
    def as_int(self, a: str) -> str:
        return self._emit(f"bitcast {self.f} {a} to {self.i}")

    def as_float(self, a: str) -> str:
        return self._emit(f"bitcast {self.i} {a} to {self.f}")

    def iop(self, op: str, a: str, b: str) -> str:
        return self._emit(f"{op} {self.i} {a}, {b}")

    def icmp(self, pred: str, a: str, b: str) -> str:
        return self._emit(f"icmp {pred} {self.i} {a}, {b}")

    def sitofp(self, a: str) -> str:
        return self._emit(f"sitofp {self.i} {a} to {self.f}")

    # shared pieces
    def round_int(self, v: str) -> tuple[str, str]:
        """(nearest integer as float, the same as i32) for |v| < 2**22, without a round op.

        SSE2 has no vector round; ``llvm.rint`` would become libm calls there.
        """
        t = self.fadd(v, self.cf(_MAGIC))
        nf = self.fsub(t, self.cf(_MAGIC))
        n = self.iop("sub", self.as_int(t), self.ci(_MAGIC_BITS))
        return nf, n

    def pow2(self, n: str) -> str:
        """2**n as float for integer n in [-126, 127]."""
        return self.as_float(self.iop("shl", self.iop("add", n, self.ci(127)), self.ci(23)))

    def ldexp(self, y: str, n: str) -> str:
        """y * 2**n for n in [-252, 254] with one rounding, so results may be denormal or inf.

        Two power-of-two factors keep each in the normal range; the first product is exact.
        """
        n1 = self.iop("ashr", n, self.ci(1))
        n2 = self.iop("sub", n, n1)
        return self.fmul(self.fmul(y, self.pow2(n1)), self.pow2(n2))

    def copysign(self, mag: str, sign_of: str) -> str:
        """|mag| with the sign bit of ``sign_of`` (mag must be non-negative or nan)."""
        sign = self.iop("and", self.as_int(sign_of), self.ci(-0x80000000))
        return self.as_float(self.iop("or", self.as_int(mag), sign))

    def clamp(self, x: str, lo: float, hi: float) -> str:
        """Clamp with ordered compares, so nan passes through unchanged."""
        x = self.select(self.fcmp("ogt", x, self.cf(hi)), self.cf(hi), x)
        return self.select(self.fcmp("olt", x, self.cf(lo)), self.cf(lo), x)

    def exp_reduce(self, x: str) -> tuple[str, str]:
        """x = n*ln2 + r with |r| <= ln2/2 (Cody-Waite, exact); returns (r, n as i32)."""
        nf, n = self.round_int(self.fmul(x, self.cf(_LOG2E)))
        r = self.fma(nf, self.cf(-_LN2_HI), x)
        r = self.fma(nf, self.cf(-_LN2_LO), r)
        return r, n

    def expm1_poly(self, r: str) -> str:
        """expm1(r) for |r| <= ln2/2: r + r^2 * P(r)."""
        return self.fma(self.fmul(r, r), self.poly(r, _EXPM1_P), r)

    def exp(self, x: str) -> str:
        # Below -104 the result rounds to 0, above 89 to inf: clamping keeps n in ldexp's range
        # and the scaling itself then produces the 0, the denormals and the inf.
        x = self.clamp(x, -104.0, 89.0)
        r, n = self.exp_reduce(x)
        p = self.fadd(self.expm1_poly(r), self.cf(1.0))
        return self.ldexp(p, n)

    def log_finite(self, x: str) -> str:
        """log(x) for finite x > 0, denormals included (no special cases)."""
        tiny = self.fcmp("olt", x, self.cf(_FLT_MIN))
        xs = self.select(tiny, self.fmul(x, self.cf(2.0**23)), x)
        bits = self.as_int(xs)
        e = self.iop("sub", self.iop("lshr", bits, self.ci(23)), self.ci(126))
        e = self.iop("sub", e, self.selecti(tiny, self.ci(23), self.ci(0)))
        m_bits = self.iop("or", self.iop("and", bits, self.ci(0x007FFFFF)), self.ci(0x3F000000))
        m = self.as_float(m_bits)  # x = m * 2**e, m in [0.5, 1)
        small = self.fcmp("olt", m, self.cf(0.70710678118654752))
        e = self.iop("sub", e, self.selecti(small, self.ci(1), self.ci(0)))
        m = self.select(small, self.fadd(m, m), m)
        f = self.fsub(m, self.cf(1.0))  # exact (Sterbenz); f in [-0.293, 0.414)
        ef = self.sitofp(e)
        z = self.fmul(f, f)
        y = self.fmul(self.fmul(self.poly(f, _LOG_P), f), z)
        y = self.fma(ef, self.cf(_LN2_LO), y)
        y = self.fma(z, self.cf(-0.5), y)
        r = self.fadd(f, y)
        return self.fma(ef, self.cf(_LN2_HI), r)


# -- the functions --------------------------------------------------------------------------


def _exp(b: _Builder, x: str) -> str:
    """exp: <= 1.5 ulp for every input (measured 0.97), denormal results included: gradual
    underflow to 0 below -103.97 (no flush), +inf above 88.7228; exp(-inf) = 0.

    Why: Cody-Waite reduction to |r| <= ln2/2 is exact, the degree-7 polynomial is 2.5e-10
    accurate, and the 2**n scaling is a single rounding even into the denormal range.
    """
    return b.exp(x)


def _expm1(b: _Builder, x: str) -> str:
    """expm1: <= 2 ulp for every input (measured 1.41; no cancellation near 0, tiny and
    denormal x give x, -0 gives -0), -1 below -17.33, +inf above 88.7228.

    Why: expm1(n*ln2 + r) = 2**n * expm1(r) + (2**n - 1) with 2**n - 1 exact for the n where
    it matters; the final fused multiply-add is the only rounding that is not in expm1(r).
    """
    x = b.clamp(x, -18.0, 89.0)
    r, n = b.exp_reduce(x)
    q = b.expm1_poly(r)
    # Scale by 2**(n-1) and double at the end, so n = 128 (results near FLT_MAX) stays in range.
    s = b.pow2(b.iop("sub", n, b.ci(1)))
    y = b.fma(s, q, b.fsub(s, b.cf(0.5)))
    # expm1(x) rounds to x below 2**-25 (and keeps -0); halving and doubling would also drop
    # the last bit of a denormal.
    tiny = b.fcmp("olt", b.fabs(x), b.cf(2.0**-25))
    return b.select(tiny, x, b.fadd(y, y))


def _log(b: _Builder, x: str) -> str:
    """log: <= 1.5 ulp for every positive float (measured 0.75), denormals included;
    log(+-0) = -inf, log(x < 0) = nan, log(+inf) = +inf.

    Why: the exponent split is exact (denormals are scaled by 2**23 first), the mantissa is
    centred on 1 so f = m - 1 is exact, and ln2 is applied in two parts (Cephes logf).
    """
    y = b.log_finite(x)
    y = b.select(b.fcmp("oeq", x, b.cf(math.inf)), b.cf(math.inf), y)
    y = b.select(b.fcmp("ult", x, b.cf(0.0)), b.cf(math.nan), y)  # negatives and nan
    return b.select(b.fcmp("oeq", x, b.cf(0.0)), b.cf(-math.inf), y)


def _tanh(b: _Builder, x: str) -> str:
    """tanh: <= 2.5e-7 relative for every input (measured 1.4e-7; an odd polynomial below
    |x| = 0.625, so tiny inputs keep full relative accuracy); +-1 beyond |x| = 9.01,
    tanh(+-inf) = +-1, tanh(-0) = -0.

    Why: above 0.625, 1 - 2/(exp(2|x|) + 1) loses at most ~2 ulp to the division and the
    subtraction; exp overflowing to inf gives exactly 1, never nan.
    """
    ax = b.fabs(x)
    big = b.fcmp("oge", ax, b.cf(0.625))
    e = b.exp(b.fadd(ax, ax))
    t = b.copysign(b.fsub(b.cf(1.0), b.fdiv(b.cf(2.0), b.fadd(e, b.cf(1.0)))), x)
    z = b.fmul(x, x)
    p = b.fma(b.fmul(b.poly(z, _TANH_P), z), x, x)
    # x + x^3 P rounds -0 to +0; the odd function keeps the sign of zero
    p = b.select(b.fcmp("oeq", x, b.cf(0.0)), x, p)
    return b.select(big, t, p)


def _sigmoid(b: _Builder, x: str) -> str:
    """sigmoid 1/(1+exp(-x)): <= 3e-7 relative for every input (measured 1.7e-7), denormal
    results included; 0, never nan, for large negative x and -inf; sigmoid(+inf) = 1.

    Why: with e = exp(-|x|) <= 1 it is 1/(1+e) for x >= 0 and e/(1+e) for x < 0, so nothing
    overflows and the small side keeps exp's relative accuracy.
    """
    e = b.exp(b.fneg(b.fabs(x)))
    num = b.select(b.fcmp("olt", x, b.cf(0.0)), e, b.cf(1.0))
    return b.fdiv(num, b.fadd(e, b.cf(1.0)))


def _softplus(b: _Builder, x: str) -> str:
    """softplus log(1+exp(x)): <= 3e-7 relative for every input (measured 2.0e-7); x for
    large x, exp(x) (gradual underflow) for large negative x; softplus(+inf) = +inf,
    softplus(-inf) = 0.

    Why: max(x, 0) + log1p(exp(-|x|)) never overflows, and log1p(u) = log(1+u) * u/((1+u)-1)
    (Goldberg) cancels the rounding of 1+u, so small u keeps its relative accuracy.
    """
    e = b.exp(b.fneg(b.fabs(x)))
    w = b.fadd(e, b.cf(1.0))
    l1p = b.fmul(b.log_finite(w), b.fdiv(e, b.fsub(w, b.cf(1.0))))
    l1p = b.select(b.fcmp("oeq", w, b.cf(1.0)), e, l1p)
    m = b.select(b.fcmp("ogt", x, b.cf(0.0)), x, b.cf(0.0))
    y = b.fadd(m, l1p)
    return b.select(b.fcmp("uno", x, x), x, y)


def _erf(b: _Builder, x: str) -> str:
    """erf: <= 2e-7 absolute for every input (measured 1.3e-7), and 2.5e-7 relative below
    |x| = 0.875 (tiny inputs keep their precision); +-1 beyond |x| = 3.92, erf(+-inf) = +-1,
    erf(-0) = -0.

    Why: an odd polynomial below 0.875 and 1 - exp(Q(|x|)) above, with log(erfc) nearly
    quadratic, so both fits are accurate to 1e-8 and their float32 evaluation adds ~1e-7.
    The one-piece rational x*A(x^2)/B(x^2) (Eigen's) measured 3.3e-7 here. Inputs are
    clamped to |x| <= 4, beyond which erf rounds to +-1.
    """
    ax = b.select(b.fcmp("ogt", b.fabs(x), b.cf(4.0)), b.cf(4.0), b.fabs(x))
    small = b.fmul(ax, b.poly(b.fmul(ax, ax), _ERF_P))
    large = b.fsub(b.cf(1.0), b.exp(b.poly(ax, _ERFC_Q)))
    y = b.select(b.fcmp("olt", ax, b.cf(_ERF_SPLIT)), small, large)
    return b.copysign(y, x)


def _sincos(b: _Builder, x: str, quadrant_shift: int) -> str:
    """sin(x + quadrant_shift * pi/2) by reduction to |r| <= pi/4 and a quadrant."""
    jf, j = b.round_int(b.fmul(x, b.cf(2.0 / math.pi)))
    r = b.fma(jf, b.cf(-_PIO2_1), x)
    r = b.fma(jf, b.cf(-_PIO2_2), r)
    r = b.fma(jf, b.cf(-_PIO2_3), r)
    if quadrant_shift:
        j = b.iop("add", j, b.ci(quadrant_shift))
    z = b.fmul(r, r)
    s = b.fma(b.fmul(b.poly(z, _SIN_P), z), r, r)
    c = b.fma(b.fmul(b.poly(z, _COS_P), z), z, b.fma(z, b.cf(-0.5), b.cf(1.0)))
    odd = b.icmp("ne", b.iop("and", j, b.ci(1)), b.ci(0))
    y = b.select(odd, c, s)
    sign = b.iop("shl", b.iop("and", j, b.ci(2)), b.ci(30))
    y = b.as_float(b.iop("xor", b.as_int(y), sign))
    if not quadrant_shift:
        # r + r^3 P rounds -0 to +0; sin keeps the sign of zero
        y = b.select(b.fcmp("oeq", x, b.cf(0.0)), x, y)
    # Past 2**21 * pi/2 the quadrant is unreliable: nan, not a wrong number.
    return b.select(b.fcmp("ogt", b.fabs(x), b.cf(_SINCOS_LIMIT)), b.cf(math.nan), y)


def _sin(b: _Builder, x: str) -> str:
    """sin: <= 1e-6 absolute for |x| <= 12868 on every target (measured 2.5e-7 without FMA,
    9e-8 with), and up to |x| = 3.29e6 where multiply-adds fuse (FMA: x86-64-v3, AVX-512,
    AArch64; measured 6.7e-7); nan beyond 3.29e6 and for +-inf.

    Why: pi/2 is split in three parts (8, 11, 24 bits); the products with the quadrant j are
    exact for |j| < 2**13 even unfused, and always exact inside an FMA. Without FMA the error
    grows past 12868 (1e-6 at 1e5, 3e-2 at 1e6). Past 2**21 * pi/2 the float32 quotient
    x * 2/pi can pick the wrong quadrant; a Payne-Hanek reduction would be needed, and
    returning nan says so instead of a wrong number.
    """
    return _sincos(b, x, 0)


def _cos(b: _Builder, x: str) -> str:
    """cos: <= 1e-6 absolute for |x| <= 12868 (3.29e6 with FMA), nan beyond 3.29e6 and for
    +-inf.

    Why: cos(x) = sin(x + pi/2) by shifting the quadrant, so it shares sin's reduction and its
    limits.
    """
    return _sincos(b, x, 1)


_GENERATORS: dict[str, Callable[[_Builder, str], str]] = {
    "exp": _exp,
    "expm1": _expm1,
    "log": _log,
    "tanh": _tanh,
    "sigmoid": _sigmoid,
    "softplus": _softplus,
    "erf": _erf,
    "sin": _sin,
    "cos": _cos,
}

NAMES: tuple[str, ...] = tuple(_GENERATORS)

_ATTRS = "nounwind willreturn nosync nofree norecurse memory(none)"


def _check(name: str, width: int) -> None:
    if name not in _GENERATORS:
        raise ValueError(f"no vector math function {name!r}; known: {', '.join(NAMES)}")
    if width not in WIDTHS:
        raise ValueError(f"vector width must be one of {WIDTHS}, got {width}")


def function_name(name: str, width: int, inline: bool = True) -> str:
    """The symbol ``define`` gives ``name`` at ``width``: ``nc_exp_v16f32``, ``nc_exp_f32``
    (``nc_exp_v16f32_call``: the copy that is never inlined)."""
    _check(name, width)
    base = f"nc_{name}_f32" if width == 1 else f"nc_{name}_v{width}f32"
    return base if inline else f"{base}_call"


def describe(name: str) -> str:
    """The function's documented semantics and error bound."""
    _check(name, 1)
    return " ".join((_GENERATORS[name].__doc__ or "").split())


def define(name: str, width: int, inline: bool = True) -> str:
    """The LLVM IR text of ``@nc_<name>_...`` taking and returning ``width`` float lanes.

    Self-contained (no calls but intrinsics) and ``internal``: paste it into any module that
    calls it. ``alwaysinline`` (a hot elementwise loop keeps its registers), or with
    ``inline=False`` ``noinline``: an unrolled-and-jammed epilogue calls it once per copy,
    and inlining each would multiply the code (and the compile time) by the copies. The first
    comment line states the error bound.
    """
    _check(name, width)
    b = _Builder(width)
    result = _GENERATORS[name](b, "%x")
    sym = function_name(name, width, inline)
    summary = describe(name).split(". Why:")[0]
    body = "\n".join(b.lines)
    return (
        f"; {sym}: {summary}\n"
        f"define internal {b.f} @{sym}({b.f} %x) "
        f"{'alwaysinline' if inline else 'noinline'} {_ATTRS} {{\n"
        f"entry:\n{body}\n  ret {b.f} {result}\n}}\n"
    )
