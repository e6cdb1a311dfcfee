"""Every example as a standalone binary: the host executable and the shared library (through a
C program and through ctypes) give exactly what the in-process cpu target gives (the same
code), and the reference interpreter's result within the cpu tolerances; the aarch64
executable under qemu-user gives the reference's within the same tolerances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from edge_helpers import ATOL, EXAMPLES, RTOL, Lib, run


@pytest.mark.parametrize("name", EXAMPLES)
def test_host_executable_equals_the_in_process_target(builds: dict[str, Any], name: str,
                                                       tmp_path: Path) -> None:
    rec = builds["host"][name]
    outs = [str(tmp_path / f"y{k}.npy") for k in range(len(rec["cpu"]))]
    p = run([rec["exe"], *rec["inputs"], *[a for o in outs for a in ("-o", o)]])
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == [f"wrote {o}" for o in outs]
    for got, cpu, ref in zip(outs, rec["cpu"], rec["ref"]):
        y = np.load(got)
        np.testing.assert_array_equal(y, np.load(cpu))
        np.testing.assert_allclose(y, np.load(ref), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("name", EXAMPLES)
def test_named_inputs_give_the_same_result(builds: dict[str, Any], name: str,
                                           tmp_path: Path) -> None:
    from edge_helpers import ROOT

    from neuralc.driver import compile_file
    from neuralc.runtime.signature import input_names, select_func

    rec = builds["host"][name]
    model = compile_file(ROOT / "examples" / f"{name}.nr")
    names = input_names(select_func(model.module))
    args = [a for n, f in zip(reversed(names), reversed(rec["inputs"]))
            for a in ("--input", f"{n}={f}")]
    outs = [a for k in range(len(rec["cpu"])) for a in ("-o", str(tmp_path / f"y{k}"))]
    p = run([rec["exe"], *args, *outs, "-q"])
    assert (p.returncode, p.stdout, p.stderr) == (0, "", "")
    for k, cpu in enumerate(rec["cpu"]):
        np.testing.assert_array_equal(np.load(tmp_path / f"y{k}.npy"), np.load(cpu))


@pytest.mark.parametrize("name", EXAMPLES)
def test_library_through_a_c_program(builds: dict[str, Any], name: str, tmp_path: Path) -> None:
    rec = builds["host"][name]
    for unaligned in ([], ["--unaligned"]):
        outs = [str(tmp_path / f"y{k}.bin") for k in range(len(rec["cpu"]))]
        p = run([rec["driver"], *unaligned, *map(str, rec["sizes"]), "--", *rec["raw_inputs"],
                 "--", *outs])
        assert p.returncode == 0, p.stderr
        for got, cpu in zip(outs, rec["cpu"]):
            want = np.load(cpu)
            y = np.frombuffer(Path(got).read_bytes(), want.dtype).reshape(want.shape)
            np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("name", EXAMPLES)
def test_library_through_ctypes(builds: dict[str, Any], name: str) -> None:
    rec = builds["host"][name]
    lib = Lib(rec["lib"], rec["prefix"])
    ctx = lib.create(None)
    assert ctx, lib.error(None)
    try:
        arrays = [np.load(p) for p in rec["inputs"]]
        assert list(lib.sizes_of(ctx, arrays)[:len(rec["sizes"])]) == rec["sizes"]
        for got, cpu in zip(lib(ctx, arrays), rec["cpu"]):
            np.testing.assert_array_equal(got, np.load(cpu))
    finally:
        lib.destroy(ctx)


@pytest.mark.parametrize("name", EXAMPLES)
def test_aarch64_under_qemu_matches_the_reference(builds: dict[str, Any], qemu_aarch64: str,
                                                  name: str, tmp_path: Path) -> None:
    host, arm = builds["host"][name], builds["aarch64"][name]
    outs = [str(tmp_path / f"y{k}.npy") for k in range(len(host["ref"]))]
    p = run([qemu_aarch64, arm["exe"], *host["inputs"], *[a for o in outs for a in ("-o", o)],
             "-q"])
    assert (p.returncode, p.stderr) == (0, ""), p.stderr
    for got, ref in zip(outs, host["ref"]):
        np.testing.assert_allclose(np.load(got), np.load(ref), rtol=RTOL, atol=ATOL)
    info = run([qemu_aarch64, arm["exe"], "--info"])
    assert f"target: aarch64-unknown-linux-gnu, cpu {arm['cpu']}, 128-bit vectors" in info.stdout
