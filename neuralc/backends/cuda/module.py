"""The Python module the cuda target writes: every Triton kernel and the host program.

The module (the Inductor pattern) needs only torch and triton:

- ``@triton.jit`` helpers (floored division, the math functions Triton lacks), then one
  ``@triton.jit`` function per kernel, named after it, under a comment naming its family and
  the ``.nr`` lines it came from;
- ``CONFIG`` (each kernel's launch configuration from the fixed heuristics) and
  ``CANDIDATES`` (what ``--autotune`` may try);
- ``run(...)`` and ``run_init(...)``: the host programs, one launch per ``loop.call`` over
  views of one arena at the memory plan's offsets; ``arena_bytes(sizes)``;
- ``Program(weights, device)``: binds the weights on the device, runs the init program once,
  keeps one arena that grows to the largest size seen; ``program(*inputs)`` binds the symbolic
  sizes from the inputs' shapes, launches the kernels in order and returns the outputs.

``run`` takes an optional ``launch(name, kernel, grid, args)`` callback, through which the
autotuner and the benchmark see every launch; without it each kernel is launched with
``config[name]``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from neuralc.backends.cuda.kernel_codegen import (
    CodegenError,
    CodegenOptions,
    KernelSource,
    generate_kernel,
    host_text,
)
from neuralc.ir.core import Module, Op, func_body
from neuralc.ir.dialects.loop import dim
from neuralc.ir.dims import symbols
from neuralc.ir.types import MemRefType
from neuralc.location import FileLoc, Location, source_lines

TORCH_DTYPE = {"f32": "torch.float32", "f16": "torch.float16", "bf16": "torch.bfloat16",
               "f64": "torch.float64", "i64": "torch.int64", "i32": "torch.int32",
               "i8": "torch.int8", "i1": "torch.bool"}
ITEMSIZE = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i64": 8, "i32": 4, "i8": 1, "i1": 1}

HELPERS: dict[str, str] = {
    "_floordiv": '''@triton.jit
def _floordiv(a, b):
    """Floored integer division (b > 0): Triton's // truncates toward zero."""
    q = a // b
    return tl.where((a % b != 0) & (a < 0), q - 1, q)''',
    "_mod": '''@triton.jit
def _mod(a, b):
    """Floored remainder (b > 0), in [0, b)."""
    r = a % b
    return tl.where(r < 0, r + b, r)''',
    "_expm1": '''@triton.jit
def _expm1(x):
    """exp(x) - 1 without cancellation near 0 (Taylor series below |x| = 0.5)."""
    p = x * (1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x * (
        1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0 + x * (1.0 / 362880.0)))))))))
    return tl.where(tl.abs(x) < 0.5, p, tl.exp(x) - 1.0)''',
    "_tanh": '''@triton.jit
def _tanh(x):
    """tanh through expm1 of -2|x|: accurate near 0, exactly +-1 far from it."""
    e = _expm1(-2.0 * tl.abs(x))
    t = -e / (2.0 + e)
    return tl.where(x < 0, -t, t)''',
    "_softplus": '''@triton.jit
def _softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), log1p by Kahan's correction."""
    y = tl.exp(-tl.abs(x))
    u = 1.0 + y
    l1p = tl.where(u == 1.0, y, tl.log(u) * (y / (u - 1.0)))
    return tl.where(x > 0, x, 0.0) + l1p''',
    "_pow": '''@triton.jit
def _pow(x, y):
    """numpy's power for floats: negative bases with integral exponents keep their sign."""
    x, y = tl.broadcast(x, y)  # (a 0-d comparison misbehaves in Triton's interpreter)
    r = tl.exp(y * tl.log(tl.abs(x)))
    yi = tl.floor(y)
    integral = yi == y
    odd = integral & (tl.abs(yi - 2.0 * tl.floor(yi * 0.5)) == 1.0)
    r = tl.where((x < 0) & odd, -r, r)
    r = tl.where((x < 0) & (~integral), float("nan"), r)
    r = tl.where((x == 0) & (y > 0), 0.0, r)
    return tl.where(y == 0, 1.0, r)''',
    "_store": '''@triton.jit
def _store(ptr, value, mask):
    """A masked store of value and mask broadcast to one shape with the pointers."""
    ptr, value = tl.broadcast(ptr, value)
    ptr, mask = tl.broadcast(ptr, mask)
    ptr, value = tl.broadcast(ptr, value)
    tl.store(ptr, value, mask=mask)''',
    "_mul_combine": '''@triton.jit
def _mul_combine(a, b):
    return a * b''',
}
_HELPER_DEPS = {"_tanh": {"_expm1"}}


@dataclass
class ProgramSource:
    """The generated module and what the runtime, the AOT compiler and the tests read."""

    text: str
    network: str
    kernels: list[KernelSource]
    symbols: list[str]
    inputs: list[MemRefType]
    input_names: list[str]
    outputs: list[MemRefType]
    weights: dict[str, MemRefType]
    init_buffers: list[MemRefType]
    has_init: bool
    notes: list[str] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()





def _source_comment(loc: Location) -> list[str]:
    from neuralc.diagnostics import SOURCES

    out = []
    for key in source_lines(loc):
        file, _, line = key.rpartition(":")
        text = SOURCES.line(file, int(line))
        out.append(f"#   {key}: {text.strip()}" if text else f"#   {key}")
    return out


class _Host:
    """The text of one host program (``run`` or ``run_init``)."""

    def __init__(self, func: Op, kernels: dict[str, KernelSource], entry: str):
        self.func = func
        self.kernels = kernels
        self.entry = entry
        self.lines: list[str] = []

    def text(self, n_in: int, n_out: int, n_init: int) -> str:
        body = func_body(self.func)
        args = body.args
        refs: dict[int, str] = {}
        for k, a in enumerate(args[:n_in]):
            refs[id(a)] = f"inputs[{k}]"
        for k, a in enumerate(args[n_in:n_in + n_out]):
            refs[id(a)] = f"outputs[{k}]" if self.entry == "run" else f"init[{k}]"
        for k, a in enumerate(args[n_in + n_out:n_in + n_out + n_init]):
            refs[id(a)] = f"init[{k}]"
        refs[id(args[-1])] = "arena"
        used = sorted({s for a in args for d in a.type.shape for s in symbols(d)}
                      | {s for op in body.ops if op.name == "loop.call"
                         for s in self.kernels[op.attributes["callee"]].symbols}
                      | {s for op in body.ops if op.name == "loop.view"
                         for s in symbols(dim(op.attributes["offset"]))})
        if self.entry == "run":
            sig = "def run(inputs, outputs, init, w, arena, sizes, config=None, launch=None):"
            doc = ('    """One inference: the kernels in order over the arena (at least '
                   'arena_bytes(sizes) bytes)."""')
        else:
            sig = "def run_init(init, w, arena, config=None, launch=None):"
            doc = '    """The init program: work on weights alone, once when the model loads."""'
        self.lines = [sig, doc, "    config = CONFIG if config is None else config"]
        for s in used:
            self.lines.append(f"    s_{s} = sizes[{s!r}]")
        last_loc: str | None = None
        n = 0
        for op in body.ops:
            if op.name == "loop.weight":
                refs[id(op.results[0])] = f"w[{op.attributes['weight']!r}]"
            elif op.name == "loop.view":
                t = op.results[0].type
                shape = ", ".join(host_text(d) for d in t.shape)
                shape = f"({shape},)" if len(t.shape) == 1 else f"({shape})"
                n += 1
                name = f"t{n}"
                off = host_text(dim(op.attributes["offset"]))
                self.lines.append(f"    {name} = _view(arena, {off}, {shape}, "
                                  f"{TORCH_DTYPE[t.dtype]})")
                refs[id(op.results[0])] = name
            elif op.name == "loop.call":
                callee = str(op.attributes["callee"])
                k = self.kernels[callee]
                where = ", ".join(source_lines(op.location))
                if where and where != last_loc:
                    self.lines.append(f"    # {where}")
                    last_loc = where
                args_t = [refs[id(v)] for v in op.operands] + [f"s_{s}" for s in k.symbols]
                self.lines.append(f"    _call(launch, config, {callee!r}, {callee}, "
                                  f"lambda cfg: ({k.grid},), ({', '.join(args_t)},))")
            elif op.name == "func.return":
                break
            else:
                raise CodegenError(f"{op.name} in a host program", op.location)
        if self.entry == "run":
            self.lines.insert(0, "")
        return "\n".join(self.lines) + "\n"


def _type_tuple(t: MemRefType) -> str:
    shape = ", ".join(repr(d) if isinstance(d, int) else repr(d.to_str()) for d in t.shape)
    shape = f"({shape},)" if len(t.shape) == 1 else f"({shape})"
    return f"({shape}, {TORCH_DTYPE[t.dtype]})"


def generate_program(module: Module, options: CodegenOptions, *, title: str,
                     network: str | None = None) -> ProgramSource:
    """The module text of a loop module (after ``lower-to-loops``)."""
    nets = [f for f in module.networks if network is None or
            f.attributes.get("sym_name") == network]
    if len(nets) != 1:
        raise CodegenError("name the network to compile", module.networks[0].location
                           if module.networks else FileLoc("<module>", 0, 0))
    net = nets[0]
    init = module.init_func(net)
    errors: list[CodegenError] = []
    kernels: dict[str, KernelSource] = {}
    helpers: set[str] = set()
    for op in module.body.ops:
        if op.name != "loop.kernel":
            continue
        try:
            src, used = generate_kernel(op, options)
        except CodegenError as e:
            errors.append(e)
            continue
        kernels[src.name] = src
        helpers |= used
    if errors:
        raise CompileErrors(errors)
    for k in kernels.values():
        if "_floordiv(" in k.text:
            helpers.add("_floordiv")
        if "_mod(" in k.text:
            helpers.add("_mod")
    for h in list(helpers):
        helpers |= _HELPER_DEPS.get(h, set())
    n_in, n_out = int(net.attributes["num_inputs"]), int(net.attributes["num_outputs"])
    n_init = int(net.attributes.get("init_args", 0))
    args = func_body(net).args
    weights: dict[str, MemRefType] = {}
    for op in module.walk():
        if op.name == "loop.weight" and op.attributes["weight"] not in weights:
            weights[str(op.attributes["weight"])] = op.results[0].type
    symbol_order: list[str] = []
    for a in args:
        for d in a.type.shape:
            for s in sorted(symbols(d)):
                if s not in symbol_order:
                    symbol_order.append(s)
    for k in kernels.values():
        for s in k.symbols:
            if s not in symbol_order:
                symbol_order.append(s)
    name = str(net.attributes["sym_name"])
    input_names = [a.name_hint or f"input{k}" for k, a in enumerate(args[:n_in])]
    out: list[str] = [f'"""{title}', "",
                      "One @triton.jit function per fused kernel, named after it, with the .nr "
                      "lines it came from; then the",
                      "host program: Program(weights, device) binds the weights, allocates one "
                      "arena and runs the init",
                      "program once; program(*inputs) binds the symbolic sizes and launches the "
                      "kernels in order.",
                      "Needs torch and triton; with TRITON_INTERPRET=1 the kernels run in "
                      "Triton's interpreter on CPU.", '"""', "",
                      "import os", "", "import torch", "import triton",
                      "import triton.language as tl", "",
                      f"NETWORK = {name!r}",
                      f"SYMBOLS = {symbol_order!r}",
                      "INPUTS = [" + ", ".join(f"({n!r}, {_type_tuple(a.type)})"
                                               for n, a in zip(input_names, args[:n_in])) + "]",
                      "OUTPUTS = [" + ", ".join(_type_tuple(a.type)
                                                for a in args[n_in:n_in + n_out]) + "]",
                      "INIT_BUFFERS = [" + ", ".join(
                          _type_tuple(a.type)
                          for a in args[n_in + n_out:n_in + n_out + n_init]) + "]",
                      "WEIGHTS = {"]
    for w, t in weights.items():
        out.append(f"    {w!r}: {_type_tuple(t)},")
    out.append("}")
    out.append("")
    for h in HELPERS:
        if h in helpers:
            out += ["", HELPERS[h], ""]
    out.append("")
    for k in kernels.values():
        out.append("")
        out.append(f"# {k.name}: {k.kind or 'kernel'}; {k.family}; from")
        out += _source_comment(k.location) or ["#   (no source line)"]
        out.append(k.text)
        out.append("")
    out.append("")
    out.append("# Launch configurations (fixed heuristics; --autotune replaces them on a GPU).")
    out.append("CONFIG = {")
    for k in kernels.values():
        out.append(f"    {k.name!r}: {k.config!r},")
    out.append("}")
    out.append("# Under Triton's interpreter (TRITON_INTERPRET=1): larger blocks, fewer programs.")
    out.append("INTERPRETER_CONFIG = {")
    for k in kernels.values():
        out.append(f"    {k.name!r}: {k.interpreter_config!r},")
    out.append("}")
    out.append("# The configurations --autotune tries, per kernel.")
    out.append("CANDIDATES = {")
    for k in kernels.values():
        out.append(f"    {k.name!r}: {k.candidates!r},")
    out.append("}")
    out.append("")
    out.append(_SUPPORT)
    arena = dim(str(net.attributes.get("arena_bytes", "0")))
    arena_syms = sorted(symbols(arena))
    out.append("def arena_bytes(sizes):")
    out.append('    """Bytes of the arena one inference needs at these sizes."""')
    for s in arena_syms:
        out.append(f"    s_{s} = sizes[{s!r}]")
    out.append(f"    return int({host_text(arena)})")
    out.append("")
    out.append("")
    out.append("def output_shapes(sizes):")
    out.append('    """The shapes of the outputs at these sizes."""')
    out_types = [a.type for a in args[n_in:n_in + n_out]]
    for s in sorted({s for t in out_types for d in t.shape for s in symbols(d)}):
        out.append(f"    s_{s} = sizes[{s!r}]")
    shapes = []
    for t in out_types:
        dims = ", ".join(host_text(d) for d in t.shape)
        shapes.append(f"({dims},)" if len(t.shape) == 1 else f"({dims})")
    out.append(f"    return [{', '.join(shapes)}]")
    out.append("")
    out.append(_Host(net, kernels, "run").text(n_in, n_out, n_init))
    if init is not None:
        init_arena = dim(str(init.attributes.get("arena_bytes", "0")))
        out.append(f"INIT_ARENA_BYTES = {int(init_arena) if isinstance(init_arena, int) else 0}")
        out.append("")
        out.append("")
        out.append(_Host(init, kernels, "init").text(0, int(init.attributes["num_outputs"]), 0))
    else:
        out.append("INIT_ARENA_BYTES = 0")
        out.append("")
        out.append("")
        out.append("def run_init(init, w, arena, config=None, launch=None):")
        out.append('    """This model has no init program."""')
    out.append("")
    out.append(_PROGRAM)
    text = "\n".join(out).rstrip() + "\n"
    return ProgramSource(text, name, list(kernels.values()), symbol_order,
                         [a.type for a in args[:n_in]], input_names,
                         [a.type for a in args[n_in:n_in + n_out]], weights,
                         [a.type for a in args[n_in + n_out:n_in + n_out + n_init]],
                         init is not None)


class CompileErrors(Exception):
    """Every kernel the cuda target refused, each at its location."""

    def __init__(self, errors: list[CodegenError]):
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))


_SUPPORT = '''
def _view(arena, offset, shape, dtype):
    """The buffer at byte ``offset`` of the arena (the memory plan aligns offsets)."""
    n = 1
    for d in shape:
        n *= d
    size = torch.empty((), dtype=dtype).element_size()
    return arena[offset:offset + n * size].view(dtype).view(shape)


def _call(launch, config, name, kernel, grid, args):
    """One kernel launch: through ``launch`` (autotuning, timing) or with ``config[name]``."""
    if launch is not None:
        return launch(name, kernel, grid, args)
    cfg = config[name]
    kernel[grid(cfg)](*args, **cfg)

'''

_PROGRAM = '''
class Program:
    """The model on one device: weights bound once, the init program run once, one arena
    reused by every call (so two calls must not overlap; outputs are fresh tensors)."""

    def __init__(self, weights, device="cuda", config=None):
        self.device = torch.device(device)
        if config is None:
            interpreted = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
            config = INTERPRETER_CONFIG if interpreted else CONFIG
        self.config = {k: dict(v) for k, v in config.items()}
        self.w = {}
        for name, (shape, dtype) in WEIGHTS.items():
            t = torch.as_tensor(weights[name]).to(device=self.device, dtype=dtype)
            self.w[name] = t.reshape(shape).contiguous()
        self.init = [torch.zeros(shape, dtype=dtype, device=self.device)
                     for shape, dtype in INIT_BUFFERS]
        init_arena = torch.zeros(max(INIT_ARENA_BYTES, 64), dtype=torch.uint8,
                                 device=self.device)
        run_init(self.init, self.w, init_arena, self.config)
        self.arena = torch.empty(0, dtype=torch.uint8, device=self.device)

    def bind(self, inputs):
        """The symbolic sizes, read from the inputs' shapes."""
        sizes = {}
        for x, (_, (shape, _)) in zip(inputs, INPUTS):
            if len(x.shape) != len(shape):
                raise ValueError(f"expected an input of rank {len(shape)}, got {tuple(x.shape)}")
            for d, n in zip(shape, x.shape):
                if isinstance(d, str) and d.isidentifier():
                    if sizes.setdefault(d, int(n)) != int(n):
                        raise ValueError(f"inputs disagree on the size {d}")
        missing = [s for s in SYMBOLS if s not in sizes]
        if missing:
            raise ValueError(f"the inputs do not determine the sizes {missing}")
        return sizes

    def buffers(self, inputs, sizes):
        """Inputs on the device in their dtypes, fresh outputs, the arena grown to fit."""
        xs = [torch.as_tensor(x).to(device=self.device, dtype=dtype).contiguous()
              for x, (_, (_, dtype)) in zip(inputs, INPUTS)]
        outs = [torch.empty(shape, dtype=dtype, device=self.device)
                for shape, (_, dtype) in zip(output_shapes(sizes), OUTPUTS)]
        need = arena_bytes(sizes)
        if self.arena.numel() < need:
            self.arena = torch.empty(max(need, 64), dtype=torch.uint8, device=self.device)
        return xs, outs

    def __call__(self, *inputs, sizes=None, launch=None):
        sizes = self.bind(inputs) if sizes is None else sizes
        xs, outs = self.buffers(inputs, sizes)
        run(xs, outs, self.init, self.w, self.arena, sizes, self.config, launch)
        return outs
'''
