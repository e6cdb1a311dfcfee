"""The IR verifier: structural invariants every pass must keep, checked after each pass in tests.

For each op it checks, in order: that the op is defined; its declared fields (operand, result
and region counts, element types, unknown, missing or mistyped attributes:
``DefinedOp.verify_structure``); its own rules (``verify_extra``); and its types: the result
types it declares must be those its shape rule infers from its operand types (for ops whose
rule runs on textual IR: every op without regions; region ops compare their block arguments
and yields with the values that feed them). Across ops it checks what no definition can see:
operands defined before their use in a visible scope (regions of ops isolated from above see
only their own values), use lists and parent links that agree with the operands and the
nesting, and functions ending in ``func.return``. Each problem reads
``<loc>: <op name>: <problem>`` so it points at the ``.nr`` text the op came from.
"""

from __future__ import annotations

from neuralc.diagnostics import Diagnostic
from neuralc.ir.core import Block, BlockArgument, Module, Op, OpResult, Value, func_body
from neuralc.ir.dims import Dim
from neuralc.ir.opdef import DefinedOp
from neuralc.ir.shapes import ShapeContext, ShapeError, Unifier
from neuralc.ir.types import IR_TYPES, TensorType


class VerificationError(Exception):
    """The module broke IR invariants; ``problems`` lists them, one line each."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("IR verification failed:\n" + "\n".join(f"  {p}" for p in problems))


def verify(m: Module) -> list[str]:
    """Every problem found in ``m``, in program order; empty when the module is valid."""
    return _Verifier(m).run()


def verify_or_raise(m: Module) -> None:
    problems = verify(m)
    if problems:
        raise VerificationError(problems)


def _isolated(op: Op) -> bool:
    """Regions of such ops see no value from outside (functions; ops that declare it)."""
    return isinstance(op, DefinedOp) and op.isolated_from_above


class _CheckingContext(ShapeContext):
    """A shape context that binds nothing: dims a rule unifies must already be equal, up to
    the module's divisibility facts (``h floordiv 2 == (h floordiv 4) * 2`` when 4 divides h)."""

    def __init__(self, dims: dict | None = None):
        self.facts = Unifier(dims)

    def unify(self, a: Dim, b: Dim, what: str) -> Dim:
        same = self.facts.same(a, b)
        if same is None:
            raise ShapeError(f"{what}: {a} and {b} are not equal")
        return same


def type_problems(op: DefinedOp, dims: dict | None = None) -> list[str]:
    """Declared result types against those the op's shape rule infers from its operands."""
    if op.regions or not op.has_shape_rule():
        return []
    types = [v.type for v in op.operands] + [r.type for r in op.results]
    if any(not isinstance(t, TensorType) or t.shape is None for t in types):
        return []  # before shape inference: nothing to compare yet
    try:
        inferred = op.infer_types(_CheckingContext(dims))
    except ShapeError as e:
        return [f"its operand types do not fit it: {e.message}"]
    except Exception as e:  # noqa: BLE001  (a broken rule must not crash the verifier)
        return [f"its shape rule raised {type(e).__name__}: {e}"]
    if len(inferred) != len(op.results):
        return [f"its shape rule gives {len(inferred)} types for {len(op.results)} results"]
    return [f"result #{i} is declared {r.type} but its operands give {t}"
            for i, (r, t) in enumerate(zip(op.results, inferred)) if r.type != t]


def verify_diagnostics(m: Module) -> list[Diagnostic]:
    """:func:`verify` as located errors: each at the op's place in the IR text it was read
    from (``m.nir:3:5``), naming the ``.nr`` location the op carries as well."""
    v = _Verifier(m)
    v.run()
    out = []
    for op, problem, text in zip(v.problem_ops, v.problems, v.problem_texts):
        if op is None or op.source_loc is None:
            out.append(Diagnostic("error", f"invalid IR: {problem}"))
            continue
        model = str(op.location)
        origin = f" (the op of {model})" if model != "<unknown>" else ""
        out.append(Diagnostic("error", f"invalid IR: {text}{origin}", op.source_loc))
    return out


class _Verifier:
    def __init__(self, m: Module):
        self.module = m
        self.problems: list[str] = []
        self.problem_ops: list[Op | None] = []  # the op each problem is about, if one
        self.problem_texts: list[str] = []  # each problem without the op's .nr location
        self.all_ops: set[int] = set()
        self.all_values: set[int] = set()

    def report(self, op: Op, problem: str) -> None:
        # OpDef messages often start with the op name; do not say it twice.
        for prefix in (f"{op.name}: ", f"{op.name} "):
            if problem.startswith(prefix):
                problem = problem[len(prefix):]
                break
        self.problems.append(f"{op.location}: {op.name}: {problem}")
        self.problem_ops.append(op)
        self.problem_texts.append(f"{op.name}: {problem}")

    def report_module(self, problem: str) -> None:
        self.problems.append(f"module @{self.module.name}: {problem}")
        self.problem_ops.append(None)
        self.problem_texts.append(problem)

    def module_dims(self) -> None:
        """The dims facts: ``dims`` maps symbol names to ``[lo, hi]`` or ``[lo, hi, step]``
        (ints >= 1 or none, lo <= hi, both ends multiples of the step), and ``dim_nominal`` maps
        symbol names to their nominal sizes (ints >= 1)."""

        def size(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool) and v >= 1

        def valid(rng: object) -> bool:
            if not isinstance(rng, list) or len(rng) not in (2, 3):
                return False
            lo, hi, step = rng[0], rng[1], rng[2] if len(rng) == 3 else 1
            return (all(b is None or size(b) for b in (lo, hi)) and size(step)
                    and not (lo is not None and hi is not None and lo > hi)
                    and all(b is None or b % step == 0 for b in (lo, hi)))

        dims = self.module.attributes.get("dims")
        if dims is not None and not isinstance(dims, dict):
            self.report_module("'dims' must map symbols to [lo, hi] ranges")
        elif dims is not None:
            for name, rng in dims.items():
                if not valid(rng):
                    self.report_module(
                        f"the range of '{name}' must be [lo, hi] or [lo, hi, step] with "
                        f"1 <= lo <= hi (or none for an open end) and both ends multiples of "
                        f"step >= 1, got {rng!r}")
        nominal = self.module.attributes.get("dim_nominal")
        if nominal is not None and not (
                isinstance(nominal, dict) and all(size(v) for v in nominal.values())):
            self.report_module(f"'dim_nominal' must map symbols to sizes >= 1, got {nominal!r}")

    def run(self) -> list[str]:
        self.collect(self.module.body)
        self.module_dims()
        names: dict[str, Op] = {}
        for op in self.module.body.ops:
            if not (isinstance(op, DefinedOp) and op.module_level):
                self.report(op, "only func.func and loop.kernel may appear at module level")
                continue
            sym = op.attributes.get("sym_name")
            if isinstance(sym, str):
                if sym in names:
                    self.report(op, f"function @{sym} is defined twice")
                names[sym] = op
        for op in self.module.funcs:
            self.init_binding(op, names)
        self.calls(names)
        self.block(self.module.body, visible=set(), parent_op=None)
        return self.problems

    def calls(self, names: dict[str, Op]) -> None:
        """A ``loop.call`` names a kernel of the module and passes buffers of its types."""
        for op in self.module.walk():
            if op.name != "loop.call":
                continue
            callee = names.get(str(op.attributes.get("callee")))
            if callee is None or callee.name != "loop.kernel":
                self.report(op, f"calls @{op.attributes.get('callee')}, which is no kernel of "
                                "the module")
                continue
            want = [a.type for a in callee.regions[0].blocks[0].args] if callee.regions and \
                callee.regions[0].blocks else []
            got = [v.type for v in op.operands]
            if got != want:
                name = callee.attributes["sym_name"]
                self.report(op, f"passes ({', '.join(map(str, got))}) to @{name}, which takes "
                                f"({', '.join(map(str, want))})")

    def init_binding(self, func: Op, names: dict[str, Op]) -> None:
        """A network's ``init`` names an argument-less function that returns exactly the
        values of its ``init_args`` trailing arguments, with their types."""
        name = func.attributes.get("init")
        if name is None:
            return
        n = func.attributes.get("init_args")
        init = names.get(name) if isinstance(name, str) else None
        if init is None:
            self.report(func, f"its init function @{name} does not exist")
            return
        if init.attributes.get("init_for") != func.attributes.get("sym_name"):
            self.report(init, f"serves @{func.attributes.get('sym_name')} but its 'init_for' "
                              "does not say so")
        args = func_body(func).args
        if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= len(args):
            self.report(func, f"'init_args' must be a count of its trailing arguments, got {n!r}")
            return
        body = func_body(init)
        ret = body.terminator
        if "num_outputs" in init.attributes:  # the loop level: results are buffer arguments
            got = [a.type for a in body.args[:init.attributes["num_outputs"]]]
            want = [a.type for a in args[len(args) - n - 1:len(args) - 1]]
            if got != want:
                self.report(func, f"its init buffers ({', '.join(map(str, want))}) do not "
                                  f"match what @{name} writes ({', '.join(map(str, got))})")
            return
        if body.args:
            self.report(init, "an init function takes no arguments")
        if ret is None or ret.name != "func.return":
            return
        got = [v.type for v in ret.operands]
        want = [a.type for a in args[len(args) - n:]]
        if got != want:
            self.report(func, f"its init arguments ({', '.join(map(str, want))}) do not match "
                              f"what @{name} returns ({', '.join(map(str, got))})")

    def collect(self, block: Block) -> None:
        """Ids of every op and value in the module: tells a late definition from a dangling one."""
        for a in block.args:
            self.all_values.add(id(a))
        for op in block.ops:
            self.all_ops.add(id(op))
            for r in op.results:
                self.all_values.add(id(r))
            for region in op.regions:
                for b in region.blocks:
                    self.collect(b)

    def block(self, block: Block, visible: set[int], parent_op: Op | None) -> None:
        local = set(visible)
        for i, a in enumerate(block.args):
            if parent_op is not None:
                if a.block is not block or a.index != i:
                    self.report(parent_op, f"block argument {i} has a wrong block or index")
                if not isinstance(a.type, IR_TYPES):
                    self.report(parent_op, f"block argument {i} has no IR type: {a.type!r}")
                self.check_uses(parent_op, a, f"block argument {i}")
            local.add(id(a))
        for op in block.ops:
            if op.parent is not block:
                self.report(op, "its parent link does not point at the block holding it")
            self.op(op, local)
            local.update(id(r) for r in op.results)

    def op(self, op: Op, visible: set[int]) -> None:
        if not isinstance(op, DefinedOp):
            self.report(op, f"unknown op '{op.name}'")
        for i, v in enumerate(op.operands):
            self.operand(op, i, v, visible)
        for i, r in enumerate(op.results):
            if r.op is not op or r.index != i:
                self.report(op, f"result #{i} has a wrong owner or index")
            if not isinstance(r.type, IR_TYPES):
                self.report(op, f"result #{i} has no IR type: {r.type!r}")
            self.check_uses(op, r, f"result #{i}")
        if isinstance(op, DefinedOp):
            problems = self.definition(op)
            for p in problems:
                self.report(op, p)
        inner_visible = set() if _isolated(op) else visible
        for region in op.regions:
            if region.parent is not op:
                self.report(op, "a region's parent link does not point at it")
            for b in region.blocks:
                if b.parent is not region:
                    self.report(op, "a block's parent link does not point at its region")
                self.block(b, inner_visible, op)

    def definition(self, op: DefinedOp) -> list[str]:
        """What the op's declarations, its own rules and its shape rule say is wrong."""
        try:
            problems = op.verify_structure()
            if not problems:
                problems = op.verify_extra()
            if not problems:
                problems = type_problems(op, self.module.attributes.get("dims"))
        except Exception as e:  # noqa: BLE001  (a broken op must not crash the verifier)
            problems = [f"its verifier raised {type(e).__name__}: {e}"]
        return problems

    def operand(self, op: Op, i: int, v: Value, visible: set[int]) -> None:
        what = f"operand #{i}"
        if not isinstance(v.type, IR_TYPES):
            self.report(op, f"{what} has no IR type: {v.type!r}")
        if not any(u.op is op and u.index == i for u in v.uses):
            self.report(op, f"{what} is missing from its value's use list")
        if id(v) in visible:
            return
        if id(v) in self.all_values:
            holder = self.isolating_ancestor(op)
            if holder is not None and id(v) not in self.defined_inside(holder):
                self.report(op, f"{what} ({_describe(v)}) reads a value from outside the "
                                f"isolated region of {holder.name}; pass it in as an operand")
                return
            self.report(op, f"{what} ({_describe(v)}) is used before its definition or "
                            "outside its scope")
        else:
            self.report(op, f"{what} ({_describe(v)}) is not defined in this module")

    def isolating_ancestor(self, op: Op) -> Op | None:
        """The innermost op around ``op`` whose regions are isolated from above (not a
        function: a value from outside a function is a plain scoping error)."""
        parent = op.parent_op()
        while parent is not None:
            if _isolated(parent):
                return None if parent.name == "func.func" else parent
            parent = parent.parent_op()
        return None

    def defined_inside(self, op: Op) -> set[int]:
        out: set[int] = set()
        for inner in op.walk():
            if inner is not op:
                out.update(id(r) for r in inner.results)
            for region in inner.regions:
                for b in region.blocks:
                    out.update(id(a) for a in b.args)
        return out

    def check_uses(self, owner: Op, v: Value, what: str) -> None:
        """Every recorded use must be a live operand slot holding ``v``."""
        for u in v.uses:
            if id(u.op) not in self.all_ops:
                self.report(owner, f"{what} is still used by '{u.op.name}', which is not in "
                                   "the module")
            elif u.index >= len(u.op.operands) or u.op.operands[u.index] is not v:
                self.report(owner, f"{what} has a stale use: '{u.op.name}' operand "
                                   f"#{u.index} is another value")


def _describe(v: Value) -> str:
    if isinstance(v, OpResult):
        return f"result #{v.index} of '{v.op.name}'"
    if isinstance(v, BlockArgument):
        return f"block argument '{v.name_hint}'" if v.name_hint else f"block argument {v.index}"
    return "a value with no owner"
