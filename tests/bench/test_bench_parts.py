"""The parts of a cell: the output check, the timing loop and its statistics, the ceilings."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neuralc.bench import ceilings as ceil
from neuralc.bench.check import compare
from neuralc.bench.timing import MIN_CALLS, summary_ms, time_calls

# -- the output check -----------------------------------------------------------------------


def test_check_accepts_reordered_sums_and_refuses_wrong_values():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((4, 10)).astype(np.float32)
    close = ref + np.float32(1e-6)
    assert compare([close], [ref], "fp32").ok
    off = ref.copy()
    off[2, 3] += 0.1 * np.abs(ref).max()
    v = compare([off], [ref], "fp32")
    assert not v.ok and v.error == pytest.approx(0.1, rel=1e-3)
    assert v.message == f"max error {v.error:.2e} against the reference, over the fp32 bound 1e-03"
    assert compare([off], [ref], "bf16").error == v.error  # the bound, not the measure, moves
    mild = ref.copy()
    mild[0, 0] += 0.03 * np.abs(ref).max()  # over fp16's 1e-2, under bf16's 5e-2
    assert not compare([mild], [ref], "fp16").ok and compare([mild], [ref], "bf16").ok


@pytest.mark.parametrize("outputs, message", [
    ([np.zeros((4, 9), np.float32)], "the output has shape (4, 9), the reference (4, 10)"),
    ([np.full((4, 10), np.nan, np.float32)], "the output holds NaN or infinity; the reference "
                                             "does not"),
    ([], "returned 0 outputs, the reference 1"),
])
def test_check_messages(outputs, message):
    v = compare(outputs, [np.ones((4, 10), np.float32)], "fp32")
    assert not v.ok and v.message == message


def test_integer_outputs_must_be_equal():
    ref = np.arange(6).reshape(2, 3)
    assert compare([ref.copy()], [ref], "fp32").ok
    v = compare([ref + (ref == 4)], [ref], "bf16")
    assert not v.ok and v.message == "the output differs from the reference (1 elements)"


# -- timing ---------------------------------------------------------------------------------


def test_repeat_times_exactly_that_many_calls_after_the_warmup():
    calls = []
    samples = time_calls(lambda: calls.append(1), repeat=7, min_time=100.0, warmup=2)
    assert len(samples) == 7 and len(calls) == 9


def test_min_time_runs_until_the_time_has_passed():
    t0 = time.perf_counter()
    samples = time_calls(lambda: time.sleep(0.002), repeat=None, min_time=0.03, warmup=0)
    assert time.perf_counter() - t0 >= 0.03
    assert len(samples) >= MIN_CALLS and all(s >= 0.0019 for s in samples)


def test_summary_is_order_statistics_in_milliseconds():
    s = summary_ms([i / 1000 for i in range(1, 12)])  # 1..11 ms
    assert s == {"median": pytest.approx(6), "p10": pytest.approx(2), "p90": pytest.approx(10),
                 "min": pytest.approx(1), "mean": pytest.approx(6), "n": 11}


# -- the ceilings ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def quick_ceilings() -> dict:
    return ceil.measure_ceilings(quick=True)


def test_ceilings_are_plausible(quick_ceilings):
    c = quick_ceilings
    lanes = c["fma"]["lanes"]
    # More than one vector FMA per 4 ns (even on a loaded machine, the best of three runs),
    # less than a 10 GHz core with 4 FMA units could do.
    assert 2 * lanes / 4 < c["fma"]["gflops"] < 10 * 4 * 2 * lanes
    levels = [x["level"] for x in c["copy"]]
    assert levels[0] == "L1" and levels[-1] == "DRAM"
    assert all(0.5 < x["gbs"] < 10_000 for x in c["copy"])
    bw = {x["level"]: x["gbs"] for x in c["copy"]}
    assert bw["L1"] > bw["DRAM"]  # a buffer in L1 copies faster than one in memory
    assert c["copy"][-1]["bytes"] >= 64 << 20 and c["threads"] == 1


def test_the_generated_loops_are_what_they_claim():
    """The copy stays a loop of vector moves (no memcpy, no pass dropped) and the FMA loop
    has one FMA per accumulator."""
    from neuralc.backends.cpu.host import TargetSpec, emit_assembly

    spec = TargetSpec.host()
    width, accs = spec.vector_width_f32, ceil._accumulators(spec)
    copy = emit_assembly(ceil.copy_ir(width), spec)
    fma = emit_assembly(ceil.fma_ir(width, accs), spec)
    assert "memcpy" not in copy and "call" not in copy
    if spec.arch == "x86_64":
        assert sum("vfmadd" in line for line in fma.splitlines()) == accs
        reg = {512: "zmm", 256: "ymm", 128: "xmm"}[spec.vector_bits]
        assert sum("vmovaps" in line and reg in line for line in copy.splitlines()) == 8


def test_ceilings_are_cached_per_machine(quick_ceilings, tmp_path, monkeypatch):
    monkeypatch.setenv("NEURALC_CACHE_DIR", str(tmp_path))
    assert ceil.cached_ceilings() is None
    ceil.store_ceilings(quick_ceilings)
    assert ceil.cached_ceilings() is None  # a quick measurement is never reused
    full = dict(quick_ceilings, quick=False)
    ceil.store_ceilings(full)
    assert ceil.cached_ceilings() == full
    assert list((tmp_path / "bench").glob("ceilings-*.json"))


def test_the_bandwidth_of_a_kernel_is_that_of_the_level_it_fits(quick_ceilings):
    c = quick_ceilings
    first, dram = c["copy"][0], c["copy"][-1]
    assert ceil.bandwidth_for(c, 100) == ("L1", first["gbs"])
    assert ceil.bandwidth_for(c, dram["bytes"] * 2) == ("DRAM", dram["gbs"])


def test_ceilings_on_several_threads_run_one_loop_per_thread(quick_ceilings):
    c = ceil.measure_ceilings(quick=True, threads=2)
    assert c["threads"] == 2 and c["fma"]["gflops"] > 0
    assert all(x["gbs"] > 0 for x in c["copy"])
    # The private L1 holds one footprint per thread; the total is twice one thread's.
    assert c["copy"][0]["bytes"] == 2 * quick_ceilings["copy"][0]["bytes"]


# -- the progress display -------------------------------------------------------------------


def test_progress_draws_a_bar_only_when_asked_or_on_a_terminal(capsys):
    from neuralc.bench.progress import Progress

    with Progress(2, enabled=True) as p:
        p.start("cpu/b1/fp32")
        p.done("cpu/b1/fp32", "ok")
        p.start("onnx/b1/fp32")
        p.done("onnx/b1/fp32", "crashed")
    err = capsys.readouterr().err
    assert "bench: cpu/b1/fp32" in err and "1 failed" in err
    assert p.failed == ["onnx/b1/fp32: crashed"]
    with Progress(2) as p:  # standard error is not a terminal under pytest
        p.start("cpu/b1/fp32")
        p.done("cpu/b1/fp32", "ok")
    assert capsys.readouterr().err == ""
