"""Index expressions (:mod:`neuralc.ir.dims`) written as integer arithmetic in Python text.

The loop IR's index and size expressions are the single source of the cuda target's address
arithmetic: :class:`IndexText` prints one as code over the names the caller binds (loop
variables, sizes). Two dialects: ``triton`` (kernel code: integer ``//`` and ``%`` truncate
toward zero, as in C, so a ``floordiv``/``mod`` whose numerator may be negative goes through
the ``_floordiv``/``_mod`` helpers of the generated module; where the variables' ranges prove
it non-negative a plain ``//``/``%`` is written) and ``python`` (host code, where ``//`` and
``%`` already floor).
"""

from __future__ import annotations

from collections.abc import Mapping

from neuralc.ir.dims import Dim, Expr, FloorDiv, MinMax, Mod, bounds

Ranges = Mapping[str, tuple[Dim, Dim]]


class UnboundName(KeyError):
    """An expression names a symbol or variable the caller did not bind."""


class IndexText:
    """Prints dims as integer expressions over ``names`` (dim symbol -> code text)."""

    def __init__(self, names: Mapping[str, str], ranges: Ranges | None = None,
                 dialect: str = "triton"):
        self.names = names
        self.ranges = dict(ranges or {})
        self.dialect = dialect

    def text(self, d: Dim) -> str:
        """``d`` as an expression (parenthesised unless it is one token)."""
        if isinstance(d, int):
            return str(d) if d >= 0 else f"({d})"
        if not d.terms:
            return "0"
        parts: list[tuple[int, str]] = []
        for mono, coeff in d.terms:
            factors = [self.atom(a) for a in mono]
            parts.append((coeff, " * ".join(factors)))
        out = ""
        for k, (coeff, body) in enumerate(parts):
            mag = abs(coeff)
            if not body:
                term = str(mag)
            elif mag == 1:
                term = body
            else:
                term = f"{body} * {mag}"
            if k == 0:
                out = term if coeff > 0 else f"-{term}"
            else:
                out += f" + {term}" if coeff > 0 else f" - {term}"
        if len(parts) == 1 and parts[0][0] == 1 and " " not in out:
            return out
        return f"({out})"

    def atom(self, a: object) -> str:
        if isinstance(a, str):
            if a not in self.names:
                raise UnboundName(a)
            return self.names[a]
        if isinstance(a, MinMax):
            args = [self.text(e) for e in a.args]
            if self.dialect == "python":
                return f"{a.kind}({', '.join(args)})"
            fn = "tl.minimum" if a.kind == "min" else "tl.maximum"
            out = args[0]
            for x in args[1:]:
                out = f"{fn}({out}, {x})"
            return out
        assert isinstance(a, (FloorDiv, Mod))
        num = self.text(a.num)
        den = self.text(a.den if isinstance(a.den, Expr) else a.den)
        floor = isinstance(a, FloorDiv)
        if self.dialect == "python" or self.non_negative(a.num):
            return f"({num} {'//' if floor else '%'} {den})"
        return f"{'_floordiv' if floor else '_mod'}({num}, {den})"

    def non_negative(self, d: Dim) -> bool:
        lo, _ = bounds(d, self.ranges)
        return lo is not None and lo >= 0
