"""Thousands of mutated .npy files thrown at standalone executables: none crashes, hangs or
prints more than one line, under AddressSanitizer and UndefinedBehaviorSanitizer (the runtime
built with gcc) and under valgrind (the binary as shipped, built with the default toolchain).

The mutations start from valid inputs of two examples (float images and integer token ids):
flipped bytes in the header and in the data, truncations and appended bytes, header fields
replaced by hostile values (huge, negative and zero dims, foreign dtypes, fortran order),
and wrong header lengths.
"""

from __future__ import annotations

import os
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_helpers import ROOT, missing, run

DESCRS = ["<f4", "<f8", "<f2", ">f4", "<i8", ">i2", "|i1", "|u1", "<u8", "|b1", "<c8", "<U2",
          "|O", "<f16", "f4", "<M8[s]", "|V4", "<i4", "", "'", "<f4'", "\\x00"]
SHAPES = ["(1, 28, 28, 1)", "(1, 8)", "(2, 8)", "()", "(0,)", "(0, 28, 28, 1)", "(1,)",
          "(-1, 8)", "(4294967295, 4294967295)", "(1, 28, 28, 1, 1)", "(1, 8", "(1 8)",
          "(99999999999999999999,)", "(1, 2, 3, 4, 5, 6, 7, 8, 9)", "(1, 0x10)", "(1, 8,,)"]
ORDERS = ["False", "True", "0", "None", "Tru", "False False"]


def _header(descr: str, order: str, shape: str) -> bytes:
    text = f"{{'descr': '{descr}', 'fortran_order': {order}, 'shape': {shape}, }}"
    pad = -(10 + len(text) + 1) % 64
    return (text + " " * pad + "\n").encode("latin-1")


def mutants(seed_file: bytes, n: int, seed: int) -> list[bytes]:
    """``n`` mutations of a valid .npy file (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    hlen = struct.unpack_from("<H", seed_file, 8)[0]
    data = seed_file[10 + hlen:]
    out = []
    for _ in range(n):
        kind = int(rng.integers(8))
        b = bytearray(seed_file)
        if kind == 0:  # flipped bytes anywhere
            for _ in range(int(rng.integers(1, 9))):
                b[int(rng.integers(len(b)))] ^= int(rng.integers(1, 256))
        elif kind == 1:  # flipped bytes in the header
            for _ in range(int(rng.integers(1, 5))):
                b[int(rng.integers(6, 10 + hlen))] = int(rng.integers(256))
        elif kind == 2:  # truncated
            b = b[:int(rng.integers(len(b)))]
        elif kind == 3:  # appended bytes
            b += rng.integers(0, 256, int(rng.integers(1, 64)), dtype=np.uint8).tobytes()
        elif kind in (4, 5):  # hostile header fields, the data kept or cut
            h = _header(str(rng.choice(DESCRS)), str(rng.choice(ORDERS)), str(rng.choice(SHAPES)))
            body = data if kind == 4 else data[:int(rng.integers(len(data) + 1))]
            b = bytearray(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(h)) + h + body)
        elif kind == 6:  # a wrong header length (version 1 or 2)
            if rng.integers(2):
                struct.pack_into("<H", b, 8, int(rng.integers(65536)))
            else:
                b = bytearray(b"\x93NUMPY\x02\x00" + struct.pack("<I", int(rng.integers(2**32)))
                              + bytes(b[10:]))
        else:  # inserted bytes
            at = int(rng.integers(len(b)))
            b[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
        out.append(bytes(b))
    return out


def _seed_files(builds: dict[str, Any]) -> dict[str, bytes]:
    """One valid small input per executable: batch 1 images, a short row of token ids."""
    x = np.load(builds["host"]["mnist_cnn"]["inputs"][0])[:1]
    t = np.load(builds["host"]["text_embedding"]["inputs"][0])[:1]
    out = {}
    for name, a in (("mnist_cnn", x), ("text_embedding", t)):
        import io

        buf = io.BytesIO()
        np.save(buf, a)
        out[name] = buf.getvalue()
    return out


def _throw(exe: list[str], files: list[Path], name: str, env: dict[str, str] | None = None,
           workers: int = 4) -> list[tuple[Path, Any]]:
    def one(f: Path) -> tuple[Path, Any]:
        return f, run([*exe, str(f), "-o", str(f.with_suffix(".out.npy"))],
                      env={**os.environ, **(env or {})})

    with ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(one, files))
    for f, p in results:
        assert p.returncode in (0, 1), (f, p.returncode, p.stderr[-2000:])
        if p.returncode == 0:
            assert p.stderr == "" and p.stdout == f"wrote {f.with_suffix('.out.npy')}\n"
            assert np.load(f.with_suffix(".out.npy")).ndim == 2
        else:
            assert p.stderr.startswith(f"{name}: error: ") and p.stderr.count("\n") == 1, \
                (f, p.stderr[-2000:])
    return results


def _write(files: list[bytes], d: Path) -> list[Path]:
    d.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, data in enumerate(files):
        (d / f"m{k}.npy").write_bytes(data)
        paths.append(d / f"m{k}.npy")
    return paths


@pytest.mark.parametrize("name", ["mnist_cnn", "text_embedding"])
def test_mutated_files_never_crash(builds: dict[str, Any], name: str, tmp_path: Path) -> None:
    seed = _seed_files(builds)[name]
    files = _write(mutants(seed, 1200, seed=1), tmp_path)
    results = _throw([builds["host"][name]["exe"]], files, name)
    codes = [p.returncode for _, p in results]
    assert codes.count(1) > 500 and codes.count(0) >= 1  # both paths were exercised


@pytest.fixture(scope="module")
def sanitized(toolchain: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """mnist_cnn and text_embedding with the runtime under ASan and UBSan (system gcc)."""
    from neuralc.backends.base import BackendUnavailable
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    d = tmp_path_factory.mktemp("asan")
    flags = "-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"
    saved = {k: os.environ.get(k) for k in ("NEURALC_TOOLCHAIN", "NEURALC_EDGE_CFLAGS")}
    os.environ.update(NEURALC_TOOLCHAIN="system", NEURALC_EDGE_CFLAGS=flags)
    out = {}
    try:
        for name in ("mnist_cnn", "text_embedding"):
            model = compile_file(ROOT / "examples" / f"{name}.nr")
            comp = compile_for_cpu(model)
            built = build_edge(comp, model, init_weights(model.module, seed=0),
                               EdgeRequest("exe", d / name, comp.spec))
            out[name] = str(built.binary)
    except BackendUnavailable as e:
        missing(f"no gcc with AddressSanitizer here ({e})")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return out


ASAN_ENV = {"ASAN_OPTIONS": "detect_leaks=0:exitcode=86",
            "UBSAN_OPTIONS": "halt_on_error=1:exitcode=87:print_stacktrace=1"}


@pytest.mark.parametrize("name", ["mnist_cnn", "text_embedding"])
def test_mutated_files_under_address_sanitizer(builds: dict[str, Any],
                                               sanitized: dict[str, str], name: str,
                                               tmp_path: Path) -> None:
    seed = _seed_files(builds)[name]
    files = _write(mutants(seed, 600, seed=2), tmp_path)
    results = _throw([sanitized[name]], files, name, env=ASAN_ENV)
    assert not any("Sanitizer" in p.stderr or "runtime error" in p.stderr for _, p in results)


def test_mutated_files_under_valgrind(builds: dict[str, Any], tmp_path: Path) -> None:
    """valgrind knows no AVX-512, so this binary is the portable x86-64-v3 build."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.backends.cpu.edge.build import EdgeRequest, build_edge
    from neuralc.backends.cpu.host import TargetSpec
    from neuralc.driver import compile_file
    from neuralc.runtime.weights import init_weights

    valgrind = shutil.which("valgrind")
    if valgrind is None:
        missing("valgrind is not installed (Debian: apt install valgrind)")
    assert valgrind is not None
    model = compile_file(ROOT / "examples" / "mnist_cnn.nr")
    spec = TargetSpec.x86_64_v3()
    exe = build_edge(compile_for_cpu(model, spec=spec), model,
                     init_weights(model.module, seed=0),
                     EdgeRequest("exe", tmp_path / "mnist_cnn", spec)).binary
    seed = _seed_files(builds)["mnist_cnn"]
    picked = mutants(seed, 400, seed=3)[::25] + [seed]
    files = _write(picked, tmp_path / "files")
    cmd = [valgrind, "-q", "--error-exitcode=99", "--track-origins=no"]
    results = _throw([*cmd, str(exe)], files, "mnist_cnn", workers=2)
    assert results[-1][1].returncode == 0
