"""Pattern rewriting: local rewrite patterns and the greedy worklist driver that applies them.

A :class:`RewritePattern` matches one op and rewrites it through the :class:`Rewriter` it is
given (the one way IR changes). :class:`GreedyRewriteDriver` (MLIR's greedy pattern rewrite
driver; xDSL's ``PatternRewriteWalker``) applies a set of patterns to every op of a module or
op, nested regions included (kernel bodies, scan bodies), until none applies. It listens to
the rewriter: ops a pattern creates or modifies, and the producers and users of values it
touches, go back on the worklist; erased ops leave it. Pure ops whose results are all unused
are erased on the way (dead code), so a rewrite that orphans a chain of ops cleans it up.

Patterns are tried in order for each op; the first that returns True wins and the op is
revisited later if it is still there. The driver stops at a fixed point or after
``max_rewrites`` rewrites (a guard against patterns that undo each other: reaching it is an
internal error).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from neuralc.ir.core import Module, Op, Rewriter, Value
from neuralc.ir.opdef import DefinedOp


class RewritePattern:
    """A local rewrite of one op. ``roots`` restricts it to ops of those classes (empty: any)."""

    roots: ClassVar[tuple[type[Op], ...]] = ()

    def applies_to(self, op: Op) -> bool:
        return not self.roots or isinstance(op, self.roots)

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        """Rewrite ``op`` if it matches; True when the IR changed."""
        raise NotImplementedError


class CanonicalizationPattern(RewritePattern):
    """Every op's own canonicalisation (``DefinedOp.canonicalize``) as one pattern."""

    def match_and_rewrite(self, op: Op, rewriter: Rewriter) -> bool:
        return isinstance(op, DefinedOp) and op.canonicalize(rewriter)


def is_dead(op: Op) -> bool:
    """A pure op that computes something nobody uses (terminators and functions never are)."""
    if not isinstance(op, DefinedOp) or not op.pure or op.terminator:
        return False
    if op.name == "func.func" or not op.results:
        return False
    return all(not r.uses for r in op.results)


class GreedyRewriteDriver:
    """Applies ``patterns`` to a fixed point over all nested ops; see the module docstring."""

    def __init__(self, patterns: Iterable[RewritePattern], *, erase_dead: bool = True,
                 max_rewrites: int = 1_000_000):
        self.patterns = list(patterns)
        self.erase_dead = erase_dead
        self.max_rewrites = max_rewrites
        self.rewriter = Rewriter(self)
        self._worklist: list[Op] = []
        self._queued: set[int] = set()
        self.rewrites = 0
        self.erased = 0

    # -- listener ------------------------------------------------------------------------
    def op_inserted(self, op: Op) -> None:
        self._push(op)

    def op_erased(self, op: Op) -> None:
        self._queued.discard(id(op))

    def op_modified(self, op: Op) -> None:
        self._push(op)

    def value_replaced(self, old: Value, new: Value) -> None:
        for user in new.users():
            self._push(user)
        owner = getattr(new, "op", None)
        if owner is not None:
            self._push(owner)

    # -- driving --------------------------------------------------------------------------
    def _push(self, op: Op) -> None:
        if id(op) not in self._queued:
            self._queued.add(id(op))
            self._worklist.append(op)

    def run(self, root: Module | Op) -> int:
        """Rewrite every op under ``root`` to a fixed point; returns the changes made."""
        ops = list(root.walk())
        # Popped from the end: push in reverse so ops are first visited in program order.
        for op in reversed(ops):
            self._push(op)
        changes = 0
        while self._worklist:
            op = self._worklist.pop()
            if id(op) not in self._queued:
                continue  # erased after it was queued
            self._queued.discard(id(op))
            if not _attached(op, root):
                continue
            if self.erase_dead and is_dead(op):
                self.rewriter.erase_op(op)
                self.erased += 1
                changes += 1
                continue
            for pattern in self.patterns:
                if pattern.applies_to(op) and pattern.match_and_rewrite(op, self.rewriter):
                    self.rewrites += 1
                    changes += 1
                    if self.rewrites > self.max_rewrites:
                        raise RuntimeError(f"pattern rewriting did not converge after "
                                           f"{self.max_rewrites} rewrites (last: {op.name})")
                    if _attached(op, root):
                        self._push(op)
                    break
        return changes


def _attached(op: Op, root: Module | Op) -> bool:
    """Whether ``op`` still hangs under ``root`` (it may have been erased or moved out)."""
    while True:
        if op is root:
            return True
        block = op.parent
        if block is None:
            return False
        region = block.parent
        if region is None:
            return isinstance(root, Module) and block is root.body
        parent = region.parent
        if parent is None:
            return False
        op = parent


def apply_patterns(root: Module | Op, patterns: Iterable[RewritePattern],
                   erase_dead: bool = True) -> int:
    """Run the greedy driver with ``patterns`` over ``root``; returns the changes made."""
    return GreedyRewriteDriver(patterns, erase_dead=erase_dead).run(root)
