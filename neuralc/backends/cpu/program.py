"""One LLVM module per model: every kernel, and the host programs that call them in order.

The entry points (one native call per inference):

    void nc_run(void **inputs, void **outputs, void **init, void **weights, void *arena,
                const int64_t *sizes)
    void nc_init(void **init, void **weights, void *init_arena)

``sizes`` holds the model's symbolic sizes in :attr:`Program.symbols` order; ``weights`` one
pointer per name of :attr:`Program.weights`; ``init`` the buffers of the init function's
results (written by ``nc_init`` once at load, read by every ``nc_run``); the arenas are at
least :attr:`Program.arena_bytes` (evaluated at the sizes) and 64-byte aligned. A kernel gets
its buffers as pointers into these and the sizes it uses as ``i64`` arguments.
"""

from __future__ import annotations

from dataclasses import dataclass

from neuralc.backends.cpu import vecmath
from neuralc.backends.cpu.kernel_codegen import (
    CodegenError,
    IndexEmitter,
    KernelCodegen,
    split_loop,
)
from neuralc.backends.cpu.llvm_text import FunctionText, Val
from neuralc.backends.cpu.threads import pool_ir
from neuralc.ir.core import Module, Op, func_body
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import Dim, symbols
from neuralc.ir.types import MemRefType


@dataclass
class Program:
    """The LLVM IR of a model and what a runtime needs to call it."""

    llvm_ir: str
    network: str
    symbols: list[str]
    weights: list[str]
    weight_types: dict[str, MemRefType]
    inputs: list[MemRefType]
    outputs: list[MemRefType]
    init_buffers: list[MemRefType]
    arena_bytes: Dim
    init_arena_bytes: Dim
    has_init: bool
    profile_calls: list[str] | None = None


def _host(func: Op, entry: str, symbol_order: list[str], weight_order: list[str],
          n_in: int, n_out: int, n_init: int, kernels: dict[str, Op],
          same_as: dict[str, str], profile: list[str] | None = None) -> str:
    """The LLVM function that runs ``func``'s calls in order (a kernel whose code is another's
    calls that one: ``same_as``). With ``profile`` (a list to fill with the callee of each
    call site) it takes one more argument, ``int64_t *ns``, and adds each call's wall time in
    nanoseconds (``clock_gettime(CLOCK_MONOTONIC)``) to ``ns[site]``."""
    f = FunctionText()
    f.start("entry")
    slots = max((len(k.regions[0].blocks[0].args) + len(k.attributes["symbols"])
                 for k in kernels.values() if split_loop(k) is not None), default=0)
    if slots:  # a split kernel's arguments, for its task (one buffer, reused by every call)
        f.emit(f"%args = alloca [{slots} x i64], align 8")
    if profile is not None:
        f.emit("%ts0 = alloca [2 x i64], align 8")
        f.emit("%ts1 = alloca [2 x i64], align 8")
    body = func_body(func)
    args = body.args
    refs: dict[int, str] = {}
    sizes: dict[str, str] = {}
    if entry == "nc_run":
        params = "ptr %in, ptr %out, ptr %init, ptr %w, ptr %arena, ptr %sizes"
        tables = [("%in", args[:n_in]), ("%out", args[n_in:n_in + n_out]),
                  ("%init", args[n_in + n_out:n_in + n_out + n_init])]
        for k, s in enumerate(symbol_order):
            p = f.assign(f"getelementptr i64, ptr %sizes, i64 {k}", "sp")
            sizes[s] = f.assign(f"load i64, ptr {p}, align 8", "size")
    else:
        params = "ptr %init, ptr %w, ptr %arena"
        tables = [("%init", args[:n_out])]
    for table, values in tables:
        for k, a in enumerate(values):
            p = f.assign(f"getelementptr ptr, ptr {table}, i64 {k}", "tp")
            refs[id(a)] = f.assign(f"load ptr, ptr {p}, align 8", "buf")
    refs[id(args[-1])] = "%arena"
    index_text = _IndexText(f, sizes)
    for op in body.ops:
        if op.name == "loop.weight":
            k = weight_order.index(op.attributes["weight"])
            p = f.assign(f"getelementptr ptr, ptr %w, i64 {k}", "wp")
            refs[id(op.results[0])] = f.assign(f"load ptr, ptr {p}, align 8", "weight")
        elif op.name == "loop.view":
            off = index_text.value(dim(op.attributes["offset"]))
            refs[id(op.results[0])] = f.assign(
                f"getelementptr i8, ptr {refs[id(op.operands[0])]}, i64 {off}", "view")
        elif op.name == "loop.call":
            callee = str(op.attributes["callee"])
            kernel = kernels[callee]
            ptrs = [f"ptr {refs[id(v)]}" for v in op.operands]
            syms = [f"i64 {index_text.value(dim(s))}" for s in kernel.attributes["symbols"]]
            name = same_as.get(callee, callee)
            split = split_loop(kernel)
            if split is None:
                call = f"call void @\"k.{name}\"({', '.join(ptrs + syms)})"
            else:
                call = _parallel_call(f, name, split, ptrs + syms, index_text)
            if profile is None:
                f.emit(call)
            else:
                _timed(f, call, len(profile))
                profile.append(callee)
        elif op.name == "func.return":
            f.emit("ret void")
        else:
            raise CodegenError(f"{op.name} in a host program")
    return f"define void @{entry}({params}) nounwind {{\n" + "\n".join(f.lines) + "\n}\n"


def _parallel_call(f: FunctionText, name: str, split: Op, args: list[str],
                   index_text: _IndexText) -> str:
    """The call of a split kernel: its arguments stored in ``%args`` for its task
    (``@t.<name>``), and ``nc_parallel`` over the split loop's range in steps of its tile."""
    for k, a in enumerate(args):
        slot = f.assign(f"getelementptr i64, ptr %args, i64 {k}", "slot")
        f.emit(f"store {a}, ptr {slot}, align 8")
    a = split.attributes
    lo, hi = index_text.value(dim(a["lower"])), index_text.value(dim(a["upper"]))
    step = int(a.get("jam") or 1) * int(a.get("vectorize") or 1)
    return (f"call void @nc_parallel(ptr @\"t.{name}\", ptr %args, i64 {lo}, i64 {hi}, "
            f"i64 {step}, i64 {int(a['split_work'])})")


def _task(name: str, kernel: Op) -> str:
    """``@t.<name>(args, lo, hi)``: the kernel on the arguments ``%args`` holds, for the
    iterations ``[lo, hi)`` of its split loop (what a pool thread runs)."""
    f = FunctionText()
    f.start("entry")
    n_buf = len(kernel.regions[0].blocks[0].args)
    n_sym = len(kernel.attributes["symbols"])
    args = []
    for k in range(n_buf + n_sym):
        slot = f.assign(f"getelementptr i64, ptr %a, i64 {k}", "slot")
        ty = "ptr" if k < n_buf else "i64"
        args.append(f"{ty} {f.assign(f'load {ty}, ptr {slot}, align 8', 'arg')}")
    f.emit(f"call void @\"k.{name}\"({', '.join(args + ['i64 %lo', 'i64 %hi'])})")
    f.emit("ret void")
    return (f"define internal void @\"t.{name}\"(ptr %a, i64 %lo, i64 %hi) nounwind {{\n"
            + "\n".join(f.lines) + "\n}\n")


def _timed(f: FunctionText, call: str, site: int) -> None:
    """``call`` between two clock readings, its nanoseconds added to ``%ns[site]``."""
    f.emit("call i32 @clock_gettime(i32 1, ptr %ts0)")
    f.emit(call)
    f.emit("call i32 @clock_gettime(i32 1, ptr %ts1)")
    stamps = []
    for ts in ("%ts0", "%ts1"):
        sec = f.assign(f"load i64, ptr {ts}, align 8", "sec")
        p = f.assign(f"getelementptr i64, ptr {ts}, i64 1", "nsp")
        nsec = f.assign(f"load i64, ptr {p}, align 8", "nsec")
        stamps.append(f.assign(f"add i64 {f.assign(f'mul i64 {sec}, 1000000000')}, {nsec}"))
    dt = f.assign(f"sub i64 {stamps[1]}, {stamps[0]}", "dt")
    slot = f.assign(f"getelementptr i64, ptr %ns, i64 {site}", "slot")
    old = f.assign(f"load i64, ptr {slot}, align 8")
    f.emit(f"store i64 {f.assign(f'add i64 {old}, {dt}')}, ptr {slot}, align 8")


class _IndexText:
    """Size expressions of the host program (no loop variables) as i64 values."""

    def __init__(self, f: FunctionText, sizes: dict[str, str]):
        self.emitter = IndexEmitter(f, "host", {s: Val(r, "i64") for s, r in sizes.items()})

    def value(self, d: Dim) -> str:
        return self.emitter.index(d).ref


def _weights(module: Module) -> dict[str, MemRefType]:
    """Every weight the host programs read, in first-use order, with its buffer type."""
    types: dict[str, MemRefType] = {}
    for op in module.walk():
        if op.name == "loop.weight" and op.attributes["weight"] not in types:
            types[op.attributes["weight"]] = op.results[0].type
    return types


def _kernel_functions(kernels: dict[str, Op],
                      math_defs: set[tuple[str, int, bool]]) -> tuple[list[str], dict[str, str]]:
    """Each kernel's LLVM function, once per distinct code: a network's repeated blocks (the
    same layer on the same shapes) compile once, and the kernels whose code an earlier one
    already has are mapped to it."""
    parts: list[str] = []
    first: dict[str, str] = {}
    same_as: dict[str, str] = {}
    zero_bytes = 0
    for name, k in kernels.items():
        cg = KernelCodegen(k, math_defs)
        text = cg.generate()
        zero_bytes = max(zero_bytes, cg.zero_bytes)
        key = text.replace(f'@"k.{name}"', "@KERNEL", 1)
        if key in first:
            same_as[name] = first[key]
            continue
        first[key] = name
        parts.append(text)
        if split_loop(k) is not None:
            parts.append(_task(name, k))
    if zero_bytes:  # what a guarded load reads where its guard fails (kernel_codegen)
        parts.append(f"@nc_zeros = internal constant [{zero_bytes} x i8] zeroinitializer, "
                     f"align 64\n")
    return parts, same_as


def generate(module: Module, network: str | None = None, profile: bool = False,
             arch: str = "x86_64") -> Program:
    """The LLVM IR of a loop module (``lower-to-loops``, then ``schedule``). ``profile`` adds
    ``nc_run_profiled(..., int64_t *ns)``: ``nc_run`` timing each kernel call (the callee of
    each site in :attr:`Program.profile_calls`)."""
    kernels = {str(op.attributes["sym_name"]): op for op in module.body.ops
               if op.name == "loop.kernel"}
    nets = [f for f in module.networks if network is None or
            f.attributes.get("sym_name") == network]
    if len(nets) != 1:
        raise CodegenError("name the network to compile")
    net = nets[0]
    init = module.init_func(net)
    math_defs: set[tuple[str, int, bool]] = set()
    parts, same_as = _kernel_functions(kernels, math_defs)
    n_in, n_out = int(net.attributes["num_inputs"]), int(net.attributes["num_outputs"])
    n_init = int(net.attributes.get("init_args", 0))
    args = func_body(net).args
    symbol_order: list[str] = []
    for a in args:
        for d in a.type.shape:
            for s in sorted(symbols(d)):
                if s not in symbol_order:
                    symbol_order.append(s)
    for k in kernels.values():
        for s in k.attributes["symbols"]:
            if s not in symbol_order:
                symbol_order.append(s)
    weight_types = _weights(module)
    weight_order = list(weight_types)
    parts.append(_host(net, "nc_run", symbol_order, weight_order, n_in, n_out, n_init,
                       kernels, same_as))
    sites: list[str] | None = None
    if profile:
        sites = []
        timed = _host(net, "nc_run", symbol_order, weight_order, n_in, n_out, n_init, kernels,
                      same_as, sites)
        parts.append(timed.replace("define void @nc_run(", "define void @nc_run_profiled(", 1)
                     .replace("ptr %sizes)", "ptr %sizes, ptr %ns)", 1))
        parts.append("declare i32 @clock_gettime(i32, ptr)\n")
    if init is not None:
        parts.append(_host(init, "nc_init", [], weight_order, 0,
                           int(init.attributes["num_outputs"]), 0, kernels, same_as))
    if any(split_loop(k) is not None for k in kernels.values()):
        parts.append(pool_ir(arch))
    for name, width, inline in sorted(math_defs):
        parts.append(vecmath.define(name, width, inline))
    return Program(
        llvm_ir="\n".join(parts),
        network=str(net.attributes["sym_name"]),
        symbols=symbol_order,
        weights=weight_order,
        weight_types=weight_types,
        inputs=[a.type for a in args[:n_in]],
        outputs=[a.type for a in args[n_in:n_in + n_out]],
        init_buffers=[a.type for a in args[n_in + n_out:n_in + n_out + n_init]],
        arena_bytes=dim(str(net.attributes.get("arena_bytes", "0"))),
        init_arena_bytes=dim(str(init.attributes.get("arena_bytes", "0"))) if init else 0,
        has_init=init is not None,
        profile_calls=sites,
    )
