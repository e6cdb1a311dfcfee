"""A compiled model's tables and run-time checks as C: what a standalone binary needs to check
its inputs without Python.

The checks are neuralc's own (``neuralc.runtime.signature.bind_inputs`` and
``neuralc.runtime.sizes.check_run``), turned at build time into straight-line C over the
sizes of the symbolic dims, with the same messages:

- binding: which input dim binds which symbol, and in which order compound dims are checked
  or solved, depends only on the signature, so the Python binder's walk is replayed here once
  and its steps written out (rank, static dims, first binding with range and step, agreement
  with an earlier binding, compound dims evaluated or solved);
- every layer's output dims (each distinct expression once, at its first layer), positional
  tables, token ids (a table of inputs and vocabularies), and the module's ``dim_constraints``.

Size arithmetic goes through ``nc_add``/``nc_mul``/``nc_fdiv``/``nc_fmod`` (nc_internal.h),
which flag 64-bit overflow instead of wrapping, so no input shape can make a check pass by
overflow.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from neuralc.backends.cpu.compile import CpuCompilation
from neuralc.backends.cpu.llvm_text import ITEMSIZE
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op, func_body, func_return, network_inputs
from neuralc.ir.dims import (
    Dim,
    Expr,
    FloorDiv,
    MinMax,
    Mod,
    dim_facts,
    evaluate,
    parse_dim,
    symbols,
)
from neuralc.ir.numeric import round_bf16
from neuralc.ir.types import MemRefType, shape_str
from neuralc.layers import catalog
from neuralc.runtime.samples import clamp_to_range, symbol_sizes
from neuralc.runtime.signature import input_names, select_func
from neuralc.runtime.sizes import _where, embedding_attrs

MAX_RANK = 32
ALIGN = 64
C_DTYPES = {"f32": "NC_F32", "f16": "NC_F16", "bf16": "NC_BF16", "f64": "NC_F64",
            "i64": "NC_I64", "i32": "NC_I32", "i8": "NC_I8", "i1": "NC_BOOL"}
ST_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16", "f64": "F64", "i64": "I64",
             "i32": "I32", "i8": "I8", "i1": "BOOL"}


class EdgeModelError(ValueError):
    """The model cannot be built as a standalone binary; the message says why."""


# -- C text ---------------------------------------------------------------------------------


def c_string(text: str) -> str:
    """A C string literal of ``text`` (UTF-8; octal escapes, so nothing runs on)."""
    out = []
    for b in text.encode("utf-8"):
        c = chr(b)
        if c in '"\\?':
            out.append("\\" + c)
        elif 0x20 <= b < 0x7F:
            out.append(c)
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def c_int(v: int) -> str:
    if not -(2**63) <= v < 2**63:
        raise EdgeModelError(f"the constant {v} does not fit 64 bits")
    return f"INT64_C({v})" if v >= 0 else f"(-INT64_C({-v}))" if v > -(2**63) else "INT64_MIN"


def c_dim(d: Dim, env: Mapping[str, str]) -> str:
    """A dim as a C expression over ``env`` (symbol -> C lvalue) with checked arithmetic."""
    if isinstance(d, int):
        return c_int(d)
    total: str | None = None
    for mono, coeff in d.terms:
        term: str | None = None if coeff == 1 else c_int(coeff)
        for atom in mono:
            a = _c_atom(atom, env)
            term = a if term is None else f"nc_mul(ev, {term}, {a})"
        term = term if term is not None else c_int(coeff)
        total = term if total is None else f"nc_add(ev, {total}, {term})"
    return total if total is not None else c_int(0)


def _c_atom(a: object, env: Mapping[str, str]) -> str:
    if isinstance(a, str):
        return env[a]
    if isinstance(a, FloorDiv):
        return f"nc_fdiv(ev, {c_dim(a.num, env)}, {c_dim(a.den, env)})"
    if isinstance(a, Mod):
        return f"nc_fmod(ev, {c_dim(a.num, env)}, {c_dim(a.den, env)})"
    if isinstance(a, MinMax):
        fn = "nc_min" if a.kind == "min" else "nc_max"
        parts = [c_dim(x, env) for x in a.args]
        out = parts[0]
        for p in parts[1:]:
            out = f"{fn}({out}, {p})"
        return out
    raise EdgeModelError(f"a dim atom neuralc's edge runtime cannot evaluate: {a!r}")


class _Format:
    """A printf format and its arguments, built from literal text and typed values."""

    def __init__(self) -> None:
        self.fmt: list[str] = []
        self.args: list[str] = []

    def text(self, s: str) -> _Format:
        self.fmt.append("%s")
        self.args.append(c_string(s))
        return self

    def i64(self, expr: str) -> _Format:
        self.fmt.append("%lld")
        self.args.append(f"(long long)({expr})")
        return self

    def raw(self, fmt: str, arg: str) -> _Format:
        self.fmt.append(fmt)
        self.args.append(arg)
        return self

    def call(self, fn: str, *lead: str) -> str:
        """``fn(lead..., "fmt", args...)``."""
        parts = [*lead, c_string("".join(self.fmt)), *self.args]
        return f"{fn}({', '.join(parts)})"


# -- the model's description ----------------------------------------------------------------


@dataclass
class Tensor:
    name: str
    dtype: str
    shape: tuple[Dim, ...]  # the program's buffer type (what the kernels read or write)
    shown: tuple[Dim, ...]  # the signature's type (what messages show)


@dataclass
class WeightsBlob:
    """The weights laid out as the runtime reads them: each 64-byte aligned, program order."""

    data: bytes
    offsets: list[int]
    sizes: list[int]
    safetensors: bytes  # the same tensors as a .safetensors file (--external-weights)

    @property
    def tensor_bytes(self) -> int:
        return sum(self.sizes)


def _weight_bytes(name: str, value: np.ndarray, t: MemRefType) -> bytes:
    want = tuple(int(evaluate(d, {})) for d in t.shape)
    a = np.asarray(value)
    if a.shape != want:
        raise EdgeModelError(f"weight '{name}' has shape {a.shape}, expected {want}")
    if t.dtype == "bf16":
        bits = np.ascontiguousarray(round_bf16(a.astype(np.float32))).view(np.uint32)
        return (bits >> 16).astype("<u2").tobytes()
    table = {"f32": "<f4", "f16": "<f2", "f64": "<f8", "i64": "<i8", "i32": "<i4", "i8": "i1",
             "i1": "u1"}
    if t.dtype == "i1":
        return (a != 0).astype(np.uint8).tobytes()
    return np.ascontiguousarray(a.astype(table[t.dtype])).tobytes()


def safetensors_file(names: Sequence[str], types: Mapping[str, MemRefType],
                     raw: Sequence[bytes]) -> bytes:
    """A safetensors file of the tensors (dtype and shape from ``types``), in order."""
    header: dict[str, object] = {}
    offset = 0
    for name, data in zip(names, raw):
        t = types[name]
        header[name] = {"dtype": ST_DTYPES[t.dtype],
                        "shape": [int(evaluate(d, {})) for d in t.shape],
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + b"".join(raw)


def weights_blob(names: Sequence[str], types: Mapping[str, MemRefType],
                 weights: Mapping[str, np.ndarray]) -> WeightsBlob:
    raw = []
    for n in names:
        if n not in weights:
            raise EdgeModelError(f"weight '{n}' is missing")
        raw.append(_weight_bytes(n, weights[n], types[n]))
    offsets, parts, pos = [], [], 0
    for data in raw:
        offsets.append(pos)
        pad = -len(data) % ALIGN
        parts += [data, b"\0" * pad]
        pos += len(data) + pad
    return WeightsBlob(b"".join(parts), offsets, [len(r) for r in raw],
                       safetensors_file(names, types, raw))


@dataclass
class CModel:
    """Everything the C runtime needs about one model, from its compilation."""

    name: str
    prefix: str
    inputs: list[Tensor]
    outputs: list[Tensor]
    symbols: list[str]
    facts: dict[str, tuple[int | None, int | None, int]]
    nominal: dict[str, int]
    bench_sizes: list[int]
    weights: list[tuple[str, MemRefType]]
    init_buffers: list[MemRefType]
    arena_bytes: Dim
    init_arena_bytes: int
    has_init: bool
    index_checks: list[tuple[int, int, str]]  # (input, rows, where)
    bind_code: list[str] = field(default_factory=list)
    size_code: list[str] = field(default_factory=list)
    constraint_code: list[str] = field(default_factory=list)


def c_prefix(name: str) -> str:
    """A C identifier prefix from a network name: ``DigitNet`` -> ``digitnet``."""
    p = re.sub(r"[^0-9a-zA-Z_]", "_", name).lower().strip("_") or "model"
    return f"m_{p}" if p[0].isdigit() else p


def describe(comp: CpuCompilation, model: CompiledModel, prefix: str) -> CModel:
    """The model's tables and check code, from its compilation and its graph IR."""
    program = comp.program
    func = select_func(model.module)
    args = network_inputs(func)
    names = input_names(func)
    if len(args) != len(program.inputs):
        raise EdgeModelError("the compiled program's inputs differ from the model's")
    in_syms: list[str] = []
    for a in args:
        for d in a.type.shape or ():
            in_syms += [s for s in sorted(symbols(d)) if s not in in_syms]
    missing = [s for s in program.symbols if s not in in_syms]
    if missing:
        raise EdgeModelError(f"the inputs do not determine the sizes {', '.join(missing)}")
    inputs = [Tensor(n, t.dtype, tuple(t.shape), tuple(a.type.shape))
              for n, t, a in zip(names, program.inputs, args)]
    returned = list(func_return(func).operands)
    outputs = []
    for i, (v, t) in enumerate(zip(returned, program.outputs)):
        op = getattr(v, "op", None)
        label = op.attributes.get("name") if op is not None else None
        if not isinstance(label, str):
            label = "output" if len(returned) == 1 else f"output{i}"
        outputs.append(Tensor(label, t.dtype, tuple(t.shape), tuple(v.type.shape or t.shape)))
    for t in inputs + outputs:
        if len(t.shape) > MAX_RANK:
            raise EdgeModelError(f"tensor '{t.name}' has rank {len(t.shape)}, more than "
                                 f"{MAX_RANK}")
    ranges = model.module.attributes.get("dims") or {}
    nominal = model.module.attributes.get("dim_nominal") or {}
    bench = symbol_sizes(model.module, 1, 8)  # --bench without inputs: the nominal sizes
    bench.update({s: clamp_to_range(model.module, s, int(v)) for s, v in nominal.items()
                  if isinstance(v, int) and s in bench})
    cm = CModel(
        name=str(model.info.name), prefix=prefix, inputs=inputs, outputs=outputs,
        symbols=list(program.symbols),
        facts={s: dim_facts(ranges.get(s)) for s in program.symbols},
        nominal={s: int(v) for s, v in nominal.items() if isinstance(v, int)},
        bench_sizes=[int(bench.get(s, 1)) for s in program.symbols],
        weights=[(n, program.weight_types[n]) for n in program.weights],
        init_buffers=list(program.init_buffers), arena_bytes=program.arena_bytes,
        init_arena_bytes=int(evaluate(program.init_arena_bytes, {})),
        has_init=program.has_init,
        index_checks=_index_checks(func, len(args)))
    env = {s: f"sz[{k}]" for k, s in enumerate(program.symbols)}
    cm.bind_code = _bind_code(cm, [tuple(a.type.shape) for a in args], ranges, env)
    cm.size_code = _size_code(func, set(in_syms), env)
    cm.constraint_code = _constraint_code(model.module.attributes.get("dim_constraints") or [],
                                          set(in_syms), env)
    return cm


def _index_checks(func: Op, n_inputs: int) -> list[tuple[int, int, str]]:
    out = []
    for i, arg in enumerate(func_body(func).args[:n_inputs]):
        if not arg.type.dtype.startswith("i") or arg.type.dtype == "i1":
            continue
        for user in arg.users():
            attrs = embedding_attrs(user)
            if attrs is not None:
                out.append((i, int(attrs["input_dim"]), _where(user)))
    return out


# -- binding: neuralc.runtime.signature._Binder, replayed -----------------------------------


def _range_text(lo: int | None, hi: int | None) -> str:
    return f"{'' if lo is None else lo}..{'' if hi is None else hi}"


def _linear_in(d: Expr, s: str) -> bool:
    found = False
    for m, _ in d.terms:
        if m == (s,):
            found = True
        elif s in Expr({m: 1}).symbols():
            return False
    return found


class _BindWriter:
    def __init__(self, cm: CModel, ranges: Mapping[str, object], env: Mapping[str, str]):
        self.cm, self.ranges, self.env = cm, ranges, env
        self.lines: list[str] = []
        self.source: dict[str, tuple[int, int]] = {}

    def fail(self, i: int, f: _Format) -> str:
        return "return " + f.call("nc_bind_fail", "err", "in", str(i)) + ";"

    def bind(self, s: str, value: str, i: int, axis: int, said: _Format) -> None:
        """``_Binder.bind``: a first binding checks the range and step; a later one agrees."""
        if s in self.source:
            si, saxis = self.source[s]
            src = f"dim {saxis}" if si == i else f"input '{self.cm.inputs[si].name}'"
            f = said.text(f" but {s} is ").i64(self.env[s]).text(f" from {src}")
            self.lines.append(f"if ({value} != {self.env[s]}) {self.fail(i, f)}")
            return
        lo, hi, step = dim_facts(self.ranges.get(s))
        conds = [c for c in ((f"{value} < {c_int(lo)}" if lo is not None else None),
                             (f"{value} > {c_int(hi)}" if hi is not None else None)) if c]
        if conds:
            f = _copy(said).text(f", outside the range of {s} ({_range_text(lo, hi)})")
            self.lines.append(f"if ({' || '.join(conds)}) {self.fail(i, f)}")
        if step > 1:
            f = _copy(said).text(f", but {s} must be a multiple of {step} (dims {{ {s}: "
                                 f"{_range_text(lo, hi)} step {step} }})")
            self.lines.append(f"if (nc_fmod(ev, {value}, {c_int(step)}) != 0) "
                              f"{self.fail(i, f)}")
        self.lines.append(f"{self.env[s]} = {value};")
        self.source[s] = (i, axis)


def _copy(f: _Format) -> _Format:
    g = _Format()
    g.fmt, g.args = list(f.fmt), list(f.args)
    return g


def _bind_code(cm: CModel, shapes: list[tuple[Dim, ...]], ranges: Mapping[str, object],
               env: Mapping[str, str]) -> list[str]:
    w = _BindWriter(cm, ranges, env)
    pending: list[tuple[int, int, Expr]] = []
    for i, shape in enumerate(shapes):
        rank = len(shape)
        w.lines.append(f"if (in[{i}].rank != {rank}) "
                       + w.fail(i, _Format().text("rank ").raw("%d", f"in[{i}].rank")
                                .text(f", expected {rank}")))
        for axis, d in enumerate(shape):
            v = f"in[{i}].dims[{axis}]"
            said = _Format().text(f"dim {axis} is ").i64(v)
            if isinstance(d, int):
                w.lines.append(f"if ({v} != {c_int(d)}) "
                               + w.fail(i, said.text(f", expected {d}")))
            elif d.is_atomic():
                w.bind(next(iter(d.symbols())), v, i, axis, said)
            else:
                pending.append((i, axis, d))
    bound = set(w.source)
    progress = True
    while pending and progress:
        progress = False
        for p in list(pending):
            i, axis, d = p
            v = f"in[{i}].dims[{axis}]"
            unbound = sorted(d.symbols() - bound)
            if not unbound:
                value = c_dim(d, env)
                f = _Format().text(f"dim {axis} is ").i64(v).text(f", expected {d} = ").i64("t")
                w.lines.append(f"{{ int64_t t = {value}; if (e0.overflow || e0.divzero) "
                               f"return nc_ev_fail(err, &e0); if (t != {v}) {w.fail(i, f)} }}")
            elif len(unbound) == 1 and _linear_in(d, unbound[0]):
                s = unbound[0]
                coeff = dict(d.terms)[(s,)]
                rest_terms = {m: c for m, c in d.terms if m != (s,)}
                rest = c_dim(Expr(rest_terms), env) if rest_terms else c_int(0)
                never = (_Format().text(f"dim {axis} is ").i64(v).text(f", expected {d}, which "
                                                                          "is never ").i64(v))
                said = (_Format().text(f"dim {axis} is ").i64(v)
                        .raw("%s", f'({v} == t ? "" : {c_string(f", so {s} is ")})')
                        .raw("%s", "tv"))
                w.lines.append("{")
                w.lines.append(f"int64_t r = nc_add(ev, {v}, nc_mul(ev, -1, {rest}));")
                w.lines.append(f"int64_t t = nc_fdiv(ev, r, {c_int(coeff)});")
                w.lines.append(f"int64_t m = nc_fmod(ev, r, {c_int(coeff)});")
                w.lines.append("if (e0.overflow || e0.divzero) return nc_ev_fail(err, &e0);")
                w.lines.append(f"if (m != 0 || t < 0) {w.fail(i, never)}")
                w.lines.append("char tv[24] = \"\";")
                w.lines.append(f'if ({v} != t) snprintf(tv, sizeof tv, "%lld", (long long)t);')
                w.bind(s, "t", i, axis, said)
                w.lines.append("}")
                bound.add(s)
            else:
                continue
            pending.remove(p)
            progress = True
    if pending:
        i, axis, d = pending[0]
        unknown = ", ".join(sorted(d.symbols() - bound))
        v = f"in[{i}].dims[{axis}]"
        w.lines.append(w.fail(i, _Format().text(f"cannot determine {unknown} from dim {axis} "
                                                f"({d} = ").i64(v).text(")")))
    return w.lines


# -- layer sizes and constraints: neuralc.runtime.sizes --------------------------------------


def _sizes_call(syms: list[str], env: Mapping[str, str]) -> str:
    idx = [list(env).index(s) for s in syms]
    table = ", ".join(str(k) for k in idx) or "0"
    return (f"{{ static const int q[] = {{{table}}}; "
            f"nc_sizes_text(st, sizeof st, sz, q, {len(idx)}); }}")


def _size_code(func: Op, known: set[str], env: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    seen: set[str] = set()
    for op in func_body(func).ops:
        if op.dialect != "graph":
            continue
        where = _where(op)
        for r in op.results:
            if r.type.shape is None:
                continue
            for axis, d in enumerate(r.type.shape):
                if not symbols(d) <= known or (isinstance(d, int) and d >= 1) or str(d) in seen:
                    continue
                seen.add(str(d))
                syms = sorted(s for s in symbols(d) if s in env)
                f = (_Format().text(f"{where}: with these inputs (").raw("%s", "st")
                     .text(") its output would have ").i64("v")
                     .text(f" elements on axis {axis} ({d}); the input is too small for this "
                           "layer"))
                lines.append(f"{{ int64_t v = {c_dim(d, env)}; if (e0.overflow || e0.divzero) "
                             f"return nc_ev_fail(err, &e0); if (v < 1) {{ char st[256]; "
                             f"{_sizes_call(syms, env)} return {f.call('nc_fail', 'err')}; }} }}")
        spec = catalog.by_op(op.name)
        limit = spec.extra.get("max_length") if spec is not None else None
        if limit is None:
            continue
        table = int(op.attributes[limit])
        t = op.operands[0].type.shape
        if t is None or len(t) <= 1 or not symbols(t[1]) <= known:
            continue
        f = (_Format().text(f"{where}: the sequence has ").i64("v")
             .text(f" positions, more than {limit}={table}; feed shorter sequences or raise "
                   f"{limit}"))
        lines.append(f"{{ int64_t v = {c_dim(t[1], env)}; if (e0.overflow || e0.divzero) "
                     f"return nc_ev_fail(err, &e0); if (v > {c_int(table)}) "
                     f"return {f.call('nc_fail', 'err')}; }}")
    return lines


def _constraint_code(constraints: list, known: set[str], env: Mapping[str, str]) -> list[str]:
    lines = []
    for text, lo, hi in constraints:
        d = parse_dim(text)
        if not symbols(d) <= known:
            continue
        conds = [c for c in ((f"v < {c_int(lo)}" if lo is not None else None),
                             (f"v > {c_int(hi)}" if hi is not None else None)) if c]
        if not conds:
            continue
        if (lo, hi) == (0, 0) and " mod " in text:
            f = (_Format().text(f"with these inputs {text} is ").i64("v")
                 .text(", not 0: the dimension it stands for must be a multiple of the step "
                       "dims { } gives it"))
        else:
            f = (_Format().text(f"with these inputs {text} is ").i64("v")
                 .text(f", outside the range {_range_text(lo, hi)} that dims {{ }} gives the "
                       "dimension it stands for"))
        lines.append(f"{{ int64_t v = {c_dim(d, env)}; if (e0.overflow || e0.divzero) "
                     f"return nc_ev_fail(err, &e0); if ({' || '.join(conds)}) "
                     f"return {f.call('nc_fail', 'err')}; }}")
    return lines


# -- the generated files --------------------------------------------------------------------


def _tensor_infos(var: str, tensors: list[Tensor]) -> list[str]:
    lines = []
    for k, t in enumerate(tensors):
        dims = ", ".join(c_string(str(d)) for d in t.shown) or "0"
        lines.append(f"static const char *const {var}_dims{k}[] = {{{dims}}};")
    body = ", ".join(
        f"{{{c_string(t.name)}, {C_DTYPES[t.dtype]}, {len(t.shown)}, {var}_dims{k}, "
        f"{c_string(shape_str(t.shown))}}}" for k, t in enumerate(tensors)) or "{0}"
    lines.append(f"static const nc_tensor_info {var}[] = {{{body}}};")
    return lines


def _function(signature: str, params: list[str], body: list[str]) -> list[str]:
    unused = " ".join(f"(void){p};" for p in ["ev", *params])
    return [signature + " {", "    nc_ev e0 = {0, 0};", "    nc_ev *ev = &e0;",
            f"    {unused}", *[f"    {line}" for line in body], "    return 0;", "}"]


def model_c(cm: CModel, *, header: str, build: Mapping[str, object], blob: WeightsBlob,
            external: bool, weights_file: str, weights_sha256: str) -> str:
    """The model's translation unit: tables, generated checks, then the runtime (and main)."""
    n_sym = len(cm.symbols)
    env = {s: f"sz[{k}]" for k, s in enumerate(cm.symbols)}
    lines = [
        f"/* {cm.name}: tables and input checks generated by neuralc {build['version']}. */",
        f"#define NC_PREFIX {cm.prefix}",
        f"#include {c_string(header)}",
        '#include "nc_internal.h"',
        f"#define NC_NUM_INPUTS {len(cm.inputs)}",
        f"#define NC_NUM_OUTPUTS {len(cm.outputs)}",
        f"#define NC_NUM_SYMBOLS {n_sym}",
        f"#define NC_NUM_WEIGHTS {len(cm.weights)}",
        f"#define NC_NUM_INIT {len(cm.init_buffers)}",
        f"#define NC_HAS_INIT {int(cm.has_init)}",
        f"#define NC_INIT_ARENA_BYTES UINT64_C({cm.init_arena_bytes})",
        f"#define NC_NUM_INDEX_CHECKS {len(cm.index_checks)}",
        f"#define NC_EXTERNAL_WEIGHTS {int(external)}",
        f"#define NC_WEIGHTS_FILE {c_string(weights_file)}",
        f"#define NC_WEIGHTS_BLOB_BYTES UINT64_C({len(blob.data)})",
        "",
    ]
    lines += _tensor_infos("nc_inputs", cm.inputs) + _tensor_infos("nc_outputs", cm.outputs)
    syms = []
    for s in cm.symbols:
        lo, hi, step = cm.facts[s]
        syms.append(f"{{{c_string(s)}, {c_int(-1 if lo is None else lo)}, "
                    f"{c_int(-1 if hi is None else hi)}, {c_int(step)}, "
                    f"{c_int(cm.nominal.get(s, -1))}}}")
    lines.append(f"static const nc_symbol_info nc_symbols[] = {{{', '.join(syms) or '{0}'}}};")
    lines.append(f"NC_MAYBE_UNUSED static const int64_t nc_bench_sizes[] = "
                 f"{{{', '.join(c_int(v) for v in cm.bench_sizes) or '0'}}};")
    spec = build["spec"]
    lines.append(
        "static const nc_model_info nc_model = {"
        f"{c_string(cm.name)}, {c_string(str(build['version']))}, "
        f"{c_string(str(build['precision']))}, {c_string(spec.triple)}, {c_string(spec.cpu)}, "
        f"{spec.vector_bits}, {int(build['opt_level'])}, "
        f"{len(cm.inputs)}, nc_inputs, {len(cm.outputs)}, nc_outputs, {n_sym}, nc_symbols, "
        f"{len(cm.weights)}, UINT64_C({blob.tensor_bytes}), {c_string(weights_sha256)}, "
        f"{int(external)}, {c_string(str(cm.arena_bytes))}}};")
    wlines = []
    for k, (name, t) in enumerate(cm.weights):
        shape = [int(evaluate(d, {})) for d in t.shape]
        lines.append(f"static const int64_t nc_wshape{k}[] = "
                     f"{{{', '.join(c_int(v) for v in shape) or '0'}}};")
        wlines.append(f"{{{c_string(name)}, {c_string(ST_DTYPES[t.dtype])}, {len(shape)}, "
                      f"nc_wshape{k}, UINT64_C({blob.offsets[k]}), UINT64_C({blob.sizes[k]})}}")
    lines.append(f"static const nc_weight_desc nc_weights[] = {{{', '.join(wlines) or '{0}'}}};")
    inits = [int(evaluate(t.numel(), {})) * ITEMSIZE[t.dtype] for t in cm.init_buffers]
    lines.append(f"static const uint64_t nc_init_bytes[] = "
                 f"{{{', '.join(f'UINT64_C({b})' for b in inits) or '0'}}};")
    checks = ", ".join(f"{{{i}, {c_int(rows)}, {c_string(where)}}}"
                       for i, rows, where in cm.index_checks) or "{0}"
    lines.append(f"static const nc_index_check nc_index_checks[] = {{{checks}}};")
    lines.append("")
    lines += _function("static int nc_gen_bind(char *err, const nc_shape *in, int64_t *sz)",
                       ["err", "in", "sz"], cm.bind_code)
    lines += _function("static int nc_gen_check_sizes(char *err, const int64_t *sz)",
                       ["err", "sz"], cm.size_code)
    lines += _function("static int nc_gen_check_constraints(char *err, const int64_t *sz)",
                       ["err", "sz"], cm.constraint_code)
    shape_cases = []
    for k, t in enumerate(cm.inputs + cm.outputs):
        sets = " ".join(f"out[{a}] = {c_dim(d, env)};" for a, d in enumerate(t.shape))
        shape_cases.append(f"case {k}: {sets} return {len(t.shape)};")
    lines += ["static int nc_gen_shape(int k, const int64_t *sz, int64_t *out, nc_ev *ev) {",
              "    (void)sz; (void)out; (void)ev;",
              "    switch (k) {", *[f"    {c}" for c in shape_cases], "    default: return 0;",
              "    }", "}"]
    lines += ["static int64_t nc_gen_arena(const int64_t *sz, nc_ev *ev) {",
              "    (void)sz; (void)ev;",
              f"    return {c_dim(cm.arena_bytes, env)};", "}", "",
              '#include "nc_runtime.c"', "#ifdef NC_WITH_MAIN", '#include "nc_main.c"',
              "#endif", ""]
    return "\n".join(lines)


def model_h(template: str, cm: CModel, header: str, version: str) -> str:
    """The public header of one model: the template with its prefix and names."""
    guard = re.sub(r"[^0-9A-Za-z]", "_", f"NEURALC_{cm.prefix}_H").upper()
    return (template.replace("@P@", cm.prefix).replace("@GUARD@", guard)
            .replace("@MODEL@", cm.name.replace("*/", "* /"))
            .replace("@HEADER@", header.replace("*/", "* /")).replace("@VERSION@", version))
