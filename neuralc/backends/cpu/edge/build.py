"""Standalone binaries of a compiled model: an executable, a shared library with ``model.h``, or
a relocatable object with the same C ABI.

A build has four parts, compiled in a temporary folder and linked by the toolchain
(:mod:`.toolchain`):

- the model's code: the cpu target's LLVM IR compiled by llvmlite for the chosen machine
  (through the code cache), its entry points renamed ``<prefix>__run`` / ``<prefix>__init``
  and hidden, so several models link into one program;
- ``model.c``: the generated tables and checks (:mod:`.cmodel`) with the C runtime
  (``c/nc_runtime.c``; ``c/nc_main.c`` for an executable) in one translation unit whose only
  exported symbols are ``<prefix>_*``;
- the weights, 64-byte aligned, assembled into read-only data with ``.incbin`` (no C array
  to compile, whatever their size), unless ``--external-weights`` writes them beside the
  binary as safetensors;
- ``model.h``, the public header (``c/model.h.in``).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralc.backends.cpu import cache
from neuralc.backends.cpu.compile import CpuCompilation
from neuralc.backends.cpu.edge.cmodel import (
    CModel,
    EdgeModelError,
    WeightsBlob,
    c_prefix,
    describe,
    model_c,
    model_h,
    weights_blob,
)
from neuralc.backends.cpu.edge.toolchain import EdgeTarget, Toolchain, find_toolchain
from neuralc.backends.cpu.host import TargetSpec, compile_object
from neuralc.frontend.model import CompiledModel
from neuralc.runtime.artifact import neuralc_version

EMITS = ("exe", "lib", "obj")
C_DIR = Path(__file__).resolve().parent / "c"
CFLAGS = ("-std=gnu11", "-Os", "-pthread", "-fvisibility=hidden", "-ffunction-sections",
          "-fdata-sections", "-fno-strict-aliasing", "-Wall", "-Wextra")

__all__ = ["C_DIR", "EMITS", "EdgeBuild", "EdgeModelError", "EdgeRequest", "Toolchain",
           "build_edge", "describe_model", "elf_code_bytes", "entry_ir", "header_name",
           "object_code"]


@dataclass
class EdgeRequest:
    """What to build: ``emit`` (exe, lib, obj) into ``output`` for ``spec``."""

    emit: str
    output: Path
    spec: TargetSpec
    static: bool = False
    external_weights: bool = False
    prefix: str | None = None
    use_cache: bool = True
    opt_level: int = 2
    precision: str = "fp32"
    keep: Path | None = None  # copy the build folder here (generated C, objects), for debugging


@dataclass
class EdgeBuild:
    """What a build wrote, and its sizes (for the CLI's summary and the README table)."""

    binary: Path
    files: list[Path]
    toolchain: str
    prefix: str
    header: Path | None = None
    weights_file: Path | None = None
    file_bytes: int = 0
    code_bytes: int = 0  # executable sections
    weights_bytes: int = 0  # embedded in the binary
    weights_sha256: str = ""
    notes: list[str] = field(default_factory=list)


def entry_ir(llvm_ir: str, prefix: str) -> str:
    """The program's IR with its global functions (``nc_run``, ``nc_init``, and the thread
    pool's ``nc_pool_start``/``nc_pool_stop`` where the code generator emits one) renamed
    ``<prefix>__run``, ``<prefix>__init``... and hidden: kernels are internal already, so the
    runtime links against these alone and several models link into one program."""
    names = [name for attrs, name in
             re.findall(r"^define ((?:[\w ]+ )?)@(nc_\w+)\(", llvm_ir, flags=re.MULTILINE)
             if not {"internal", "private"} & set(attrs.split())]
    out = llvm_ir
    for name in names:
        out = re.sub(rf"^define ((?:[\w ]+ )?)@{name}\(",
                     rf"define hidden \1@{prefix}__{name[3:]}(", out, flags=re.MULTILINE)
        out = re.sub(rf"@{name}\b", f"@{prefix}__{name[3:]}", out)
    if "nc_run" not in names:
        raise EdgeModelError("the program has no nc_run entry point")
    return out


def object_code(llvm_ir: str, spec: TargetSpec, use_cache: bool) -> bytes:
    """The object for ``spec``, from the code cache when it holds it."""
    key = cache.cache_key(llvm_ir, spec) if use_cache else None
    obj = cache.load(key) if key is not None else None
    if obj is None:
        obj = compile_object(llvm_ir, spec)
        if key is not None:
            cache.store(key, obj)
    return obj


def header_name(output: Path, emit: str) -> str:
    """``libmodel.so`` -> ``model.h``; ``model.o`` -> ``model.h``."""
    stem = output.name
    if emit == "lib":
        stem = stem.split(".so")[0]
        stem = stem[3:] if stem.startswith("lib") and len(stem) > 3 else stem
    else:
        stem = Path(stem).stem
    return f"{stem or 'model'}.h"


def elf_code_bytes(path: Path) -> int:
    """The bytes of a 64-bit ELF file's executable sections (0 if it is not one)."""
    data = path.read_bytes()
    if data[:5] != b"\x7fELF\x02" or data[5] != 1:
        return 0
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    total = 0
    for k in range(shnum):
        base = shoff + k * shentsize
        if base + 64 > len(data):
            break
        sh_type, = struct.unpack_from("<I", data, base + 4)
        flags, = struct.unpack_from("<Q", data, base + 8)
        size, = struct.unpack_from("<Q", data, base + 32)
        if flags & 0x4 and sh_type != 8:  # SHF_EXECINSTR, not NOBITS
            total += size
    return total


def _weights_asm(prefix: str, blob_path: Path, size: int) -> str:
    sym = f"{prefix}__weights"
    quoted = str(blob_path).replace("\\", "\\\\").replace('"', '\\"')
    return "\n".join([
        '\t.section .rodata.neuralc_weights,"a"', "\t.balign 64", f"\t.globl {sym}",
        f"\t.hidden {sym}", f"\t.type {sym}, %object", f"{sym}:", f'\t.incbin "{quoted}"',
        f"\t.size {sym}, {size}", '\t.section .note.GNU-stack,"",%progbits', ""])


def _extra_cflags() -> list[str]:
    """``NEURALC_EDGE_CFLAGS``: extra flags for the runtime (a sanitizer when debugging)."""
    return os.environ.get("NEURALC_EDGE_CFLAGS", "").split()


def build_edge(comp: CpuCompilation, model: CompiledModel, weights: dict[str, np.ndarray],
               req: EdgeRequest) -> EdgeBuild:
    """Build ``req.emit`` for ``comp`` (compiled for ``req.spec``) and write it; raises
    EdgeModelError for a model the runtime cannot hold and BackendUnavailable for a missing
    or failing toolchain."""
    if req.emit not in EMITS:
        raise ValueError(f"emit must be one of {EMITS}, got {req.emit!r}")
    tc = find_toolchain(EdgeTarget(req.spec, req.static), req.emit)
    prefix = req.prefix or c_prefix(str(model.info.name))
    cm = describe(comp, model, prefix)
    program = comp.program
    blob = weights_blob(program.weights, program.weight_types, weights)
    sha = hashlib.sha256(blob.safetensors).hexdigest()
    out = Path(req.output)
    weights_path = out.with_suffix(".safetensors") if req.external_weights else None
    if weights_path is not None and weights_path == out:
        raise EdgeModelError(f"-o {out} would be overwritten by its own weights file")
    header = header_name(out, req.emit)
    build_info = {"version": neuralc_version(), "precision": req.precision,
                  "opt_level": req.opt_level, "spec": req.spec}
    result = EdgeBuild(out, [], tc.name, prefix, weights_sha256=sha)
    with tempfile.TemporaryDirectory(prefix="neuralc-edge-") as tmp:
        d = Path(tmp)
        try:
            _build_in(d, tc, cm, blob, sha, req, header, weights_path, build_info,
                      program.llvm_ir, result)
        finally:
            if req.keep is not None:
                shutil.copytree(d, req.keep, dirs_exist_ok=True)
    if weights_path is not None:
        weights_path.write_bytes(blob.safetensors)
        result.weights_file = weights_path
        result.files.append(weights_path)
    result.file_bytes = out.stat().st_size
    result.code_bytes = elf_code_bytes(out)
    return result


def _build_in(d: Path, tc: Toolchain, cm: CModel, blob: WeightsBlob, sha: str,
              req: EdgeRequest, header: str, weights_path: Path | None,
              build_info: dict[str, object], llvm_ir: str, result: EdgeBuild) -> None:
    """The compile and link steps, in the build folder ``d``."""
    out = Path(req.output)
    (d / header).write_text(model_h((C_DIR / "model.h.in").read_text(), cm, header,
                                    neuralc_version()))
    (d / "model.c").write_text(model_c(
        cm, header=header, build=build_info, blob=blob, external=req.external_weights,
        weights_file=weights_path.name if weights_path else "", weights_sha256=sha))
    (d / "model.o").write_bytes(object_code(entry_ir(llvm_ir, cm.prefix), req.spec,
                                            req.use_cache))
    sources = [str(d / "model.c")]
    if not req.external_weights:
        (d / "weights.bin").write_bytes(blob.data)
        (d / "weights.S").write_text(_weights_asm(cm.prefix, d / "weights.bin", len(blob.data)))
        sources.append(str(d / "weights.S"))
        result.weights_bytes = len(blob.data)
    flags = [*CFLAGS, f"-I{C_DIR}", f"-I{d}", *_extra_cflags()]
    made = d / "out"
    if req.emit == "obj":
        objs = []
        for src in sources:
            obj = str(d / (Path(src).stem + ".rt.o"))
            tc.run([*tc.cc(), *flags, "-fPIC", "-c", src, "-o", obj], "compile the runtime")
            objs.append(obj)
        tc.run(tc.partial_link([str(d / "model.o"), *objs], str(made)), "link the object")
    else:
        kind = ["-DNC_WITH_MAIN"] if req.emit == "exe" else ["-shared", "-fPIC"]
        strip = [] if "-g" in _extra_cflags() else ["-s"]
        tc.run([*tc.cc(), *flags, *kind, *sources, str(d / "model.o"), "-Wl,--gc-sections",
                *strip, "-o", str(made)],
               f"link the {'executable' if req.emit == 'exe' else 'shared library'}")
    _install(made, out, executable=req.emit == "exe")
    result.files.append(out)
    if req.emit != "exe":
        result.header = out.parent / header
        shutil.copyfile(d / header, result.header)
        result.files.append(result.header)


def _install(made: Path, out: Path, executable: bool) -> None:
    """Copy the built file into place (replacing a running binary's file safely)."""
    tmp = out.with_name(f".{out.name}.neuralc-tmp")
    shutil.copyfile(made, tmp)
    os.chmod(tmp, 0o755 if executable else 0o644)
    os.replace(tmp, out)


def describe_model(comp: CpuCompilation, model: CompiledModel, prefix: str | None = None
                   ) -> CModel:
    """The C description of a model (for tests and tools that inspect the generated checks)."""
    return describe(comp, model, prefix or c_prefix(str(model.info.name)))

