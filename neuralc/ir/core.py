"""The generic IR core: values, ops, blocks, regions, modules, and the rewriter.

Every IR level (graph, tensor, kernel, loop) uses these objects; what an op *means* is declared
once by its class in a dialect (:mod:`neuralc.ir.opdef`), and ``Op(name, ...)`` makes an
instance of the class registered for ``name``. Use lists are kept by the objects themselves,
and passes change IR only through :class:`Rewriter`, so a pass never leaves a dangling use
behind and a pattern driver can follow every change through the rewriter's listener.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from neuralc.ir.types import TensorType
from neuralc.location import UNKNOWN, FileLoc, Location


@dataclass(eq=False)
class Use:
    op: Op
    index: int


class Value:
    """An SSA value: a block argument or an op result."""

    def __init__(self, type: TensorType, name_hint: str | None = None):
        self.type = type
        self.name_hint = name_hint
        self.uses: list[Use] = []

    @property
    def owner(self) -> Op | Block:
        raise NotImplementedError

    def users(self) -> list[Op]:
        seen: list[Op] = []
        for u in self.uses:
            if u.op not in seen:
                seen.append(u.op)
        return seen

    def replace_all_uses_with(self, new: Value) -> None:
        for use in list(self.uses):
            use.op.set_operand(use.index, new)


class BlockArgument(Value):
    def __init__(self, type: TensorType, block: Block, index: int, name_hint: str | None = None):
        super().__init__(type, name_hint)
        self.block = block
        self.index = index
        self.location: Location = UNKNOWN

    @property
    def owner(self) -> Block:
        return self.block


class OpResult(Value):
    def __init__(self, type: TensorType, op: Op, index: int):
        super().__init__(type)
        self.op = op
        self.index = index

    @property
    def owner(self) -> Op:
        return self.op


Attribute = (
    Any  # int | float | str | bool | None | list[Attribute] | dict[str, Attribute] | TensorType
)


_OP_CLASSES: dict[str, type[Op]] = {}


def register_op_class(name: str, cls: type[Op]) -> None:
    if name in _OP_CLASSES:
        raise ValueError(f"op {name!r} defined twice")
    _OP_CLASSES[name] = cls


def op_class(name: str) -> type[Op] | None:
    return _OP_CLASSES.get(name)


class Op:
    """One operation: a name, SSA operands and results, attributes, regions and a location.

    ``Op(name, ...)`` returns an instance of the class registered for ``name`` (loading the
    ir dialects on first use), so every op made from its name is typed.
    """

    def __new__(cls, name: str = "", *args: Any, **kwargs: Any) -> Op:
        if cls is Op:
            from neuralc.ir.opdef import lookup_op

            klass = lookup_op(name)
            if klass is not None:
                return object.__new__(klass)
        return object.__new__(cls)

    def __init__(
        self,
        name: str,
        operands: list[Value] | tuple[Value, ...] = (),
        result_types: list[TensorType] | tuple[TensorType, ...] = (),
        attributes: dict[str, Attribute] | None = None,
        regions: list[Region] | None = None,
        location: Location = UNKNOWN,
    ):
        self.name = name
        self._operands: list[Value] = []
        self.results: list[OpResult] = [OpResult(t, self, i) for i, t in enumerate(result_types)]
        self.attributes: dict[str, Attribute] = dict(attributes or {})
        self.regions: list[Region] = []
        self.location = location
        # Where the op was read from textual IR (``m.nir:3:5``), for errors about the text;
        # ``location`` is the .nr text it stands for. None for ops built in memory.
        self.source_loc: FileLoc | None = None
        self.parent: Block | None = None
        for v in operands:
            self._add_operand(v)
        for r in regions or []:
            self.add_region(r)

    # -- operands -----------------------------------------------------------------------
    @property
    def operands(self) -> tuple[Value, ...]:
        return tuple(self._operands)

    def _add_operand(self, v: Value) -> None:
        v.uses.append(Use(self, len(self._operands)))
        self._operands.append(v)

    def set_operand(self, index: int, v: Value) -> None:
        old = self._operands[index]
        old.uses = [u for u in old.uses if not (u.op is self and u.index == index)]
        self._operands[index] = v
        v.uses.append(Use(self, index))

    def set_operands(self, values: list[Value]) -> None:
        self.drop_operands()
        for v in values:
            self._add_operand(v)

    def drop_operands(self) -> None:
        for i, v in enumerate(self._operands):
            v.uses = [u for u in v.uses if not (u.op is self and u.index == i)]
        self._operands = []

    # -- structure ----------------------------------------------------------------------
    def add_region(self, region: Region) -> None:
        region.parent = self
        self.regions.append(region)

    @property
    def result(self) -> OpResult:
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not one")
        return self.results[0]

    @property
    def dialect(self) -> str:
        return self.name.split(".", 1)[0]

    def walk(self) -> Iterator[Op]:
        """This op and every op nested in its regions, in program order (pre-order)."""
        yield self
        for r in self.regions:
            for b in r.blocks:
                for op in list(b.ops):
                    yield from op.walk()

    def parent_op(self) -> Op | None:
        if self.parent is None or self.parent.parent is None:
            return None
        return self.parent.parent.parent

    def clone(self, mapping: dict[int, Value] | None = None) -> Op:
        """A deep copy of this op (regions included), detached. ``mapping`` maps ids of values
        defined outside to their replacements (values not in it are kept); it is filled with
        this op's results and every value defined inside, so a caller cloning a sequence of
        ops passes one mapping through."""
        mapping = {} if mapping is None else mapping
        operands = [mapping.get(id(v), v) for v in self.operands]
        regions = [r.clone(mapping) for r in self.regions]
        new = Op(self.name, operands, [r.type for r in self.results],
                 copy.deepcopy(self.attributes), regions, self.location)
        for old, r in zip(self.results, new.results):
            mapping[id(old)] = r
        return new

    def __repr__(self) -> str:
        return f"<Op {self.name} at {self.location}>"


class Block:
    def __init__(self, arg_types: list[TensorType] | tuple[TensorType, ...] = ()):
        self.args: list[BlockArgument] = [
            BlockArgument(t, self, i) for i, t in enumerate(arg_types)
        ]
        self.ops: list[Op] = []
        self.parent: Region | None = None
        self._hint = 0  # where the last op looked up was (see index)

    def index(self, op: Op) -> int:
        """The position of ``op`` in ``ops``. Rewrites work near one place (lowering inserts
        every new op before the graph op it replaces, then erases that op), so the last
        position found is tried first; without it a long network would be quadratic."""
        try:
            self._hint = self.ops.index(op, max(0, self._hint - 16), self._hint + 17)
        except ValueError:
            self._hint = self.ops.index(op)
        return self._hint

    def add_arg(self, type: TensorType, name_hint: str | None = None) -> BlockArgument:
        a = BlockArgument(type, self, len(self.args), name_hint)
        self.args.append(a)
        return a

    def append(self, op: Op) -> Op:
        op.parent = self
        self.ops.append(op)
        return op

    def insert_before(self, anchor: Op, op: Op) -> Op:
        op.parent = self
        i = self.index(anchor)
        self.ops.insert(i, op)
        self._hint = i + 1  # where the anchor is now
        return op

    def insert_after(self, anchor: Op, op: Op) -> Op:
        op.parent = self
        self.ops.insert(self.index(anchor) + 1, op)
        return op

    def remove(self, op: Op) -> None:
        """Take ``op`` out of ``ops`` (the caller clears its parent)."""
        i = self.index(op)
        del self.ops[i]
        self._hint = max(i - 1, 0)

    @property
    def terminator(self) -> Op | None:
        return self.ops[-1] if self.ops else None

    def clone(self, mapping: dict[int, Value]) -> Block:
        new = Block()
        for a in self.args:
            na = new.add_arg(a.type, a.name_hint)
            na.location = a.location
            mapping[id(a)] = na
        for op in self.ops:
            new.append(op.clone(mapping))
        return new


class Region:
    def __init__(self, blocks: list[Block] | None = None):
        self.blocks: list[Block] = []
        self.parent: Op | None = None
        for b in blocks or []:
            self.add_block(b)

    def add_block(self, b: Block) -> Block:
        b.parent = self
        self.blocks.append(b)
        return b

    @property
    def block(self) -> Block:
        return self.blocks[0]

    def clone(self, mapping: dict[int, Value]) -> Region:
        return Region([b.clone(mapping) for b in self.blocks])


@dataclass
class Module:
    """A top-level container: named functions (one per network) and module attributes.

    ``attributes["dims"]`` maps symbol names to ``[lo, hi]`` ranges from the ``dims { }``
    section; ``None`` stands for an open end.
    """

    name: str
    body: Block = field(default_factory=Block)
    attributes: dict[str, Attribute] = field(default_factory=dict)

    @property
    def funcs(self) -> list[Op]:
        """Every function: the networks and their init functions."""
        return [op for op in self.body.ops if op.name == "func.func"]

    @property
    def networks(self) -> list[Op]:
        """The functions that run a network (not the init functions that serve them)."""
        return [f for f in self.funcs if "init_for" not in f.attributes]

    def init_func(self, func: Op) -> Op | None:
        """The init function of network ``func``, if it has one."""
        name = func.attributes.get("init")
        return self.func(name) if isinstance(name, str) else None

    def func(self, name: str | None = None) -> Op:
        fs = self.funcs if name is not None else self.networks
        if name is None:
            if len(fs) != 1:
                raise ValueError("module has several functions; name one")
            return fs[0]
        for f in fs:
            if f.attributes.get("sym_name") == name:
                return f
        raise KeyError(name)

    def walk(self) -> Iterator[Op]:
        for op in list(self.body.ops):
            yield from op.walk()

    def clone(self) -> Module:
        """A deep copy: new ops, values and blocks; attributes copied, locations shared."""
        mapping: dict[int, Value] = {}
        return Module(self.name, self.body.clone(mapping), copy.deepcopy(self.attributes))


def func_op(
    name: str, arg_types: list[TensorType], arg_names: list[str], location: Location = UNKNOWN
) -> Op:
    """A ``func.func`` with one block whose arguments are the network inputs."""
    block = Block()
    for t, n in zip(arg_types, arg_names):
        block.add_arg(t, n)
    op = Op(
        "func.func", attributes={"sym_name": name}, regions=[Region([block])], location=location
    )
    return op


def func_body(func: Op) -> Block:
    return func.regions[0].block


def init_name(network: str) -> str:
    """The symbol of a network's init function (a DSL name holds no dot: no clash)."""
    return f"{network}.init"


def init_args(func: Op) -> list[BlockArgument]:
    """The trailing block arguments of a network that its init function's results feed."""
    n = func.attributes.get("init_args", 0)
    args = func_body(func).args
    return args[len(args) - n:] if isinstance(n, int) and n > 0 else []


def network_inputs(func: Op) -> list[BlockArgument]:
    """The block arguments of a network that its caller passes: the model's inputs."""
    args = func_body(func).args
    return args[:len(args) - len(init_args(func))]


def func_return(func: Op) -> Op:
    term = func_body(func).terminator
    if term is None or term.name != "func.return":
        raise ValueError("function without func.return")
    return term


class Listener(Protocol):
    """What a rewrite driver learns of each change the rewriter makes (MLIR's listener)."""

    def op_inserted(self, op: Op) -> None: ...

    def op_erased(self, op: Op) -> None: ...

    def op_modified(self, op: Op) -> None: ...

    def value_replaced(self, old: Value, new: Value) -> None: ...


class Rewriter:
    """The one way passes change IR: insertion, moves, replacement, erasure and in-place
    modification, each reported to ``listener`` (a pattern driver's worklist) when set."""

    def __init__(self, listener: Listener | None = None):
        self.listener = listener

    # -- insertion and moves ---------------------------------------------------------------
    def insert_before(self, anchor: Op, op: Op) -> Op:
        assert anchor.parent is not None, "insert_before a detached op"
        anchor.parent.insert_before(anchor, op)
        self._inserted(op)
        return op

    def insert_after(self, anchor: Op, op: Op) -> Op:
        assert anchor.parent is not None, "insert_after a detached op"
        anchor.parent.insert_after(anchor, op)
        self._inserted(op)
        return op

    def append(self, block: Block, op: Op) -> Op:
        """Add ``op`` at the end of ``block`` (before nothing: callers keep terminators last)."""
        block.append(op)
        self._inserted(op)
        return op

    def move_before(self, op: Op, anchor: Op) -> None:
        """Move ``op`` (already in a block) to just before ``anchor``."""
        self._detach(op)
        assert anchor.parent is not None
        anchor.parent.insert_before(anchor, op)
        self._modified(op)

    def move_to_end(self, op: Op, block: Block) -> None:
        """Move ``op`` to the end of ``block`` (into a new region: fusion builds bodies so)."""
        self._detach(op)
        block.append(op)
        self._modified(op)

    def permute(self, block: Block, order: list[Op]) -> None:
        """Reorder ``block``'s ops as ``order`` (the same ops: a scheduling pass's result)."""
        if sorted(map(id, order)) != sorted(map(id, block.ops)):
            raise ValueError("permute: the new order must hold exactly the block's ops")
        block.ops = list(order)
        for op in order:
            self._modified(op)

    # -- replacement and erasure -------------------------------------------------------------
    def replace_all_uses(self, old: Value, new: Value) -> None:
        users = old.users()
        old.replace_all_uses_with(new)
        if self.listener is not None:
            self.listener.value_replaced(old, new)
            for u in users:
                self.listener.op_modified(u)

    def replace_op(self, op: Op, new_values: list[Value]) -> None:
        if len(new_values) != len(op.results):
            raise ValueError("replace_op: result count mismatch")
        for old, new in zip(op.results, new_values):
            if old is not new:
                self.replace_all_uses(old, new)
        self.erase_op(op)

    def erase_op(self, op: Op) -> None:
        for r in op.results:
            if r.uses:
                raise ValueError(f"erasing {op.name} whose result is still used")
        for nested in list(op.walk())[1:]:
            nested.drop_operands()
            if self.listener is not None:
                self.listener.op_erased(nested)
        operands = list(op.operands)
        op.drop_operands()
        self._detach(op)
        if self.listener is not None:
            self.listener.op_erased(op)
            for v in operands:
                owner = getattr(v, "op", None)
                if owner is not None:
                    self.listener.op_modified(owner)  # it may have become dead

    # -- in-place modification ---------------------------------------------------------------
    def set_operand(self, op: Op, index: int, value: Value) -> None:
        old = op.operands[index]
        op.set_operand(index, value)
        self._modified(op)
        owner = getattr(old, "op", None)
        if owner is not None and self.listener is not None:
            self.listener.op_modified(owner)

    def set_operands(self, op: Op, values: list[Value]) -> None:
        olds = list(op.operands)
        op.set_operands(values)
        self._modified(op)
        if self.listener is not None:
            for v in olds:
                owner = getattr(v, "op", None)
                if owner is not None:
                    self.listener.op_modified(owner)

    def set_attr(self, op: Op, key: str, value: Attribute) -> None:
        op.attributes[key] = value
        self._modified(op)

    def remove_attr(self, op: Op, key: str) -> None:
        if key in op.attributes:
            del op.attributes[key]
            self._modified(op)

    def set_type(self, value: Value, type: TensorType) -> None:
        value.type = type
        owner = getattr(value, "op", None)
        if owner is not None:
            self._modified(owner)

    # -- notifications -------------------------------------------------------------------------
    def _detach(self, op: Op) -> None:
        if op.parent is not None:
            op.parent.remove(op)
            op.parent = None

    def _inserted(self, op: Op) -> None:
        if self.listener is not None:
            for inner in op.walk():
                self.listener.op_inserted(inner)

    def _modified(self, op: Op) -> None:
        if self.listener is not None:
            self.listener.op_modified(op)
