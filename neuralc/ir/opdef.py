"""Op definitions: each op kind is a subclass of :class:`~neuralc.ir.core.Op`, declared once.

As in xDSL's ``irdl_op_definition``, a definition lists its operands, results, attributes and
regions as class fields, and those declarations give the accessors (``conv.strides``,
``conv.input``) and the structural verification (counts, element types, unknown, missing or
mistyped attributes). What passes ask of an op are its *interfaces*, methods declared on
:class:`DefinedOp` with their defaults, so a pass calls them without guessing:

- ``infer_types(ctx)``: result types from operand types (the shape rule);
- ``evaluate(args, ctx)``: reference semantics in numpy (the interpreter's oracle);
- ``fusion_kind()``: how the op may join a fused kernel (TVM's classes);
- ``precision_policy()``: what the mixed-precision pass may do with it;
- ``canonicalize(rewriter)``: its canonicalisation pattern (a ``RewritePattern`` in effect);
- ``element(builder, index)``: how one output element is computed from its inputs (the loop
  level's lowering, like Inductor's ``inner_fn``).

Traits are class flags: ``isolated_from_above`` (region bodies see no outside value),
``terminator``, ``pure`` (no side effects: dead code elimination may erase it).

``Op("tensor.conv", ...)`` builds an instance of the registered class, so code that makes ops
generically (the parser, the builder) gets typed ops; an unregistered name gives a plain
``Op`` that the verifier reports.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from neuralc.ir.core import Op, register_op_class
from neuralc.ir.types import TensorType

if TYPE_CHECKING:
    import numpy as np

    from neuralc.ir.core import Value
    from neuralc.ir.shapes import ShapeContext

# How an op may join a fused kernel (TVM's rule set): elementwise ops fuse with anything;
# broadcast and injective ops (reshape, transpose, slice, concat) fuse into their consumers;
# reductions fuse an elementwise prologue and epilogue; output-fusible ops (matmul, conv) take
# an elementwise epilogue; opaque ops stay alone; "none" is not computation (constants).
FusionKind = Literal["elementwise", "broadcast", "injective", "reduction", "output_fusible",
                     "opaque", "none"]
# Mixed precision: "low" runs in fp16/bf16 (with fp32 accumulation), "follow" takes the
# precision of its inputs, "never" stays fp32 (softmax, normalisation, exp/log, reductions).
PrecisionPolicy = Literal["low", "follow", "never"]

# Attributes any op may carry besides its declared ones (MLIR's discardable attributes):
# a layer pinned to fp32 pins every op it lowers to; the memory plan's buffer slot.
DISCARDABLE_ATTRS = ("precision", "buffer")


# -- constraints ---------------------------------------------------------------------------


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


class Constraint:
    """What an attribute value must be; ``problem`` says why it is not, or None."""

    def problem(self, value: Any) -> str | None:
        return None if self.holds(value) else f"must be {self.describe()}"

    def holds(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class AnyAttr(Constraint):
    def holds(self, value: Any) -> bool:
        return True

    def describe(self) -> str:
        return "any value"


@dataclass(frozen=True)
class IntAttr(Constraint):
    min: int | None = None

    def holds(self, value: Any) -> bool:
        return _is_int(value) and (self.min is None or value >= self.min)

    def describe(self) -> str:
        if self.min == 1:
            return "a positive int"
        if self.min == 0:
            return "a non-negative int"
        return "an int" if self.min is None else f"an int >= {self.min}"


@dataclass(frozen=True)
class FloatAttr(Constraint):
    def holds(self, value: Any) -> bool:
        return _is_num(value)

    def describe(self) -> str:
        return "a number"


@dataclass(frozen=True)
class BoolAttr(Constraint):
    def holds(self, value: Any) -> bool:
        return isinstance(value, bool)

    def describe(self) -> str:
        return "a bool"


@dataclass(frozen=True)
class StrAttr(Constraint):
    choices: tuple[str, ...] = ()

    def holds(self, value: Any) -> bool:
        return isinstance(value, str) and (not self.choices or value in self.choices)

    def describe(self) -> str:
        if not self.choices:
            return "a string"
        return "one of " + ", ".join(f'"{c}"' for c in self.choices)


@dataclass(frozen=True)
class ListAttr(Constraint):
    """A list whose items all satisfy ``of``; ``non_empty`` forbids ``[]``."""

    of: Constraint = AnyAttr()
    non_empty: bool = False
    length: int | None = None

    def holds(self, value: Any) -> bool:
        if not isinstance(value, list) or (self.non_empty and not value):
            return False
        if self.length is not None and len(value) != self.length:
            return False
        return all(self.of.holds(v) for v in value)

    def describe(self) -> str:
        what = "a non-empty list" if self.non_empty else "a list"
        if self.length is not None:
            what = f"a list of {self.length}"
        return f"{what} of {_plural(self.of.describe())}"


@dataclass(frozen=True)
class DictAttr(Constraint):
    def holds(self, value: Any) -> bool:
        return isinstance(value, dict)

    def describe(self) -> str:
        return "a dictionary"


@dataclass(frozen=True)
class TypeAttr(Constraint):
    def holds(self, value: Any) -> bool:
        return isinstance(value, TensorType)

    def describe(self) -> str:
        return "a tensor type"


@dataclass(frozen=True)
class OneOf(Constraint):
    options: tuple[Constraint, ...]

    def holds(self, value: Any) -> bool:
        return any(o.holds(value) for o in self.options)

    def describe(self) -> str:
        return " or ".join(o.describe() for o in self.options)


def _plural(what: str) -> str:
    """``a positive int`` -> ``positive ints`` (item descriptions start with an article)."""
    for article in ("a ", "an "):
        if what.startswith(article):
            words = what[len(article):].split(" ")
            last = max(i for i, w in enumerate(words) if w.isalpha() or w.endswith("int"))
            words[last] += "s"
            return " ".join(words)
    return what


INT = IntAttr()
POSITIVE = IntAttr(1)
NON_NEGATIVE = IntAttr(0)
NUMBER = FloatAttr()
BOOL = BoolAttr()
STRING = StrAttr()
POSITIVE_INTS = ListAttr(POSITIVE, non_empty=True)
INTS = ListAttr(INT)
PAD_PAIRS = ListAttr(ListAttr(INT, length=2), non_empty=True)


# -- element-type constraints for operands and results --------------------------------------

FLOATS = ("f32", "f16", "bf16", "f64")
INTEGERS = ("i64", "i32", "i8")


@dataclass(frozen=True)
class TensorOf:
    """A tensor whose element type is one of ``dtypes`` (empty: any)."""

    dtypes: tuple[str, ...] = ()
    label: str = "a tensor"

    def problem(self, t: Any) -> str | None:
        if not isinstance(t, TensorType):
            return None  # not an IR type at all: the verifier reports that for every value
        if self.dtypes and t.dtype not in self.dtypes:
            return f"must be {self.label}, got {t}"
        return None


ANY_TENSOR = TensorOf()
FLOAT_TENSOR = TensorOf(FLOATS, "a float tensor")
INT_TENSOR = TensorOf(INTEGERS, "an integer tensor")
BOOL_TENSOR = TensorOf(("i1",), "an i1 tensor")
NUMERIC_TENSOR = TensorOf(FLOATS + INTEGERS, "a numeric tensor")


# -- field declarations --------------------------------------------------------------------

_MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()


class _Field:
    """A declared field; ``__set_name__`` records its Python name on the class."""

    attr: str = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name


class OperandDef(_Field):
    """An operand (``variadic``: any number, at most one per op)."""

    def __init__(self, constraint: TensorOf = ANY_TENSOR, variadic: bool = False):
        self.constraint = constraint
        self.variadic = variadic

    def __get__(self, op: Op | None, owner: type) -> Any:
        if op is None:
            return self
        return _slice(type(op).operand_defs, op.operands, self)


class ResultDef(_Field):
    def __init__(self, constraint: TensorOf = ANY_TENSOR, variadic: bool = False):
        self.constraint = constraint
        self.variadic = variadic

    def __get__(self, op: Op | None, owner: type) -> Any:
        if op is None:
            return self
        return _slice(type(op).result_defs, op.results, self)


class AttrDef(_Field):
    """An attribute: ``key`` in ``op.attributes`` (defaults to the field name); a default makes
    it optional (the accessor returns the default when it is absent)."""

    def __init__(self, constraint: Constraint = AnyAttr(), default: Any = _MISSING,
                 key: str | None = None, optional: bool = False):
        self.constraint = constraint
        self.default = None if optional and default is _MISSING else default
        self.optional = optional or default is not _MISSING
        self.key = key

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.key = self.key or name

    def __get__(self, op: Op | None, owner: type) -> Any:
        if op is None:
            return self
        assert self.key is not None
        value = op.attributes.get(self.key, _MISSING)
        return self.default if value is _MISSING else value


class RegionDef(_Field):
    def __get__(self, op: Op | None, owner: type) -> Any:
        if op is None:
            return self
        return op.regions[type(op).region_defs.index(self)]


def operand(constraint: TensorOf = ANY_TENSOR) -> Any:
    return OperandDef(constraint)


def var_operand(constraint: TensorOf = ANY_TENSOR) -> Any:
    return OperandDef(constraint, variadic=True)


def result(constraint: TensorOf = ANY_TENSOR) -> Any:
    return ResultDef(constraint)


def var_result(constraint: TensorOf = ANY_TENSOR) -> Any:
    return ResultDef(constraint, variadic=True)


def attribute(constraint: Constraint = AnyAttr(), default: Any = _MISSING,
              key: str | None = None) -> Any:
    return AttrDef(constraint, default, key)


def opt_attribute(constraint: Constraint = AnyAttr(), key: str | None = None) -> Any:
    """An optional attribute whose absence means ``None``."""
    return AttrDef(constraint, key=key, optional=True)


def region() -> Any:
    return RegionDef()


def _slice(defs: tuple[Any, ...], values: Any, field: Any) -> Any:
    """The value(s) of ``field`` among ``values`` laid out by ``defs`` (one may be variadic)."""
    i = defs.index(field)
    fixed_after = len(defs) - i - 1
    variadic_before = any(d.variadic for d in defs[:i])
    if field.variadic:
        return list(values[i:len(values) - fixed_after])
    if variadic_before:
        return values[len(values) - fixed_after - 1]
    return values[i]


# -- the base of every defined op ------------------------------------------------------------


class DefinedOp(Op):
    """An op kind with declared fields, traits and interfaces (see the module docstring)."""

    name: ClassVar[str] = ""  # type: ignore[misc]  (instances keep the same text in .name)
    operand_defs: ClassVar[tuple[OperandDef, ...]] = ()
    result_defs: ClassVar[tuple[ResultDef, ...]] = ()
    attr_defs: ClassVar[dict[str, AttrDef]] = {}
    region_defs: ClassVar[tuple[RegionDef, ...]] = ()
    # Attributes whose meaning this op defines beyond its declarations (graph ops: the layer's
    # parameters, checked by the catalog).
    extra_attrs_allowed: ClassVar[bool] = False

    # traits
    isolated_from_above: ClassVar[bool] = False
    fresh_name_scope: ClassVar[bool] = False  # the printer numbers its values afresh
    module_level: ClassVar[bool] = False  # may stand at module level (functions, kernels)
    terminator: ClassVar[bool] = False
    pure: ClassVar[bool] = True

    # interface defaults (constants: override the methods for per-op answers)
    FUSION: ClassVar[FusionKind] = "opaque"
    PRECISION: ClassVar[PrecisionPolicy] = "never"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        ops: list[OperandDef] = []
        res: list[ResultDef] = []
        attrs: dict[str, AttrDef] = {}
        regs: list[RegionDef] = []
        for klass in reversed(cls.__mro__):
            for field in vars(klass).values():
                if isinstance(field, OperandDef) and field not in ops:
                    ops.append(field)
                elif isinstance(field, ResultDef) and field not in res:
                    res.append(field)
                elif isinstance(field, AttrDef):
                    assert field.key is not None
                    attrs[field.key] = field
                elif isinstance(field, RegionDef) and field not in regs:
                    regs.append(field)
        for kind, defs in (("operands", ops), ("results", res)):
            if sum(d.variadic for d in defs) > 1:
                raise TypeError(f"{cls.__name__}: at most one variadic among its {kind}")
        cls.operand_defs, cls.result_defs = tuple(ops), tuple(res)
        cls.attr_defs, cls.region_defs = attrs, tuple(regs)

    # -- interfaces ------------------------------------------------------------------------
    def infer_types(self, ctx: ShapeContext) -> list[TensorType]:
        """Result types from operand types; raise ShapeError when they do not fit."""
        raise NotImplementedError(f"{self.name} has no shape inference")

    def evaluate(self, args: list[np.ndarray], ctx: Any) -> list[np.ndarray]:
        """Reference semantics in numpy; ``ctx`` gives symbol sizes and weights."""
        raise NotImplementedError(f"{self.name} has no reference semantics")

    def fusion_kind(self) -> FusionKind:
        return self.FUSION

    def precision_policy(self) -> PrecisionPolicy:
        return self.PRECISION

    def canonicalize(self, rewriter: Any) -> bool:
        """Rewrite this op into a simpler form through ``rewriter``; True if it changed IR."""
        return False

    def element(self, builder: Any, index: list[Any]) -> Any:
        """The scalar value of this op's (single) result at ``index`` (loop-level lowering)."""
        raise NotImplementedError(f"{self.name} has no element function")

    def loop_scratch(self) -> list[TensorType]:
        """Buffers the op's loop lowering needs besides its operands and results (a
        recurrence's states); the memory plan reserves them in the arena."""
        return []

    @classmethod
    def has_semantics(cls) -> bool:
        return cls.evaluate is not DefinedOp.evaluate

    @classmethod
    def has_shape_rule(cls) -> bool:
        return cls.infer_types is not DefinedOp.infer_types

    # -- verification ------------------------------------------------------------------------
    def verify_structure(self) -> list[str]:
        """Problems with the declared fields: counts, element types and attributes."""
        errs: list[str] = []
        errs += _check_values("operand", self.operand_defs, list(self.operands),
                              [v.type for v in self.operands])
        errs += _check_values("result", self.result_defs, list(self.results),
                              [r.type for r in self.results])
        if len(self.regions) != len(self.region_defs):
            errs.append(f"expects {len(self.region_defs)} region(s), got {len(self.regions)}")
        for key, value in self.attributes.items():
            d = self.attr_defs.get(key)
            if d is None:
                if key not in DISCARDABLE_ATTRS and not self.extra_attrs_allowed:
                    errs.append(f"has unknown attribute '{key}'")
                continue
            if value is None and d.optional:
                continue
            why = d.constraint.problem(value)
            if why is not None:
                errs.append(f"attribute '{key}' {why}, got {_show(value)}")
        for key, d in self.attr_defs.items():
            if key not in self.attributes and not d.optional:
                errs.append(f"is missing attribute '{key}'")
        return errs

    def verify_extra(self) -> list[str]:
        """Op-specific rules beyond the declarations (cross-attribute checks, regions)."""
        return []


def _show(value: Any) -> str:
    from neuralc.ir.printer import format_attr

    try:
        return format_attr(value)
    except TypeError:
        return repr(value)


def _check_values(what: str, defs: tuple[Any, ...], values: list[Any],
                  types: list[Any]) -> list[str]:
    variadic = any(d.variadic for d in defs)
    fixed = len(defs) - (1 if variadic else 0)
    if (variadic and len(values) < fixed) or (not variadic and len(values) != fixed):
        want = f"at least {fixed}" if variadic else str(fixed)
        return [f"expects {want} {what}(s), got {len(values)}"]
    errs = []
    for i, t in enumerate(types):
        d = _def_at(defs, i, len(values))
        why = d.constraint.problem(t)
        if why is not None:
            label = f"{what} #{i}" + (f" ('{d.attr}')" if d.attr else "")
            errs.append(f"{label} {why}")
    return errs


def _def_at(defs: tuple[Any, ...], i: int, n: int) -> Any:
    """The declaration that covers value ``i`` of ``n``."""
    for j, d in enumerate(defs):
        if d.variadic:
            after = len(defs) - j - 1
            if i < j:
                return defs[i]
            if i < n - after:
                return d
            return defs[j + 1 + (i - (n - after))]
    return defs[i]


# -- the registry --------------------------------------------------------------------------

_dialects_loaded = False


def register_op(cls: type[DefinedOp]) -> type[DefinedOp]:
    """Make ``cls`` the definition of ``cls.name`` (a class decorator)."""
    register_op_class(cls.name, cls)
    return cls


def lookup_op(name: str) -> type[DefinedOp] | None:
    """The definition of the op called ``name``; the ir dialects load on first use. The graph
    dialect lives with the layer catalog (it is generated from it) and registers when the
    catalog loads."""
    from neuralc.ir.core import op_class

    cls = op_class(name)
    if cls is None and not _dialects_loaded:
        _load_dialects()
        cls = op_class(name)
    return cls  # type: ignore[return-value]


def _load_dialects() -> None:
    global _dialects_loaded
    if _dialects_loaded:
        return
    _dialects_loaded = True
    import importlib
    import pkgutil

    from neuralc.ir import dialects

    for info in pkgutil.iter_modules(dialects.__path__):
        importlib.import_module(f"neuralc.ir.dialects.{info.name}")


def definition(op: Op) -> type[DefinedOp] | None:
    """The class that defines ``op``, or None for an unregistered op."""
    return type(op) if isinstance(op, DefinedOp) else lookup_op(op.name)


def defined(op: Op) -> DefinedOp | None:
    """``op`` as a defined op (it is one when its name was registered when it was made)."""
    return op if isinstance(op, DefinedOp) else None


def walk_defined(ops: Iterator[Op]) -> Iterator[DefinedOp]:
    for op in ops:
        if isinstance(op, DefinedOp):
            yield op


def evaluate_op(op: DefinedOp, args: list[np.ndarray], ctx: Any) -> list[np.ndarray]:
    """``op.evaluate`` plus the element type's rounding: a bf16 result is held in float32
    rounded to bf16, wherever the op runs (top level, a fused kernel body, a scan body)."""
    outs = op.evaluate(args, ctx)
    if any(r.type.dtype == "bf16" for r in op.results):
        from neuralc.ir.numeric import round_bf16

        outs = [round_bf16(o) if r.type.dtype == "bf16" else o for r, o in zip(op.results, outs)]
    return outs


ValueFn = Callable[["Value"], Any]
