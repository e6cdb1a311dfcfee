"""The C ABI of a shared library (through ctypes, as a caller in any language sees it): errors
as one line per context, independent contexts in concurrent threads, the thread-pool setting,
external weights checked at load; and relocatable objects of two models linked into one C
program."""

from __future__ import annotations

import ctypes
import json
import struct
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_helpers import ROOT, Lib, run, zig_cc


@pytest.fixture(scope="module")
def mnist(builds: dict[str, Any]) -> tuple[Lib, dict[str, Any]]:
    rec = builds["host"]["mnist_cnn"]
    return Lib(rec["lib"], rec["prefix"]), rec


def _sizes(*v: int) -> np.ndarray:
    return np.array(v, np.int64)


def test_info_describes_the_signature(mnist: tuple[Lib, dict[str, Any]]) -> None:
    lib, _ = mnist
    info = lib.info().contents
    assert (info.name, info.precision, info.num_inputs, info.num_outputs) == (
        b"DigitNet", b"fp32", 1, 1)
    x = info.inputs[0]
    assert (x.name, x.dtype, x.rank, x.shape) == (b"input", 1, 4, b"(batch, 28, 28, 1)")
    assert [x.dims[k] for k in range(4)] == [b"batch", b"28", b"28", b"1"]
    s = info.symbols[0]
    assert (info.num_symbols, s.name, s.min, s.max, s.step, s.nominal) == (1, b"batch", -1, -1,
                                                                           1, 1)
    assert info.external_weights == 0 and len(info.weights_sha256) == 64
    assert info.arena_bytes == b"batch * 108160" or info.arena_bytes.startswith(b"batch")


def test_errors_are_one_line_per_context(mnist: tuple[Lib, dict[str, Any]]) -> None:
    lib, rec = mnist
    a, b = lib.create(None), lib.create(None)
    try:
        x = np.load(rec["inputs"][0])
        with pytest.raises(ValueError, match=r"^input 'input' has 6272 bytes, these sizes need "
                                             r"3136$"):
            lib(a, [x], _sizes(1))
        assert lib.error(b) == ""  # the other context is untouched
        with pytest.raises(ValueError, match=r"^input 'input' has shape \(2, 28, 28\), expected "
                                             r"\(batch, 28, 28, 1\): rank 3, expected 4$"):
            lib(b, [x[..., 0]])
        with pytest.raises(ValueError, match="^size batch=-1 is outside the range of batch"):
            lib(a, [x], _sizes(-1))
        with pytest.raises(ValueError, match=r"with these inputs \(batch=0\) its output would "
                                             r"have 0 elements on axis 0"):
            lib(a, [x[:0]])
        shape = np.zeros(4, np.int64)
        assert lib.shape(a, _sizes(2).ctypes.data_as(ctypes.POINTER(ctypes.c_int64)), 7,
                         shape.ctypes.data_as(ctypes.POINTER(ctypes.c_int64))) == -1
        assert lib.error(a) == "tensor 7 does not exist (the model has 1 inputs and 1 outputs)"
        np.testing.assert_array_equal(lib(a, [x])[0], np.load(rec["cpu"][0]))  # still usable
    finally:
        lib.destroy(a)
        lib.destroy(b)


def test_threads_setting(mnist: tuple[Lib, dict[str, Any]],
                         monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    lib, _ = mnist
    ctx = lib.create(None)
    try:
        assert lib.threads(ctx) == os.cpu_count()
        assert lib.set_threads(ctx, 3) == 0 and lib.threads(ctx) == 3
        assert lib.set_threads(ctx, -1) == -1
        assert lib.error(ctx) == "threads must be from 0 (one per CPU) to 1024, got -1"
    finally:
        lib.destroy(ctx)
    monkeypatch.setenv("NEURALC_THREADS", "5")
    ctx = lib.create(None)
    assert lib.threads(ctx) == 5
    lib.destroy(ctx)
    monkeypatch.setenv("NEURALC_THREADS", "x")
    assert not lib.create(None)
    assert lib.error(None) == ("NEURALC_THREADS must be a number of threads from 0 (one per "
                               "CPU) to 1024, got 'x'")


def test_contexts_run_concurrently_in_threads(builds: dict[str, Any]) -> None:
    """Two contexts, two threads, different inputs, many runs each: every result is the one
    a lone context gives (ctypes releases the GIL during the calls)."""
    rec = builds["host"]["transformer_classifier"]
    lib = Lib(rec["lib"], rec["prefix"])
    base = np.load(rec["inputs"][0])
    inputs = [base, (base[:, ::-1] % 50).copy()]
    alone = []
    for x in inputs:
        ctx = lib.create(None)
        alone.append(lib(ctx, [x])[0])
        lib.destroy(ctx)
    assert not np.array_equal(alone[0], alone[1])
    failures: list[str] = []

    def work(k: int) -> None:
        ctx = lib.create(None)
        try:
            for _ in range(40):
                if not np.array_equal(lib(ctx, [inputs[k]])[0], alone[k]):
                    failures.append(f"thread {k} got another result")
        finally:
            lib.destroy(ctx)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_check_finite(mnist: tuple[Lib, dict[str, Any]]) -> None:
    lib, _ = mnist
    ctx = lib.create(None)
    try:
        x = np.zeros((1, 28, 28, 1), np.float32)
        x[0, 0, 1, 0] = np.inf
        lib(ctx, [x])
        lib.set_check_finite(ctx, 1)
        with pytest.raises(ValueError, match="non-finite value .* at flat index 1$"):
            lib(ctx, [x])
    finally:
        lib.destroy(ctx)


# -- external weights ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def external(toolchain: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    d = tmp_path_factory.mktemp("external")
    model = compile_file(ROOT / "examples" / "mnist_cnn.nr")
    comp = compile_for_cpu(model)
    w = init_weights(model.module, seed=0)
    lib = build_edge(comp, model, w, EdgeRequest("lib", d / "libmnist.so", comp.spec,
                                                 external_weights=True))
    exe = build_edge(comp, model, w, EdgeRequest("exe", d / "mnist", comp.spec,
                                                 external_weights=True))
    return {"lib": lib, "exe": exe, "dir": d}


def test_external_weights_are_read_at_start(external: dict[str, Any], builds: dict[str, Any],
                                            tmp_path: Path) -> None:
    rec = builds["host"]["mnist_cnn"]
    lib = Lib(str(external["lib"].binary), external["lib"].prefix)
    assert lib.info().contents.external_weights == 1
    assert not lib.create(None)
    assert lib.error(None) == ("this model was built with --external-weights: give the path of "
                               "its weights file (libmnist.safetensors)")
    ctx = lib.create(str(external["lib"].weights_file).encode())
    assert ctx, lib.error(None)
    np.testing.assert_array_equal(lib(ctx, [np.load(rec["inputs"][0])])[0],
                                  np.load(rec["cpu"][0]))
    lib.destroy(ctx)
    # The executable finds its weights beside itself, or where --weights says.
    exe = str(external["exe"].binary)
    out = tmp_path / "y.npy"
    p = run([exe, rec["inputs"][0], "-o", str(out)])
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(out), np.load(rec["cpu"][0]))
    moved = tmp_path / "w.safetensors"
    moved.write_bytes(Path(external["exe"].weights_file).read_bytes())
    assert run([exe, rec["inputs"][0], "--weights", str(moved), "-q"]).returncode == 0
    info = run([exe, "--info", "--weights", str(moved)]).stdout
    assert f"sha256 {external['exe'].weights_sha256} (the file it was built with)" in info
    p = run([exe, rec["inputs"][0], "--weights", str(tmp_path / "none.safetensors")])
    assert (p.returncode, p.stderr) == (1, f"mnist: error: cannot read weights file "
                                           f"{tmp_path / 'none.safetensors'}: No such file or "
                                           "directory\n")


def _safetensors(header: dict[str, Any], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


def _corruptions(good: bytes) -> list[tuple[str, bytes, str]]:
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    data = good[8 + n:]
    name = next(iter(header))

    def changed(**fields: Any) -> dict[str, Any]:
        h = json.loads(json.dumps(header))
        h[name].update(fields)
        return h

    extra = json.loads(json.dumps(header))
    extra["unused.weight"] = {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}
    less = {k: v for k, v in header.items() if k != name}
    return [
        ("short", good[:5], "is not a safetensors file (shorter than 8 bytes)"),
        ("header length", struct.pack("<Q", 10**9) + good[8:], "header length 1000000000"),
        ("not json", struct.pack("<Q", 4) + b"{x: " + data, "not valid JSON"),
        ("truncated data", good[:-100], "is truncated: tensor"),
        ("dtype", _safetensors(changed(dtype="F64"), data), "is F64, the model needs F32"),
        ("shape", _safetensors(changed(shape=[1, 2]), data), "has another shape"),
        ("offsets", _safetensors(changed(data_offsets=[0, 4]), data), "data_offsets"),
        ("missing", _safetensors(less, data), f"lacks tensor '{name}'"),
        ("unused", _safetensors(extra, data), "holds tensor 'unused.weight', which this model"),
        ("unknown field", _safetensors(changed(kind="x"), data), "unknown or repeated field"),
    ]


def test_bad_weights_files_are_refused_at_start(external: dict[str, Any],
                                                tmp_path: Path) -> None:
    lib = Lib(str(external["lib"].binary), external["lib"].prefix)
    good = Path(external["lib"].weights_file).read_bytes()
    for case, data, words in _corruptions(good):
        path = tmp_path / f"{case}.safetensors"
        path.write_bytes(data)
        assert not lib.create(str(path).encode()), case
        message = lib.error(None)
        assert words in message and "\n" not in message, (case, message)


# -- relocatable objects ---------------------------------------------------------------------

TWO_MODELS = r"""
#include <stdio.h>
#include "mnist.h"
#include "text.h"
int main(int argc, char **argv) {
    (void)argc;
    static float x[2 * 28 * 28], y[2 * 10], z[2 * 4];
    static int64_t t[2 * 8];
    FILE *f = fopen(argv[1], "rb"), *g = fopen(argv[2], "rb");
    if (!f || !g || fread(x, 4, 2 * 784, f) != 2 * 784 || fread(t, 8, 16, g) != 16) return 2;
    mnist_ctx *a = mnist_create(NULL);
    text_ctx *b = text_create(NULL);
    int64_t s1[] = {2}, s2[] = {2, 8};
    const void *in1[] = {x}, *in2[] = {t};
    void *out1[] = {y}, *out2[] = {z};
    size_t ib1[] = {sizeof x}, ob1[] = {sizeof y}, ib2[] = {sizeof t}, ob2[] = {sizeof z};
    if (!a || !b || mnist_run(a, s1, in1, ib1, out1, ob1) || text_run(b, s2, in2, ib2, out2, ob2))
        return 1;
    for (int k = 0; k < 20; k++) printf("%.9g\n", y[k]);
    for (int k = 0; k < 8; k++) printf("%.9g\n", z[k]);
    mnist_destroy(a);
    text_destroy(b);
    return 0;
}
"""


def _elf_globals(path: Path) -> set[str]:
    """Defined global symbols of a 64-bit ELF object (its .symtab)."""
    data = path.read_bytes()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + k * shentsize)
                for k in range(shnum)]
    out = set()
    for s in sections:
        if s[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[s[6]]
        for off in range(s[4], s[4] + s[5], 24):
            name, info, other, shndx = struct.unpack_from("<IBBH", data, off)
            bind, visibility = info >> 4, other & 3
            if bind == 1 and shndx != 0 and visibility == 0:  # global, defined, default
                end = data.index(b"\0", strtab[4] + name)
                out.add(data[strtab[4] + name:end].decode())
    return out


def test_two_models_link_into_one_program(builds: dict[str, Any], tmp_path: Path) -> None:
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    objs = []
    for name, prefix, out in (("mnist_cnn", "mnist", "mnist.o"),
                              ("text_embedding", "text", "text.o")):
        model = compile_file(ROOT / "examples" / f"{name}.nr")
        comp = compile_for_cpu(model)
        built = build_edge(comp, model, init_weights(model.module, seed=0),
                           EdgeRequest("obj", tmp_path / out, comp.spec, prefix=prefix))
        assert _elf_globals(built.binary) == {
            f"{prefix}_{f}" for f in ("info", "create", "destroy", "last_error", "shape", "bind",
                                      "run", "set_threads", "threads", "set_check_finite")}
        objs.append(str(built.binary))
    (tmp_path / "main.c").write_text(TWO_MODELS)
    exe = tmp_path / "both"
    p = run([*zig_cc(), "-std=gnu11", "-Wall", "-Werror", f"-I{tmp_path}",
             str(tmp_path / "main.c"), *objs, "-o", str(exe)])
    assert p.returncode == 0, p.stderr
    image = builds["host"]["mnist_cnn"]
    tokens = builds["host"]["text_embedding"]
    assert np.load(tokens["inputs"][0]).shape == (2, 8)
    p = run([str(exe), image["raw_inputs"][0], tokens["raw_inputs"][0]])
    assert p.returncode == 0, p.stderr
    got = np.array([float(v) for v in p.stdout.split()], np.float32)
    np.testing.assert_array_equal(got[:20], np.load(image["cpu"][0]).ravel())
    np.testing.assert_array_equal(got[20:], np.load(tokens["cpu"][0]).ravel())
