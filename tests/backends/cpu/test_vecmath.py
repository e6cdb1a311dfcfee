"""Vector math in LLVM IR against numpy in float64: dense sweeps, special values, stated bounds.

Each function is JIT-compiled at widths 1, 8 and 16 inside a loop ``void @run(float* in,
float* out, i64 n)`` and compared on about 1.2 million inputs: a dense sweep over the range
where the function is interesting, tiny values of both signs, and random float32 bit patterns
(every binade, denormals and huge values included). The bound per function is stated in
``BOUNDS`` with its reason and must also appear in the function's docstring. The same sweeps
run at width 4 for the x86-64 baseline (SSE2, no FMA), where ``llvm.fmuladd`` does not fuse.
"""

from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest

pytest.importorskip("llvmlite")

from neuralc.backends.cpu import host, vecmath  # noqa: E402
from neuralc.backends.cpu.host import TargetSpec  # noqa: E402
from neuralc.backends.cpu.jit import JitModule  # noqa: E402

FLT_MIN = float(np.finfo(np.float32).tiny)
SINCOS_RANGE = 12868.0  # where the pi/2 reduction is exact on every target

# name -> (metric, bound, the text the docstring states, why)
BOUNDS: dict[str, tuple[str, float, str, str]] = {
    "exp": ("ulp", 1.5, "<= 1.5 ulp", "exact reduction, one rounding in the 2^n scaling"),
    "expm1": ("ulp", 2.0, "<= 2 ulp", "2^n*expm1(r) + (2^n - 1) rounds once more than exp"),
    "log": ("ulp", 1.5, "<= 1.5 ulp", "exact exponent split, two-part ln2 (Cephes)"),
    "tanh": ("rel", 2.5e-7, "<= 2.5e-7 relative", "1 - 2/(e+1) loses ~2 ulp above 0.625"),
    "sigmoid": ("rel", 3e-7, "<= 3e-7 relative", "exp plus one division, no cancellation"),
    "softplus": ("rel", 3e-7, "<= 3e-7 relative", "log1p by Goldberg's trick on top of exp"),
    "erf": ("abs", 2e-7, "<= 2e-7 absolute", "two fits of 1e-8 plus float32 evaluation"),
    "sin": ("abs", 1e-6, "<= 1e-6 absolute", "exact reduction for |x| <= 12868"),
    "cos": ("abs", 1e-6, "<= 1e-6 absolute", "exact reduction for |x| <= 12868"),
}

# Where each function is worth sweeping densely (2**20 points).
SWEEP = {
    "exp": (-104.0, 89.0),
    "expm1": (-20.0, 89.0),
    "log": (0.0, 8.0),
    "tanh": (-10.0, 10.0),
    "sigmoid": (-105.0, 20.0),
    "softplus": (-105.0, 100.0),
    "erf": (-4.5, 4.5),
    "sin": (-SINCOS_RANGE, SINCOS_RANGE),
    "cos": (-SINCOS_RANGE, SINCOS_RANGE),
}

_erf = np.frompyfunc(math.erf, 1, 1)


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    e = np.exp(-np.abs(x))
    return np.where(x < 0, e, 1.0) / (1.0 + e)


REFERENCE = {
    "exp": np.exp,
    "expm1": np.expm1,
    "log": np.log,
    "tanh": np.tanh,
    "sigmoid": _sigmoid64,
    "softplus": lambda x: np.logaddexp(0.0, x),
    "erf": lambda x: _erf(x).astype(np.float64),
    "sin": np.sin,
    "cos": np.cos,
}

INF, NAN = math.inf, math.nan
DENORM = 1e-40
# Exact expectations (nan means "is nan"); zeros are compared with their sign.
# fmt: off
SPECIALS: dict[str, list[tuple[float, float]]] = {
    "exp": [(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN), (89.0, INF),
            (88.72283935546875, INF), (88.72283172607422, 3.4027985e38), (-104.0, 0.0),
            (-103.27893, 1.4e-45), (-87.33654, 1.1754997e-38), (DENORM, 1.0), (-3e38, 0.0)],
    "expm1": [(0.0, 0.0), (-0.0, -0.0), (INF, INF), (-INF, -1.0), (NAN, NAN), (DENORM, DENORM),
              (-DENORM, -DENORM), (1e-30, 1e-30), (-20.0, -1.0), (89.0, INF)],
    "log": [(0.0, -INF), (-0.0, -INF), (INF, INF), (-INF, NAN), (NAN, NAN), (-1.0, NAN),
            (-DENORM, NAN), (1.0, 0.0), (1.4e-45, -103.27893), (3.4028235e38, 88.72284)],
    "tanh": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (10.0, 1.0),
             (-10.0, -1.0), (3e38, 1.0), (-3e38, -1.0), (DENORM, DENORM), (-DENORM, -DENORM)],
    "sigmoid": [(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0), (NAN, NAN), (-110.0, 0.0),
                (-3e38, 0.0), (3e38, 1.0), (-103.27893, 1.4e-45), (DENORM, 0.5)],
    "softplus": [(0.0, 0.6931472), (-0.0, 0.6931472), (INF, INF), (-INF, 0.0), (NAN, NAN),
                 (3e38, 3e38), (-3e38, 0.0), (100.0, 100.0), (-110.0, 0.0)],
    "erf": [(0.0, 0.0), (-0.0, -0.0), (INF, 1.0), (-INF, -1.0), (NAN, NAN), (4.0, 1.0),
            (-4.0, -1.0), (3e38, 1.0), (-3e38, -1.0), (DENORM, 1.128379e-40)],
    "sin": [(0.0, 0.0), (-0.0, -0.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (DENORM, DENORM),
            (-DENORM, -DENORM), (1e7, NAN), (-3e38, NAN)],
    "cos": [(0.0, 1.0), (-0.0, 1.0), (INF, NAN), (-INF, NAN), (NAN, NAN), (DENORM, 1.0),
            (1e7, NAN), (3e38, NAN)],
}
# fmt: on


def harness(name: str, width: int, with_definition: bool = True) -> str:
    """``@run_<sym>``: the function applied to ``n`` floats, ``width`` at a time (n % width == 0)."""
    sym = vecmath.function_name(name, width)
    ty = "float" if width == 1 else f"<{width} x float>"
    definition = vecmath.define(name, width) if with_definition else ""
    return (
        definition
        + f"""
define void @run_{sym}(ptr noalias %in, ptr noalias %out, i64 %n) {{
entry:
  %has = icmp sgt i64 %n, 0
  br i1 %has, label %loop, label %done
loop:
  %i = phi i64 [0, %entry], [%next, %loop]
  %pi = getelementptr float, ptr %in, i64 %i
  %v = load {ty}, ptr %pi, align 4
  %r = call {ty} @{sym}({ty} %v)
  %po = getelementptr float, ptr %out, i64 %i
  store {ty} %r, ptr %po, align 4
  %next = add i64 %i, {width}
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}}
"""
    )


class Runner:
    """One JIT module with a run loop per (function, width)."""

    def __init__(self, spec: TargetSpec, widths: tuple[int, ...]):
        ir = "".join(harness(n, w) for n in vecmath.NAMES for w in widths)
        self.module = JitModule(ir, spec, use_cache=False)
        args = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
        self.fns = {
            (n, w): self.module.function(f"run_{vecmath.function_name(n, w)}", None, *args)
            for n in vecmath.NAMES
            for w in widths
        }

    def __call__(self, name: str, width: int, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        padded = np.zeros(-(-len(x) // 64) * 64, dtype=np.float32)
        padded[: len(x)] = x
        out = np.empty_like(padded)
        self.fns[name, width](padded.ctypes.data, out.ctypes.data, len(padded))
        return out[: len(x)]


@pytest.fixture(scope="module")
def runner() -> Runner:
    return Runner(TargetSpec.host(), vecmath.WIDTHS)


@pytest.fixture(scope="module")
def baseline_runner() -> Runner:
    if TargetSpec.host().arch != "x86_64":
        pytest.skip("the x86-64 baseline runs only on an x86-64 host")
    return Runner(TargetSpec.x86_64(), (4,))


_INPUTS: dict[str, np.ndarray] = {}


def sweep_inputs(name: str) -> np.ndarray:
    """Dense sweep + tiny values + random bit patterns (finite; restricted for sin/cos)."""
    if name not in _INPUTS:
        rng = np.random.default_rng(20240607)
        lo, hi = SWEEP[name]
        tiny = np.geomspace(1e-45, 1e-2, 2**15)
        bits = rng.integers(0, 2**32, 2**17, dtype=np.uint64).astype(np.uint32).view(np.float32)
        parts = [np.linspace(lo, hi, 2**20), tiny, -tiny, bits]
        if name == "log":
            parts.append(np.geomspace(1e-45, 3.4e38, 2**16))
        x = np.concatenate([p.astype(np.float32) for p in parts])
        x = x[np.isfinite(x)]
        if name in ("sin", "cos"):
            x = x[np.abs(x) <= SINCOS_RANGE]
        if name == "log":
            x = x[x > 0]
        _INPUTS[name] = x
    return _INPUTS[name]


def ulp_of(ref: np.ndarray) -> np.ndarray:
    """The float32 ulp at each float64 value (denormal spacing below FLT_MIN)."""
    _, e = np.frexp(np.abs(ref))
    return np.ldexp(1.0, np.maximum(e - 24, -149))


def measure(name: str, x: np.ndarray, y: np.ndarray) -> float:
    """The worst error of y = name(x) in the function's metric; asserts inf/nan agreement."""
    with np.errstate(all="ignore"):
        ref = REFERENCE[name](x.astype(np.float64))
        ref32 = ref.astype(np.float32)
    y64 = y.astype(np.float64)
    assert np.array_equal(np.isnan(y), np.isnan(ref32)), f"{name}: nan where numpy has none"
    inf = np.isinf(ref32)
    assert np.array_equal(y[inf], ref32[inf]), f"{name}: wrong overflow at {x[inf][:5]}"
    assert not np.isinf(y[~inf]).any(), f"{name}: spurious inf at {x[~inf][np.isinf(y[~inf])][:5]}"
    ok = np.isfinite(ref32)
    err = np.abs(y64[ok] - ref[ok])
    metric = BOUNDS[name][0]
    if metric == "ulp":
        err = err / ulp_of(ref[ok])
    elif metric == "rel":
        err = err / np.maximum(np.abs(ref[ok]), FLT_MIN)
    return float(err.max())


@pytest.mark.parametrize("width", [1, 8, 16])
@pytest.mark.parametrize("name", vecmath.NAMES)
def test_error_bound_on_dense_sweep(runner: Runner, name: str, width: int) -> None:
    x = sweep_inputs(name)
    worst = measure(name, x, runner(name, width, x))
    metric, bound, _, why = BOUNDS[name]
    assert worst <= bound, f"{name} at width {width}: {worst:.3g} {metric} > {bound} ({why})"


@pytest.mark.parametrize("name", vecmath.NAMES)
def test_every_width_computes_the_same_lanes(runner: Runner, name: str) -> None:
    """Widths 2, 4, 32 and 64 run the same operations per lane as the scalar function."""
    x = sweep_inputs(name)[::7]
    scalar = runner(name, 1, x)
    for width in (2, 4, 32, 64):
        np.testing.assert_array_equal(runner(name, width, x), scalar, err_msg=f"width {width}")


@pytest.mark.parametrize("name", vecmath.NAMES)
def test_error_bound_without_fma(baseline_runner: Runner, name: str) -> None:
    x = sweep_inputs(name)
    worst = measure(name, x, baseline_runner(name, 4, x))
    metric, bound, _, why = BOUNDS[name]
    assert worst <= bound, f"{name} on x86-64 (SSE2): {worst:.3g} {metric} > {bound} ({why})"


@pytest.mark.parametrize("width", [1, 16])
@pytest.mark.parametrize("name", vecmath.NAMES)
def test_special_values(runner: Runner, name: str, width: int) -> None:
    cases = SPECIALS[name]
    x = np.array([c[0] for c in cases], dtype=np.float32)
    want = np.array([c[1] for c in cases], dtype=np.float32)
    got = runner(name, width, x)
    for xi, g, w in zip(x, got, want):
        if np.isnan(w):
            assert np.isnan(g), f"{name}({xi!r}) = {g!r}, want nan"
        elif np.isinf(w):
            assert g == w, f"{name}({xi!r}) = {g!r}, want {w!r}"
        elif w == 0:
            assert g == 0 and np.signbit(g) == np.signbit(w), f"{name}({xi!r}) = {g!r}, want {w!r}"
        else:
            # 2e-6 relative, or one step of the denormal grid
            tol = 2e-6 * abs(float(w)) + 2.0**-149
            assert abs(float(g) - float(w)) <= tol, f"{name}({xi!r}) = {g!r}, want {w!r}"


def test_large_sin_cos_are_accurate_with_fma_and_nan_past_the_limit(runner: Runner) -> None:
    if not TargetSpec.host().has("fma"):
        pytest.skip("the extended range needs FMA; this host has none")
    x = np.linspace(SINCOS_RANGE, 3294198.5, 2**17).astype(np.float32)
    for name, f in (("sin", np.sin), ("cos", np.cos)):
        err = np.abs(runner(name, 16, x).astype(np.float64) - f(x.astype(np.float64)))
        assert err.max() <= 1e-6, f"{name}: {err.max():.3g} past {SINCOS_RANGE}"
        assert np.isnan(runner(name, 16, np.array([3294199.0, -5e6], np.float32))).all()


@pytest.mark.parametrize("name", vecmath.NAMES)
def test_docstring_states_the_tested_bound(name: str) -> None:
    assert BOUNDS[name][2] in vecmath.describe(name)
    assert BOUNDS[name][2] in vecmath.define(name, 8).splitlines()[0]


def test_names_and_symbols() -> None:
    assert set(vecmath.NAMES) == set(BOUNDS)
    assert vecmath.function_name("exp", 16) == "nc_exp_v16f32"
    assert vecmath.function_name("sigmoid", 1) == "nc_sigmoid_f32"
    text = vecmath.define("tanh", 8)
    assert "define internal <8 x float> @nc_tanh_v8f32(<8 x float> %x)" in text
    assert "alwaysinline" in text and "memory(none)" in text
    outlined = vecmath.define("tanh", 8, inline=False)
    assert "define internal <8 x float> @nc_tanh_v8f32_call(<8 x float> %x) noinline" in outlined
    with pytest.raises(ValueError, match="width"):
        vecmath.define("exp", 3)
    with pytest.raises(ValueError, match="no vector math function"):
        vecmath.function_name("gelu", 8)


@pytest.mark.parametrize("name", vecmath.NAMES)
def test_definitions_call_only_llvm_intrinsics(name: str) -> None:
    callees = re.findall(r"call [^@]*@([\w.]+)\(", vecmath.define(name, 16))
    assert callees and all(c.startswith("llvm.") for c in callees)
    # and no intrinsic that LLVM may expand to a libm call (exp/log/sin/rint/floor/fma...)
    assert all(c.split(".")[1] in {"fmuladd", "fabs"} for c in callees), callees


def test_unused_definitions_vanish_and_definitions_concatenate() -> None:
    ir = "".join(vecmath.define(n, 4) for n in vecmath.NAMES) + harness("exp", 4, False)
    opt = host.optimised_ir(ir, TargetSpec.host())
    assert "@nc_tanh_v4f32" not in opt and "@nc_exp_v4f32" not in opt  # inlined and dropped
    assert "@run_nc_exp_v4f32" in opt


CALL = {
    "x86_64": re.compile(r"^\s*(call|jmp)\w*\s+[A-Za-z_*]", re.M),
    "aarch64": re.compile(r"^\s*(bl|b|blr|br)\s+[A-Za-z_]", re.M),
}


@pytest.mark.parametrize(
    "spec",
    [TargetSpec.host(), TargetSpec.x86_64(), TargetSpec.x86_64_v3(), TargetSpec.aarch64()],
    ids=["host", "x86-64", "x86-64-v3", "aarch64"],
)
def test_generated_code_calls_nothing(spec: TargetSpec) -> None:
    """No libm, no runtime helpers: the run loops compile to straight vector code."""
    ir = "".join(harness(n, w) for n in vecmath.NAMES for w in (1, 4))
    asm = host.emit_assembly(ir, spec)
    assert asm.count("run_nc_") >= 2 * len(vecmath.NAMES)
    calls = CALL[spec.arch].findall(asm)
    assert not calls, f"calls in the generated code for {spec.cpu}: {calls[:5]}"
