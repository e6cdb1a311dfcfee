"""``outline-init``: move the work on weights alone into an init function, run once at load.

Folded BatchNorm weights, BatchNorm's scale and shift, positional tables and the like depend
on weights and constants only. Computing them
on every inference wastes time; a code generator wants them as buffers it reads. This pass
moves that computation of each network function ``@N`` into ``func.func @N.init`` (no
arguments; it returns the values ``@N`` needs), and gives ``@N`` one trailing block argument
per returned value, in order:

    func.func @N.init() -> (tensor<16 x 3 x 3 x 3 x f32>, ...) attributes {init_for = "N"}
    func.func @N(%input: ..., %init0: tensor<16 x 3 x 3 x 3 x f32>, ...)
        attributes {init = "N.init", init_args = 2, ...}

Weights read as they are (``tensor.constant {weight}``) stay where they are used: a weight is
already a buffer bound at load time. Scalar fills stay too (kernels hold them as immediates).
A runtime calls the init function once when a model is loaded and passes its results to every
run (``neuralc.runtime.interpreter``, the code generators).

Afterwards every function holds only weights, fills, ``kernel.fused`` ops and its return: each
op of the init function becomes a kernel of its own (``init_0``, ``init_1``, ...), and so does
weight-only work that had to stay in the network (a slice of a positional table to the
sequence length; named on from the last ``fused_N``), so a code generator sees kernels only.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from neuralc.ir.core import (
    Block,
    Module,
    Op,
    OpResult,
    Region,
    Rewriter,
    Value,
    func_body,
    init_name,
)
from neuralc.ir.dims import symbols
from neuralc.passes.base import Pass, PassContext
from neuralc.passes.fusion import build_kernel
from neuralc.passes.registry import register_pass


def _static(v: Value) -> bool:
    return v.type.shape is not None and not any(symbols(d) for d in v.type.shape)


def _movable(body: Block) -> list[Op]:
    """Ops computing on weights alone whose sizes are known before any input arrives: every
    operand is a constant or such an op's result, every result has a static shape. (A slice
    of a positional table to the sequence length is weight-only work, but its size is not
    known at load time: it stays.)"""
    movable: set[int] = set()
    out = []
    for op in body.ops:
        if op.name == "tensor.constant" or op.dialect != "tensor" or not op.results:
            continue
        if op.regions or not all(_static(r) for r in op.results):
            continue
        if all(isinstance(v, OpResult) and (v.op.name == "tensor.constant"
                                            or id(v.op) in movable) for v in op.operands):
            movable.add(id(op))
            out.append(op)
    return out


def outline(module: Module, func: Op, rewriter: Rewriter) -> Op | None:
    """Outline ``func``'s load-time work into its init function; returns it (None if none)."""
    body = func_body(func)
    movers = _movable(body)
    if not movers:
        return None
    moving = {id(op) for op in movers}
    # The values the run function still reads: results of moved ops used by ops that stay.
    needed: list[OpResult] = []
    for op in movers:
        for r in op.results:
            if any(id(u.op) not in moving for u in r.uses) and r not in needed:
                needed.append(r)
    # The init function: clones of the moved ops and of the constants they read, in order.
    init_block = Block()
    mapping: dict[int, Value] = {}
    for op in body.ops:
        if id(op) in moving or (op.name == "tensor.constant" and any(
                id(u.op) in moving for r in op.results for u in r.uses)):
            rewriter.append(init_block, op.clone(mapping))
    rewriter.append(init_block, Op("func.return", [mapping[id(r)] for r in needed],
                                   location=func.location))
    name = init_name(str(func.attributes["sym_name"]))
    init = Op("func.func", attributes={"sym_name": name,
                                       "init_for": func.attributes["sym_name"]},
              regions=[Region([init_block])], location=func.location)
    rewriter.insert_after(func, init)
    # The run function reads them as arguments; the moved ops and dead constants go.
    for i, r in enumerate(needed):
        arg = body.add_arg(r.type, f"init{i}")
        arg.location = r.op.location
        rewriter.replace_all_uses(r, arg)
    for op in reversed(movers):
        rewriter.erase_op(op)
    for op in list(body.ops):
        if op.name == "tensor.constant" and not any(r.uses for r in op.results):
            rewriter.erase_op(op)
    rewriter.set_attr(func, "init", name)
    rewriter.set_attr(func, "init_args", len(needed))
    return init


def wrap_loose_ops(func: Op, names: Iterator[str], rewriter: Rewriter) -> None:
    """Every computing op left at function level becomes a kernel of its own."""
    for op in list(func_body(func).ops):
        if op.name in ("tensor.constant", "kernel.fused", "func.return") or not op.results:
            continue
        kernel = build_kernel([op], rewriter)
        rewriter.set_attr(kernel, "name", next(names))
    for op in list(func_body(func).ops):
        if op.name == "tensor.constant" and not op.results[0].uses:
            rewriter.erase_op(op)  # fills now cloned into the kernels that read them


def _next_kernel_number(module: Module) -> int:
    numbers = [int(str(op.attributes.get("name", ""))[6:]) for op in module.walk()
               if op.name == "kernel.fused"
               and str(op.attributes.get("name", "")).startswith("fused_")
               and str(op.attributes["name"])[6:].isdigit()]
    return max(numbers, default=-1) + 1


@register_pass
@dataclass
class OutlineInitPass(Pass):
    name = "outline-init"
    level = "tensor"
    summary = "move work on weights alone into an init function run once at load time"

    def run(self, module: Module, ctx: PassContext) -> None:
        rewriter = Rewriter()
        fused = (f"fused_{n}" for n in itertools.count(_next_kernel_number(module)))
        inits = (f"init_{n}" for n in itertools.count())
        for func in module.networks:
            init = None
            if "init" not in func.attributes:
                init = outline(module, func, rewriter)
            wrap_loose_ops(func, fused, rewriter)
            if init is not None:
                wrap_loose_ops(init, inits, rewriter)
