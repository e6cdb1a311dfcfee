"""JIT loading: results against numpy, the cache round trip, relocations, the GIL, cross targets."""

from __future__ import annotations

import ctypes
import gc
import re
import threading
import time
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from neuralc.backends.cpu import cache, host, vecmath  # noqa: E402
from neuralc.backends.cpu.host import CodegenError, TargetSpec  # noqa: E402
from neuralc.backends.cpu.jit import JitModule  # noqa: E402

# y = a*x + y: a <16 x float> main loop and a scalar remainder loop.
SAXPY_IR = """
define void @saxpy(float %a, ptr noalias %x, ptr noalias %y, i64 %n) noinline {
entry:
  %nv = and i64 %n, -16
  %va0 = insertelement <16 x float> poison, float %a, i64 0
  %va = shufflevector <16 x float> %va0, <16 x float> poison, <16 x i32> zeroinitializer
  %hasv = icmp sgt i64 %nv, 0
  br i1 %hasv, label %vloop, label %vdone
vloop:
  %i = phi i64 [0, %entry], [%inext, %vloop]
  %px = getelementptr float, ptr %x, i64 %i
  %py = getelementptr float, ptr %y, i64 %i
  %vx = load <16 x float>, ptr %px, align 4
  %vy = load <16 x float>, ptr %py, align 4
  %vr = call <16 x float> @llvm.fma.v16f32(<16 x float> %va, <16 x float> %vx, <16 x float> %vy)
  store <16 x float> %vr, ptr %py, align 4
  %inext = add i64 %i, 16
  %vmore = icmp slt i64 %inext, %nv
  br i1 %vmore, label %vloop, label %vdone
vdone:
  %hast = icmp slt i64 %nv, %n
  br i1 %hast, label %tloop, label %done
tloop:
  %j = phi i64 [%nv, %vdone], [%jnext, %tloop]
  %qx = getelementptr float, ptr %x, i64 %j
  %qy = getelementptr float, ptr %y, i64 %j
  %sx = load float, ptr %qx, align 4
  %sy = load float, ptr %qy, align 4
  %sr = call float @llvm.fma.f32(float %a, float %sx, float %sy)
  store float %sr, ptr %qy, align 4
  %jnext = add i64 %j, 1
  %tmore = icmp slt i64 %jnext, %n
  br i1 %tmore, label %tloop, label %done
done:
  ret void
}

; a call between functions of the object (a relocation RuntimeDyld must resolve)
define void @saxpy_twice(float %a, ptr %x, ptr %y, i64 %n) {
  call void @saxpy(float %a, ptr %x, ptr %y, i64 %n)
  call void @saxpy(float %a, ptr %x, ptr %y, i64 %n)
  ret void
}
"""

# libc through llvm.memset/llvm.memcpy with run-time sizes, and the vector exp (constant pools).
RELOC_IR = (
    vecmath.define("exp", 16)
    + """
define void @zero_then_copy(ptr %dst, ptr %src, i64 %nbytes, i64 %ncopy) {
  call void @llvm.memset.p0.i64(ptr %dst, i8 0, i64 %nbytes, i1 false)
  call void @llvm.memcpy.p0.p0.i64(ptr %dst, ptr %src, i64 %ncopy, i1 false)
  ret void
}

define void @exp16(ptr %in, ptr %out) {
  %v = load <16 x float>, ptr %in, align 4
  %r = call <16 x float> @nc_exp_v16f32(<16 x float> %v)
  store <16 x float> %r, ptr %out, align 4
  ret void
}

@answer = global i32 42
"""
)

# Spins until *flag != 0 (returns the iterations) or max iterations pass (returns -1).
SPIN_IR = """
define i64 @spin(ptr %flag, i64 %max) {
entry:
  br label %loop
loop:
  %i = phi i64 [0, %entry], [%inext, %body]
  %f = load volatile i32, ptr %flag, align 4
  %set = icmp ne i32 %f, 0
  br i1 %set, label %seen, label %body
body:
  %inext = add i64 %i, 1
  %more = icmp slt i64 %inext, %max
  br i1 %more, label %loop, label %timeout
seen:
  ret i64 %i
timeout:
  ret i64 -1
}
"""

F32P = ctypes.POINTER(ctypes.c_float)
SAXPY_ARGS = (ctypes.c_float, F32P, F32P, ctypes.c_int64)


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("nc-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NEURALC_CACHE_DIR", str(root))
        yield root


@pytest.fixture(scope="module")
def saxpy_module(cache_root: Path) -> JitModule:
    return JitModule(SAXPY_IR, use_cache=True)


def _ptr(a: np.ndarray) -> ctypes._Pointer:
    return a.ctypes.data_as(F32P)


def run_saxpy(fn, a: float, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = y.copy()
    fn(a, _ptr(x), _ptr(out), len(x))
    return out


def expected_saxpy(a: float, x: np.ndarray, y: np.ndarray, times: int = 1) -> np.ndarray:
    out = y.astype(np.float64)
    for _ in range(times):  # one rounding per fma
        out = (np.float64(np.float32(a)) * x + out).astype(np.float32).astype(np.float64)
    return out.astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 15, 16, 17, 1000, 1037])
def test_saxpy_matches_numpy(saxpy_module: JitModule, n: int) -> None:
    rng = np.random.default_rng(n)
    x = rng.standard_normal(n).astype(np.float32)
    y = rng.standard_normal(n).astype(np.float32)
    fn = saxpy_module.function("saxpy", None, *SAXPY_ARGS)
    np.testing.assert_array_equal(run_saxpy(fn, 2.5, x, y), expected_saxpy(2.5, x, y))


def test_calls_between_functions_resolve(saxpy_module: JitModule) -> None:
    x = np.arange(37, dtype=np.float32)
    y = np.ones(37, dtype=np.float32)
    twice = saxpy_module.function("saxpy_twice", None, *SAXPY_ARGS)
    np.testing.assert_array_equal(run_saxpy(twice, 0.5, x, y), expected_saxpy(0.5, x, y, 2))


def test_second_module_loads_from_cache(saxpy_module: JitModule, cache_root: Path) -> None:
    assert not saxpy_module.from_cache and saxpy_module.compile_seconds > 0
    key = cache.cache_key(SAXPY_IR, TargetSpec.host())
    assert (cache_root / "cpu" / f"{key}.obj").is_file()
    again = JitModule(SAXPY_IR, use_cache=True)
    assert again.from_cache
    assert again.object_code == saxpy_module.object_code
    x = np.linspace(-3, 3, 133, dtype=np.float32)
    y = np.full(133, 0.25, dtype=np.float32)
    first = run_saxpy(saxpy_module.function("saxpy", None, *SAXPY_ARGS), -1.5, x, y)
    second = run_saxpy(again.function("saxpy", None, *SAXPY_ARGS), -1.5, x, y)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(second, expected_saxpy(-1.5, x, y))


def test_cache_disabled_compiles_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(tmp_path))
    m = JitModule(SAXPY_IR, use_cache=False)
    assert not m.from_cache
    assert not (tmp_path / "cpu").exists()


def test_corrupt_cache_entry_is_recompiled(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(tmp_path))
    key = cache.cache_key(SPIN_IR, TargetSpec.host())
    cache.store(key, b"\x7fELF but not really")
    entry = tmp_path / "cpu" / f"{key}.obj"
    entry.write_bytes(entry.read_bytes()[:-3])  # truncated
    m = JitModule(SPIN_IR, use_cache=True)
    assert not m.from_cache
    assert cache.load(key) == m.object_code  # the good object replaced the broken one


def test_unwritable_cache_does_not_fail_compilation(tmp_path: Path, monkeypatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(blocker / "sub"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = JitModule(SAXPY_IR, use_cache=True)
    assert any(issubclass(w.category, cache.CacheWarning) for w in caught)
    fn = m.function("saxpy", None, *SAXPY_ARGS)
    x = np.ones(20, np.float32)
    np.testing.assert_array_equal(run_saxpy(fn, 3.0, x, x), np.full(20, 4.0, np.float32))


def test_libc_and_constant_pool_relocations_resolve() -> None:
    asm = host.emit_assembly(RELOC_IR, TargetSpec.host())
    assert re.search(r"\bmemset\b", asm) and re.search(r"\bmemcpy\b", asm), "no libc calls made"
    m = JitModule(RELOC_IR, use_cache=False)
    zc = m.function(
        "zero_then_copy", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64
    )
    dst = np.full(1000, 0xAB, dtype=np.uint8)
    src = np.arange(1000, dtype=np.uint32).astype(np.uint8)
    zc(dst.ctypes.data, src.ctypes.data, 900, 333)
    np.testing.assert_array_equal(dst[:333], src[:333])
    assert not dst[333:900].any() and (dst[900:] == 0xAB).all()

    exp16 = m.function("exp16", None, F32P, F32P)
    x = np.linspace(-20, 20, 16, dtype=np.float32)
    out = np.empty(16, np.float32)
    exp16(_ptr(x), _ptr(out))
    np.testing.assert_allclose(out, np.exp(x.astype(np.float64)), rtol=2e-7)

    answer = ctypes.c_int32.from_address(m.address("answer"))
    assert answer.value == 42


def test_unknown_symbol_is_a_key_error(saxpy_module: JitModule) -> None:
    with pytest.raises(KeyError, match="no_such_function"):
        saxpy_module.address("no_such_function")


def test_functions_keep_the_module_alive() -> None:
    def make():
        module = JitModule(SAXPY_IR, use_cache=False)
        return module.function("saxpy", None, *SAXPY_ARGS), weakref.ref(module)

    fn, alive = make()
    gc.collect()
    assert alive() is not None
    x = np.arange(50, dtype=np.float32)
    np.testing.assert_array_equal(run_saxpy(fn, 2.0, x, x), 3 * x)
    del fn
    gc.collect()
    assert alive() is None


def test_native_call_releases_the_gil() -> None:
    """The native function spins until a Python thread, running meanwhile, sets a flag."""
    spin = JitModule(SPIN_IR, use_cache=False).function(
        "spin", ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64
    )
    flag = ctypes.c_int32(0)
    progress = [0]
    at_set = [0]

    def worker() -> None:
        end = time.perf_counter() + 0.2
        while time.perf_counter() < end:
            progress[0] += 1
        at_set[0] = progress[0]
        flag.value = 1

    thread = threading.Thread(target=worker)
    thread.start()
    before = progress[0]
    start = time.perf_counter()
    # The cap bounds the test if the GIL were held: the worker could never set the flag.
    result = spin(ctypes.addressof(flag), 20_000_000_000)
    elapsed = time.perf_counter() - start
    thread.join()
    assert result >= 0, "the native loop never saw the flag: the GIL was held during the call"
    assert at_set[0] - before > 1000, "the Python thread made no progress during the call"
    assert elapsed >= 0.1


def test_portable_spec_runs_on_this_host() -> None:
    spec = TargetSpec.x86_64_v3()
    if not spec.runs_here():
        pytest.skip("this host is not x86-64-v3 capable")
    m = JitModule(SAXPY_IR, spec, use_cache=False)
    assert "ymm" in host.emit_assembly(SAXPY_IR, spec)
    x = np.arange(40, dtype=np.float32)
    np.testing.assert_array_equal(
        run_saxpy(m.function("saxpy", None, *SAXPY_ARGS), 1.0, x, x), 2 * x
    )


def test_foreign_spec_is_refused() -> None:
    foreign = TargetSpec.aarch64() if TargetSpec.host().arch != "aarch64" else TargetSpec.x86_64()
    with pytest.raises(ValueError, match="cannot run code"):
        JitModule(SAXPY_IR, foreign, use_cache=False)


def test_bad_ir_is_a_codegen_error() -> None:
    with pytest.raises(CodegenError, match="parse"):
        JitModule("define void @f( {", use_cache=False)


def test_host_assembly_uses_zmm_for_16_lane_fma() -> None:
    spec = TargetSpec.host()
    if not spec.has("avx512f"):
        pytest.skip("host has no AVX-512F, so no zmm registers to look for")
    asm = host.emit_assembly(SAXPY_IR, spec)
    assert re.search(r"vfmadd\w+\s+.*%zmm", asm), "the <16 x float> fma did not use zmm"


def test_cross_compiles_for_aarch64_with_neon() -> None:
    if not host.has_target("aarch64-linux-gnu"):
        pytest.skip("this llvmlite's LLVM was built without AArch64")
    spec = TargetSpec("aarch64-linux-gnu", "cortex-a76", "+neon")
    obj = host.compile_object(SAXPY_IR, spec)
    assert obj[:4] == b"\x7fELF" and int.from_bytes(obj[18:20], "little") == 183
    asm = host.emit_assembly(SAXPY_IR, spec)
    assert re.search(r"fmla\s+v\d+\.4s", asm), "no NEON fmla in the aarch64 code"
    assert "zmm" not in asm and "ymm" not in asm
