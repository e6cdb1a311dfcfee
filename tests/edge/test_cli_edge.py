"""``neuralc MODEL.nr --target cpu --emit exe|lib|obj``: what it writes and says, the machines of
``--triple``/``--cpu``, ``--static``, ``--external-weights``, the usage errors (exit 2, one
line, before any compile work) including a missing toolchain; and the README's C example,
compiled and run."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_helpers import ATOL, ROOT, RTOL, run, zig_cc

from neuralc.cli import main

MNIST = str(ROOT / "examples" / "mnist_cnn.nr")


def _interpreter(path: Path) -> bool:
    """Whether an ELF executable names a dynamic loader (has a PT_INTERP header)."""
    data = path.read_bytes()
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    return any(struct.unpack_from("<I", data, phoff + k * phentsize)[0] == 3
               for k in range(phnum))


def test_emit_exe_writes_a_runnable_binary(toolchain: str, builds: dict[str, Any],
                                           tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([MNIST, "--target", "cpu", "--emit", "exe"]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(r"wrote mnist_cnn: executable for \S+ \(\S+, \d+-bit vectors\), needs "
                        r"glibc 2.17 or newer; [\d,]+ bytes \(code [\d,]+, weights [\d,]+\); "
                        r".+\n", out), out
    rec = builds["host"]["mnist_cnn"]
    p = run([str(tmp_path / "mnist_cnn"), rec["inputs"][0], "-o", str(tmp_path / "y.npy")])
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(rec["cpu"][0]))


def test_emit_lib_writes_the_header_beside(toolchain: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    lib = tmp_path / "libdigits.so"
    assert main([MNIST, "--target", "cpu", "--emit", "lib", "-o", str(lib),
                 "--prefix", "digits"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1] == f"wrote {tmp_path / 'digits.h'}: its C header (functions digits_*)"
    header = (tmp_path / "digits.h").read_text()
    assert "digits_ctx *digits_create(const char *weights_path);" in header
    assert lib.stat().st_size > 900_000  # the weights are in it


def test_static_executable_has_no_loader(toolchain: str, builds: dict[str, Any],
                                         tmp_path: Path) -> None:
    exe = tmp_path / "mnist-static"
    assert main([MNIST, "--target", "cpu", "--emit", "exe", "--static", "-o", str(exe)]) == 0
    assert not _interpreter(exe)
    assert _interpreter(Path(builds["host"]["mnist_cnn"]["exe"]))
    rec = builds["host"]["mnist_cnn"]
    p = run([str(exe), rec["inputs"][0], "-o", str(tmp_path / "y.npy")])
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(rec["cpu"][0]))


@pytest.mark.parametrize("cpu,bits", [("x86-64-v3", 256), (None, 128)])
def test_portable_x86_builds(toolchain: str, builds: dict[str, Any], cpu: str | None, bits: int,
                             tmp_path: Path) -> None:
    from neuralc.backends.cpu.host import TargetSpec

    if TargetSpec.host().arch != "x86_64":
        pytest.skip("the host is not x86_64, so an x86_64 binary cannot run here")
    exe = tmp_path / "m"
    args = ["--triple", "x86_64-linux-gnu"] + (["--cpu", cpu] if cpu else [])
    assert main([MNIST, "--target", "cpu", "--emit", "exe", "-o", str(exe), *args]) == 0
    info = run([str(exe), "--info"]).stdout
    assert f"cpu {cpu or 'x86-64'}, {bits}-bit vectors" in info
    rec = builds["host"]["mnist_cnn"]
    p = run([str(exe), rec["inputs"][0], "-o", str(tmp_path / "y.npy")])
    assert p.returncode == 0, p.stderr
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), np.load(rec["ref"][0]), rtol=RTOL,
                               atol=ATOL)


def test_aarch64_assembly_uses_neon(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([MNIST, "--target", "cpu", "--emit", "asm", "--triple", "aarch64-linux-gnu",
                 "--cpu", "neoverse-n1"]) == 0
    asm = capsys.readouterr().out
    assert re.search(r"\bfmla\s+v\d+\.4s", asm) and "zmm" not in asm


def test_external_weights_from_the_cli(toolchain: str, builds: dict[str, Any],
                                       tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    exe = tmp_path / "digits"
    assert main([MNIST, "--target", "cpu", "--emit", "exe", "--external-weights",
                 "-o", str(exe)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"wrote {tmp_path / 'digits.safetensors'}: the weights \(sha256 "
                     r"[0-9a-f]{64}\), read at start", out)
    assert re.search(r"weights 0\)", out)
    rec = builds["host"]["mnist_cnn"]
    p = run([str(exe), rec["inputs"][0], "-o", str(tmp_path / "y.npy")])
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(rec["cpu"][0]))


USAGE_ERRORS = [
    (["--emit", "exe", "--triple", "riscv64-linux-gnu"],
     "--triple riscv64-linux-gnu: neuralc builds for Linux on x86_64 or aarch64 "
     "(x86_64-linux-gnu, aarch64-linux-gnu, or -musl for a static binary)"),
    (["--emit", "exe", "--triple", "x86_64-apple-darwin"], "--triple x86_64-apple-darwin: "),
    (["--emit", "exe", "--cpu", "pentium"], "--cpu pentium is unknown; known: host, x86-64, "
     "x86-64-v3 (x86_64); generic, cortex-a76, neoverse-n1 (aarch64)"),
    (["--emit", "exe", "--triple", "aarch64-linux-gnu", "--cpu", "x86-64-v3"],
     "--cpu x86-64-v3 is not a cpu of aarch64; known: "),
    (["--emit", "llvm", "--static"], "--static applies to --emit exe, lib or obj"),
    (["--emit", "asm", "--external-weights"], "--external-weights applies to --emit exe, lib "
     "or obj"),
    (["--emit", "lib", "--prefix", "9lives"], "--prefix must be a C identifier, got '9lives'"),
    (["--emit", "exe", "-o", "/nonexistent/dir/m"], "cannot write /nonexistent/dir/m: no folder "
     "/nonexistent/dir"),
]


@pytest.mark.parametrize("args,message", USAGE_ERRORS, ids=[str(k) for k in range(8)])
def test_usage_errors(toolchain: str, args: list[str], message: str,
                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main([MNIST, "--target", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"neuralc: error: {message}") and err.count("\n") == 1, err


@pytest.mark.parametrize("triple", [None, "aarch64-linux-gnu"])
def test_a_missing_toolchain_says_what_to_install(triple: str | None, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("NEURALC_TOOLCHAIN", "system")
    monkeypatch.setenv("PATH", str(tmp_path))  # no cc, gcc, clang or cross compiler
    monkeypatch.delenv("CC", raising=False)
    args = ["--triple", triple] if triple else []
    assert main([MNIST, "--target", "cpu", "--emit", "exe", "-o", str(tmp_path / "m"),
                 *args]) == 2
    err = capsys.readouterr().err
    arch = "aarch64" if triple else __import__("platform").machine()
    assert err.startswith(f"neuralc: error: --emit exe for {arch} needs a C compiler, a linker "
                          "and a C library: pip install ziglang (or neuralc[edge]), or install ")
    assert ("gcc-aarch64-linux-gnu" if triple else "apt install gcc") in err
    assert err.count("\n") == 1 and not (tmp_path / "m").exists()
    monkeypatch.setenv("NEURALC_TOOLCHAIN", "llvm")
    assert main([MNIST, "--target", "cpu", "--emit", "obj"]) == 2
    assert "NEURALC_TOOLCHAIN must be auto, zig or system, got 'llvm'" in capsys.readouterr().err


def test_the_system_toolchain_builds_too(toolchain: str, builds: dict[str, Any],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edge_helpers import missing

    from neuralc.backends.base import BackendUnavailable
    from neuralc.backends.cpu.edge.toolchain import EdgeTarget, find_toolchain
    from neuralc.backends.cpu.host import TargetSpec

    monkeypatch.setenv("NEURALC_TOOLCHAIN", "system")
    try:
        find_toolchain(EdgeTarget(TargetSpec.host()), "exe")
    except BackendUnavailable as e:
        missing(str(e))
    exe = tmp_path / "m"
    assert main([MNIST, "--target", "cpu", "--emit", "exe", "-o", str(exe)]) == 0
    rec = builds["host"]["mnist_cnn"]
    p = run([str(exe), rec["inputs"][0], "-o", str(tmp_path / "y.npy")])
    assert p.returncode == 0, p.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), np.load(rec["cpu"][0]))


def test_the_readme_c_example_compiles_and_runs(builds: dict[str, Any], tmp_path: Path) -> None:
    """The ten-line program of the README's Edge deployment section, against libmnist_cnn.so."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Edge deployment"):]
    code = re.search(r"```c\n(.*?)```", section, re.S)
    assert code, "the README's Edge deployment section has no C example"
    body = code.group(1)
    assert len([ln for ln in body.splitlines() if ln.strip()]) <= 13
    rec = builds["host"]["mnist_cnn"]
    (tmp_path / "example.c").write_text(body)
    lib_dir = Path(rec["lib"]).parent
    exe = tmp_path / "example"
    p = run([*zig_cc(), "-std=gnu11", "-Wall", "-Werror", f"-I{lib_dir}",
             str(tmp_path / "example.c"), rec["lib"], f"-Wl,-rpath,{lib_dir}", "-o", str(exe)])
    assert p.returncode == 0, p.stderr
    p = run([str(exe)])
    assert p.returncode == 0, p.stderr
    probabilities = [float(v) for v in p.stdout.split()]
    assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-5
